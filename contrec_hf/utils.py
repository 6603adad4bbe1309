"""Small helpers shared across the package: seeding, reproducible gathers and JSON output."""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

__all__ = ["check_device", "gather_rows", "require_positive", "set_seed", "write_json"]


def require_positive(obj: Any, *names: str) -> None:
    """Raise a ``ValueError`` naming the first attribute of ``obj`` among ``names`` that is not > 0."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")


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
