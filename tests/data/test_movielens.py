import pytest

from contrec_hf.data import load_interactions, load_movielens_1m, load_sequential_dataset
from contrec_hf.data.movielens import load_movielens_100k, read_atomic_file
from contrec_hf.errors import DataError, DatasetNotFoundError

# A hand-made folder in the GroupLens ML-100K layout (invented rows), written at test time so that no file named
# like MovieLens data is tracked in the repository.
U_DATA = """1\t10\t5\t881250949
1\t20\t3\t881250950
1\t30\t4\t881250951
2\t10\t2\t891717742
2\t30\t5\t891717743
2\t40\t4\t891717744
2\t20\t1\t891717745
3\t40\t4\t878887116
3\t10\t3\t878887116
"""
U_ITEM = """10|Paper Lanterns (1994)|01-Jan-1994||http://example.org/a|0|0|0|0|0|1|0|0|1|0|0|0|0|0|0|0|0|0|0
20|Café Noir (1995)|01-Jan-1995||http://example.org/b|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0
30|Rocket Garden (1996)|01-Jan-1996||http://example.org/c|0|1|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0|0
40|Quiet Harbour (1997)|01-Jan-1997||http://example.org/d|0|0|0|0|0|0|0|0|0|0|0|0|0|0|1|0|0|0|0
"""


@pytest.fixture
def grouplens_dir(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.data").write_text(U_DATA)
    (folder / "u.item").write_text(U_ITEM, encoding="latin-1")
    return folder


def test_ml100k_from_the_recbole_wheel(ml100k):
    assert (ml100k.num_users, ml100k.num_items, ml100k.num_interactions) == (943, 1682, 100000)
    stats = ml100k.stats()
    assert stats["dropped_users"] == 0
    assert stats["train_interactions"] == 100000 - 2 * 943
    toy_story = ml100k.item_index(["1"])[0]
    row = ml100k.items.iloc[toy_story]
    assert (row["item_id"], row["title"], row["category"]) == ("1", "Toy Story", "Animation Children's Comedy")


def test_ml100k_raw_interactions_keep_ratings_and_timestamps():
    raw = load_movielens_100k()
    assert raw.num_interactions == 100000 and raw.has_ratings
    first = raw.frame.iloc[0]
    assert (first["user_id"], first["item_id"], first["rating"], first["timestamp"]) == ("196", "242", 3.0, 881250949)


def test_grouplens_folder(grouplens_dir):
    data = load_movielens_100k(grouplens_dir)
    assert (data.num_users, data.num_items, data.num_interactions) == (3, 4, 9)
    items = data.items.set_index("item_id")
    assert items.loc["10", "title"] == "Paper Lanterns"  # year stripped
    assert items.loc["10", "category"] == "Comedy Drama"  # genre flags 5 and 8
    assert items.loc["20", "title"] == "Café Noir"  # latin-1 decoded


def test_grouplens_split_ties_keep_file_order(grouplens_dir):
    data = load_sequential_dataset("ml-100k", grouplens_dir)
    # User 3 rated 40 then 10 with the same timestamp: too short (2 items) → dropped and counted.
    assert data.user_ids == ["1", "2"] and data.info["dropped_users"] == 1
    histories, targets = data.split("test")
    assert [data.item_ids[t] for t in targets] == ["30", "20"]
    assert [data.item_ids[i] for i in histories[1]] == ["10", "30", "40"]


def test_ml1m_folder(fixtures_dir):
    data = load_movielens_1m(fixtures_dir / "ml-1m")
    assert (data.num_users, data.num_items, data.num_interactions) == (3, 4, 9)
    items = data.items.set_index("item_id")
    assert items.loc["101", "category"] == "Animation Children's Comedy"
    assert items.loc["102", "title"] == "Señor Gato"
    split = load_sequential_dataset("ml-1m", fixtures_dir / "ml-1m")
    histories, targets = split.split("validation")
    # User 1 in time order: 104, 101, 103, 102 → validation target 103.
    assert split.item_ids[targets[0]] == "103"
    assert [split.item_ids[i] for i in histories[0]] == ["104", "101"]


def test_missing_and_malformed_files(tmp_path, fixtures_dir):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_movielens_100k(tmp_path / "nope")
    with pytest.raises(DatasetNotFoundError, match="neither u.data"):
        load_movielens_100k(tmp_path)
    (tmp_path / "u.data").write_text("1\t2\t3\n")
    (tmp_path / "u.item").write_text("1|x\n")
    with pytest.raises(DataError, match="expected 4 tab-separated columns"):
        load_movielens_100k(tmp_path)
    bad = tmp_path / "ml1m"
    bad.mkdir()
    (bad / "ratings.dat").write_text("1::2::3::4\n1::2::3\n")
    with pytest.raises(DataError, match="line 2"):
        load_movielens_1m(bad)
    with pytest.raises(DatasetNotFoundError, match="ratings.dat"):
        load_movielens_1m(fixtures_dir)


def test_atomic_file_errors(tmp_path):
    empty = tmp_path / "x.inter"
    empty.write_text("user_id:token\titem_id:token\n")
    with pytest.raises(DataError, match="no rows"):
        read_atomic_file(empty)
    with pytest.raises(DatasetNotFoundError):
        read_atomic_file(tmp_path / "missing.inter")


def test_registry_errors():
    with pytest.raises(DatasetNotFoundError, match="unknown dataset 'ml-42m'"):
        load_interactions("ml-42m")
    with pytest.raises(DatasetNotFoundError, match="pass the path"):
        load_interactions("ml-1m")
