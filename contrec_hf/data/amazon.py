"""Amazon review loaders: the 2014 "5-core" files (McAuley et al.) and Amazon Reviews 2023 (McAuley Lab).

Amazon 2014 (the files used by P5 and TIGER):

- ``reviews_<Category>_5.json(.gz)``: one JSON object per line with ``reviewerID``, ``asin``, ``overall``
  (the rating) and ``unixReviewTime`` (unix seconds), among others.
- ``meta_<Category>.json(.gz)``: one record per line written as a *Python dict literal* (single quotes),
  parsed with `ast.literal_eval` (never `eval`); strict JSON lines are accepted too. ``title`` is often
  missing; ``categories`` is a list of category paths (lists of names, most general first).

Amazon Reviews 2023 (``McAuley-Lab/Amazon-Reviews-2023`` on the Hub):

- ``<Category>.jsonl(.gz)`` (or parquet / csv copies): ``user_id``, ``asin``, ``parent_asin``, ``rating`` and
  ``timestamp`` in **milliseconds**, among others.
- ``meta_<Category>.jsonl(.gz)`` (or parquet): ``parent_asin``, ``title``, ``main_category``, ``categories``.
- The pre-split benchmark csv files (``<Category>.train.csv``, ``.valid.csv``, ``.test.csv`` with columns
  ``user_id, parent_asin, rating, timestamp[, history]``, timestamps in milliseconds too).

Item text is the title and one category name. HTML entities in titles and categories (``&amp;``) are
decoded. Only metadata of items that occur in the reviews is kept.
"""

from __future__ import annotations

import ast
import gzip
import html
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

from ..errors import DataError, DatasetNotFoundError
from .generic import read_table
from .interactions import Interactions, build_interactions, register_loader, require_columns

logger = logging.getLogger(__name__)

__all__ = ["HUB_REPO_2023", "load_amazon2014", "load_amazon2023"]

HUB_REPO_2023 = "McAuley-Lab/Amazon-Reviews-2023"
"""The Hub id of Amazon Reviews 2023; its configs are ``raw_review_<Category>`` and ``raw_meta_<Category>``."""

_REVIEWS_2014_5CORE = re.compile(r"reviews_(?P<category>.+)_5\.json(?:\.gz)?")
_REVIEWS_2014_ANY = re.compile(r"reviews_(?P<category>.+?)(?:_5)?\.json(?:\.gz)?")
_SUFFIXES_2023 = (".jsonl.gz", ".jsonl", ".parquet", ".csv.gz", ".csv")
_META_SUFFIXES_2023 = (".jsonl.gz", ".jsonl", ".parquet")
_SPLIT_PARTS = ("train", "valid", "test")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_TRUE = {"1", "ON", "YES", "TRUE"}


# ------------------------------------------------------------------------------------- line-based reading
def _open_text(path: Path) -> IO[str]:
    """Open a text file, gunzipping it when it starts with the gzip magic bytes (whatever its suffix)."""
    with path.open("rb") as probe:
        compressed = probe.read(2) == b"\x1f\x8b"
    if compressed:
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open(encoding="utf-8")


def _preview(text: str, width: int = 80) -> str:
    return repr(text if len(text) <= width else text[:width] + "…")


def _parse_line(text: str, path: Path, number: int, python_literals: bool) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        if not python_literals:
            raise DataError(f"{path}, line {number}: not valid JSON ({err.msg}): {_preview(text)}") from None
        try:
            # Safe: literal_eval only builds literals (dicts, lists, strings, numbers), it runs no code.
            record = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as literal_err:
            raise DataError(
                f"{path}, line {number}: neither a JSON object nor a Python dict literal: {_preview(text)}"
            ) from literal_err
    if not isinstance(record, dict):
        raise DataError(f"{path}, line {number}: expected one object per line, found a {type(record).__name__}")
    return record


def _json_lines(path: Path, *, python_literals: bool) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, record)`` for each non-blank line of a (possibly gzipped) JSON-lines file.

    With ``python_literals`` a line that is not JSON is read as a Python dict literal.
    """
    number = 0
    try:
        with _open_text(path) as handle:
            for number, line in enumerate(handle, start=1):
                text = line.strip()
                if text:
                    yield number, _parse_line(text, path, number, python_literals)
    except (OSError, EOFError, UnicodeDecodeError) as err:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}, line {number + 1}: cannot read the file ({err})") from err


def _required(record: dict[str, Any], key: str, path: Path, number: int) -> Any:
    value = record.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        what = "an empty" if key in record else "no"
        raise DataError(f"{path}, line {number}: the record has {what} {key!r} field; its fields are {sorted(record)}")
    return value


def _text(value: Any) -> str:
    """A title or category as clean text: missing values become ``""``, HTML entities are decoded."""
    if value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value)):
        return ""
    return html.unescape(str(value)).strip()


def _most_specific(categories: Any) -> str:
    """The most specific category name: the last name of the first non-empty path in a list of paths
    (Amazon 2014: ``[["Toys & Games", "Puzzles", "Jigsaw"]]`` → ``"Jigsaw"``), or the last name of a flat list
    (Amazon 2023). ``""`` when there is none."""
    if isinstance(categories, np.ndarray):
        categories = categories.tolist()
    if not isinstance(categories, (list, tuple)):
        return ""
    for entry in categories:
        if isinstance(entry, np.ndarray):
            entry = entry.tolist()
        if isinstance(entry, (list, tuple)):
            names = [_text(name) for name in entry if _text(name)]
            if names:
                return names[-1]
    names = [_text(name) for name in categories if isinstance(name, str) and _text(name)]
    return names[-1] if names else ""


def _listing(folder: Path, limit: int = 20) -> list[str]:
    names = sorted(p.name for p in folder.iterdir())
    return names[:limit] + ([f"... ({len(names) - limit} more)"] if len(names) > limit else [])


# ------------------------------------------------------------------------------------------ Amazon 2014
def _find_reviews_2014(folder: Path, category: str | None) -> Path:
    found = []
    for file in sorted(folder.iterdir()):
        match = _REVIEWS_2014_5CORE.fullmatch(file.name)
        if file.is_file() and match and (category is None or match["category"] == category):
            found.append(file)
    if not found:
        wanted = f"reviews_{category or '<Category>'}_5.json(.gz)"
        raise DatasetNotFoundError(f"{folder} holds no Amazon 2014 reviews file {wanted}; it has {_listing(folder)}")
    if len(found) > 1:
        names = [f.name for f in found]
        hint = "pass the file itself as path=" if category is not None else "pick one with category="
        raise DataError(f"{folder} holds several Amazon 2014 reviews files {names}: {hint}")
    return found[0]


def _read_reviews_2014(path: Path) -> pd.DataFrame:
    rows = [
        (
            _required(record, "reviewerID", path, number),
            _required(record, "asin", path, number),
            _required(record, "overall", path, number),
            _required(record, "unixReviewTime", path, number),
        )
        for number, record in _json_lines(path, python_literals=True)
    ]
    if not rows:
        raise DataError(f"{path} holds no reviews")
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def _read_meta_2014(path: Path, wanted: set[str]) -> pd.DataFrame:
    rows = []
    for number, record in _json_lines(path, python_literals=True):
        asin = str(_required(record, "asin", path, number)).strip()
        if asin in wanted:
            rows.append((asin, _text(record.get("title")), _most_specific(record.get("categories"))))
    if not rows:
        logger.warning("%s describes none of the reviewed items: titles and categories stay empty", path)
    return pd.DataFrame(rows, columns=["item_id", "title", "category"])


@register_loader("amazon-2014")
def load_amazon2014(
    path: str | Path, *, meta_path: str | Path | None = None, category: str | None = None
) -> Interactions:
    """Load an Amazon Reviews 2014 "5-core" category (``reviews_<Category>_5.json.gz``).

    Args:
        path (`str` or `Path`): a reviews file (``reviews_<Category>_5.json`` or ``.json.gz``, one JSON object
            per line), or a folder holding one. A folder with several categories needs ``category``.
        meta_path (`str` or `Path`, *optional*): the metadata file. By default ``meta_<Category>.json.gz`` (or
            ``.json``) next to the reviews file, when it exists; without metadata titles stay empty.
        category (`str`, *optional*): the category (``"Beauty"``, ``"Toys_and_Games"``): picks the file in a
            folder and names the dataset. Taken from the file name by default.

    Returns:
        [`Interactions`] named ``"amazon-2014-<Category>"``: ``user_id`` = ``reviewerID``, ``item_id`` =
        ``asin``, ``rating`` = ``overall``, ``timestamp`` = ``unixReviewTime`` (seconds). Item titles are the
        metadata ``title`` (``""`` where missing); the category is the most specific name of the item's first
        category path (the last element of the first non-empty list of ``categories``).

    Raises:
        [`DatasetNotFoundError`]: ``path`` or ``meta_path`` does not exist, or the folder has no reviews file.
        [`DataError`]: a line is neither JSON nor a dict literal or lacks a field (the message names the file
            and the line), the folder is ambiguous, or ``category`` contradicts the file name.

    Example:
        ```python
        >>> from contrec_hf.data import leave_one_out, load_amazon2014
        >>> data = leave_one_out(load_amazon2014("amazon/reviews_Beauty_5.json.gz"), "tiger")
        ```
    """
    path = Path(path)
    if not path.exists():
        raise DatasetNotFoundError(f"Amazon 2014 reviews file or folder {path} does not exist")
    if meta_path is not None and not Path(meta_path).is_file():
        raise DatasetNotFoundError(f"Amazon 2014 metadata file {meta_path} does not exist")
    reviews_file = _find_reviews_2014(path, category) if path.is_dir() else path
    match = _REVIEWS_2014_ANY.fullmatch(reviews_file.name)
    if match and category is not None and match["category"] != category:
        raise DataError(f"category={category!r} contradicts the file name {reviews_file.name!r}")
    category = category or (match["category"] if match else reviews_file.name.split(".")[0])

    frame = _read_reviews_2014(reviews_file)
    if meta_path is not None:
        meta_file: Path | None = Path(meta_path)
    else:
        candidates = [reviews_file.parent / f"meta_{category}{suffix}" for suffix in (".json.gz", ".json")]
        meta_file = next((c for c in candidates if c.is_file()), None)
    items = None
    if meta_file is not None:
        items = _read_meta_2014(meta_file, set(frame["item_id"].astype(str).str.strip()))
    return build_interactions(frame, items, name=f"amazon-2014-{category}", source=str(reviews_file))


# ------------------------------------------------------------------------------------------ Amazon 2023
def _parse_name_2023(name: str) -> tuple[str, str | None] | None:
    """``"Toys.jsonl"`` → ``("Toys", None)``, ``"Toys.train.csv"`` → ``("Toys", "train")``, else ``None``."""
    for suffix in _SUFFIXES_2023:
        if name.endswith(suffix) and len(name) > len(suffix):
            stem = name[: -len(suffix)]
            if suffix.startswith(".csv"):
                for part in _SPLIT_PARTS:
                    if stem.endswith(f".{part}"):
                        return stem[: -len(part) - 1], part
            return stem, None
    return None


def _find_reviews_2023(folder: Path, category: str | None) -> tuple[str, list[Path]]:
    groups: dict[str, list[tuple[str | None, Path]]] = {}
    for file in sorted(folder.iterdir()):
        parsed = _parse_name_2023(file.name)
        if file.is_file() and parsed is not None and not file.name.startswith("meta_"):
            groups.setdefault(parsed[0], []).append((parsed[1], file))
    if category is not None and category not in groups:
        raise DatasetNotFoundError(
            f"{folder} holds no Amazon 2023 reviews for category {category!r} (<Category>.jsonl, .parquet, .csv or "
            f"<Category>.train/valid/test.csv); it has {_listing(folder)}"
        )
    if category is None:
        if not groups:
            raise DatasetNotFoundError(
                f"{folder} holds no Amazon 2023 reviews file (<Category>.jsonl, .parquet, .csv or "
                f"<Category>.train/valid/test.csv); it has {_listing(folder)}"
            )
        if len(groups) > 1:
            names = [file.name for files in groups.values() for _, file in files]
            raise DataError(
                f"{folder} holds reviews of several categories {sorted(groups)} ({names}): pick one with category="
            )
        category = next(iter(groups))
    entries = groups[category]
    parts = [part for part, _ in entries]
    if (None in parts and len(parts) > 1) or len(set(parts)) < len(parts):
        raise DataError(
            f"{folder} holds several reviews files for {category!r}: {[f.name for _, f in entries]}; "
            "pass the file itself as path="
        )
    # Benchmark splits are read in time order: train, then valid, then test.
    entries.sort(key=lambda entry: -1 if entry[0] is None else _SPLIT_PARTS.index(entry[0]))
    return category, [file for _, file in entries]


def _is_jsonl(path: Path) -> bool:
    return path.name.endswith((".jsonl", ".jsonl.gz"))


def _reviews_frame_2023(raw: pd.DataFrame, item_key: str, source: str) -> pd.DataFrame:
    """Pick the columns a loader needs out of a reviews table (parquet, csv or a Hub dataset)."""
    require_columns(raw, ("user_id", item_key, "timestamp"), source)
    frame = pd.DataFrame(
        {
            "user_id": raw["user_id"].to_numpy(),
            "item_id": raw[item_key].to_numpy(),
            "parent_asin": raw["parent_asin"].to_numpy() if "parent_asin" in raw.columns else None,
            "timestamp": raw["timestamp"].to_numpy(),
        }
    )
    if "rating" in raw.columns:
        frame["rating"] = raw["rating"].to_numpy()
    return frame


def _read_reviews_2023(path: Path, item_key: str) -> pd.DataFrame:
    if not _is_jsonl(path):
        return _reviews_frame_2023(read_table(path, what="Amazon 2023 reviews file"), item_key, str(path))
    rows = []
    for number, record in _json_lines(path, python_literals=False):
        item = _required(record, item_key, path, number)
        rows.append(
            (
                _required(record, "user_id", path, number),
                item,
                record.get("parent_asin", item if item_key == "parent_asin" else None),
                _required(record, "rating", path, number),
                _required(record, "timestamp", path, number),
            )
        )
    if not rows:
        raise DataError(f"{path} holds no reviews")
    return pd.DataFrame(rows, columns=["user_id", "item_id", "parent_asin", "rating", "timestamp"])


def _meta_from_records(records: Iterator[tuple[Any, Any, Any, Any]], wanted: set[str]) -> pd.DataFrame:
    """``(parent_asin, title, main_category, categories)`` records → ``parent_asin, title, category``.

    The category is the last (most specific) name of ``categories`` when that list is non-empty, else
    ``main_category`` (many 2023 records have an empty ``categories`` list).
    """
    rows = []
    for parent, title, main_category, categories in records:
        parent = str(parent).strip()
        if parent in wanted:
            rows.append((parent, _text(title), _most_specific(categories) or _text(main_category)))
    return pd.DataFrame(rows, columns=["parent_asin", "title", "category"])


def _meta_from_frame(table: pd.DataFrame, wanted: set[str], source: str) -> pd.DataFrame:
    require_columns(table, ("parent_asin",), source)
    if table["parent_asin"].isna().any():
        raise DataError(
            f"{source}: column 'parent_asin' has {int(table['parent_asin'].isna().sum())} missing value(s)"
        )
    columns = [
        table[c] if c in table.columns else [None] * len(table) for c in ("title", "main_category", "categories")
    ]
    return _meta_from_records(zip(table["parent_asin"], *columns), wanted)


def _read_meta_2023(path: Path, wanted: set[str]) -> pd.DataFrame:
    if not _is_jsonl(path):
        return _meta_from_frame(read_table(path, what="Amazon 2023 metadata file"), wanted, str(path))
    records = (
        (
            _required(record, "parent_asin", path, number),
            record.get("title"),
            record.get("main_category"),
            record.get("categories"),
        )
        for number, record in _json_lines(path, python_literals=False)
    )
    return _meta_from_records(records, wanted)


def _items_2023(reviews: pd.DataFrame, meta: pd.DataFrame | None, item_key: str) -> pd.DataFrame | None:
    """Item table keyed by ``item_key``; ``asin`` items get the metadata of their ``parent_asin``."""
    if meta is None:
        return None
    if len(meta) == 0:
        logger.warning("the Amazon 2023 metadata describes none of the reviewed items: titles stay empty")
    if item_key == "parent_asin":
        return meta.rename(columns={"parent_asin": "item_id"})
    pairs = reviews[["item_id", "parent_asin"]].dropna().astype(str).drop_duplicates("item_id")
    return pairs.merge(meta, on="parent_asin", how="inner")[["item_id", "title", "category"]]


def _milliseconds_to_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Turn millisecond timestamps into seconds.

    NOTE: rows are first sorted (stably) by the millisecond time, so two reviews written within the same
    second keep their true order in the leave-one-out split, which breaks ties by row order. Non-numeric
    timestamps are left to `build_interactions`, which parses dates or reports the bad value.
    """
    millis = pd.to_numeric(frame["timestamp"], errors="coerce")
    if millis.isna().any():
        return frame
    frame = frame.assign(timestamp=millis).sort_values("timestamp", kind="mergesort")
    return frame.assign(timestamp=(frame["timestamp"] // 1000).astype(np.int64)).reset_index(drop=True)


def _hub_offline() -> bool:
    if any(os.environ.get(var, "").strip().upper() in _TRUE for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return True
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _looks_like_hub_id(path: str | Path) -> bool:
    if not isinstance(path, str) or Path(path).exists() or not _HUB_ID.fullmatch(path):
        return False
    name = path.rsplit("/", 1)[-1]
    return _parse_name_2023(name) is None and not name.endswith((".json", ".gz"))


def _hub_table(repo_id: str, config: str, columns: list[str], category: str) -> pd.DataFrame:
    advice = (
        f"download {category}.jsonl and meta_{category}.jsonl from https://amazon-reviews-2023.github.io "
        "and pass their folder as path="
    )
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a dependency
        raise DatasetNotFoundError(
            f"reading {repo_id!r} from the Hub needs the 'datasets' package; or {advice}"
        ) from err
    if bool(getattr(datasets.config, "HF_HUB_OFFLINE", False)):
        raise DatasetNotFoundError(f"cannot load {repo_id!r} ({config}): the Hugging Face Hub is offline; {advice}")
    try:
        loaded = datasets.load_dataset(repo_id, config)
    except Exception as err:  # network, missing config, unsupported loading script: all mean "not available"
        raise DatasetNotFoundError(
            f"cannot load {repo_id!r} config {config!r} from the Hugging Face Hub ({type(err).__name__}: {err}); "
            f"{advice}"
        ) from err
    if isinstance(loaded, datasets.DatasetDict):
        loaded = loaded["full"] if "full" in loaded else loaded[next(iter(loaded))]
    keep = [c for c in columns if c in loaded.column_names]
    return loaded.select_columns(keep).to_pandas()


def _hub_reviews_2023(repo_id: str, category: str | None, meta_path, item_key: str) -> tuple:
    """The reviews of a Hub dataset (``raw_review_<category>``), with its metadata table unless ``meta_path``
    names a local file: ``(reviews, meta_table, meta_file, source)``."""
    if category is None:
        raise DataError(
            f"loading {repo_id!r} from the Hub needs category= (e.g. 'All_Beauty'): it picks the configs "
            "raw_review_<category> and raw_meta_<category>"
        )
    if _hub_offline():
        raise DatasetNotFoundError(
            f"{repo_id!r} is neither a local file or folder nor reachable: the Hugging Face Hub is offline "
            f"(HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set). Download {category}.jsonl and "
            f"meta_{category}.jsonl and pass their folder as path="
        )
    review_columns = ["user_id", "asin", "parent_asin", "rating", "timestamp"]
    raw = _hub_table(repo_id, f"raw_review_{category}", review_columns, category)
    reviews = _reviews_frame_2023(raw, item_key, f"{repo_id} (raw_review_{category})")
    meta_file = Path(meta_path) if meta_path is not None else None
    meta_table = None
    if meta_file is None:
        meta_columns = ["parent_asin", "title", "main_category", "categories"]
        meta_table = _hub_table(repo_id, f"raw_meta_{category}", meta_columns, category)
    return reviews, meta_table, meta_file, f"{repo_id} (raw_review_{category})"


def _local_reviews_2023(path: Path, category: str | None, meta_path, item_key: str) -> tuple:
    """The reviews of a local file or folder, and the metadata file beside them (or ``meta_path``):
    ``(reviews, category, meta_file, source)``."""
    if not path.exists():
        raise DatasetNotFoundError(f"Amazon 2023 reviews file or folder {path} does not exist")
    if path.is_dir():
        category, files = _find_reviews_2023(path, category)
    else:
        files = [path]
        parsed = _parse_name_2023(path.name)
        category = category or (parsed[0] if parsed else path.name.split(".")[0])
    reviews = pd.concat([_read_reviews_2023(f, item_key) for f in files], ignore_index=True)
    if meta_path is not None:
        meta_file = Path(meta_path)
    else:
        candidates = [files[0].parent / f"meta_{category}{suffix}" for suffix in _META_SUFFIXES_2023]
        meta_file = next((c for c in candidates if c.is_file()), None)
    return reviews, category, meta_file, str(path)


@register_loader("amazon-2023")
def load_amazon2023(
    path: str | Path,
    *,
    meta_path: str | Path | None = None,
    category: str | None = None,
    item_key: str = "parent_asin",
) -> Interactions:
    """Load a category of Amazon Reviews 2023 (McAuley Lab).

    Args:
        path (`str` or `Path`): one of

            - a reviews file: ``<Category>.jsonl``, ``.jsonl.gz``, ``.parquet`` or ``.csv`` (including one
              pre-split benchmark file with columns ``user_id, parent_asin, rating, timestamp[, history]``);
            - a folder holding ``<Category>.jsonl`` (or ``.jsonl.gz`` / ``.parquet`` / ``.csv``) and optionally
              ``meta_<Category>.jsonl``, or the benchmark files ``<Category>.train.csv``, ``.valid.csv`` and
              ``.test.csv``, which are concatenated into the full interaction history;
            - a Hub dataset id such as ``"McAuley-Lab/Amazon-Reviews-2023"`` (a string that is not a local
              path): reviews and metadata come from ``datasets.load_dataset(path, "raw_review_<category>")``
              and ``"raw_meta_<category>"``; ``category`` is required.
        meta_path (`str` or `Path`, *optional*): the metadata file (jsonl, jsonl.gz or parquet). By default
            ``meta_<Category>.jsonl(.gz)`` / ``.parquet`` next to the reviews, when it exists.
        category (`str`, *optional*): the category (``"All_Beauty"``): picks the files in a folder or the Hub
            configs and names the dataset; taken from the file name by default.
        item_key (`str`): ``"parent_asin"`` (the item id of the benchmark splits) or ``"asin"`` (product
            variants; they get the metadata of their parent).

    Returns:
        [`Interactions`] named ``"amazon-2023-<Category>"`` with ``timestamp`` in **seconds** (the files hold
        milliseconds; rows are ordered by the millisecond time first so same-second ties keep their true order).
        Item titles are the metadata ``title``; the category is the last (most specific) element of
        ``categories`` when that list is non-empty, else ``main_category``.

    Raises:
        [`DatasetNotFoundError`]: a file or folder does not exist, or a Hub id cannot be loaded (offline,
            ``HF_HUB_OFFLINE`` set, unknown config).
        [`DataError`]: a malformed line (the message names the file and the line), missing columns, an
            ambiguous folder, a bad ``item_key`` or a Hub id without ``category``.

    Example:
        ```python
        >>> from contrec_hf.data import leave_one_out, load_amazon2023
        >>> data = leave_one_out(load_amazon2023("amazon2023/", category="All_Beauty"))
        ```
    """
    if item_key not in ("parent_asin", "asin"):
        raise DataError(f"item_key must be 'parent_asin' or 'asin', got {item_key!r}")
    if meta_path is not None and not Path(meta_path).is_file():
        raise DatasetNotFoundError(f"Amazon 2023 metadata file {meta_path} does not exist")
    if _looks_like_hub_id(path):
        reviews, meta_table, meta_file, source = _hub_reviews_2023(str(path), category, meta_path, item_key)
    else:
        reviews, category, meta_file, source = _local_reviews_2023(Path(path), category, meta_path, item_key)
        meta_table = None

    wanted = set(reviews["parent_asin"].dropna().astype(str).str.strip())
    meta = None
    if meta_table is not None:
        meta = _meta_from_frame(meta_table, wanted, f"{path} (raw_meta_{category})")
    elif meta_file is not None:
        meta = _read_meta_2023(meta_file, wanted)
    items = _items_2023(reviews, meta, item_key)
    frame = _milliseconds_to_seconds(reviews.drop(columns="parent_asin"))
    return build_interactions(frame, items, name=f"amazon-2023-{category}", source=source)
