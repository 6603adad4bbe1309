"""Small helpers shared across the package: seeding and JSON output."""

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

__all__ = ["require_positive", "set_seed", "write_json"]


def require_positive(obj: Any, *names: str) -> None:
    """Raise a ``ValueError`` naming the first attribute of ``obj`` among ``names`` that is not > 0."""
    for name in names:
        value = getattr(obj, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name} must be a number, got {type(value).__name__} {value!r}")
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value!r}")


def set_seed(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; returns a ``torch.Generator`` seeded the same way for data order."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


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
