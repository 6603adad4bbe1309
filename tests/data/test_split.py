import pandas as pd
import pytest

from contrec_hf.data import (
    PRESETS,
    SequentialDataset,
    apply_preset,
    build_interactions,
    leave_one_out,
    load_sequential_dataset,
)
from contrec_hf.errors import DataError, DatasetNotFoundError


def frame(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])


ROWS = [
    # user "10": four items, two with the same timestamp (file order decides: b before a)
    ("10", "b", 5, 4.0),
    ("10", "a", 5, 5.0),
    ("10", "c", 1, 2.0),
    ("10", "d", 9, 4.0),
    # user "9": three items, out of order in the file
    ("9", "d", 30, 5.0),
    ("9", "a", 10, 4.0),
    ("9", "c", 20, 4.0),
    # user "2": two items only → cannot be split
    ("2", "a", 1, 5.0),
    ("2", "b", 2, 5.0),
]


@pytest.fixture
def data():
    items = pd.DataFrame({"item_id": ["a", "b", "c", "d"], "title": ["Alpha", "Beta", "Gamma", "Delta"]})
    return leave_one_out(build_interactions(frame(ROWS), items, name="toy"))


def test_chronological_leave_one_out(data):
    assert data.user_ids == ["9", "10"]  # numeric ids sort numerically; "2" was dropped
    assert data.info["dropped_users"] == 1
    seq = {u: [data.item_ids[i] for i in s] for u, s in zip(data.user_ids, data.sequences)}
    assert seq == {"9": ["a", "c", "d"], "10": ["c", "b", "a", "d"]}
    val_h, val_t = data.split("validation")
    test_h, test_t = data.split("test")
    assert [data.item_ids[t] for t in val_t] == ["c", "a"]
    assert [data.item_ids[t] for t in test_t] == ["d", "d"]
    assert test_h[1] == val_h[1] + [val_t[1]]


def test_no_target_leaks_into_training(data):
    train = data.train_sequences()
    for seq, tr in zip(data.sequences, train):
        assert tr == seq[:-2]
    assert data.item_counts().sum() == sum(len(s) for s in train)


def test_stats_and_item_table(data):
    stats = data.stats()
    assert (stats["users"], stats["items"], stats["interactions"], stats["train_interactions"]) == (2, 4, 7, 3)
    assert data.items["title"].tolist() == ["Alpha", "Beta", "Gamma", "Delta"]


def test_id_lookups(ml100k):
    assert ml100k.item_index([1, "1", " 1"]) == [0, 0, 0]
    with pytest.raises(DataError, match="unknown item id"):
        ml100k.item_index(["99999"])
    with pytest.raises(DataError, match="unknown user id"):
        ml100k.user_index(["abc"])
    with pytest.raises(DataError, match="unknown split"):
        ml100k.split("train")


def test_dataset_dict_export(data):
    dd = data.to_dataset_dict()
    assert set(dd) == {"train", "validation", "test"}
    row = dd["test"][1]
    assert row["user_id"] == "10" and row["history_item_ids"] == ["c", "b", "a"] and row["target_item_id"] == "d"
    assert "target" not in dd["train"].column_names
    assert data.item_dataset()["title"] == ["Alpha", "Beta", "Gamma", "Delta"]


def test_save_and_load_round_trip(data, tmp_path):
    data.save(tmp_path / "split")
    back = load_sequential_dataset(str(tmp_path / "split"))
    assert isinstance(back, SequentialDataset)
    assert (back.user_ids, back.item_ids, back.sequences, back.info) == (
        data.user_ids,
        data.item_ids,
        data.sequences,
        data.info,
    )
    pd.testing.assert_frame_equal(back.items, data.items)
    with pytest.raises(DatasetNotFoundError, match="missing"):
        SequentialDataset.load(tmp_path)


def test_contrec_preset_filters_ratings_then_short_users():
    rows = [("u", f"i{k}", k, 5.0) for k in range(5)] + [("v", f"i{k}", k, 4.0 if k else 3.0) for k in range(5)]
    out = apply_preset(build_interactions(frame(rows)), "contrec")
    assert out.frame["user_id"].unique().tolist() == ["u"]  # v loses a rating-3 item and falls below 5
    assert PRESETS["contrec"].min_rating == 3.0


def test_tiger_preset_is_an_iterative_k_core():
    rows = [(f"u{u}", f"i{i}", u * 10 + i, 1.0) for u in range(5) for i in range(5)]
    rows += [("u0", "rare", 99, 1.0), ("lonely", "i0", 1, 1.0)]
    out = apply_preset(build_interactions(frame(rows)), "tiger")
    assert out.num_users == 5 and out.num_items == 5 and out.num_interactions == 25


def test_preset_errors():
    inter = build_interactions(pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3]}))
    with pytest.raises(DataError, match="unknown preset 'beauty'"):
        apply_preset(inter, "beauty")
    with pytest.raises(DataError, match="has none"):
        apply_preset(inter, "contrec")
    with pytest.raises(DataError, match="3 interactions"):
        leave_one_out(inter)


def test_build_interactions_errors():
    with pytest.raises(DataError, match="no interactions"):
        build_interactions(pd.DataFrame({"user_id": [], "item_id": [], "timestamp": []}))
    with pytest.raises(DataError, match=r"missing column\(s\) \['timestamp'\]"):
        build_interactions(pd.DataFrame({"user_id": [1], "item_id": [2]}))
    with pytest.raises(DataError, match="cannot parse timestamp 'yesterday'"):
        build_interactions(
            pd.DataFrame({"user_id": [1, 1], "item_id": [2, 3], "timestamp": ["2020-01-01", "yesterday"]})
        )
    with pytest.raises(DataError, match="cannot parse rating"):
        build_interactions(pd.DataFrame({"user_id": [1], "item_id": [2], "timestamp": [3], "rating": ["five"]}))
    with pytest.raises(DataError, match="missing value"):
        build_interactions(pd.DataFrame({"user_id": [1, None], "item_id": [2, 3], "timestamp": [3, 4]}))


def test_date_timestamps_and_float_ids():
    inter = build_interactions(
        pd.DataFrame({"user_id": [1.0, 1.0], "item_id": [2, 3], "timestamp": ["2020-01-01", "2020-01-02"]})
    )
    assert inter.frame["user_id"].tolist() == ["1", "1"]
    assert inter.frame["timestamp"].tolist() == [1577836800, 1577923200]


def test_duplicates_keep_first_interaction():
    rows = [("u", "a", 1, 5.0), ("u", "b", 2, 5.0), ("u", "a", 3, 5.0), ("u", "c", 4, 5.0)]
    data = leave_one_out(build_interactions(frame(rows)))
    assert [data.item_ids[i] for i in data.sequences[0]] == ["a", "b", "c"]
    kept = leave_one_out(build_interactions(frame(rows)), deduplicate=False)
    assert len(kept.sequences[0]) == 4
