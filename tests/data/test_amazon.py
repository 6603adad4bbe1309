"""Amazon 2014 / 2023 loaders on the hand-made fixtures in ``tests/fixtures/amazon2014`` and ``amazon2023``."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from contrec_hf.data import leave_one_out, load_interactions
from contrec_hf.data.amazon import HUB_REPO_2023, load_amazon2014, load_amazon2023
from contrec_hf.data.split import SequentialDataset
from contrec_hf.errors import DataError, DatasetNotFoundError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
A2014 = FIXTURES / "amazon2014"
A2023 = FIXTURES / "amazon2023"
BENCH = A2023 / "benchmark"
DAY = 86_400


def targets(data: SequentialDataset, user: str) -> tuple[str, str]:
    """Raw ids of one user's validation and test targets."""
    index = data.user_index([user])[0]
    _, validation = data.split("validation")
    _, test = data.split("test")
    return data.item_ids[validation[index]], data.item_ids[test[index]]


def item_table(data) -> pd.DataFrame:
    return data.items.set_index("item_id")


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# ------------------------------------------------------------------------------------------ Amazon 2014
def test_amazon2014_counts_ratings_and_times():
    data = load_amazon2014(A2014 / "reviews_Toys_5.json.gz")
    assert data.name == "amazon-2014-Toys"
    assert (data.num_users, data.num_items, data.num_interactions) == (5, 8, 20)
    frame = data.frame.set_index(["user_id", "item_id"])
    assert frame.loc[("A1TOYFANAAAA01", "B00TOY0004"), "rating"] == 5.0
    assert frame.loc[("A1TOYFANAAAA01", "B00TOY0004"), "timestamp"] == 1_388_534_400 + 20 * DAY
    assert frame.loc[("A2TOYFANBBBB02", "B00TOY0002"), "rating"] == 1.0
    assert "0001234567" in set(data.frame["item_id"])  # an all-digit ASIN keeps its leading zeros


def test_amazon2014_metadata_from_python_literals():
    items = item_table(load_amazon2014(A2014 / "reviews_Toys_5.json.gz"))
    assert items.loc["B00TOY0002", "title"] == "Bob's Bouncy Blocks"  # double-quoted in the dict literal
    assert items.loc["B00TOY0002", "category"] == "Blocks"  # last name of the first category path
    assert items.loc["B00TOY0003", "title"] == ""  # no title in the metadata
    assert items.loc["B00TOY0003", "category"] == "Jigsaw Puzzles"
    assert items.loc["B00TOY0004", "title"] == "Glow Kite & Reel"  # strict JSON line, HTML entity decoded
    assert items.loc["0001234567", "category"] == "Learning & Education"  # first path is empty
    assert items.loc["B00TOY0006", "category"] == ""  # no categories at all
    assert items.loc["B00TOY0007", "category"] == "Toys & Games"
    assert "B00TOY0099" not in items.index  # metadata of unreviewed items is dropped
    assert "B00TOY0008" not in items.index  # reviewed but absent from the metadata


def test_amazon2014_folder_category_and_meta_path(tmp_path):
    from_folder = load_amazon2014(A2014, category="Toys")
    assert (from_folder.num_users, from_folder.num_items, from_folder.num_interactions) == (5, 8, 20)
    shutil.copy(A2014 / "reviews_Toys_5.json.gz", tmp_path)
    alone = load_amazon2014(tmp_path)  # no metadata next to it: no titles
    assert alone.num_interactions == 20 and len(alone.items) == 0
    explicit = load_amazon2014(tmp_path, meta_path=A2014 / "meta_Toys.json.gz")
    assert item_table(explicit).loc["B00TOY0001", "title"] == "Wooden Rainbow Stacker"
    plain = tmp_path / "reviews_Toys_5.json"  # uncompressed copy of the same lines
    plain.write_bytes(gzip.decompress((A2014 / "reviews_Toys_5.json.gz").read_bytes()))
    assert load_amazon2014(plain).num_interactions == 20


def test_amazon2014_leave_one_out():
    data = leave_one_out(load_amazon2014(A2014))
    assert (data.num_users, data.num_items, data.num_interactions) == (4, 7, 18)
    assert data.info["dropped_users"] == 1  # A5TOYFANEEEE05 has two reviews
    assert "A5TOYFANEEEE05" not in data.user_ids and "B00TOY0008" not in data.item_ids
    assert targets(data, "A1TOYFANAAAA01") == ("B00TOY0004", "0001234567")
    assert targets(data, "A3TOYFANCCCC03") == ("B00TOY0006", "B00TOY0004")
    # Same day for B00TOY0004 and B00TOY0006: the tie keeps file order (the file is sorted by asin).
    assert targets(data, "A4TOYFANDDDD04") == ("B00TOY0004", "B00TOY0006")
    assert item_table(data).loc["B00TOY0002", "title"] == "Bob's Bouncy Blocks"


def test_amazon2014_through_load_interactions():
    data = load_interactions("amazon-2014", A2014 / "reviews_Toys_5.json.gz")
    assert data.num_interactions == 20


def test_amazon2014_ambiguous_folder(tmp_path):
    shutil.copy(A2014 / "reviews_Toys_5.json.gz", tmp_path)
    shutil.copy(A2014 / "reviews_Toys_5.json.gz", tmp_path / "reviews_Beauty_5.json.gz")
    with pytest.raises(DataError, match=r"several .*reviews_Beauty_5\.json\.gz.*reviews_Toys_5\.json\.gz"):
        load_amazon2014(tmp_path)
    assert load_amazon2014(tmp_path, category="Beauty").name == "amazon-2014-Beauty"
    with pytest.raises(DatasetNotFoundError, match="reviews_Games_5"):
        load_amazon2014(tmp_path, category="Games")


def test_amazon2014_missing_inputs(tmp_path):
    with pytest.raises(DatasetNotFoundError):
        load_amazon2014(tmp_path / "nope.json.gz")
    with pytest.raises(DatasetNotFoundError, match="holds no Amazon 2014 reviews file"):
        load_amazon2014(tmp_path)
    with pytest.raises(DatasetNotFoundError, match="metadata"):
        load_amazon2014(A2014, meta_path=tmp_path / "meta_Nope.json.gz")
    with pytest.raises(DataError, match="contradicts"):
        load_amazon2014(A2014 / "reviews_Toys_5.json.gz", category="Beauty")


def _gz(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    return path


REVIEW = {"reviewerID": "AX", "asin": "B1", "overall": 4.0, "unixReviewTime": 1_400_000_000}


def test_amazon2014_malformed_review_line(tmp_path):
    bad = _gz(tmp_path / "reviews_Bad_5.json.gz", [json.dumps(REVIEW), '{"reviewerID": "AY", "asin": ', ""])
    with pytest.raises(DataError, match=r"reviews_Bad_5\.json\.gz, line 2"):
        load_amazon2014(bad)
    missing = dict(REVIEW)
    del missing["overall"]
    bad = _gz(tmp_path / "reviews_Bad_5.json.gz", [json.dumps(REVIEW), json.dumps(missing)])
    with pytest.raises(DataError, match=r"line 2: the record has no 'overall' field"):
        load_amazon2014(bad)
    bad = _gz(tmp_path / "reviews_Bad_5.json.gz", [json.dumps(REVIEW), "[1, 2]"])
    with pytest.raises(DataError, match="line 2: expected one object per line"):
        load_amazon2014(bad)


def test_amazon2014_malformed_metadata_is_never_executed(tmp_path, capfd):
    shutil.copy(A2014 / "reviews_Toys_5.json.gz", tmp_path)
    good = repr({"asin": "B00TOY0001", "title": "ok"})
    _gz(tmp_path / "meta_Toys.json.gz", [good, "", "__import__('os').system('echo PWNED')"])
    with pytest.raises(DataError, match=r"meta_Toys\.json\.gz, line 3: neither a JSON object nor a Python dict"):
        load_amazon2014(tmp_path)
    assert "PWNED" not in capfd.readouterr().out


def test_amazon2014_empty_and_corrupt_files(tmp_path):
    with pytest.raises(DataError, match="holds no reviews"):
        load_amazon2014(_gz(tmp_path / "reviews_Empty_5.json.gz", []))
    corrupt = tmp_path / "reviews_Corrupt_5.json.gz"
    corrupt.write_bytes(b"\x1f\x8b" + b"not really gzip" * 4)
    with pytest.raises(DataError, match="cannot read"):
        load_amazon2014(corrupt)


# ------------------------------------------------------------------------------------------ Amazon 2023
def check_toys_2023(data) -> None:
    assert data.name == "amazon-2023-Toys"
    assert (data.num_users, data.num_items, data.num_interactions) == (5, 7, 19)
    items = item_table(data)
    assert items.loc["B0TOYP0001", "title"] == "Foam Dart Blaster"
    assert items.loc["B0TOYP0001", "category"] == "Blasters & Foam Play"  # last element of categories
    assert items.loc["B0TOYP0002", "category"] == "Toys & Games"  # empty categories: main_category
    assert items.loc["B0TOYP0004", "title"] == "Plush Otter"
    assert items.loc["B0TOYP0004", "category"] == ""  # main_category null, categories empty
    assert items.loc["B0TOYP0006", "title"] == ""
    assert "B0TOYP0007" not in items.index and "B0TOYP0099" not in items.index


def test_amazon2023_jsonl_file_and_folder():
    check_toys_2023(load_amazon2023(A2023 / "Toys.jsonl"))
    check_toys_2023(load_amazon2023(A2023))
    check_toys_2023(load_interactions("amazon-2023", A2023, category="Toys"))


def test_amazon2023_milliseconds_become_seconds():
    data = load_amazon2023(A2023 / "Toys.jsonl")
    frame = data.frame.set_index(["user_id", "item_id"])
    # 1609459200123 ms -> 1609459200 s (floor), ratings as floats
    assert frame.loc[("AETOYUSER1QWERTY", "B0TOYP0001"), "timestamp"] == 1_609_459_200
    assert frame.loc[("AETOYUSER1QWERTY", "B0TOYP0001"), "rating"] == 5.0
    millis = {(r["user_id"], r["parent_asin"]): r["timestamp"] for r in rows(A2023 / "Toys.jsonl")}
    for (user, item), row in frame.iterrows():
        assert row["timestamp"] == millis[(user, item)] // 1000
    assert str(data.frame["timestamp"].dtype) == "int64"


def test_amazon2023_leave_one_out_keeps_millisecond_order():
    data = leave_one_out(load_amazon2023(A2023))
    assert (data.num_users, data.num_items, data.num_interactions) == (4, 7, 17)
    assert data.info["dropped_users"] == 1
    # B0TOYP0004 (…900 ms) and B0TOYP0005 (…100 ms) share a second and are written in reverse time order:
    # the millisecond order wins, so B0TOYP0005 is the validation target and B0TOYP0004 the test target.
    assert targets(data, "AETOYUSER1QWERTY") == ("B0TOYP0005", "B0TOYP0004")
    assert targets(data, "AHTOYUSER4POIUYT") == ("B0TOYP0006", "B0TOYP0007")


def test_amazon2023_gzip_and_parquet_copies(tmp_path):
    (tmp_path / "gz").mkdir()
    for name in ("Toys.jsonl", "meta_Toys.jsonl"):
        (tmp_path / "gz" / f"{name}.gz").write_bytes(gzip.compress((A2023 / name).read_bytes()))
    check_toys_2023(load_amazon2023(tmp_path / "gz"))

    (tmp_path / "pq").mkdir()
    pd.DataFrame(rows(A2023 / "Toys.jsonl")).to_parquet(tmp_path / "pq" / "Toys.parquet")
    pd.DataFrame(rows(A2023 / "meta_Toys.jsonl")).to_parquet(tmp_path / "pq" / "meta_Toys.parquet")
    check_toys_2023(load_amazon2023(tmp_path / "pq" / "Toys.parquet"))
    check_toys_2023(load_amazon2023(tmp_path / "pq"))


def test_amazon2023_asin_items_get_parent_metadata():
    data = load_amazon2023(A2023, item_key="asin")
    assert (data.num_users, data.num_items, data.num_interactions) == (5, 8, 19)
    items = item_table(data)
    assert items.loc["B0TOYC0021", "title"] == items.loc["B0TOYC0022", "title"] == "Rainbow Slime Kit"
    with pytest.raises(DataError, match="item_key"):
        load_amazon2023(A2023, item_key="title")


def test_amazon2023_benchmark_csv_folder():
    data = load_amazon2023(BENCH, meta_path=A2023 / "meta_Toys.jsonl")
    assert data.name == "amazon-2023-Toys"
    assert (data.num_users, data.num_items, data.num_interactions) == (4, 7, 17)
    assert item_table(data).loc["B0TOYP0003", "title"] == "Dino Excavation Set"
    split = leave_one_out(data)
    valid = pd.read_csv(BENCH / "Toys.valid.csv", dtype=str)
    test = pd.read_csv(BENCH / "Toys.test.csv", dtype=str)
    for user, val_item, test_item in zip(valid["user_id"], valid["parent_asin"], test["parent_asin"]):
        assert targets(split, user) == (val_item, test_item)
    one_file = load_amazon2023(BENCH / "Toys.train.csv")
    assert one_file.name == "amazon-2023-Toys" and one_file.num_interactions == 9


def test_amazon2023_malformed_line(tmp_path):
    lines = (A2023 / "Toys.jsonl").read_text().splitlines()
    lines[2] = lines[2][:40]
    (tmp_path / "Toys.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"Toys\.jsonl, line 3: not valid JSON"):
        load_amazon2023(tmp_path / "Toys.jsonl")
    record = json.loads((A2023 / "Toys.jsonl").read_text().splitlines()[0])
    del record["user_id"]
    (tmp_path / "Toys.jsonl").write_text(json.dumps(record) + "\n")
    with pytest.raises(DataError, match=r"line 1: the record has no 'user_id' field"):
        load_amazon2023(tmp_path / "Toys.jsonl")


def test_amazon2023_csv_errors(tmp_path):
    missing = tmp_path / "Toys.csv"
    missing.write_text("user_id,asin,rating,timestamp\nU1,B1,5.0,1600000000000\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['parent_asin'\].*'asin'"):
        load_amazon2023(missing)
    bad_time = tmp_path / "Bad.csv"
    bad_time.write_text("user_id,parent_asin,rating,timestamp\nU1,B1,5.0,1600000000000\nU1,B2,4.0,not-a-time\n")
    with pytest.raises(DataError, match="cannot parse timestamp 'not-a-time'"):
        load_amazon2023(bad_time)
    empty = tmp_path / "Empty.csv"
    empty.write_text("")
    with pytest.raises(DataError, match="empty"):
        load_amazon2023(empty)
    with pytest.raises(DatasetNotFoundError):
        load_amazon2023(tmp_path / "Missing.jsonl")
    with pytest.raises(DatasetNotFoundError, match="metadata"):
        load_amazon2023(A2023, meta_path=tmp_path / "meta_Nope.jsonl")


def test_amazon2023_ambiguous_folder(tmp_path):
    shutil.copy(A2023 / "Toys.jsonl", tmp_path)
    shutil.copy(A2023 / "Toys.jsonl", tmp_path / "Games.jsonl")
    with pytest.raises(DataError, match=r"several categories \['Games', 'Toys'\]"):
        load_amazon2023(tmp_path)
    assert load_amazon2023(tmp_path, category="Games").name == "amazon-2023-Games"
    with pytest.raises(DatasetNotFoundError, match="'Books'"):
        load_amazon2023(tmp_path, category="Books")
    pd.DataFrame(rows(A2023 / "Toys.jsonl")).to_parquet(tmp_path / "Toys.parquet")
    with pytest.raises(DataError, match=r"several reviews files for 'Toys'"):
        load_amazon2023(tmp_path, category="Toys")


# ---------------------------------------------------------------------------------- Amazon 2023, Hub id
@pytest.fixture
def hub_online(monkeypatch):
    """Clear every offline flag, so only a faked ``datasets.load_dataset`` decides what the Hub answers."""
    import datasets
    import huggingface_hub.constants

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False, raising=False)
    return datasets


def test_amazon2023_hub_id_offline(monkeypatch):
    import datasets

    def never(*args, **kwargs):
        raise AssertionError("load_dataset must not be called while offline")

    monkeypatch.setattr(datasets, "load_dataset", never)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="offline"):
        load_amazon2023(HUB_REPO_2023, category="All_Beauty")
    with pytest.raises(DataError, match="category="):
        load_amazon2023(HUB_REPO_2023)


def test_amazon2023_hub_id_unreachable(hub_online, monkeypatch):
    def unreachable(*args, **kwargs):
        raise ConnectionError("no route to huggingface.co")

    monkeypatch.setattr(hub_online, "load_dataset", unreachable)
    with pytest.raises(DatasetNotFoundError, match="raw_review_All_Beauty.*ConnectionError"):
        load_amazon2023(HUB_REPO_2023, category="All_Beauty")


def test_amazon2023_hub_id_reads_both_configs(hub_online, monkeypatch):
    reviews = hub_online.Dataset.from_list(rows(A2023 / "Toys.jsonl"))
    meta = pd.DataFrame(rows(A2023 / "meta_Toys.jsonl"))[["parent_asin", "title", "main_category", "categories"]]
    calls = []

    def fake_load_dataset(repo_id, config):
        calls.append((repo_id, config))
        if config == "raw_review_Toys":
            return hub_online.DatasetDict({"full": reviews})
        assert config == "raw_meta_Toys"
        return hub_online.Dataset.from_pandas(meta)

    monkeypatch.setattr(hub_online, "load_dataset", fake_load_dataset)
    check_toys_2023(load_amazon2023(HUB_REPO_2023, category="Toys"))
    assert calls == [(HUB_REPO_2023, "raw_review_Toys"), (HUB_REPO_2023, "raw_meta_Toys")]
