"""Leave-one-out full-ranking evaluation of any scorer (docs/evaluation.md).

A *scorer* is any callable ``scorer(histories) -> scores`` (or ``scorer(histories, users)``) that maps a
batch of item-index histories (a list of lists) to a ``[batch, num_items]`` tensor of scores over the whole
catalog. The evaluator
masks every history item, ranks all items in memory-bounded chunks of users, refuses non-finite scores
and reports HR@K / NDCG@K (K ∈ {5, 10, 20}) and MRR. Validation and test use the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..errors import EvaluationError
from ..retrieval import mask_history  # masking belongs to retrieval; re-exported here for existing imports
from ..utils import check_number
from .metrics import compute_metrics, target_ranks

__all__ = ["EvaluationResult", "Scorer", "evaluate_scorer", "mask_history"]

Scorer = Callable[[list[list[int]]], torch.Tensor]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_scorer` returns.

    Attributes:
        metrics (`dict[str, float]`): ``hr@K``, ``ndcg@K`` for each K, and ``mrr``.
        ranks (`torch.Tensor` of shape `[num_users]`): each user's 0-based target rank.
    """

    metrics: dict[str, float]
    ranks: torch.Tensor


def _checked_scores(scores, rows: int, num_items: int, start: int) -> torch.Tensor:
    """A scorer's `[rows, num_items]` answer for the users from ``start`` on, checked, as float32 or float64."""
    if not isinstance(scores, torch.Tensor):
        raise EvaluationError(f"the scorer must return a torch.Tensor, got {type(scores).__name__}")
    if scores.shape != (rows, num_items):
        raise EvaluationError(
            f"the scorer returned scores of shape {tuple(scores.shape)}, expected ({rows}, {num_items})"
        )
    if not torch.isfinite(scores).all():
        raise EvaluationError(
            f"the scorer returned {int((~torch.isfinite(scores)).sum())} non-finite score(s) for users "
            f"{start}…{start + rows - 1}; refusing to rank them (a NaN would count as a hit)"
        )
    # Rank in the scorer's own precision: float64 stays float64 (a cast to float32 would turn large finite
    # scores into ±inf and small differences into ties); integers and half precision are upcast losslessly.
    return scores if scores.dtype in (torch.float32, torch.float64) else scores.float()


def evaluate_scorer(
    scorer: Scorer,
    histories: Sequence[Sequence[int]],
    targets: Sequence[int],
    num_items: int,
    *,
    ks: Sequence[int] = (5, 10, 20),
    batch_size: int = 256,
    ties: str = "pessimistic",
    progress: bool = True,
    desc: str = "evaluating",
    users: Sequence[int] | None = None,
) -> EvaluationResult:
    """Rank the whole catalog for every user and compute full-ranking metrics.

    Args:
        scorer (`Callable[[list[list[int]]], torch.Tensor]`): histories → scores `[batch, num_items]`.
        histories (`list[list[int]]`): one item-index history per user (validation: the training part;
            test: training part + validation item). Every history item is masked before ranking.
        targets (`list[int]`): one target item index per user.
        num_items (`int`): catalog size; the scorer must return that many columns.
        ks (`tuple[int]`): cut-offs.
        batch_size (`int`): users scored at a time; bounds memory to ``batch_size × num_items`` scores.
        ties (`str`): tie rule of :func:`~contrec_hf.evaluation.metrics.target_ranks`.
        progress (`bool`): show a progress bar.
        users (`list[int]`, *optional*): one user index per history. When given, the scorer is called as
            ``scorer(histories, users)`` (for models with user embeddings, such as matrix factorisation).

    Returns:
        [`EvaluationResult`].

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.evaluation import evaluate_scorer
        >>> popularity = torch.tensor([5.0, 3.0, 1.0, 0.0])
        >>> result = evaluate_scorer(lambda h: popularity.repeat(len(h), 1), [[0], [1]], [1, 2], 4, progress=False)
        >>> result.ranks.tolist()  # user 0: item 0 masked → item 1 first; user 1: item 1 masked → item 0, then 2
        [0, 1]
        ```
    """
    if len(histories) != len(targets):
        raise EvaluationError(f"{len(histories)} histories but {len(targets)} targets")
    if users is not None and len(users) != len(targets):
        raise EvaluationError(f"{len(users)} users but {len(targets)} targets")
    if len(targets) == 0:
        raise EvaluationError("nothing to evaluate: no users")
    check_number("batch_size", batch_size, 1, integer=True, error=EvaluationError)
    bad = next((t for t in targets if not 0 <= int(t) < num_items), None)
    if bad is not None:
        raise EvaluationError(f"target item index {bad} is outside the catalog [0, {num_items})")
    all_ranks = []
    starts = range(0, len(targets), batch_size)
    for start in tqdm(starts, desc=desc, disable=not progress, leave=False):
        batch_histories = [list(h) for h in histories[start : start + batch_size]]
        batch_targets = torch.as_tensor(list(targets[start : start + batch_size]), dtype=torch.long)
        if users is None:
            scores = scorer(batch_histories)
        else:
            scores = scorer(batch_histories, list(users[start : start + batch_size]))
        scores = _checked_scores(scores, len(batch_histories), num_items, start)
        scores = mask_history(scores.detach().clone(), batch_histories)
        all_ranks.append(target_ranks(scores, batch_targets, ties=ties).cpu())
    ranks = torch.cat(all_ranks)
    return EvaluationResult(metrics=compute_metrics(ranks, ks), ranks=ranks)
