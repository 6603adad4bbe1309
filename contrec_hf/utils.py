"""Small helpers shared across the package: seeding, reproducible gathers and JSON output."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

__all__ = [
    "check_device",
    "check_number",
    "check_recorded",
    "gather_rows",
    "require_positive",
    "set_seed",
    "write_json",
]


def _bounds(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '≥'} {low}"
    return f"{'<' if high_open else '≤'} {high}" if high is not None else ""


def check_number(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
    error: type[Exception] = ConfigError,
    wanted: str | None = None,
) -> Any:
    """The one check of "a number in a range" of the package: ``value`` unchanged, or ``error`` naming ``name``.

    Args:
        name (`str`): the option's name, for the message.
        value: what was given; a `bool` is never a number here.
        low / high (`float`, *optional*): the bounds, inclusive (``low_open`` / ``high_open``: excluded).
        integer (`bool`): require an integer (Python or NumPy).
        error (`type[Exception]`): the exception raised, a [`ContRecError`] subclass.
        wanted (`str`, *optional*): what the message says is wanted, when the bounds need words (e.g. "an integer
            between 1 and the catalog size 13").

    Returns:
        the value, so that ``self.k = check_number("k", k, 1, integer=True)`` reads as one step.

    Example:
        ```python
        >>> from contrec_hf.utils import check_number
        >>> check_number("dropout", 0.1, 0.0, 1.0)
        0.1
        >>> check_number("k", 0, 1, integer=True)
        Traceback (most recent call last):
        ...
        contrec_hf.errors.ConfigError: k must be an integer ≥ 1, got 0
        ```
    """
    kinds = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    typed = isinstance(value, kinds) and not isinstance(value, bool)
    fits = typed and (low is None or (value > low if low_open else value >= low))
    fits = fits and (high is None or (value < high if high_open else value <= high))
    if not fits:
        kind = "an integer" if integer else ("" if typed else "a number")
        wanted = wanted or " ".join(p for p in (kind, _bounds(low, high, low_open, high_open)) if p) or "a number"
        got = repr(value) if typed else f"{type(value).__name__} {value!r}"
        raise error(f"{name} must be {wanted}, got {got}")
    return value


def require_positive(obj: Any, *names: str) -> None:
    """Raise a `ConfigError` naming the first attribute of ``obj`` among ``names`` that is not a number > 0."""
    for name in names:
        check_number(name, getattr(obj, name), 0, low_open=True)


def check_device(value: str | None) -> None:
    """Raise a ``ConfigError`` naming ``device`` unless ``value`` is ``None`` or a CPU / visible CUDA device."""
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"device must be a string such as 'cpu' or 'cuda', got {type(value).__name__} {value!r}")
    try:
        device = torch.device(value)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {value!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device={value!r} but torch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device={value!r} but torch sees {torch.cuda.device_count()} CUDA device(s)")


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a ``torch.Generator`` seeded the same way for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def gather_rows(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``table[index]`` with a backward pass that gives the same bits on every run (docs/errors.md, reproducibility).

    Advanced indexing's backward is ``index_put_(accumulate=True)``: on a multi-threaded CPU it adds the gradients of
    repeated indices in an order that changes from run to run, so two trainings from one seed drift apart (it made
    LightGCN features, and with them the whole main job, differ between identical runs). ``F.embedding``'s backward
    accumulates each row in a fixed order: same values, reproducible gradients.

    Args:
        table (`torch.Tensor` of shape `[num_rows, dim]`): the rows to gather from.
        index (`torch.LongTensor` of any shape `[*]`): row indices.

    Returns:
        `torch.Tensor` of shape `[*, dim]`.

    Example:
        ```python
        >>> import torch
        >>> gather_rows(torch.eye(3), torch.tensor([[2, 2], [0, 1]])).shape
        torch.Size([2, 2, 3])
        ```
    """
    return torch.nn.functional.embedding(index, table)


def write_json(path: str | Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (temporary sibling, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as handle:
        json.dump(payload, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)
    return path


def check_recorded(
    path: str | Path, recorded: dict[str, Any], what: str, remedy: str, normalise: Callable[[dict], dict] | None = None
) -> None:
    """Record the options a run started with in ``path`` (JSON); refuse a rerun with others, naming each field that
    differs. A folder without the file (a run from before it was recorded) is taken as it is and gets the file.

    Args:
        path (`str` or `Path`): the record, e.g. ``RUN/job.json``.
        recorded (`dict`): the options, JSON-serialisable; compared as they read back (tuples as lists).
        what (`str`): what differs, for the message (e.g. ``"other options"``).
        remedy (`str`): what the user can do instead, for the message.
        normalise (`Callable`, *optional*): applied to the file's options and to ``recorded`` before they are
            compared (e.g. to drop entries that spell out a default); the file keeps what it was written with.

    Raises:
        [`ConfigError`]: the file records other options.

    Example:
        ```python
        >>> import tempfile
        >>> from pathlib import Path
        >>> from contrec_hf.utils import check_recorded
        >>> path = Path(tempfile.mkdtemp()) / "job.json"
        >>> check_recorded(path, {"seed": 0}, "other options", "use another folder")
        >>> check_recorded(path, {"seed": 1}, "other options", "use another folder")
        Traceback (most recent call last):
        ...
        contrec_hf.errors.ConfigError: ... other options (seed: 0 recorded, 1 now; job.json); use another folder

        ```
    """
    path = Path(path)
    recorded = json.loads(json.dumps(recorded))
    normalise = normalise or (lambda options: options)
    if path.is_file() and (before := normalise(json.loads(path.read_text()))) != (now := normalise(recorded)):
        fields = sorted(set(before) | set(now), key=str)
        changed = [f"{k}: {before.get(k)!r} recorded, {now.get(k)!r} now" for k in fields
                   if before.get(k) != now.get(k)]  # fmt: skip
        raise ConfigError(f"{path.parent} was started with {what} ({'; '.join(changed)}; {path.name}); {remedy}")
    if not path.is_file():
        write_json(path, recorded)
