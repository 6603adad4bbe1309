"""An `evaluate` metric module for full-ranking next-item metrics, wrapping contrec_hf's own functions.

Load it offline with ``evaluate.load(contrec_hf.evaluation.evaluate_module_path())``. The core library does
not depend on ``evaluate`` (an optional extra); this module only adapts the same pure functions.
"""

from __future__ import annotations

import datasets
import evaluate
import torch

from contrec_hf.evaluation.metrics import compute_metrics, target_ranks
from contrec_hf.retrieval import mask_history

_DESCRIPTION = """HR@K, NDCG@K and MRR of one target item per user over full-catalog scores (leave-one-out).
History items given in `histories` are masked before ranking; ties are pessimistic by default."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[list[float]]`): per user, a score for every catalog item.
    references (`list[int]`): per user, the target item index.
    histories (`list[list[int]]`, *optional*): per user, item indices to mask (the user's history).
    ks (`list[int]`, *optional*): cut-offs, default [5, 10, 20].
    ties (`str`, *optional*): "pessimistic" (default) or "optimistic".
Returns:
    `dict` with `hr@K`, `ndcg@K` for each K and `mrr`.
Example:
    >>> import evaluate
    >>> from contrec_hf.evaluation import evaluate_module_path
    >>> metric = evaluate.load(evaluate_module_path())
    >>> metric.compute(predictions=[[0.1, 0.9, 0.3]], references=[2], ks=[1, 2])["hr@2"]
    1.0
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class FullRanking(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Sequence(datasets.Value("float32")), "references": datasets.Value("int64")}
            ),
        )

    def _compute(self, predictions, references, histories=None, ks=(5, 10, 20), ties="pessimistic"):
        scores = torch.as_tensor(predictions, dtype=torch.float32)
        if histories is not None:
            scores = mask_history(scores, histories)
        ranks = target_ranks(scores, torch.as_tensor(references), ties=ties)
        return compute_metrics(ranks, tuple(int(k) for k in ks))
