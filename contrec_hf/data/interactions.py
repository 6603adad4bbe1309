"""The raw interaction table every loader returns, before filtering and splitting.

Loaders (MovieLens, Amazon, generic tables) differ only in how they read files; they all end in
:func:`build_interactions`, which checks the columns, normalises the types and returns an
:class:`Interactions` object. Filtering presets and the leave-one-out split work on that object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import DataError

LOADERS: dict[str, Callable[..., Interactions]] = {}
"""Dataset names accepted by `load_interactions` (and the CLI's ``--dataset``), each with its loader; a loader
joins it with [`register_loader`], in its own module."""


def register_loader(name: str) -> Callable[[Callable[..., Interactions]], Callable[..., Interactions]]:
    """Decorator: make a function returning [`Interactions`] the loader of dataset ``name``.

    Every module of `contrec_hf.data` is imported with the package, so a loader in a new module there is known to
    `load_sequential_dataset` and ``--dataset`` without touching another file (docs/architecture.md). Its first
    parameter is the path of the dataset's files; a default there means the dataset ships with a package.
    """

    def register(loader: Callable[..., Interactions]) -> Callable[..., Interactions]:
        if name in LOADERS:
            raise ValueError(f"two loaders are registered as dataset {name!r}: {LOADERS[name].__name__} and "
                             f"{loader.__name__}")  # fmt: skip
        LOADERS[name] = loader
        return loader

    return register


__all__ = ["Interactions", "build_interactions", "normalize_ids", "require_columns"]


@dataclass
class Interactions:
    """Interactions of one dataset, as read from its files.

    Attributes:
        frame (`pd.DataFrame`): one row per interaction, in source order (file order, or time order where a
            loader sorts by a finer clock than the one it keeps), with columns ``user_id`` (str),
            ``item_id`` (str), ``timestamp`` (int64, seconds or the unit of the source) and ``rating``
            (float64, NaN where the source has none).
        items (`pd.DataFrame`): one row per known item with ``item_id`` (str), ``title`` (str) and
            ``category`` (str, may be empty). Items interacted with but absent from the source's item file
            get an empty title: numeric ids are never used as text.
        name (`str`): a short name for the dataset (``"ml-100k"``).
    """

    frame: pd.DataFrame
    items: pd.DataFrame
    name: str = "custom"

    @property
    def num_interactions(self) -> int:
        return len(self.frame)

    @property
    def num_users(self) -> int:
        return int(self.frame["user_id"].nunique())

    @property
    def num_items(self) -> int:
        return int(self.frame["item_id"].nunique())

    @property
    def has_ratings(self) -> bool:
        return bool(self.frame["rating"].notna().any())


def require_columns(frame: pd.DataFrame, columns: Mapping[str, str] | tuple[str, ...], source: str) -> None:
    """Raise a :class:`DataError` naming every column of ``columns`` that ``frame`` lacks."""
    wanted = list(columns.values()) if isinstance(columns, Mapping) else list(columns)
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source} is missing column(s) {missing}; it has {list(map(str, frame.columns))}. "
            "Name the right columns with the loader's *_col arguments."
        )


def normalize_ids(values: pd.Series, what: str) -> pd.Series:
    """Turn an id column into strings; integral floats (``1.0``) become ``"1"``. Empty ids are refused."""
    if values.isna().any():
        raise DataError(f"{what} has {int(values.isna().sum())} missing value(s)")
    if pd.api.types.is_float_dtype(values):
        if not np.all(np.mod(values.to_numpy(), 1) == 0):
            raise DataError(f"{what} holds non-integer numbers; ids must be integers or strings")
        values = values.astype(np.int64)
    out = values.astype(str).str.strip()
    if (out == "").any():
        raise DataError(f"{what} has {int((out == '').sum())} empty id(s)")
    return out


def _parse_timestamps(values: pd.Series, source: str) -> pd.Series:
    """Integer timestamps; numeric columns are kept, date strings are parsed to unix seconds."""
    if values.isna().any():
        raise DataError(f"{source}: column 'timestamp' has {int(values.isna().sum())} missing value(s)")
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().all():
        return numeric.astype(np.int64)
    parsed = pd.to_datetime(values.where(numeric.isna()), utc=True, format="mixed", errors="coerce")
    unparsed = numeric.isna() & parsed.isna()
    if unparsed.any():
        bad = values[unparsed].iloc[0]
        raise DataError(f"{source}: cannot parse timestamp {bad!r} (expected a number or a date)")
    if numeric.notna().any():
        raise DataError(f"{source}: column 'timestamp' mixes numbers and dates")
    # Resolution-independent (pandas 3 may store microseconds): seconds since the epoch.
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).astype(np.int64)


def build_interactions(
    frame: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    name: str = "custom",
    source: str = "interactions",
) -> Interactions:
    """Validate and normalise an interaction table (and an optional item table).

    Args:
        frame (`pd.DataFrame`): columns ``user_id``, ``item_id``, ``timestamp`` and optionally ``rating``.
        items (`pd.DataFrame`, *optional*): columns ``item_id``, ``title`` and optionally ``category``.
        name (`str`): the dataset's name.
        source (`str`): how to name the input in error messages (a file path, say).

    Returns:
        [`Interactions`]
    """
    if len(frame) == 0:
        raise DataError(f"{source} holds no interactions")
    require_columns(frame, ("user_id", "item_id", "timestamp"), source)
    out = pd.DataFrame(
        {
            "user_id": normalize_ids(frame["user_id"], f"{source}: column 'user_id'"),
            "item_id": normalize_ids(frame["item_id"], f"{source}: column 'item_id'"),
            "timestamp": _parse_timestamps(frame["timestamp"], source),
        }
    )
    if "rating" in frame.columns:
        rating = pd.to_numeric(frame["rating"], errors="coerce")
        if rating.isna().any() and frame["rating"].notna().sum() != rating.notna().sum():
            bad = frame["rating"][rating.isna() & frame["rating"].notna()].iloc[0]
            raise DataError(f"{source}: cannot parse rating {bad!r} as a number")
        out["rating"] = rating.astype(np.float64)
    else:
        out["rating"] = np.nan
    out = out.reset_index(drop=True)

    if items is None:
        items = pd.DataFrame({"item_id": pd.Series(dtype=str)})
    require_columns(items, ("item_id",), f"{source} (item table)")
    table = pd.DataFrame({"item_id": normalize_ids(items["item_id"], f"{source} (item table): column 'item_id'")})
    for column in ("title", "category"):
        col = items[column] if column in items.columns else pd.Series([""] * len(items), index=items.index)
        table[column] = col.fillna("").astype(str).str.strip().to_numpy()
    table = table.drop_duplicates("item_id", keep="first").reset_index(drop=True)
    return Interactions(frame=out, items=table, name=name)
