import pandas as pd
import pytest

from contrec_hf.data import SequentialDataset, cold_start_split
from contrec_hf.errors import DataError


def dataset(sequences):
    items = pd.DataFrame({"item_id": [str(i) for i in range(9)], "title": [f"t{i}" for i in range(9)], "category": ""})
    users = [str(u) for u in range(len(sequences))]
    return SequentialDataset("toy", users, list(items["item_id"]), sequences, items, {"preset": None})


SEQUENCES = [[0, 1, 2, 3], [4, 3, 1, 5], [2, 6, 4, 7], [7, 8, 0, 1, 6], [3, 5, 2, 0, 8]]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_cold_items_occur_only_as_test_targets(seed):
    source = dataset(SEQUENCES)
    split = cold_start_split(source, 0.5, seed=seed)
    cold = set(split.cold_items)
    targets = {seq[-1] for seq in SEQUENCES}
    assert cold <= targets and len(cold) == round(0.5 * len(targets))
    data = split.data
    assert data.item_ids == source.item_ids  # the catalog keeps the cold items
    for user, seq in zip(data.user_ids, data.sequences):
        original = SEQUENCES[int(user)]
        assert seq[-1] == original[-1]  # every user keeps its test target
        assert seq[:-1] == [i for i in original[:-1] if i not in cold]
        assert not cold & set(seq[:-1])
    assert split.cold_users == [u for u, s in enumerate(data.sequences) if s[-1] in cold]
    assert sorted(split.cold_users + split.warm_users) == list(range(data.num_users))
    removed = sum(len(SEQUENCES[int(u)]) - len(s) for u, s in zip(data.user_ids, data.sequences))
    assert split.removed_interactions == removed
    dropped = len(SEQUENCES) - data.num_users
    assert data.info["cold_start"] == {
        "fraction": 0.5,
        "seed": seed,
        "cold_items": len(cold),
        "dropped_users": dropped,
    }


def test_the_choice_depends_on_the_seed_only():
    source = dataset(SEQUENCES)
    assert cold_start_split(source, 0.5, seed=4).cold_items == cold_start_split(source, 0.5, seed=4).cold_items
    choices = {tuple(cold_start_split(source, 0.5, seed=s).cold_items) for s in range(6)}
    assert len(choices) > 1


def test_short_users_are_dropped():
    # user 0 keeps only [0, 3] when items 5 and 6 are cold → dropped
    source = dataset([[0, 5, 6, 3], [1, 4, 2, 5], [4, 3, 0, 6], [2, 1, 8, 7]])
    split = next(s for s in (cold_start_split(source, 0.5, seed=i) for i in range(50)) if s.cold_items == [5, 6])
    assert "0" not in split.data.user_ids
    assert split.data.info["cold_start"]["dropped_users"] == 1


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_bad_fraction(fraction):
    with pytest.raises(DataError, match="fraction"):
        cold_start_split(dataset(SEQUENCES), fraction)


def test_no_cold_item_is_an_error():
    with pytest.raises(DataError, match="no cold item"):
        cold_start_split(dataset(SEQUENCES), 0.01)


def test_all_users_cold_is_an_error():
    with pytest.raises(DataError, match="cold of"):
        cold_start_split(dataset([[0, 1, 2, 3], [4, 5, 6, 3]]), 0.6)
