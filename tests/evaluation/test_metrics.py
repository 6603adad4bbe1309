import math

import pytest
import torch

from contrec_hf.errors import EvaluationError
from contrec_hf.evaluation import compute_metrics, hit_rate_at_k, mrr, ndcg_at_k, target_ranks

# Three users whose targets are ranked 1st, 4th and 13th (0-based ranks 0, 3, 12).
RANKS = torch.tensor([0, 3, 12])


def test_hit_rate_by_hand():
    assert hit_rate_at_k(RANKS, 1) == pytest.approx(1 / 3)
    assert hit_rate_at_k(RANKS, 4) == pytest.approx(2 / 3)  # rank 3 is inside the top 4
    assert hit_rate_at_k(RANKS, 3) == pytest.approx(1 / 3)  # ... but not inside the top 3
    assert hit_rate_at_k(RANKS, 20) == pytest.approx(1.0)


def test_ndcg_by_hand():
    # NDCG@5 = (1/log2(2) + 1/log2(5) + 0) / 3 = (1 + 0.430677) / 3
    assert ndcg_at_k(RANKS, 5) == pytest.approx((1 + 0.4306765581) / 3, abs=1e-9)
    # NDCG@20 adds 1/log2(14) = 0.262649535
    assert ndcg_at_k(RANKS, 20) == pytest.approx((1 + 0.4306765581 + 0.2626495350) / 3, abs=1e-9)
    assert ndcg_at_k(torch.tensor([0, 0]), 10) == 1.0
    assert ndcg_at_k(torch.tensor([10, 11]), 10) == 0.0


def test_mrr_by_hand():
    assert mrr(RANKS) == pytest.approx((1 + 1 / 4 + 1 / 13) / 3)


def test_compute_metrics_keys_and_values():
    metrics = compute_metrics(RANKS, ks=(5, 10, 20))
    assert list(metrics) == ["hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"]
    assert metrics["hr@10"] == pytest.approx(2 / 3)
    assert metrics["ndcg@10"] == pytest.approx(metrics["ndcg@5"])


def test_target_ranks_tie_rules():
    scores = torch.tensor([[0.5, 0.5, 0.1, 0.9], [0.2, 0.3, 0.3, 0.3]])
    targets = torch.tensor([0, 1])
    assert target_ranks(scores, targets, ties="optimistic").tolist() == [1, 0]
    assert target_ranks(scores, targets, ties="pessimistic").tolist() == [2, 2]


def test_masked_target_is_ranked_last():
    scores = torch.tensor([[float("-inf"), 1.0, 2.0]])
    assert target_ranks(scores, torch.tensor([0])).tolist() == [2]


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores_are_refused(bad):
    scores = torch.tensor([[bad, 0.1, 0.2]])
    with pytest.raises(EvaluationError, match="NaN"):
        target_ranks(scores, torch.tensor([1]))


def test_bad_arguments():
    with pytest.raises(EvaluationError, match="tie rule"):
        target_ranks(torch.zeros(1, 3), torch.tensor([0]), ties="random")
    with pytest.raises(EvaluationError, match="outside|lie in"):
        target_ranks(torch.zeros(1, 3), torch.tensor([3]))
    with pytest.raises(EvaluationError, match="positive"):
        hit_rate_at_k(RANKS, 0)
    with pytest.raises(EvaluationError, match="non-negative"):
        mrr(torch.tensor([-1]))
    with pytest.raises(EvaluationError, match="non-empty"):
        ndcg_at_k(torch.tensor([]), 5)


def test_ndcg_formula_matches_definition():
    ranks = torch.arange(30)
    expected = sum(1 / math.log2(r + 2) for r in range(10)) / 30
    assert ndcg_at_k(ranks, 10) == pytest.approx(expected)
