"""Filtering presets and the chronological leave-one-out split (docs/evaluation.md).

Every user's interactions are sorted by time; the last item is the test target, the one before it the
validation target, the rest is the training history. Ties in time keep the order of the source file
(a stable sort), so the split is the same on every run and every machine.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import DataError, DatasetNotFoundError
from ..saving import atomic_directory
from .interactions import Interactions

logger = logging.getLogger(__name__)

__all__ = ["PRESETS", "Preset", "SequentialDataset", "apply_preset", "leave_one_out"]


@dataclass(frozen=True)
class Preset:
    """A named filtering recipe applied before the split.

    Attributes:
        name (`str`): the preset's name.
        min_rating (`float`, *optional*): keep interactions whose rating is strictly greater than this.
        min_user_interactions (`int`): drop users with fewer interactions (after the rating filter).
        k_core (`int`): if > 0, iteratively drop users *and* items with fewer than ``k_core`` interactions.
        description (`str`): what it reproduces.
    """

    name: str
    min_rating: float | None = None
    min_user_interactions: int = 0
    k_core: int = 0
    description: str = ""


PRESETS: dict[str, Preset] = {
    "contrec": Preset(
        name="contrec",
        min_rating=3.0,
        min_user_interactions=5,
        description="ContRec paper: ratings > 3 kept, users with at least 5 interactions; HR/NDCG@10/20.",
    ),
    "tiger": Preset(
        name="tiger",
        k_core=5,
        description="TIGER / P5 protocol: 5-core users and items, all ratings; Recall/NDCG@5/10.",
    ),
}


def _deduplicate(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop_duplicates(["user_id", "item_id"], keep="first")


def apply_preset(interactions: Interactions, preset: str | Preset | None) -> Interactions:
    """Apply a named preset (``"contrec"``, ``"tiger"``) or ``None`` (keep everything)."""
    if preset is None:
        return interactions
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise DataError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)} or None")
        preset = PRESETS[preset]
    frame = interactions.frame
    if preset.min_rating is not None:
        if not interactions.has_ratings:
            raise DataError(f"preset {preset.name!r} filters on ratings, but {interactions.name} has none")
        frame = frame[frame["rating"] > preset.min_rating]
    if preset.min_user_interactions > 0:
        counts = frame.groupby("user_id")["item_id"].transform("size")
        frame = frame[counts >= preset.min_user_interactions]
    if preset.k_core > 0:
        while True:
            user_counts = frame.groupby("user_id")["item_id"].transform("size")
            item_counts = frame.groupby("item_id")["user_id"].transform("size")
            keep = (user_counts >= preset.k_core) & (item_counts >= preset.k_core)
            if keep.all():
                break
            frame = frame[keep]
    if len(frame) == 0:
        raise DataError(f"preset {preset.name!r} removed every interaction of {interactions.name}")
    return Interactions(frame=frame.reset_index(drop=True), items=interactions.items, name=interactions.name)


_INTEGER_ID = re.compile(r"-?[0-9]+")


def _sorted_ids(values: Sequence[str]) -> list[str]:
    """Numeric ids in numeric order, otherwise lexicographic: the same map on every run."""
    unique = sorted(set(values))
    if all(_INTEGER_ID.fullmatch(v) for v in unique):  # not str.isdigit: "²" is a digit that int() refuses
        return sorted(unique, key=int)
    return unique


@dataclass
class SequentialDataset:
    """A dataset split chronologically, leave-one-out, with stable id maps.

    Item indices run over ``0 … num_items - 1`` in the order of ``item_ids``; models that need a padding
    index shift them themselves. Each user's full sequence is kept: ``sequence[:-2]`` is the training
    history, ``sequence[-2]`` the validation target and ``sequence[-1]`` the test target.

    Attributes:
        name (`str`): dataset name.
        user_ids (`list[str]`): raw user id of each user index.
        item_ids (`list[str]`): raw item id of each item index.
        sequences (`list[list[int]]`): each user's chronological item indices (length ≥ 3).
        items (`pd.DataFrame`): ``item_id``, ``title``, ``category`` in item-index order.
        info (`dict`): how the data was made (preset, dropped users, source).

    Example:
        ```python
        >>> from contrec_hf.data import load_sequential_dataset
        >>> data = load_sequential_dataset("ml-100k")
        >>> data.stats()["users"], data.stats()["items"]
        (943, 1682)
        >>> histories, targets = data.split("test")  # histories hold train + validation items
        ```
    """

    name: str
    user_ids: list[str]
    item_ids: list[str]
    sequences: list[list[int]]
    items: pd.DataFrame
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._item_index = {raw: i for i, raw in enumerate(self.item_ids)}
        self._user_index = {raw: i for i, raw in enumerate(self.user_ids)}

    # ----------------------------------------------------------------------------------------- sizes
    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_ids)

    @property
    def num_interactions(self) -> int:
        return sum(len(s) for s in self.sequences)

    def stats(self) -> dict[str, Any]:
        """Counts of users, items, interactions and of each split's examples."""
        lengths = np.array([len(s) for s in self.sequences])
        return {
            "name": self.name,
            "users": self.num_users,
            "items": self.num_items,
            "interactions": self.num_interactions,
            "train_interactions": int((lengths - 2).sum()),
            "validation_users": self.num_users,
            "test_users": self.num_users,
            "dropped_users": int(self.info.get("dropped_users", 0)),
            "mean_sequence_length": float(lengths.mean()),
            "density": self.num_interactions / (self.num_users * self.num_items),
            "preset": self.info.get("preset"),
        }

    # ------------------------------------------------------------------------------------------ ids
    def item_index(self, raw_ids: Sequence[str | int]) -> list[int]:
        """Map raw item ids (``1`` and ``"1"`` alike) to indices; unknown ids raise a :class:`DataError`."""
        out, unknown = [], []
        for raw in raw_ids:
            idx = self._item_index.get(str(raw).strip())
            if idx is None:
                unknown.append(raw)
            out.append(idx)
        if unknown:
            raise DataError(f"unknown item id(s) {unknown[:10]} for dataset {self.name!r}")
        return out

    def user_index(self, raw_ids: Sequence[str | int]) -> list[int]:
        """Map raw user ids to indices; unknown ids raise a :class:`DataError`."""
        unknown = [u for u in raw_ids if str(u).strip() not in self._user_index]
        if unknown:
            raise DataError(f"unknown user id(s) {unknown[:10]} for dataset {self.name!r}")
        return [self._user_index[str(u).strip()] for u in raw_ids]

    # ---------------------------------------------------------------------------------------- splits
    def train_sequences(self) -> list[list[int]]:
        """Each user's training history (everything but the last two items)."""
        return [s[:-2] for s in self.sequences]

    def split(self, name: str) -> tuple[list[list[int]], list[int]]:
        """Histories and targets of ``"validation"`` or ``"test"`` (one example per user).

        The validation history is the training history; the test history adds the validation item.
        """
        if name == "validation":
            return [s[:-2] for s in self.sequences], [s[-2] for s in self.sequences]
        if name == "test":
            return [s[:-1] for s in self.sequences], [s[-1] for s in self.sequences]
        raise DataError(f"unknown split {name!r}; choose 'validation' or 'test'")

    def item_counts(self) -> np.ndarray:
        """How often each item occurs in the training histories: ``[num_items]`` int64."""
        counts = np.zeros(self.num_items, dtype=np.int64)
        for seq in self.train_sequences():
            np.add.at(counts, seq, 1)
        return counts

    # ------------------------------------------------------------------------------- datasets export
    def to_dataset_dict(self):
        """The split as a `datasets.DatasetDict` (``train``, ``validation``, ``test``).

        Rows carry raw ids and indices: ``user_id``, ``user_index``, ``history`` (item indices),
        ``history_item_ids`` (raw ids) and, for validation/test, ``target`` / ``target_item_id``.
        ``train`` holds one row per user with the training history. Use :meth:`item_dataset` for item text.
        """
        from datasets import Dataset, DatasetDict

        def rows(histories: list[list[int]], targets: list[int] | None) -> dict[str, list]:
            out: dict[str, list] = {
                "user_id": list(self.user_ids),
                "user_index": list(range(self.num_users)),
                "history": histories,
                "history_item_ids": [[self.item_ids[i] for i in h] for h in histories],
            }
            if targets is not None:
                out["target"] = targets
                out["target_item_id"] = [self.item_ids[t] for t in targets]
            return out

        splits = {"train": Dataset.from_dict(rows(self.train_sequences(), None))}
        for name in ("validation", "test"):
            splits[name] = Dataset.from_dict(rows(*self.split(name)))
        return DatasetDict(splits)

    def item_dataset(self):
        """The item table as a `datasets.Dataset`: ``item_index``, ``item_id``, ``title``, ``category``."""
        from datasets import Dataset

        table = self.items.copy()
        table.insert(0, "item_index", np.arange(self.num_items))
        return Dataset.from_pandas(table, preserve_index=False)

    # ----------------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write the split, the item table and the id maps (parquet + json) to ``directory``, atomically."""
        with atomic_directory(directory) as tmp:
            pd.DataFrame({"user_id": self.user_ids, "sequence": self.sequences}).to_parquet(tmp / "sequences.parquet")
            self.items.to_parquet(tmp / "items.parquet", index=False)
            meta = {"name": self.name, "item_ids": self.item_ids, "info": self.info, "format_version": 1}
            (tmp / "dataset.json").write_text(json.dumps(meta, indent=1))
        return Path(directory)

    @classmethod
    def load(cls, directory: str | Path) -> SequentialDataset:
        """Read what :meth:`save` wrote."""
        directory = Path(directory)
        missing = [f for f in ("dataset.json", "sequences.parquet", "items.parquet") if not (directory / f).is_file()]
        if missing:
            raise DatasetNotFoundError(f"{directory} is not a saved contrec_hf dataset: missing {missing}")
        try:
            meta = json.loads((directory / "dataset.json").read_text())
            seqs = pd.read_parquet(directory / "sequences.parquet")
            items = pd.read_parquet(directory / "items.parquet")
        except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
            raise DataError(f"the saved dataset at {directory} is corrupt: {err}") from err
        return cls(
            name=meta["name"],
            user_ids=seqs["user_id"].astype(str).tolist(),
            item_ids=[str(i) for i in meta["item_ids"]],
            sequences=[list(map(int, s)) for s in seqs["sequence"]],
            items=items,
            info=meta.get("info", {}),
        )


def leave_one_out(
    interactions: Interactions, preset: str | Preset | None = None, *, deduplicate: bool = True
) -> SequentialDataset:
    """Filter with ``preset``, sort each user's interactions by time and split leave-one-out.

    Args:
        interactions ([`Interactions`]): what a loader returned.
        preset (`str` or [`Preset`], *optional*): ``"contrec"``, ``"tiger"`` or ``None`` (keep all).
        deduplicate (`bool`): keep only a user's first interaction with an item (repeat consumption would
            otherwise put a test target in its own history, where full-ranking evaluation masks it).

    Returns:
        [`SequentialDataset`]. Users with fewer than 3 interactions cannot be split; they are dropped,
        counted in ``info["dropped_users"]`` and reported through the ``logging`` module.
    """
    data = apply_preset(interactions, preset)
    # Stable sort: equal timestamps keep their order in the source file.
    frame = data.frame.sort_values(["user_id", "timestamp"], kind="mergesort")
    if deduplicate:  # after the sort, so that a user's chronologically first interaction with an item is kept
        frame = _deduplicate(frame)
    sizes = frame.groupby("user_id", sort=False)["item_id"].transform("size")
    dropped = int(frame.loc[sizes < 3, "user_id"].nunique())
    frame = frame[sizes >= 3]
    if dropped:
        logger.warning("%s: dropped %d user(s) with fewer than 3 interactions (cannot split)", data.name, dropped)
    if len(frame) == 0:
        raise DataError(f"{data.name}: no user has the 3 interactions a leave-one-out split needs")

    item_ids = _sorted_ids(frame["item_id"].unique().tolist())
    user_ids = _sorted_ids(frame["user_id"].unique().tolist())
    item_index = {raw: i for i, raw in enumerate(item_ids)}
    frame = frame.assign(item_index=frame["item_id"].map(item_index))
    grouped = frame.groupby("user_id", sort=False)["item_index"].agg(list)
    sequences = [list(map(int, grouped[u])) for u in user_ids]

    known = data.items.set_index("item_id")
    table = pd.DataFrame({"item_id": item_ids})
    table["title"] = known["title"].reindex(item_ids).fillna("").to_numpy() if len(known) else ""
    table["category"] = known["category"].reindex(item_ids).fillna("").to_numpy() if len(known) else ""
    preset_name = preset.name if isinstance(preset, Preset) else preset
    info = {"preset": preset_name, "dropped_users": dropped, "deduplicate": deduplicate, "source": data.name}
    return SequentialDataset(
        name=data.name, user_ids=user_ids, item_ids=item_ids, sequences=sequences, items=table, info=info
    )
