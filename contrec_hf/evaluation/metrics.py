"""Full-ranking metrics for next-item recommendation with one target per user (docs/evaluation.md).

Everything here works on **0-based ranks**: the rank of a user's target is the number of catalog items
ranked above it (0 = the target is first). Metrics are averaged over users. No candidate sampling.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import EvaluationError

__all__ = ["TIE_RULES", "compute_metrics", "hit_rate_at_k", "mrr", "ndcg_at_k", "target_ranks"]

TIE_RULES = ("pessimistic", "optimistic")


def _as_ranks(ranks: torch.Tensor | Iterable[float]) -> torch.Tensor:
    ranks = torch.as_tensor(ranks, dtype=torch.float64)
    if ranks.ndim != 1 or ranks.numel() == 0:
        raise EvaluationError(f"ranks must be a non-empty 1-D tensor, got shape {tuple(ranks.shape)}")
    if (ranks < 0).any():
        raise EvaluationError("ranks must be non-negative (0 = the target is ranked first)")
    return ranks


def _check_k(k: int) -> None:
    if not isinstance(k, int) or k < 1:
        raise EvaluationError(f"k must be a positive integer, got {k!r}")


def hit_rate_at_k(ranks: torch.Tensor | Iterable[float], k: int) -> float:
    """HR@K, the share of users whose target is in the top K.

    HR@K = (1/|U|) Σ_u 1[rank_u < K]. With one target per user this equals Recall@K.

    Args:
        ranks (`torch.Tensor` of shape `[num_users]`): 0-based target ranks.
        k (`int`): cut-off.
    """
    _check_k(k)
    return float((_as_ranks(ranks) < k).double().mean())


def ndcg_at_k(ranks: torch.Tensor | Iterable[float], k: int) -> float:
    """NDCG@K with one relevant item: the ideal DCG is 1, so

    NDCG@K = (1/|U|) Σ_u 1[rank_u < K] / log2(rank_u + 2).

    Args:
        ranks (`torch.Tensor` of shape `[num_users]`): 0-based target ranks.
        k (`int`): cut-off.
    """
    _check_k(k)
    ranks = _as_ranks(ranks)
    gains = 1.0 / torch.log2(ranks + 2.0)
    return float(torch.where(ranks < k, gains, torch.zeros_like(gains)).mean())


def mrr(ranks: torch.Tensor | Iterable[float]) -> float:
    """Mean reciprocal rank over the full ranking (no cut-off): MRR = (1/|U|) Σ_u 1 / (rank_u + 1)."""
    return float((1.0 / (_as_ranks(ranks) + 1.0)).mean())


def target_ranks(scores: torch.Tensor, targets: torch.Tensor, ties: str = "pessimistic") -> torch.Tensor:
    """0-based rank of each target in its row of ``scores``.

    rank_u = #{i : s_ui > s_u,target} under the ``"optimistic"`` rule (ties resolved in the target's favour,
    the paper's strict counting, docs/evaluation.md), and rank_u = #{i ≠ target : s_ui ≥ s_u,target} under the
    ``"pessimistic"`` rule (the default: a model that gives many items the same score gains nothing).
    A target scored ``-inf`` (masked, e.g. because it occurs in the history) is ranked last.

    Args:
        scores (`torch.Tensor` of shape `[batch, num_items]`): finite scores, or ``-inf`` for masked items.
        targets (`torch.Tensor` of shape `[batch]`): target item indices.
        ties (`str`): ``"pessimistic"`` or ``"optimistic"``.

    Returns:
        `torch.Tensor` of shape `[batch]`, int64.
    """
    if ties not in TIE_RULES:
        raise EvaluationError(f"unknown tie rule {ties!r}; choose one of {TIE_RULES}")
    if scores.ndim != 2 or targets.ndim != 1 or scores.shape[0] != targets.shape[0]:
        raise EvaluationError(
            f"scores must be [batch, num_items] and targets [batch]; got {tuple(scores.shape)} and "
            f"{tuple(targets.shape)}"
        )
    if torch.isnan(scores).any() or torch.isposinf(scores).any():
        raise EvaluationError(
            "scores hold NaN or +inf: a NaN compares false against everything and would count as a hit"
        )
    targets = targets.to(device=scores.device, dtype=torch.long)
    if (targets < 0).any() or (targets >= scores.shape[1]).any():
        raise EvaluationError(f"target indices must lie in [0, {scores.shape[1]})")
    target_scores = scores.gather(1, targets[:, None])  # [B, 1]
    if ties == "optimistic":
        ranks = (scores > target_scores).sum(dim=1)
    else:
        ranks = (scores >= target_scores).sum(dim=1) - 1
    masked = torch.isneginf(target_scores.squeeze(1))
    return torch.where(masked, torch.full_like(ranks, scores.shape[1] - 1), ranks)


def compute_metrics(ranks: torch.Tensor | Iterable[float], ks: Iterable[int] = (5, 10, 20)) -> dict[str, float]:
    """``{"hr@K": …, "ndcg@K": …, "mrr": …}`` for every K in ``ks``."""
    ranks = _as_ranks(ranks)
    out: dict[str, float] = {}
    for k in ks:
        out[f"hr@{k}"] = hit_rate_at_k(ranks, k)
        out[f"ndcg@{k}"] = ndcg_at_k(ranks, k)
    out["mrr"] = mrr(ranks)
    return out
