"""Stage 2's options are checked once, at the edge, and passed down as one typed object."""

import pytest
import torch
from tiny import OVERRIDES, tiny_features, tiny_tokenizer

from contrec_hf.errors import CheckpointError, ConfigError
from contrec_hf.training import (
    RecommenderOptions,
    RecommenderTrainingArguments,
    prepare_recommender,
    run_recommender_stage,
)


@pytest.mark.parametrize(
    ("fields", "error", "message"),
    [
        ({"lora": True}, ConfigError, "tiny backbone is trained from scratch"),
        ({"backbone": "./no/such/model"}, CheckpointError, "no/such/model"),
        ({"config_overrides": {"no_such_field": 1}}, ConfigError, "no_such_field"),
        ({"config_overrides": {"max_history": "long"}}, ConfigError, "max_history"),
        ({"config_overrides": {"item_table": "free"}}, ConfigError, "item_table"),
        ({"config_overrides": {"text_config": {"vocab_size": 99}}}, ConfigError, "vocab_size"),
        ({"config_overrides": {"text_config": [32]}}, ConfigError, "must be a dict"),
        ({"backbone": "smollm2", "config_overrides": {"text_config": {}}}, ConfigError, "keeps its own config"),
        ({"config_overrides": [("max_history", 5)]}, ConfigError, "config_overrides must be a dict"),
        ({"vocab_size": 0}, ConfigError, "vocab_size"),
    ],
)
def test_bad_options_are_refused_when_made(fields, error, message):
    with pytest.raises(error, match=message):
        RecommenderOptions(**fields)


def test_options_keep_their_own_copy_of_the_overrides():
    overrides = {"max_history": 7}
    options = RecommenderOptions(config_overrides=overrides)
    overrides["max_history"] = "changed after the check"
    assert options.config_overrides == {"max_history": 7}
    with pytest.raises(AttributeError):
        options.backbone = "smollm2"  # frozen: what was checked is what is used
    residual = {"item_table": "residual"}  # checked with a stand-in catalog size, stored as given
    assert RecommenderOptions(config_overrides=residual).config_overrides == residual


def test_options_build_the_same_recommender_as_the_keyword_fields(cyclic_dataset):
    tokenizer = tiny_tokenizer(tiny_features(cyclic_dataset))
    torch.manual_seed(0)
    by_fields, _ = prepare_recommender(cyclic_dataset, tokenizer, config_overrides=OVERRIDES)
    torch.manual_seed(0)
    by_options, text_tokenizer = prepare_recommender(
        cyclic_dataset, tokenizer, options=RecommenderOptions(config_overrides=OVERRIDES)
    )
    assert by_options.config.max_history == OVERRIDES["max_history"]
    assert by_options.get_input_embeddings().weight.shape[0] == len(text_tokenizer)
    expected = by_fields.state_dict()
    assert all(torch.equal(value, expected[name]) for name, value in by_options.state_dict().items())


def test_options_and_their_fields_together_are_refused(cyclic_dataset, tmp_path):
    tokenizer = tiny_tokenizer(tiny_features(cyclic_dataset))
    options = RecommenderOptions(config_overrides=OVERRIDES)
    with pytest.raises(ConfigError, match=r"either options or \['config_overrides', 'vocab_size'\]"):
        prepare_recommender(cyclic_dataset, tokenizer, vocab_size=300, config_overrides={"max_history": 3},
                            options=options)  # fmt: skip
    with pytest.raises(ConfigError, match="must be a RecommenderOptions"):
        prepare_recommender(cyclic_dataset, tokenizer, options={"backbone": "tiny"})
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"\['lora'\]"):
        run_recommender_stage(cyclic_dataset, tmp_path / "stage-1", args, lora=True, options=options)


def test_run_recommender_stage_checks_its_options_before_loading_stage_1(cyclic_dataset, tmp_path):
    """No stage-1 folder exists: the option error comes first, so a bad option costs nothing to find."""
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"))
    with pytest.raises(ConfigError, match="max_history"):
        run_recommender_stage(cyclic_dataset, tmp_path / "missing", args, config_overrides={"max_history": -1})
    assert not (tmp_path / "run").exists()
