"""The generic table loader on ``tests/fixtures/table`` and small tables written on the fly."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from contrec_hf.data import leave_one_out, load_interactions
from contrec_hf.data.generic import load_table, read_table
from contrec_hf.data.split import SequentialDataset
from contrec_hf.errors import DataError, DatasetNotFoundError

TABLE = Path(__file__).resolve().parents[1] / "fixtures" / "table"
INTERACTIONS = TABLE / "interactions.csv"
ITEMS = TABLE / "items.csv"


def targets(data: SequentialDataset, user: str) -> tuple[str, str]:
    """Raw ids of one user's validation and test targets."""
    index = data.user_index([user])[0]
    _, validation = data.split("validation")
    _, test = data.split("test")
    return data.item_ids[validation[index]], data.item_ids[test[index]]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_with_items_counts_ids_and_ratings():
    data = load_table(INTERACTIONS, items_path=ITEMS)
    assert data.name == "interactions"
    assert (data.num_users, data.num_items, data.num_interactions) == (5, 6, 18)
    assert set(data.frame["user_id"]) == {"1", "2", "3", "4", "5"}
    assert "0001234567" in set(data.frame["item_id"])  # the ASIN keeps its leading zeros
    frame = data.frame.set_index(["user_id", "item_id"])
    assert frame.loc[("1", "B00TBL0004"), "rating"] == 5.0
    assert frame.loc[("1", "B00TBL0004"), "timestamp"] == 1_600_000_300
    assert str(data.frame["timestamp"].dtype) == "int64"


def test_item_table_titles_and_categories():
    items = load_table(INTERACTIONS, items_path=ITEMS).items.set_index("item_id")
    assert items.loc["0001234567", "title"] == "Puzzle Box, Deluxe"  # quoted comma
    assert items.loc["B00TBL0003", "title"] == "NA"  # a literal "NA" is a title, not a missing value
    assert items.loc["B00TBL0004", "category"] == ""
    assert items.loc["B00TBL0099", "title"] == "Never Rated"  # the item table is kept whole
    assert "B00TBL0006" not in items.index


def test_leave_one_out_end_to_end():
    data = leave_one_out(load_table(INTERACTIONS, items_path=ITEMS))
    assert (data.num_users, data.num_items, data.num_interactions) == (4, 6, 16)
    assert data.info["dropped_users"] == 1 and "5" not in data.user_ids
    assert targets(data, "1") == ("B00TBL0003", "B00TBL0004")
    assert targets(data, "2") == ("B00TBL0005", "0001234567")
    assert targets(data, "4") == ("B00TBL0003", "B00TBL0006")
    items = data.items.set_index("item_id")
    assert items.loc["0001234567", "title"] == "Puzzle Box, Deluxe"
    assert items.loc["B00TBL0006", "title"] == ""


def test_through_load_interactions():
    data = load_interactions("table", INTERACTIONS, items_path=ITEMS)
    assert data.name == "interactions" and data.num_interactions == 18


def test_tsv_parquet_and_custom_columns(tmp_path):
    frame = pd.read_csv(INTERACTIONS, dtype=str).rename(
        columns={"user_id": "uid", "item_id": "asin", "rating": "stars", "timestamp": "ts"}
    )
    frame.to_csv(tmp_path / "ratings.tsv", sep="\t", index=False)
    frame.to_csv(tmp_path / "ratings.txt", sep="|", index=False)
    kwargs = {"user_col": "uid", "item_col": "asin", "rating_col": "stars", "time_col": "ts"}
    for data in (
        load_table(tmp_path / "ratings.tsv", **kwargs),
        load_table(tmp_path / "ratings.txt", sep="|", **kwargs),
    ):
        assert (data.num_users, data.num_items, data.num_interactions) == (5, 6, 18)
        assert data.has_ratings and "0001234567" in set(data.frame["item_id"])

    numeric = pd.DataFrame({"user": [7, 7, 7, 8, 8, 8], "item": [30, 10, 20, 10, 30, 20], "time": [3, 1, 2, 5, 4, 6]})
    numeric.to_parquet(tmp_path / "numeric.parquet")
    data = load_table(tmp_path / "numeric.parquet", user_col="user", item_col="item", time_col="time")
    assert not data.has_ratings
    split = leave_one_out(data)
    assert split.item_ids == ["10", "20", "30"]  # integer ids become strings, kept in numeric order
    assert targets(split, "7") == ("20", "30")
    assert targets(split, 8) == ("10", "20")


def test_rating_column_is_optional(tmp_path):
    path = write(tmp_path / "plain.csv", "user_id,item_id,timestamp\nu1,i1,1\nu1,i2,2\n")
    assert not load_table(path).has_ratings
    path = write(tmp_path / "blank.csv", "user_id,item_id,timestamp,rating\nu1,i1,1,4\nu1,i2,2,\n")
    ratings = load_table(path).frame["rating"]
    assert ratings.iloc[0] == 4.0 and ratings.isna().iloc[1]


def test_time_col_none_uses_row_order(tmp_path):
    path = write(tmp_path / "ordered.csv", "user_id,item_id\nu1,c\nu1,a\nu1,b\n")
    split = leave_one_out(load_table(path, time_col=None))
    assert targets(split, "u1") == ("a", "b")


def test_date_string_timestamps_keep_their_order(tmp_path):
    path = write(
        tmp_path / "dates.csv",
        "user_id,item_id,timestamp\nu1,a,2020-01-03\nu1,b,2020-01-01\nu1,c,2020-01-02 12:00\nu1,d,2020-01-04\n",
    )
    split = leave_one_out(load_table(path))
    assert targets(split, "u1") == ("a", "d")


def test_date_string_timestamps_are_unix_seconds(tmp_path):
    path = write(tmp_path / "dates.csv", "user_id,item_id,timestamp\nu1,a,2020-01-01\nu1,b,2020-01-02 00:00:10\n")
    assert load_table(path).frame["timestamp"].tolist() == [1_577_836_800, 1_577_923_210]


def test_missing_columns_are_named(tmp_path):
    with pytest.raises(DataError, match=r"missing column\(s\) \['uid'\]; it has \['user_id', 'item_id'"):
        load_table(INTERACTIONS, user_col="uid")
    with pytest.raises(DataError, match=r"missing column\(s\) \['stars'\]"):
        load_table(INTERACTIONS, rating_col="stars")
    with pytest.raises(DataError, match=r"item table .*missing column\(s\) \['name'\]"):
        load_table(INTERACTIONS, items_path=ITEMS, title_col="name")
    items = load_table(INTERACTIONS, items_path=ITEMS, category_col="genre").items
    assert (items["category"] == "").all()  # an absent category column leaves categories empty


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="is empty"):
        load_table(write(tmp_path / "empty.csv", ""))
    with pytest.raises(DataError, match="holds no interactions"):
        load_table(write(tmp_path / "header.csv", "user_id,item_id,timestamp\n"))
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_table(tmp_path / "missing.csv")
    with pytest.raises(DatasetNotFoundError, match="item table"):
        load_table(INTERACTIONS, items_path=tmp_path / "missing_items.csv")
    with pytest.raises(DatasetNotFoundError, match="not a file"):
        load_table(tmp_path)


def test_bad_values(tmp_path):
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu1,i1,1600000000\nu1,i2,soon\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'soon'"):
        load_table(path)
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu1,i1,1600000000\nu1,i2,\n")
    with pytest.raises(DataError, match="'timestamp' has 1 missing value"):
        load_table(path)
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp\nu1,,1600000000\n")
    with pytest.raises(DataError, match="'item_id' has 1 missing value"):
        load_table(path)
    path = write(tmp_path / "t.csv", "user_id,item_id,timestamp,rating\nu1,i1,1,good\n")
    with pytest.raises(DataError, match="cannot parse rating 'good'"):
        load_table(path)


def test_unknown_format_and_corrupt_parquet(tmp_path):
    path = write(tmp_path / "ratings.dat", "user_id::item_id::timestamp\n")
    with pytest.raises(DataError, match="pass sep="):
        load_table(path)
    with pytest.raises(DataError, match="not a readable parquet file"):
        load_table(write(tmp_path / "broken.parquet", "not parquet"))
    assert list(read_table(ITEMS).columns) == ["item_id", "title", "category"]


def test_registry_forwards_loader_keywords(fixtures_dir):
    from contrec_hf.data import load_interactions

    data = load_interactions("table", fixtures_dir / "table" / "interactions.csv", name="my-table")
    assert data.name == "my-table"
