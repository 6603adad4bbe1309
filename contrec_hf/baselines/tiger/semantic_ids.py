"""TIGER's semantic IDs as generator tokens, and the beam-search constraint that keeps them valid.

An item's semantic ID is its L residual-quantisation codes (coarse to fine) plus one last code that tells apart
the items whose L codes collide (TIGER, Rajput et al., NeurIPS 2023, §3.1). Each level has its own token range
in the generator's vocabulary, after the two special tokens (0: padding and decoder start, 1: end of sequence).
During beam search only a prefix of some item's ID may grow, and only towards items the user has not interacted
with yet: the evaluator masks history items anyway, so a beam spent on one would be lost (docs/baselines.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from ...errors import InputError

__all__ = ["EOS_TOKEN_ID", "PAD_TOKEN_ID", "SemanticIdConstraint", "SemanticIdVocabulary", "unique_semantic_ids"]

PAD_TOKEN_ID = 0  # also T5's decoder start token
EOS_TOKEN_ID = 1
NUM_SPECIAL_TOKENS = 2


def unique_semantic_ids(codes: torch.Tensor) -> torch.Tensor:
    """Append TIGER's collision code: items with the same L codes get 0, 1, 2, … in item order.

    Args:
        codes (`torch.LongTensor` of shape `[num_items, L]`): each item's residual-quantisation codes.

    Returns:
        `torch.LongTensor` of shape `[num_items, L + 1]`, one distinct row per item.

    Example:
        ```python
        >>> import torch
        >>> unique_semantic_ids(torch.tensor([[3, 1], [0, 2], [3, 1]])).tolist()
        [[3, 1, 0], [0, 2, 0], [3, 1, 1]]

        ```
    """
    if codes.ndim != 2 or codes.shape[0] == 0:
        raise InputError(f"codes must be a non-empty [num_items, levels] tensor, got {tuple(codes.shape)}")
    seen: Counter[tuple[int, ...]] = Counter()
    suffix = []
    for row in codes.tolist():
        suffix.append(seen[tuple(row)])
        seen[tuple(row)] += 1
    return torch.cat([codes.long(), torch.tensor(suffix, dtype=torch.long).unsqueeze(1)], dim=1)


class SemanticIdVocabulary:
    """The generator's view of a catalog's semantic IDs: tokens per level, the item of each ID, the prefix counts.

    Args:
        semantic_ids (`torch.LongTensor` of shape `[num_items, levels]`): distinct rows (see
            [`unique_semantic_ids`]); level ``l`` uses codes ``0 … level_sizes[l] - 1``.
        level_sizes (`Sequence[int]`): codes per level.

    Example:
        ```python
        >>> import torch
        >>> vocabulary = SemanticIdVocabulary(torch.tensor([[0, 0], [1, 0], [1, 1]]), [2, 2])
        >>> vocabulary.vocab_size, vocabulary.tokens([2]).tolist()
        (6, [3, 5])
        >>> vocabulary.item_of((3, 5))
        2

        ```
    """

    def __init__(self, semantic_ids: torch.Tensor, level_sizes: Sequence[int]) -> None:
        self.level_sizes = [int(size) for size in level_sizes]
        if semantic_ids.ndim != 2 or semantic_ids.shape[1] != len(self.level_sizes):
            raise InputError(f"semantic_ids must be [num_items, {len(self.level_sizes)}], got "
                             f"{tuple(semantic_ids.shape)}")  # fmt: skip
        sizes = torch.tensor(self.level_sizes)
        if (semantic_ids < 0).any() or (semantic_ids >= sizes).any():
            raise InputError(f"semantic_ids hold a code outside its level's range {self.level_sizes}")
        self.offsets = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), sizes[:-1]]), 0) + NUM_SPECIAL_TOKENS
        self.item_tokens = semantic_ids.long() + self.offsets  # [num_items, levels]
        rows = [tuple(row) for row in self.item_tokens.tolist()]
        if len(set(rows)) != len(rows):
            raise InputError("two items share a semantic ID; append the collision code (unique_semantic_ids)")
        self._items = {row: item for item, row in enumerate(rows)}
        self.prefix_counts = Counter(row[:depth] for row in rows for depth in range(1, len(row) + 1))
        self.children: dict[tuple[int, ...], list[int]] = {}
        for prefix in sorted(self.prefix_counts, key=len):
            self.children.setdefault(prefix[:-1], []).append(prefix[-1])

    @property
    def num_items(self) -> int:
        return self.item_tokens.shape[0]

    @property
    def num_levels(self) -> int:
        return len(self.level_sizes)

    @property
    def vocab_size(self) -> int:
        return NUM_SPECIAL_TOKENS + sum(self.level_sizes)

    def tokens(self, items: Sequence[int]) -> torch.Tensor:
        """The generator tokens of ``items`` (item indices), `[len(items), levels]`."""
        items = list(items)
        bad = [item for item in items if not 0 <= item < self.num_items]
        if bad:
            raise InputError(f"item index {bad[0]} is not in the catalog (0 … {self.num_items - 1})")
        return self.item_tokens[items]

    def item_of(self, tokens: Sequence[int]) -> int | None:
        """The item whose semantic ID is ``tokens``, or `None` when no item has it."""
        return self._items.get(tuple(tokens))

    def history_counts(self, history: Sequence[int]) -> Counter:
        """How many distinct items of ``history`` lie under each prefix (what the constraint takes away)."""
        return Counter(row[:depth] for row in map(tuple, self.tokens(sorted(set(history))).tolist())
                       for depth in range(1, self.num_levels + 1))  # fmt: skip

    def allowed(self, prefix: tuple[int, ...], excluded: Counter) -> list[int]:
        """The tokens that extend ``prefix`` towards at least one item that ``excluded`` does not use up."""
        return [token for token in self.children.get(prefix, ())
                if self.prefix_counts[(*prefix, token)] > excluded[(*prefix, token)]]  # fmt: skip


class SemanticIdConstraint(LogitsProcessor):
    """A logits processor for beam search that lets each beam grow only into a valid, unseen item's ID.

    Args:
        vocabulary ([`SemanticIdVocabulary`]): the catalog's IDs.
        histories (`list[list[int]]`): one item-index history per batch row; their items are never generated.
        num_beams (`int`): beams per batch row (rows of ``input_ids`` are ``batch × num_beams``, in batch order).

    Returns (when called):
        `torch.FloatTensor` of shape `[batch × num_beams, vocab]`: the scores with every other token at −inf.
    """

    def __init__(self, vocabulary: SemanticIdVocabulary, histories: Sequence[Sequence[int]], num_beams: int) -> None:
        self.vocabulary, self.num_beams = vocabulary, num_beams
        self.excluded = [vocabulary.history_counts(history) for history in histories]
        self._cache: dict[tuple[int, tuple[int, ...]], list[int]] = {}

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        mask = torch.full_like(scores, float("-inf"))
        for row, generated in enumerate(input_ids[:, 1:].tolist()):  # column 0 is the decoder start token
            user = row // self.num_beams
            key = (user, tuple(generated))
            if key not in self._cache:
                self._cache[key] = self.vocabulary.allowed(key[1], self.excluded[user])
            mask[row, self._cache[key]] = 0.0
        return scores + mask
