"""Retrieval: score every catalog item against generated preference latents (METHOD.md §5).

Latent score: cosine (default), negative L2 or inner product between x̂ and every item latent e_i.
Every history item is masked, then an exact batched top-K is taken with torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .evaluation.evaluator import mask_history

__all__ = ["METRICS", "latent_scores", "top_k"]

METRICS = ("cosine", "l2", "dot")


def latent_scores(latents: torch.Tensor, item_latents: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """Similarity of each preference latent to every item latent.

    Args:
        latents (`torch.Tensor` of shape `[batch, d]`): generated preference latents x̂.
        item_latents (`torch.Tensor` of shape `[num_items, d]`): the catalog's latents e_i.
        metric (`str`): `"cosine"`, `"l2"` (negative squared distance) or `"dot"`.

    Returns:
        `torch.Tensor` of shape `[batch, num_items]`.
    """
    if metric not in METRICS:
        raise ValueError(f"unknown retrieval metric {metric!r}; choose one of {METRICS}")
    if latents.ndim != 2 or item_latents.ndim != 2 or latents.shape[1] != item_latents.shape[1]:
        raise ValueError(
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
        raise ValueError(f"top_k must be between 1 and the catalog size {scores.shape[1]}, got {k}")
    scores = scores.clone()
    if histories is not None:
        mask_history(scores, histories)
        longest = max((len(set(h)) for h in histories), default=0)
        if k > scores.shape[1] - longest:
            raise ValueError(f"top_k={k} exceeds the {scores.shape[1] - longest} items left after masking histories")
    values, indices = scores.topk(k, dim=1)
    return indices, values
