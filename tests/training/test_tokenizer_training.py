import pytest
import torch

from contrec_hf.errors import ConfigError
from contrec_hf.models import ContRecTokenizerConfig
from contrec_hf.training import TokenizerTrainingArguments, split_items, train_item_tokenizer

CONFIG = {"input_dim": 37, "num_tokens": 2, "token_dim": 8, "encoder_hidden_sizes": [32], "decoder_hidden_sizes": [32]}


def low_rank_features(n=300, rank=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, rank, generator=g) @ torch.randn(rank, 37, generator=g) + 0.01 * torch.randn(
        n, 37, generator=g
    )


def test_split_items_is_a_seeded_partition():
    split = split_items(101, (0.8, 0.1, 0.1), seed=3)
    assert [len(split[k]) for k in ("train", "validation", "heldout")] == [81, 10, 10]
    assert sorted(split["train"] + split["validation"] + split["heldout"]) == list(range(101))
    assert split == split_items(101, (0.8, 0.1, 0.1), seed=3)
    assert split != split_items(101, (0.8, 0.1, 0.1), seed=4)
    with pytest.raises(ValueError, match="at least 3 items"):
        split_items(2, (0.8, 0.1, 0.1), 0)


def test_training_learns_low_rank_features_and_reports_diagnostics():
    args = TokenizerTrainingArguments(max_epochs=60, patience=60, batch_size=32, learning_rate=3e-3)
    result = train_item_tokenizer(low_rank_features(), ContRecTokenizerConfig(**CONFIG), args, progress=False)
    d = result.diagnostics
    # Predicting the mean scores 1.0 in the standardised space; a rank-4 signal is easy to reconstruct.
    assert d["heldout_mse"] < 0.3
    assert d["validation_mse"] == min(h["val_mse"] for h in result.history)
    assert 1.0 < d["effective_rank"] <= d["max_effective_rank"] == 16
    assert len(d["per_dim_variance"]) == 16 and 0.0 <= d["dead_fraction"] <= 1.0
    assert d["num_items"] == {"train": 240, "validation": 30, "heldout": 30}
    assert not result.tokenizer.training


def test_same_seed_same_tokenizer():
    args = TokenizerTrainingArguments(max_epochs=3, seed=5)
    a = train_item_tokenizer(low_rank_features(), ContRecTokenizerConfig(**CONFIG), args, progress=False)
    b = train_item_tokenizer(low_rank_features(), ContRecTokenizerConfig(**CONFIG), args, progress=False)
    for key, value in a.tokenizer.state_dict().items():
        assert torch.equal(value, b.tokenizer.state_dict()[key]), key
    assert a.diagnostics["heldout_mse"] == b.diagnostics["heldout_mse"]


def test_bad_arguments():
    config = ContRecTokenizerConfig(**CONFIG)
    with pytest.raises(ValueError, match=r"features must be \[num_items, 37\]"):
        train_item_tokenizer(torch.randn(50, 36), config, progress=False)
    bad = low_rank_features()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        train_item_tokenizer(bad, config, progress=False)
    with pytest.raises(ValueError, match="split"):
        TokenizerTrainingArguments(split=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="batch_size"):
        TokenizerTrainingArguments(batch_size=0)


def test_device_is_validated():  # the rules themselves: tests/test_utils.py
    with pytest.raises(ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        TokenizerTrainingArguments(device="gpu")


def test_cpu_device_gives_the_default_tokenizer():
    config = ContRecTokenizerConfig(**CONFIG)
    args = TokenizerTrainingArguments(max_epochs=3)
    default = train_item_tokenizer(low_rank_features(), config, args, progress=False)
    args = TokenizerTrainingArguments(max_epochs=3, device="cpu")
    cpu = train_item_tokenizer(low_rank_features(), config, args, progress=False)
    for key, value in default.tokenizer.state_dict().items():
        assert torch.equal(value, cpu.tokenizer.state_dict()[key]), key
    assert cpu.history == default.history and cpu.tokenizer.device == torch.device("cpu")
    assert cpu.diagnostics["training_arguments"]["device"] == "cpu"
    assert default.diagnostics["training_arguments"]["device"] is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_on_cuda():
    args = TokenizerTrainingArguments(max_epochs=3, device="cuda")
    result = train_item_tokenizer(low_rank_features(), ContRecTokenizerConfig(**CONFIG), args, progress=False)
    assert result.tokenizer.device.type == "cuda"
    assert 0.0 < result.diagnostics["heldout_mse"] < float("inf") and result.diagnostics["effective_rank"] > 1.0
