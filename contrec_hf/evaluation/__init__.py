"""Full-ranking leave-one-out evaluation: pure metric functions and an evaluator for any scorer."""

from __future__ import annotations

from pathlib import Path

from .evaluator import EvaluationResult, Scorer, evaluate_scorer, mask_history
from .metrics import TIE_RULES, compute_metrics, hit_rate_at_k, mrr, ndcg_at_k, target_ranks
from .report import format_metrics_table


def evaluate_module_path() -> str:
    """Folder of the `evaluate` metric module shipped with the package: ``evaluate.load(evaluate_module_path())``."""
    return str(Path(__file__).parent / "full_ranking")


__all__ = [
    "TIE_RULES",
    "EvaluationResult",
    "Scorer",
    "compute_metrics",
    "evaluate_module_path",
    "evaluate_scorer",
    "format_metrics_table",
    "hit_rate_at_k",
    "mask_history",
    "mrr",
    "ndcg_at_k",
    "target_ranks",
]
