"""Property-based tests of the full-ranking metrics and of the evaluator (hypothesis).

Every property is checked against a brute-force reference written here from the docstrings of
``contrec_hf.evaluation.metrics``: ranks are **0-based** (the number of items ranked above the target),
``"optimistic"`` counts the items scored strictly higher than the target, ``"pessimistic"`` (the default) the
other items scored at least as high, and a target scored ``-inf`` (masked) is ranked last.

Scores are small integers stored as floats, so ties are frequent and every affine map used below is exact.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from contrec_hf.errors import EvaluationError
from contrec_hf.evaluation.evaluator import evaluate_scorer, mask_history
from contrec_hf.evaluation.metrics import compute_metrics, hit_rate_at_k, mrr, ndcg_at_k, target_ranks

SETTINGS = settings(derandomize=True, deadline=None, max_examples=80)
NEG_INF = float("-inf")

# Scores: a handful of integer values (many ties), optionally -inf for masked items.
finite_score = st.integers(min_value=-3, max_value=3).map(float)
score_or_masked = st.one_of(finite_score, finite_score, finite_score, st.just(NEG_INF))


@st.composite
def scored_batches(draw, allow_masked: bool = True, max_items: int = 9):
    """A ``[batch, num_items]`` float64 score matrix and one target index per row."""
    batch = draw(st.integers(1, 4))
    num_items = draw(st.integers(1, max_items))
    values = score_or_masked if allow_masked else finite_score
    rows = draw(st.lists(st.lists(values, min_size=num_items, max_size=num_items), min_size=batch, max_size=batch))
    targets = draw(st.lists(st.integers(0, num_items - 1), min_size=batch, max_size=batch))
    return torch.tensor(rows, dtype=torch.float64), torch.tensor(targets, dtype=torch.long)


def reference_rank(row: list[float], target: int, ties: str) -> int:
    """Brute force: the 0-based rank of ``row[target]`` under a tie rule."""
    t = row[target]
    if t == NEG_INF:
        return len(row) - 1
    if ties == "optimistic":
        return sum(1 for s in row if s > t)
    return sum(1 for i, s in enumerate(row) if i != target and s >= t)


def reference_metrics(ranks: list[int], k: int) -> tuple[float, float, float]:
    """Brute force HR@k, NDCG@k and MRR from 0-based ranks."""
    n = len(ranks)
    hr = sum(1 for r in ranks if r < k) / n
    ndcg = sum(1 / math.log2(r + 2) for r in ranks if r < k) / n
    reciprocal = sum(1 / (r + 1) for r in ranks) / n
    return hr, ndcg, reciprocal


tie_rules = st.sampled_from(["pessimistic", "optimistic"])
rank_lists = st.lists(st.integers(0, 60), min_size=1, max_size=25)
cutoffs = st.integers(1, 70)


# ------------------------------------------------------------------------------------------- target_ranks
@SETTINGS
@given(scored_batches(), tie_rules)
def test_target_ranks_match_brute_force(batch, ties):
    scores, targets = batch
    ranks = target_ranks(scores, targets, ties=ties)
    assert ranks.dtype == torch.int64 and ranks.shape == targets.shape
    expected = [reference_rank(row, t, ties) for row, t in zip(scores.tolist(), targets.tolist())]
    assert ranks.tolist() == expected
    assert all(0 <= r < scores.shape[1] for r in ranks.tolist())


@SETTINGS
@given(scored_batches())
def test_default_is_pessimistic_and_never_better_than_optimistic(batch):
    scores, targets = batch
    pessimistic = target_ranks(scores, targets)
    assert torch.equal(pessimistic, target_ranks(scores, targets, ties="pessimistic"))
    optimistic = target_ranks(scores, targets, ties="optimistic")
    assert (pessimistic >= optimistic).all()
    # The two rules differ by exactly the number of *other* items tied with a finite target.
    for row, t, p, o in zip(scores.tolist(), targets.tolist(), pessimistic.tolist(), optimistic.tolist()):
        tied = sum(1 for i, s in enumerate(row) if i != t and s == row[t])
        assert p - o == (0 if row[t] == NEG_INF else tied)


@SETTINGS
@given(scored_batches(), tie_rules, st.sampled_from([0.25, 0.5, 1.0, 3.0, 8.0]), st.integers(-50, 50))
def test_ranks_invariant_to_positive_affine_maps(batch, ties, scale, shift):
    scores, targets = batch
    moved = scores * scale + shift  # exact on small integers; -inf stays -inf
    assert torch.equal(target_ranks(moved, targets, ties=ties), target_ranks(scores, targets, ties=ties))


@SETTINGS
@given(scored_batches(), tie_rules, st.data())
def test_ranks_invariant_to_column_permutations(batch, ties, data):
    scores, targets = batch
    perm = data.draw(st.permutations(range(scores.shape[1])))
    # Column j of the permuted matrix is old column perm[j]; the target moves to where its column went.
    permuted = scores[:, perm]
    new_position = {old: new for new, old in enumerate(perm)}
    moved_targets = torch.tensor([new_position[t] for t in targets.tolist()], dtype=torch.long)
    assert torch.equal(target_ranks(permuted, moved_targets, ties=ties), target_ranks(scores, targets, ties=ties))


@SETTINGS
@given(scored_batches(allow_masked=False), tie_rules, st.data())
def test_unique_maximum_is_ranked_first(batch, ties, data):
    scores, targets = batch
    # Lift each target strictly above everything else in its row.
    scores = scores.clone()
    scores[torch.arange(len(targets)), targets] = scores.max() + data.draw(st.integers(1, 5))
    ranks = target_ranks(scores, targets, ties=ties)
    assert ranks.tolist() == [0] * len(targets)
    for k in (1, 5, 10):
        assert hit_rate_at_k(ranks, k) == 1.0 and ndcg_at_k(ranks, k) == 1.0
    assert mrr(ranks) == 1.0


@SETTINGS
@given(scored_batches(allow_masked=False), tie_rules, st.data())
def test_masked_targets_are_ranked_last(batch, ties, data):
    scores, targets = batch
    scores = scores.clone()
    rows = data.draw(st.sets(st.integers(0, len(targets) - 1), min_size=1))
    for r in rows:
        scores[r, targets[r]] = NEG_INF
    ranks = target_ranks(scores, targets, ties=ties).tolist()
    for r, rank in enumerate(ranks):
        if r in rows:
            assert rank == scores.shape[1] - 1
        else:
            assert rank == reference_rank(scores[r].tolist(), int(targets[r]), ties)


@SETTINGS
@given(scored_batches(allow_masked=False), tie_rules, st.data())
def test_masking_other_items_never_hurts_the_target(batch, ties, data):
    scores, targets = batch
    num_items = scores.shape[1]
    histories = [
        sorted(data.draw(st.sets(st.integers(0, num_items - 1).filter(lambda i, t=t: i != t), max_size=num_items)))
        for t in targets.tolist()
    ]
    before = target_ranks(scores, targets, ties=ties)
    masked = mask_history(scores.clone(), histories)
    after = target_ranks(masked, targets, ties=ties)
    assert (after <= before).all()
    for original, row, history, t, rank in zip(
        scores.tolist(), masked.tolist(), histories, targets.tolist(), after.tolist()
    ):
        assert all(row[i] == NEG_INF for i in history) and row[t] == original[t]
        # No masked item counts against a finite target: the rank is that among the unmasked items alone.
        kept = [i for i in range(num_items) if i not in history]
        assert rank == reference_rank([original[i] for i in kept], kept.index(t), ties)
        assert rank <= num_items - 1 - len(history)


@SETTINGS
@given(
    st.integers(1, 3),
    st.integers(1, 6),
    st.sampled_from([float("nan"), float("inf")]),
    tie_rules,
    st.data(),
)
def test_nan_and_positive_inf_scores_are_refused(batch, num_items, bad, ties, data):
    scores = torch.zeros(batch, num_items, dtype=torch.float64)
    scores[data.draw(st.integers(0, batch - 1)), data.draw(st.integers(0, num_items - 1))] = bad
    targets = torch.tensor(data.draw(st.lists(st.integers(0, num_items - 1), min_size=batch, max_size=batch)))
    with pytest.raises(EvaluationError, match="NaN or \\+inf"):
        target_ranks(scores, targets, ties=ties)


# ------------------------------------------------------------------------------------- metrics from ranks
@SETTINGS
@given(rank_lists, cutoffs)
def test_metrics_match_brute_force_and_lie_in_unit_interval(ranks, k):
    hr, ndcg, reciprocal = reference_metrics(ranks, k)
    assert hit_rate_at_k(ranks, k) == pytest.approx(hr, abs=1e-12)
    assert ndcg_at_k(ranks, k) == pytest.approx(ndcg, abs=1e-12)
    assert mrr(ranks) == pytest.approx(reciprocal, abs=1e-12)
    for value in (hit_rate_at_k(ranks, k), ndcg_at_k(ranks, k), mrr(ranks)):
        assert 0.0 <= value <= 1.0
    # Tensors and lists give the same numbers.
    assert hit_rate_at_k(torch.tensor(ranks), k) == hit_rate_at_k(ranks, k)


@SETTINGS
@given(rank_lists, cutoffs, cutoffs)
def test_metrics_are_monotone_in_k_and_ndcg_below_hit_rate(ranks, k1, k2):
    small, large = sorted((k1, k2))
    assert hit_rate_at_k(ranks, small) <= hit_rate_at_k(ranks, large)
    assert ndcg_at_k(ranks, small) <= ndcg_at_k(ranks, large)
    for k in (small, large):
        assert ndcg_at_k(ranks, k) <= hit_rate_at_k(ranks, k)
    # Past the worst rank every target is a hit, and MRR (1/(r+1) ≤ 1/log2(r+2)) is below NDCG.
    beyond = max(ranks) + 1
    assert hit_rate_at_k(ranks, beyond) == 1.0
    assert mrr(ranks) <= ndcg_at_k(ranks, beyond) + 1e-12


@SETTINGS
@given(rank_lists, st.lists(cutoffs, min_size=1, max_size=4, unique=True))
def test_compute_metrics_agrees_with_single_metrics(ranks, ks):
    out = compute_metrics(ranks, ks)
    assert set(out) == {f"hr@{k}" for k in ks} | {f"ndcg@{k}" for k in ks} | {"mrr"}
    for k in ks:
        assert out[f"hr@{k}"] == hit_rate_at_k(ranks, k)
        assert out[f"ndcg@{k}"] == ndcg_at_k(ranks, k)
    assert out["mrr"] == mrr(ranks)


@SETTINGS
@given(rank_lists, st.data())
def test_metrics_do_not_depend_on_user_order(ranks, data):
    shuffled = data.draw(st.permutations(ranks))
    for k in (1, 5, 10):
        assert hit_rate_at_k(shuffled, k) == pytest.approx(hit_rate_at_k(ranks, k), abs=1e-12)
        assert ndcg_at_k(shuffled, k) == pytest.approx(ndcg_at_k(ranks, k), abs=1e-12)
    assert mrr(shuffled) == pytest.approx(mrr(ranks), abs=1e-12)


@SETTINGS
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=5), st.integers(-3, 0))
def test_invalid_ranks_and_cutoffs_are_refused(ranks, k):
    with pytest.raises(EvaluationError, match="positive integer"):
        hit_rate_at_k([0], k)
    with pytest.raises(EvaluationError, match="positive integer"):
        ndcg_at_k([0], k)
    if min(ranks) < 0:
        with pytest.raises(EvaluationError, match="non-negative"):
            mrr(ranks)
    else:
        assert 0.0 < mrr(ranks) <= 1.0


# ---------------------------------------------------------------------------------------------- evaluator
@st.composite
def evaluation_problems(draw):
    """Users with a history and a target outside it, a float32 score matrix and a chunk size."""
    num_items = draw(st.integers(2, 8))
    num_users = draw(st.integers(1, 6))
    targets, histories = [], []
    for _ in range(num_users):
        target = draw(st.integers(0, num_items - 1))
        others = [i for i in range(num_items) if i != target]
        histories.append(draw(st.lists(st.sampled_from(others), max_size=5)))  # repeats allowed
        targets.append(target)
    rows = draw(
        st.lists(
            st.lists(finite_score, min_size=num_items, max_size=num_items), min_size=num_users, max_size=num_users
        )
    )
    return torch.tensor(rows, dtype=torch.float32), histories, targets, draw(st.integers(1, 7))


@SETTINGS
@given(evaluation_problems(), tie_rules)
def test_evaluator_ranks_match_brute_force_for_any_chunk_size(problem, ties):
    scores, histories, targets, batch_size = problem
    calls = []

    def scorer(batch_histories):
        start = sum(calls)
        calls.append(len(batch_histories))
        assert batch_histories == [list(h) for h in histories[start : start + len(batch_histories)]]
        return scores[start : start + len(batch_histories)].clone()

    result = evaluate_scorer(
        scorer, histories, targets, scores.shape[1], ks=(1, 3), batch_size=batch_size, ties=ties, progress=False
    )
    assert calls == [min(batch_size, len(targets) - s) for s in range(0, len(targets), batch_size)]
    expected = []
    for row, history, t in zip(scores.tolist(), histories, targets):
        masked = [NEG_INF if i in history else s for i, s in enumerate(row)]
        expected.append(reference_rank(masked, t, ties))
    assert result.ranks.tolist() == expected
    assert result.metrics == compute_metrics(result.ranks, (1, 3))


@SETTINGS
@given(evaluation_problems(), st.sampled_from([float("nan"), float("inf"), NEG_INF]), st.data())
def test_evaluator_refuses_any_non_finite_score(problem, bad, data):
    scores, histories, targets, batch_size = problem
    scores = scores.clone()
    user = data.draw(st.integers(0, len(targets) - 1))
    scores[user, data.draw(st.integers(0, scores.shape[1] - 1))] = bad
    calls = []

    def scorer(batch_histories):
        start = sum(calls)
        calls.append(len(batch_histories))
        return scores[start : start + len(batch_histories)].clone()

    # Whichever chunk holds the bad score, the evaluator stops there.
    with pytest.raises(EvaluationError, match="non-finite"):
        evaluate_scorer(scorer, histories, targets, scores.shape[1], batch_size=batch_size, progress=False)
    assert sum(calls) == min(len(targets), (user // batch_size + 1) * batch_size)


def test_evaluator_ranks_float64_scores_like_target_ranks():
    """Regression: the evaluator used to cast to float32 (−1e39 became −inf, i.e. masked; 1 + 1e-12 tied 1)."""
    scores = torch.tensor([[-1e39, -2e39, -3e39], [1.0 + 1e-12, 1.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([0, 0])
    result = evaluate_scorer(lambda h: scores.clone(), [[], []], targets.tolist(), 3, progress=False)
    assert result.ranks.tolist() == target_ranks(scores, targets).tolist() == [0, 0]
