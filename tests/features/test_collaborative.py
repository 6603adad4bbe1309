from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from contrec_hf.baselines import PopularityRecommender
from contrec_hf.data import SequentialDataset, build_interactions, leave_one_out
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.features import (
    CollaborativeConfig,
    normalized_adjacency,
    train_collaborative,
    training_pairs,
)
from contrec_hf.features import collaborative as collaborative_module

FAST = {"dim": 16, "batch_size": 128, "learning_rate": 0.05, "eval_every": 5, "patience": 3}


def cyclic(num_users: int = 80, num_items: int = 60, length: int = 12, seed: int = 0) -> SequentialDataset:
    """Users walk a cycle from a random start: neighbouring items co-occur, so CF can learn the next one."""
    rng = np.random.default_rng(seed)
    rows = []
    for user in range(num_users):
        start = int(rng.integers(num_items))
        rows += [(f"u{user}", f"i{(start + t) % num_items}", t) for t in range(length)]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return leave_one_out(build_interactions(frame, name="cyclic"))


def held_out_targets(shift: int) -> SequentialDataset:
    """30 users train on items t0…t19; their validation/test targets are h0…h5, which occur in no training
    history. ``shift`` changes who gets which target but not the training part, nor the catalog."""
    rng = np.random.default_rng(1)
    rows = []
    for user in range(30):
        train = rng.choice(20, size=6, replace=False)
        rows += [(f"u{user}", f"t{item}", t) for t, item in enumerate(train)]
        rows.append((f"u{user}", f"h{(user + shift) % 3}", 10))
        rows.append((f"u{user}", f"h{3 + (user + 2 * shift) % 3}", 11))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
    return leave_one_out(build_interactions(frame, name="held-out"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("method", "svd"),
        ("dim", 4),
        ("dim", 2048),
        ("dim", 64.0),
        ("dim", True),
        ("num_layers", 0),
        ("learning_rate", 0.0),
        ("weight_decay", -1.0),
        ("batch_size", 0),
        ("num_negatives", 0),
        ("max_epochs", 0),
        ("patience", 0),
        ("eval_every", 0),
        ("seed", -1),
    ],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field) as info:
        CollaborativeConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_training_pairs_come_from_the_training_part_only():
    data = held_out_targets(0)
    users, items = training_pairs(data)
    expected = {(u, i) for u, seq in enumerate(data.train_sequences()) for i in seq}
    assert set(zip(users.tolist(), items.tolist())) == expected
    assert len(users) == len(expected)  # distinct pairs
    held_out = set(data.item_index([f"h{k}" for k in range(6)]))
    assert held_out.isdisjoint(items.tolist())


def test_adjacency_is_symmetric_normalised_and_has_no_held_out_edges():
    data = held_out_targets(0)
    users, items = training_pairs(data)
    adj = normalized_adjacency(users, items, data.num_users, data.num_items).to_dense()
    n = data.num_users + data.num_items
    assert adj.shape == (n, n)
    torch.testing.assert_close(adj, adj.T)
    degree = torch.bincount(torch.cat([users, items + data.num_users]), minlength=n).float()
    u, i = int(users[0]), int(items[0]) + data.num_users
    torch.testing.assert_close(adj[u, i], 1 / torch.sqrt(degree[u] * degree[i]))
    for item in data.item_index([f"h{k}" for k in range(6)]):
        assert adj[data.num_users + item].abs().sum() == 0  # no training edge reaches a held-out target


@pytest.mark.parametrize("method", ["lightgcn", "mf"])
def test_learns_beyond_random(method):
    data = cyclic()
    result = train_collaborative(data, CollaborativeConfig(method=method, max_epochs=20, **FAST), progress=False)
    assert result.item_embeddings.shape == (data.num_items, 16)
    assert result.user_embeddings.shape == (data.num_users, 16)
    # Random ranking of the 50 unmasked items: Recall@20 = 0.4, NDCG@10 ≈ 0.09.
    assert result.best_recall > 0.8
    assert result.validation_metrics["ndcg@10"] > 0.3
    assert result.best_epoch in [r["epoch"] for r in result.history if "val_recall@20" in r]
    histories, targets = data.split("validation")
    again = evaluate_scorer(
        result.score, histories, targets, data.num_items, users=list(range(data.num_users)), progress=False
    )
    assert again.metrics["hr@20"] == pytest.approx(result.best_recall)  # best epoch restored


@pytest.mark.parametrize("method", ["lightgcn", "mf"])
def test_same_seed_same_embeddings(method):
    data = cyclic(num_users=40, num_items=30)
    config = CollaborativeConfig(method=method, max_epochs=4, **FAST)
    first = train_collaborative(data, config, progress=False)
    second = train_collaborative(data, config, progress=False)
    assert torch.equal(first.item_embeddings, second.item_embeddings)
    assert torch.equal(first.user_embeddings, second.user_embeddings)
    other = train_collaborative(data, CollaborativeConfig(method=method, max_epochs=4, seed=1, **FAST), progress=False)
    assert not torch.equal(first.item_embeddings, other.item_embeddings)


def test_same_seed_same_embeddings_on_movielens_with_two_threads(ml100k):
    # The small fixture above never reaches the sizes where the CPU kernels split work between threads; ML-100K
    # does (before gather_rows, two calls already differed after one epoch).
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        config = CollaborativeConfig(method="lightgcn", max_epochs=2, eval_every=2)
        first, second = (train_collaborative(ml100k, config, progress=False) for _ in range(2))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(first.item_embeddings, second.item_embeddings)
    assert torch.equal(first.user_embeddings, second.user_embeddings)


def _train_without_selection(data: SequentialDataset, method: str):
    # One evaluation, after the last epoch: the kept embeddings are the last ones whatever validation says.
    config = CollaborativeConfig(method=method, dim=8, batch_size=32, max_epochs=6, eval_every=6, learning_rate=0.05)
    return train_collaborative(data, config, progress=False)


@pytest.mark.parametrize("method", ["lightgcn", "mf"])
def test_no_validation_or_test_target_enters_training(method):
    a, b = held_out_targets(0), held_out_targets(1)
    assert a.item_ids == b.item_ids and a.train_sequences() == b.train_sequences()
    assert a.split("validation")[1] != b.split("validation")[1] and a.split("test")[1] != b.split("test")[1]
    ra, rb = _train_without_selection(a, method), _train_without_selection(b, method)
    assert [r["loss"] for r in ra.history] == [r["loss"] for r in rb.history]
    assert torch.equal(ra.item_embeddings, rb.item_embeddings)
    assert torch.equal(ra.user_embeddings, rb.user_embeddings)


def test_leakage_test_detects_leaky_positives(monkeypatch):
    """The test above has power: training on the validation item too makes the two runs differ."""

    def leaky_pairs(data):
        pairs = [(u, i) for u, seq in enumerate(data.sequences) for i in seq[:-1]]
        users, items = zip(*sorted(set(pairs)))
        return torch.tensor(users), torch.tensor(items)

    monkeypatch.setattr(collaborative_module, "training_pairs", leaky_pairs)
    ra, rb = _train_without_selection(held_out_targets(0), "mf"), _train_without_selection(held_out_targets(1), "mf")
    assert not torch.equal(ra.item_embeddings, rb.item_embeddings)


def test_negatives_avoid_training_items():
    data = cyclic(num_users=10, num_items=15)
    users, items = training_pairs(data)
    known = users * data.num_items + items
    negatives = collaborative_module._sample_negatives(
        users, 5, data.num_items, known, torch.Generator().manual_seed(0)
    )
    assert negatives.shape == (len(users), 5)
    train_sets = [set(s) for s in data.train_sequences()]
    assert all(int(n) not in train_sets[int(u)] for u, row in zip(users, negatives) for n in row)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["mf", "lightgcn"])
def test_ml100k_beats_popularity(ml100k, method):
    result = train_collaborative(ml100k, CollaborativeConfig(method=method), progress=False)
    histories, targets = ml100k.split("validation")
    popularity = evaluate_scorer(
        PopularityRecommender().fit(ml100k).score, histories, targets, ml100k.num_items, progress=False
    )
    assert result.best_recall > popularity.metrics["hr@20"] + 0.05
    assert result.validation_metrics["ndcg@10"] > popularity.metrics["ndcg@10"]
