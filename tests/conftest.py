"""Shared fixtures. The Hub is unreachable here: every test runs offline with a private HF_HOME."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HOME", tempfile.mkdtemp(prefix="contrec-hf-home-"))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from contrec_hf.data import SequentialDataset, build_interactions, leave_one_out, load_sequential_dataset

FIXTURES = Path(__file__).parent / "fixtures"

# The fake Hub server (tests/hub_fixtures.py): `fake_hub` fixture for offline push_to_hub round trips.
pytest_plugins = ["hub_fixtures"]


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def ml100k() -> SequentialDataset:
    """The real MovieLens-100K split, read from the installed recbole wheel."""
    return load_sequential_dataset("ml-100k")


def make_cyclic_dataset(
    num_users: int = 23, num_items: int = 13, length: int = 11, seed: int = 0, prefix: str = "i"
) -> SequentialDataset:
    """Users walk the catalog in a cycle (item i is always followed by item i+1 mod num_items), each from a
    random start: a pattern any sequential model must learn, so tests can check learning, not just shapes.
    Item ids are ``f"{prefix}{i}"`` (``prefix=""``: numeric ids, as MovieLens has)."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start = int(rng.integers(num_items))
        rows += [(f"u{user}", f"{prefix}{(start + t) % num_items}", 1000 + t, 4.0) for t in range(length)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
    items = pd.DataFrame(
        {"item_id": [f"{prefix}{i}" for i in range(num_items)], "title": [f"Item {i}" for i in range(num_items)]}
    )
    return leave_one_out(build_interactions(frame, items, name="cyclic"), deduplicate=False)


@pytest.fixture
def cyclic_dataset() -> SequentialDataset:
    return make_cyclic_dataset()
