import pytest
import torch

from contrec_hf.errors import EvaluationError
from contrec_hf.evaluation import evaluate_scorer, mask_history

SCORES = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0])  # item 0 best … item 4 worst


def fixed_scorer(histories):
    return SCORES.repeat(len(histories), 1)


def test_history_items_are_masked():
    # User 0 has items 0 and 1 in its history, so target 2 climbs from rank 2 to rank 0.
    result = evaluate_scorer(fixed_scorer, [[0, 1], [3]], [2, 2], 5, progress=False)
    assert result.ranks.tolist() == [0, 2]
    assert result.metrics["hr@5"] == 1.0


def test_chunking_does_not_change_ranks():
    table = torch.randn(17, 17, generator=torch.Generator().manual_seed(0))

    def scorer(histories):  # depends only on each user's own history
        return torch.stack([table[h].sum(0) for h in histories])

    histories = [[i % 17, (3 * i) % 17] for i in range(40)]
    targets = [(i + 5) % 17 for i in range(40)]
    small = evaluate_scorer(scorer, histories, targets, 17, batch_size=3, progress=False)
    large = evaluate_scorer(scorer, histories, targets, 17, batch_size=64, progress=False)
    assert torch.equal(small.ranks, large.ranks)
    assert small.metrics == large.metrics


def test_non_finite_scores_raise():
    def nan_scorer(histories):
        out = fixed_scorer(histories)
        out[0, 3] = float("nan")
        return out

    with pytest.raises(EvaluationError, match="non-finite"):
        evaluate_scorer(nan_scorer, [[0]], [1], 5, progress=False)


def test_scorer_shape_and_type_checked():
    with pytest.raises(EvaluationError, match="shape"):
        evaluate_scorer(lambda h: torch.zeros(len(h), 4), [[0]], [1], 5, progress=False)
    with pytest.raises(EvaluationError, match=r"torch\.Tensor"):
        evaluate_scorer(lambda h: [[0.0] * 5], [[0]], [1], 5, progress=False)


def test_bad_inputs():
    with pytest.raises(EvaluationError, match="2 histories but 1 targets"):
        evaluate_scorer(fixed_scorer, [[0], [1]], [1], 5, progress=False)
    with pytest.raises(EvaluationError, match="outside the catalog"):
        evaluate_scorer(fixed_scorer, [[0]], [9], 5, progress=False)
    with pytest.raises(EvaluationError, match="no users"):
        evaluate_scorer(fixed_scorer, [], [], 5, progress=False)


def test_mask_history_in_place():
    scores = torch.zeros(2, 4)
    mask_history(scores, [[1, 3], []])
    assert torch.isneginf(scores[0, [1, 3]]).all()
    assert torch.isfinite(scores[1]).all()


def test_user_aware_scorers_get_user_indices():
    seen = []

    def scorer(histories, users):
        seen.extend(users)
        return torch.stack([SCORES.roll(u) for u in users])

    result = evaluate_scorer(scorer, [[], [], []], [0, 1, 2], 5, users=[0, 1, 2], batch_size=2, progress=False)
    assert seen == [0, 1, 2]
    assert result.ranks.tolist() == [0, 0, 0]  # rolling by u puts item u first
    with pytest.raises(EvaluationError, match="2 users but 3 targets"):
        evaluate_scorer(scorer, [[], [], []], [0, 1, 2], 5, users=[0, 1], progress=False)
