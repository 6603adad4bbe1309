"""Retrieval: score every catalog item against generated preference latents (docs/method.md §5).

Latent score: cosine (default), negative L2 or inner product between x̂ and every item latent e_i. Text score:
the generated category and title matched against each item's text. Fused: z-norm(latent) + λ_text · text.
Every history item is masked (`mask_history`, which the evaluator uses too), then an exact batched top-K is
taken with torch.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = [
    "SIMILARITIES",
    "fuse_scores",
    "latent_scores",
    "mask_history",
    "parse_response",
    "seen_items_mask",
    "text_scores",
    "top_k",
]

SIMILARITIES = ("cosine", "l2", "dot")


def mask_history(scores: torch.Tensor, histories: Sequence[Sequence[int]]) -> torch.Tensor:
    """Set the score of every item in each row's history to ``-inf`` (in place; returns ``scores``).

    Args:
        scores (`torch.Tensor` of shape `[batch, num_items]`): the scorer's scores of every item.
        histories (`list[list[int]]`): ``batch`` lists of item indices.

    Returns:
        `torch.Tensor` of shape `[batch, num_items]`: ``scores`` itself, its history items at ``-inf``.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.retrieval import mask_history
        >>> mask_history(torch.zeros(2, 3), [[1], []]).tolist()
        [[0.0, -inf, 0.0], [0.0, 0.0, 0.0]]
        ```
    """
    rows = [torch.full((len(h),), i, dtype=torch.long) for i, h in enumerate(histories)]
    if rows:
        row_index = torch.cat(rows).to(scores.device)
        col_index = torch.tensor([i for h in histories for i in h], dtype=torch.long, device=scores.device)
        scores[row_index, col_index] = float("-inf")
    return scores


def seen_items_mask(
    history_ids: torch.Tensor, rows: torch.Tensor, cutoffs: torch.Tensor, num_items: int, targets: torch.Tensor
) -> torch.Tensor:
    """The training-time twin of :func:`mask_history`: which catalog items each scored row leaves out, as a boolean
    mask. Row r leaves out the first ``cutoffs[r]`` items of history ``rows[r]`` (the items its user interacted with
    before r's target), except its own target, which stays scorable (a repeated item).

    Args:
        history_ids (`torch.LongTensor` of shape `[batch, max_len]`): each history in order, padded with -1.
        rows (`torch.LongTensor` of shape `[rows]`): the history each scored row belongs to.
        cutoffs (`torch.LongTensor` of shape `[rows]`): how many of that history's first items the row leaves out.
        num_items (`int`): catalog size.
        targets (`torch.LongTensor` of shape `[rows]`): each row's target, never left out.

    Returns:
        `torch.BoolTensor` of shape `[rows, num_items]`: True where the item is left out.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.retrieval import seen_items_mask
        >>> history = torch.tensor([[2, 0, 3], [1, -1, -1]])
        >>> rows, cutoffs, targets = torch.tensor([0, 0, 1]), torch.tensor([1, 3, 1]), torch.tensor([0, 1, 2])
        >>> seen_items_mask(history, rows, cutoffs, 4, targets).int()
        tensor([[0, 0, 1, 0],
                [1, 0, 1, 1],
                [0, 1, 0, 0]], dtype=torch.int32)
        ```
    """
    items = history_ids.to(rows.device)[rows]  # [R, M]
    positions = torch.arange(items.shape[1], device=items.device)
    left_out = (positions < cutoffs[:, None]) & (items >= 0)
    columns = torch.where(left_out, items, num_items)  # column num_items collects what stays in
    mask = torch.zeros(items.shape[0], num_items + 1, dtype=torch.bool, device=items.device)
    mask.scatter_(1, columns, True)
    mask[torch.arange(items.shape[0], device=items.device), targets.to(items.device)] = False
    return mask[:, :num_items]


def latent_scores(latents: torch.Tensor, item_latents: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Similarity of each preference latent to every item latent.

    Args:
        latents (`torch.Tensor` of shape `[batch, d]`): generated preference latents x̂.
        item_latents (`torch.Tensor` of shape `[num_items, d]`): the catalog's latents e_i.
        metric (`str`): `"cosine"`, `"l2"` (negative squared distance) or `"dot"`.

    Returns:
        `torch.Tensor` of shape `[batch, num_items]`.
    """
    if metric not in SIMILARITIES:
        raise InputError(f"unknown similarity {metric!r}; choose one of {SIMILARITIES}")
    if latents.ndim != 2 or item_latents.ndim != 2 or latents.shape[1] != item_latents.shape[1]:
        raise InputError(
            f"latents [batch, d] and item_latents [num_items, d] must share d; got {tuple(latents.shape)} "
            f"and {tuple(item_latents.shape)}"
        )
    latents, item_latents = latents.float(), item_latents.float()
    if metric == "cosine":
        return F.normalize(latents, dim=-1) @ F.normalize(item_latents, dim=-1).T
    if metric == "dot":
        return latents @ item_latents.T
    return -torch.cdist(latents, item_latents).pow(2)


def top_k(
    scores: torch.Tensor, k: int, histories: Sequence[Sequence[int]] | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-K over the catalog after masking each row's history items.

    Returns ``(indices, values)``, each `[batch, k]`. ``k`` must lie in ``[1, num_items − longest history]``.
    """
    if not 1 <= k <= scores.shape[1]:
        raise InputError(f"top_k must be between 1 and the catalog size {scores.shape[1]}, got {k}")
    scores = scores.clone()
    if histories is not None:
        mask_history(scores, histories)
        longest = max((len(set(h)) for h in histories), default=0)
        if k > scores.shape[1] - longest:
            raise InputError(f"top_k={k} exceeds the {scores.shape[1] - longest} items left after masking histories")
    values, indices = scores.topk(k, dim=1)
    return indices, values


_RESPONSE = re.compile(r"\((?P<category>[^)]*)\)[^,]*,?\s*like\s+(?P<title>.+?)\.?\s*$", re.DOTALL)
_WORD = re.compile(r"[\w']+")


def parse_response(text: str) -> tuple[str, str]:
    """``(category, title)`` from a generated "… (<category>) items, like <title>." (empty strings if absent)."""
    match = _RESPONSE.search(text.strip())
    if not match:
        return "", ""
    return match.group("category").strip(), match.group("title").strip()


def _words(text: str) -> set[str]:
    return {w.lower() for w in _WORD.findall(text)}


def text_scores(texts: Sequence[str], titles: Sequence[str], categories: Sequence[str]) -> torch.Tensor:
    """How well each generated text names each item: Jaccard overlap of the generated title's words with the
    item's title words, plus half the overlap of the generated category with the item's category words.

    Returns `[len(texts), num_items]` in [0, 1.5].
    """
    parsed = [parse_response(text) for text in texts]
    title = _jaccard([_words(t) for _, t in parsed], [_words(t) for t in titles])
    category = _jaccard([_words(c) for c, _ in parsed], [_words(c) for c in categories])
    return title.float() + (0.5 * category).float()


def _jaccard(generated: list[set[str]], items: list[set[str]]) -> torch.Tensor:
    """|g ∩ w| / |g ∪ w| of every generated word set g with every item's w, `[len(generated), len(items)]` in
    float64; 0 where either set is empty. The intersections are a product of word-incidence matrices."""
    vocabulary = {word: column for column, word in enumerate(sorted(set().union(*items)))}

    def incidence(sets: list[set[str]]) -> torch.Tensor:  # [len(sets), |vocabulary|], 1 where a set holds a word
        out = torch.zeros(len(sets), len(vocabulary), dtype=torch.float64)
        for row, words in enumerate(sets):
            out[row, [vocabulary[w] for w in words if w in vocabulary]] = 1.0
        return out

    shared = incidence(generated) @ incidence(items).T  # [G, N], exact integer counts
    sizes = torch.tensor([len(g) for g in generated], dtype=torch.float64)[:, None]
    item_sizes = torch.tensor([len(w) for w in items], dtype=torch.float64)[None, :]
    union = sizes + item_sizes - shared
    return torch.where((sizes > 0) & (item_sizes > 0), shared / union.clamp_min(1.0), 0.0)


def fuse_scores(latent: torch.Tensor, text: torch.Tensor | None, text_weight: float) -> torch.Tensor:
    """s_i = z-norm(latent)_i + λ_text · text_i (docs/method.md §5); the latent scores are standardised per row."""
    z = (latent - latent.mean(dim=1, keepdim=True)) / latent.std(dim=1, keepdim=True).clamp_min(1e-8)
    if text is None or text_weight == 0:
        return z
    return z + text_weight * text.to(z)
