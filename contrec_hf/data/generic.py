"""A loader for any interaction table: csv, tsv or parquet, with an optional item table.

The interaction table has one row per interaction with a user column, an item column, a timestamp
column (unix time, or date strings) and optionally a rating column; the column names are arguments.
The optional item table has the item column, a title column and optionally a category column. Ids may
be strings (Amazon ASINs, with their leading zeros kept) or integers. The format is picked from the
file suffix: ``.csv``, ``.tsv`` / ``.tab`` (tab-separated) or ``.parquet`` / ``.pq``, each optionally
compressed (``.gz``, ``.bz2``, ``.xz``, ``.zip``, ``.zst``); any other text file is read with ``sep=``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError, DatasetNotFoundError
from .interactions import Interactions, build_interactions, register_loader, require_columns

__all__ = ["load_table", "read_table"]

_COMPRESSIONS = (".gz", ".bz2", ".xz", ".zip", ".zst")
_PARQUET = (".parquet", ".pq")
_SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def _format_suffix(path: Path) -> str:
    """The suffix that names the format, under any compression suffix (``a.csv.gz`` → ``.csv``)."""
    name = path.name.lower()
    for compression in _COMPRESSIONS:
        if name.endswith(compression):
            name = name[: -len(compression)]
            break
    return Path(name).suffix


def read_table(path: str | Path, *, sep: str | None = None, what: str = "table") -> pd.DataFrame:
    """Read a csv / tsv / parquet file as it is, without interpreting any column.

    Text files are read with every column as a string, so ids keep their leading zeros and no value is
    turned into a missing one except empty fields, which become NaN.

    Args:
        path (`str` or `Path`): the file.
        sep (`str`, *optional*): the field separator of a text file; by default ``","`` for ``.csv`` and a
            tab for ``.tsv`` / ``.tab``. Needed for any other suffix. Ignored for parquet.
        what (`str`): how to name the file in error messages (``"interaction table"``).

    Returns:
        `pd.DataFrame` with the file's columns.

    Raises:
        [`DatasetNotFoundError`]: the file does not exist.
        [`DataError`]: the file is empty, cannot be parsed, or its format cannot be told from its suffix.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"{what} {path} does not exist")
    if not path.is_file():
        raise DatasetNotFoundError(f"{what} {path} is not a file")
    if path.stat().st_size == 0:
        raise DataError(f"{what} {path} is empty")
    suffix = _format_suffix(path)
    if suffix in _PARQUET:
        try:
            return pd.read_parquet(path)
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"{what} {path} is not a readable parquet file: {err}") from err
    delimiter = sep if sep is not None else _SEPARATORS.get(suffix)
    if delimiter is None:
        raise DataError(
            f"cannot tell the format of {what} {path} from its suffix {suffix!r}: use .csv, .tsv or .parquet, "
            "or pass sep= for another delimited text file"
        )
    try:
        frame = pd.read_csv(path, sep=delimiter, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError as err:
        raise DataError(f"{what} {path} is empty") from err
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError) as err:
        raise DataError(f"{what} {path} cannot be parsed: {err}") from err
    # Only blank fields count as missing: "NA" or "null" may be a real title or id.
    for column in frame.columns:
        blank = frame[column].str.strip() == ""
        if blank.any():
            frame[column] = frame[column].mask(blank)
    return frame


def _stem(path: Path) -> str:
    name = path.name
    lowered = name.lower()
    for compression in _COMPRESSIONS:
        if lowered.endswith(compression):
            name = name[: -len(compression)]
            break
    return Path(name).stem


@register_loader("table")
def load_table(
    path: str | Path,
    *,
    items_path: str | Path | None = None,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str | None = "timestamp",
    rating_col: str | None = None,
    title_col: str | None = "title",
    category_col: str | None = "category",
    sep: str | None = None,
    name: str | None = None,
) -> Interactions:
    """Load an interaction table (and an optional item table) from csv, tsv or parquet files.

    Args:
        path (`str` or `Path`): the interaction table, one row per interaction.
        items_path (`str` or `Path`, *optional*): an item table keyed by the same ``item_col``, with titles
            (and optionally categories) used as item text. Items without a row get an empty title.
        user_col (`str`): the user id column.
        item_col (`str`): the item id column, in both tables.
        time_col (`str`, *optional*): the timestamp column: unix time or date strings (parsed to unix
            seconds). ``None`` uses the row order of the file as time (for tables already in order).
        rating_col (`str`, *optional*): the rating column. By default a column named ``"rating"`` is used
            when the table has one; otherwise the interactions have no ratings.
        title_col (`str`, *optional*): the title column of the item table (required there unless ``None``).
        category_col (`str`, *optional*): the category column of the item table; used when present,
            categories stay empty otherwise.
        sep (`str`, *optional*): the field separator of text files; by default taken from the suffix
            (``","`` for ``.csv``, a tab for ``.tsv``).
        name (`str`, *optional*): the dataset's name; by default the interaction file's stem.

    Returns:
        [`Interactions`]

    Raises:
        [`DatasetNotFoundError`]: a file does not exist.
        [`DataError`]: a file is empty or unreadable, a configured column is missing (the message lists the
            columns the file has), or an id, timestamp or rating cannot be parsed.

    Example:
        ```python
        >>> from contrec_hf.data import load_table
        >>> data = load_table("ratings.csv", items_path="items.csv", item_col="asin", rating_col="stars")
        >>> data.num_users, data.num_items, data.num_interactions
        ```
    """
    path = Path(path)
    source = str(path)
    raw = read_table(path, sep=sep, what="interaction table")
    if rating_col is None and "rating" in raw.columns:
        rating_col = "rating"
    columns = {"user_id": user_col, "item_id": item_col}
    if time_col is not None:
        columns["timestamp"] = time_col
    if rating_col is not None:
        columns["rating"] = rating_col
    require_columns(raw, columns, source)
    frame = pd.DataFrame({target: raw[column].to_numpy() for target, column in columns.items()})
    if time_col is None:
        frame["timestamp"] = np.arange(len(frame), dtype=np.int64)

    items = None
    if items_path is not None:
        table = read_table(items_path, sep=sep, what="item table")
        wanted = {"item_id": item_col}
        if title_col is not None:
            wanted["title"] = title_col
        require_columns(table, wanted, f"item table {items_path}")
        if category_col is not None and category_col in table.columns:
            wanted["category"] = category_col
        items = pd.DataFrame({target: table[column].to_numpy() for target, column in wanted.items()})
    return build_interactions(frame, items, name=name or _stem(path), source=source)
