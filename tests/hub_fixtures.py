"""pytest plugin: the `fake_hub` fixture, a fake Hugging Face Hub on 127.0.0.1 for offline push/load round trips.

Registered from tests/conftest.py with `pytest_plugins = ["hub_fixtures"]`.

Inside a test that asks for `fake_hub`, huggingface_hub / transformers / diffusers are online, pointed at the fake
Hub, authenticated as `fake_hub.user` with `fake_hub.token` (also in `HF_TOKEN`), and download into a fresh cache.
Everything (offline mode included) is restored when the test ends.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

if __package__:  # imported as `tests.hub_fixtures`
    from .fake_hub import FakeHub, use_fake_hub
else:  # imported as `hub_fixtures`, with tests/ on sys.path (pytest's default "prepend" import mode)
    from fake_hub import FakeHub, use_fake_hub


@pytest.fixture
def fake_hub(tmp_path: Path) -> Iterator[FakeHub]:
    """A running fake Hub (`.endpoint`, `.token`, `.user`, `.storage`), with the Hub clients pointed at it."""
    with FakeHub(storage=tmp_path / "fake-hub") as hub, use_fake_hub(hub, cache_dir=tmp_path / "hf-cache"):
        yield hub
