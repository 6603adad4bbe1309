"""Datasets: loaders for MovieLens, Amazon and generic tables, presets and the leave-one-out split."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

from ..errors import DatasetNotFoundError
from .amazon import load_amazon2014, load_amazon2023
from .cold_start import ColdStartSplit, cold_start_split
from .generic import load_table
from .interactions import LOADERS, Interactions, build_interactions, register_loader
from .movielens import load_movielens_1m, load_movielens_100k
from .split import PRESETS, Preset, SequentialDataset, apply_preset, leave_one_out

for _module in pkgutil.iter_modules(__path__):  # each loader module registers its datasets in LOADERS
    importlib.import_module(f"{__name__}.{_module.name}")


def needs_path(name: str) -> bool:
    """Whether loader ``name`` needs the path of its files: its first parameter has no default (only ``ml-100k``,
    shipped in the ``recbole`` wheel, has one), so each loader's signature is the one place that says it."""
    first = next(iter(inspect.signature(LOADERS[name]).parameters.values()))
    return first.default is inspect.Parameter.empty


def load_interactions(name: str, path: str | Path | None = None, /, **kwargs: Any) -> Interactions:
    """Read a dataset by name. ``ml-100k`` needs no path (it comes from the ``recbole`` wheel); the others
    read the files at ``path`` (see each loader for what ``path`` may be and which keywords it takes)."""
    if name not in LOADERS:
        raise DatasetNotFoundError(f"unknown dataset {name!r}; known datasets: {sorted(LOADERS)}")
    if needs_path(name) and path is None:
        raise DatasetNotFoundError(f"dataset {name!r} is not shipped with any package: pass the path to its files")
    loader = LOADERS[name]
    return loader(path, **kwargs) if path is not None else loader(**kwargs)


def load_sequential_dataset(
    name: str, path: str | Path | None = None, /, *, preset: str | Preset | None = None, **kwargs: Any
) -> SequentialDataset:
    """Load a dataset by name, apply a preset and split it leave-one-out.

    Args:
        name (`str`): one of :data:`LOADERS` (``"ml-100k"``, ``"ml-1m"``, ``"amazon-2014"``, ``"amazon-2023"``,
            ``"table"``), or the folder of a dataset saved with :meth:`SequentialDataset.save`.
        path (`str` or `Path`, *optional*): where the dataset's files are (not needed for ``ml-100k``).
        preset (`str`, *optional*): ``"contrec"``, ``"tiger"`` or ``None`` (all interactions).
        **kwargs: passed to the loader.

    Example:
        ```python
        >>> from contrec_hf.data import load_sequential_dataset
        >>> data = load_sequential_dataset("ml-100k")
        >>> data.num_users, data.num_items, data.num_interactions
        (943, 1682, 100000)
        ```
    """
    if name not in LOADERS and (Path(name) / "dataset.json").is_file():
        return SequentialDataset.load(name)
    return leave_one_out(load_interactions(name, path, **kwargs), preset)


__all__ = [
    "LOADERS",
    "PRESETS",
    "ColdStartSplit",
    "Interactions",
    "Preset",
    "SequentialDataset",
    "apply_preset",
    "build_interactions",
    "cold_start_split",
    "leave_one_out",
    "load_amazon2014",
    "load_amazon2023",
    "load_interactions",
    "load_movielens_1m",
    "load_movielens_100k",
    "load_sequential_dataset",
    "load_table",
    "needs_path",
    "register_loader",
]
