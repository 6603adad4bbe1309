import torch

from contrec_hf.baselines import PopularityRecommender
from contrec_hf.evaluation import evaluate_scorer


def test_counts_come_from_training_histories_only(cyclic_dataset):
    pop = PopularityRecommender().fit(cyclic_dataset)
    expected = torch.zeros(cyclic_dataset.num_items)
    for seq in cyclic_dataset.sequences:
        for item in seq[:-2]:
            expected[item] += 1
    assert torch.equal(pop.counts, expected)
    assert pop.score([[0], [1, 2]]).shape == (2, cyclic_dataset.num_items)


def test_popularity_on_movielens_is_deterministic(ml100k):
    pop = PopularityRecommender().fit(ml100k)
    histories, targets = ml100k.split("test")
    first = evaluate_scorer(pop.score, histories, targets, ml100k.num_items, progress=False)
    again = evaluate_scorer(pop.score, histories, targets, ml100k.num_items, progress=False)
    assert torch.equal(first.ranks, again.ranks)
    # Popularity beats a random ranking (expected HR@10 = 10 / 1682 ≈ 0.006) by a wide margin.
    assert 0.02 < first.metrics["hr@10"] < 0.2
