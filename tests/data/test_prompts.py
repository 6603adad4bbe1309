import pytest
import torch

from contrec_hf.data.prompts import ContRecCollator, PromptBuilder, sliding_window_samples, train_text_tokenizer
from contrec_hf.errors import DataError

TITLES = ["Alpha Movie", "Beta Film", "Gamma " * 20, "Delta"]
CATEGORIES = ["Drama", "", "Comedy Horror", "Drama"]


@pytest.fixture(scope="module")
def tokenizer():
    return train_text_tokenizer([*TITLES, *CATEGORIES, "History Answer user prefer items like"] * 3, vocab_size=120)


def test_prompt_text_has_titles_placeholders_and_no_ids():
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=3, max_history=2, max_title_length=10)
    text, items = builder.prompt([0, 1, 2])
    assert items == [1, 2]  # only the last L = 2
    assert "Beta Film <item><item_token><item_token><item_token></item>" in text
    assert "Gamma Gamm <item>" in text  # title cut to 10 characters
    assert "Alpha" not in text and " 0 " not in text and " 1 " not in text
    assert builder.response(1) == " The user may prefer (similar) items, like Beta Film."
    with pytest.raises(DataError, match="empty history"):
        builder.prompt([])


def test_sliding_windows_cover_every_next_item():
    samples = sliding_window_samples([[5, 6, 7], [8], [1, 2]], max_history=20)
    assert samples == [(0, 1, 6), (0, 2, 7), (2, 1, 2)]


def test_collator_counts_labels_and_errors(tokenizer):
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=2)
    features = torch.randn(4, 7)
    collator = ContRecCollator(tokenizer, builder, features)
    out = collator([([0, 1], 2), ([3], 0)])
    placeholder = tokenizer.convert_tokens_to_ids("<item_token>")
    assert int((out["input_ids"] == placeholder).sum()) == 2 * out["item_features"].shape[0] == 2 * 3
    assert torch.equal(out["item_features"], features[[0, 1, 3]])
    assert torch.equal(out["target_features"], features[[2, 0]])
    assert out["input_ids"].shape == out["labels"].shape == out["attention_mask"].shape
    inference = collator([([0, 1], None)], train=False)
    assert (inference["labels"] == -100).all() and "target_features" not in inference
    with pytest.raises(DataError, match="outside the catalog"):
        collator([([0, 9], 1)])
    with pytest.raises(DataError, match="outside the catalog"):
        collator([([0], -1)])


def test_collator_keeps_the_last_items_in_the_prompt_and_carries_whole_histories(tokenizer):
    """The trainer hands the collator every item before the target: the prompt is the window's, and the whole
    history travels as `history_ids` for `ranking_mask_history`."""
    builder = PromptBuilder(TITLES, CATEGORIES, num_item_tokens=2, max_history=2)
    collator = ContRecCollator(tokenizer, builder, torch.randn(4, 7))
    whole = collator([([0, 1, 2, 3], 1), ([3], 0)])
    window = collator([([2, 3], 1), ([3], 0)])
    for key in ("input_ids", "attention_mask", "labels", "item_ids"):
        assert torch.equal(whole[key], window[key])
    assert whole["history_ids"].tolist() == [[0, 1, 2, 3], [3, -1, -1, -1]]
    assert window["history_ids"].tolist() == [[2, 3], [3, -1]]
    assert "history_ids" not in collator([([0, 1], None)], train=False)
