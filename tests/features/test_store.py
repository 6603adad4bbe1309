from __future__ import annotations

import json

import pytest
import torch

from contrec_hf.errors import DataError, DatasetNotFoundError
from contrec_hf.features import CollaborativeConfig, ItemFeatures, build_item_features
from contrec_hf.features import store as store_module

TINY = CollaborativeConfig(dim=8, batch_size=32, max_epochs=2, eval_every=1, learning_rate=0.05)


def make_features(num_items: int = 5, dim: int = 7, users: bool = True) -> ItemFeatures:
    gen = torch.Generator().manual_seed(0)
    return ItemFeatures(
        features=torch.randn(num_items, dim, generator=gen),
        item_ids=[f"i{k}" for k in range(num_items)],
        kind="collaborative",
        metadata={"method": "mf", "dim": dim, "dataset": "toy", "seed": 0},
        user_features=torch.randn(3, dim, generator=gen) if users else None,
        user_ids=["a", "b", "c"] if users else None,
    )


@pytest.mark.parametrize("users", [True, False])
def test_save_load_round_trip(tmp_path, users):
    feats = make_features(users=users)
    feats.save(tmp_path / "f")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["features.json", "features.safetensors"]
    loaded = ItemFeatures.load(tmp_path / "f")
    assert torch.equal(loaded.features, feats.features)
    assert loaded.item_ids == feats.item_ids and loaded.kind == feats.kind and loaded.metadata == feats.metadata
    assert loaded.dim == 7 and loaded.num_items == 5
    if users:
        assert torch.equal(loaded.user_features, feats.user_features) and loaded.user_ids == ["a", "b", "c"]
    else:
        assert loaded.user_features is None and loaded.user_ids is None


def test_constructor_rejects_bad_inputs():
    good = make_features()
    with pytest.raises(DataError, match="'audio'"):
        ItemFeatures(good.features, good.item_ids, kind="audio")
    with pytest.raises(DataError, match="5 rows but 4 ids"):
        ItemFeatures(good.features, good.item_ids[:4], kind="text")
    with pytest.raises(DataError, match="not unique"):
        ItemFeatures(good.features, ["i0"] * 5, kind="text")
    with pytest.raises(DataError, match="non-finite"):
        ItemFeatures(torch.full((5, 7), float("nan")), good.item_ids, kind="text")
    with pytest.raises(DataError, match="2-D float"):
        ItemFeatures(torch.ones(5, dtype=torch.long), good.item_ids, kind="text")
    with pytest.raises(DataError, match="together"):
        ItemFeatures(good.features, good.item_ids, kind="text", user_features=good.user_features)


def test_load_missing_and_corrupt(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        ItemFeatures.load(tmp_path / "nowhere")
    folder = make_features().save(tmp_path / "f")
    (folder / "features.safetensors").unlink()
    with pytest.raises(DatasetNotFoundError, match="features.safetensors"):
        ItemFeatures.load(folder)

    folder = make_features().save(tmp_path / "g")
    (folder / "features.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(DataError, match="safetensors"):
        ItemFeatures.load(folder)

    folder = make_features().save(tmp_path / "h")
    (folder / "features.json").write_text("{not json")
    with pytest.raises(DataError, match="JSON"):
        ItemFeatures.load(folder)

    folder = make_features().save(tmp_path / "k")
    meta = json.loads((folder / "features.json").read_text())
    meta["item_ids"] = meta["item_ids"][:-1]
    (folder / "features.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="5 rows but 4 ids"):
        ItemFeatures.load(folder)


def test_check_compatible_and_align(cyclic_dataset):
    n = cyclic_dataset.num_items
    reversed_ids = list(reversed(cyclic_dataset.item_ids))
    feats = ItemFeatures(torch.arange(n, dtype=torch.float32).unsqueeze(1).repeat(1, 2), reversed_ids, kind="text")
    with pytest.raises(DataError, match=f"row 0 holds item id {reversed_ids[0]!r}"):
        feats.check_compatible(cyclic_dataset)
    aligned = feats.align(cyclic_dataset)
    aligned.check_compatible(cyclic_dataset)
    assert aligned.features[:, 0].tolist() == list(range(n - 1, -1, -1))
    partial = ItemFeatures(feats.features[1:], reversed_ids[1:], kind="text")
    with pytest.raises(DataError, match=reversed_ids[0]):
        partial.align(cyclic_dataset)
    with pytest.raises(DataError, match="missing"):
        partial.check_compatible(cyclic_dataset)


def test_build_unknown_kind(cyclic_dataset):
    with pytest.raises(DataError, match="'graph'"):
        build_item_features(cyclic_dataset, "graph", progress=False)


def test_build_collaborative_and_cache(cyclic_dataset, tmp_path, monkeypatch):
    feats = build_item_features(
        cyclic_dataset, "collaborative", collaborative=TINY, cache_dir=tmp_path, progress=False
    )
    assert feats.features.shape == (cyclic_dataset.num_items, 8)
    assert feats.user_features.shape == (cyclic_dataset.num_users, 8)
    feats.check_compatible(cyclic_dataset)
    assert feats.metadata["method"] == "lightgcn" and feats.metadata["dataset"] == "cyclic"

    def fail(*args, **kwargs):
        raise AssertionError("recomputed although the cache matches")

    monkeypatch.setattr(store_module, "train_collaborative", fail)
    cached = build_item_features(
        cyclic_dataset, "collaborative", collaborative=TINY, cache_dir=tmp_path, progress=False
    )
    assert torch.equal(cached.features, feats.features)

    monkeypatch.undo()
    other = CollaborativeConfig(dim=8, batch_size=32, max_epochs=2, eval_every=1, learning_rate=0.05, seed=3)
    recomputed = build_item_features(
        cyclic_dataset, "collaborative", collaborative=other, cache_dir=tmp_path, progress=False
    )
    assert recomputed.metadata["seed"] == 3 and not torch.equal(recomputed.features, feats.features)
    assert ItemFeatures.load(tmp_path).metadata["seed"] == 3  # the cache now holds the new recipe


def test_corrupt_cache_is_recomputed(cyclic_dataset, tmp_path):
    make_features().save(tmp_path)
    (tmp_path / "features.safetensors").write_bytes(b"junk")
    feats = build_item_features(
        cyclic_dataset, "collaborative", collaborative=TINY, cache_dir=tmp_path, progress=False
    )
    assert feats.num_items == cyclic_dataset.num_items
    assert torch.equal(ItemFeatures.load(tmp_path).features, feats.features)


def test_build_text_and_hybrid(cyclic_dataset):
    text = build_item_features(cyclic_dataset, "text", progress=False)
    assert text.features.shape == (cyclic_dataset.num_items, 384) and text.user_features is None
    assert "encoder" in text.metadata
    hybrid = build_item_features(cyclic_dataset, "hybrid", collaborative=TINY, progress=False)
    assert hybrid.dim == 8 + 384 and hybrid.kind == "hybrid"
    torch.testing.assert_close(hybrid.features[:, :8].norm(dim=-1), torch.ones(cyclic_dataset.num_items))
    torch.testing.assert_close(hybrid.features[:, 8:], text.features)
