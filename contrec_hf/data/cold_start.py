"""A cold-start split: some items never occur in training, and are only the test targets of some users.

A leave-one-out split sees every item that a test target could be in someone's training history; it cannot say
how a model ranks an item it has never seen interacted with. :func:`cold_start_split` picks a random fraction of
the items that are test targets, removes them from every training history and validation target, and keeps them
as test targets. Models trained on the result have seen no interaction with a cold item; only item side
information (text features) can describe it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError
from .split import SequentialDataset

__all__ = ["ColdStartSplit", "cold_start_split"]


@dataclass
class ColdStartSplit:
    """What :func:`cold_start_split` returns.

    Attributes:
        data ([`SequentialDataset`]): the split. Its catalog is the source's (cold items included, with
            their titles); no cold item occurs in a training history or a validation target.
        cold_items (`list[int]`): the cold item indices, sorted.
        cold_users (`list[int]`): users whose test target is a cold item.
        warm_users (`list[int]`): the other users.
        removed_interactions (`int`): interactions with cold items taken out of histories and validation targets.
    """

    data: SequentialDataset
    cold_items: list[int]
    cold_users: list[int]
    warm_users: list[int]
    removed_interactions: int


def cold_start_split(data: SequentialDataset, fraction: float = 0.2, *, seed: int = 0) -> ColdStartSplit:
    """Make a fraction of the test-target items cold.

    Args:
        data ([`SequentialDataset`]): a leave-one-out split.
        fraction (`float`): share of the distinct test-target items made cold, in (0, 1).
        seed (`int`): seeds the choice of cold items.

    Returns:
        [`ColdStartSplit`]. Each user keeps its test target; the cold items before it are dropped from its
        sequence, so its validation target and training history are warm. Users left with fewer than 3
        items are dropped (counted in ``data.info["cold_start"]["dropped_users"]``).

    Raises:
        [`DataError`]: ``fraction`` outside (0, 1), no item chosen, or no cold or no warm user left.

    Example:
        ```python
        >>> from contrec_hf.data import cold_start_split, load_sequential_dataset
        >>> split = cold_start_split(load_sequential_dataset("ml-100k"), 0.2, seed=0)
        >>> histories, targets = split.data.split("test")
        >>> cold = set(split.cold_items)
        >>> any(i in cold for h in histories for i in h)  # cold items occur only as test targets
        False
        ```
    """
    if not 0.0 < fraction < 1.0:
        raise DataError(f"fraction must be in (0, 1), got {fraction}")
    candidates = sorted({seq[-1] for seq in data.sequences})
    size = round(fraction * len(candidates))
    if size == 0:
        raise DataError(f"fraction {fraction} of {len(candidates)} test-target items rounds to no cold item")
    rng = np.random.default_rng(seed)
    cold = {int(i) for i in rng.choice(candidates, size=size, replace=False)}

    user_ids, sequences, removed, dropped = [], [], 0, 0
    for user, seq in zip(data.user_ids, data.sequences):
        kept = [i for i in seq[:-1] if i not in cold] + [seq[-1]]
        if len(kept) < 3:
            dropped += 1
            continue
        removed += len(seq) - len(kept)
        user_ids.append(user)
        sequences.append(kept)
    cold_users = [u for u, seq in enumerate(sequences) if seq[-1] in cold]
    if not cold_users or len(cold_users) == len(sequences):
        raise DataError(f"the cold-start split of {data.name!r} has {len(cold_users)} cold of {len(sequences)} users")
    info = dict(data.info)
    info["cold_start"] = {"fraction": fraction, "seed": seed, "cold_items": len(cold), "dropped_users": dropped}
    split = SequentialDataset(
        name=f"{data.name}-cold{fraction:g}-seed{seed}",
        user_ids=user_ids,
        item_ids=list(data.item_ids),
        sequences=sequences,
        items=data.items.copy(),
        info=info,
    )
    warm_users = sorted(set(range(len(sequences))) - set(cold_users))
    return ColdStartSplit(split, sorted(cold), cold_users, warm_users, removed)
