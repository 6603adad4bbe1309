import pytest

from contrec_hf.main_job import RECIPES, _steps_sweep
from contrec_hf.models import ContRecConfig


@pytest.mark.parametrize(("condition_dropout", "guidance"), [(0.1, 3.0), (0.0, 1.0)])
def test_scheduler_sweep_runs_at_the_paper_guidance_only_where_the_null_condition_was_trained(
    condition_dropout, guidance
):
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    data = make_cyclic_dataset()
    pipe = tiny_pipeline(data, num_train_timesteps=50, condition_dropout=condition_dropout)
    rows = _steps_sweep(pipe, data, users=5)
    assert {row["guidance"] for row in rows} == {guidance}
    assert {(row["scheduler"], row["steps"]) for row in rows} >= {("DDPMScheduler", 50), ("DDIMScheduler", 5)}
    assert all(0.0 <= row["ndcg@10"] <= 1.0 for row in rows)


def test_the_paper_recipe_trains_the_null_condition_it_samples_with():
    """The paper samples at guidance 3, which the config refuses unless the null condition is trained."""
    paper = RECIPES["paper"].config_overrides
    text = {"model_type": "llama", "vocab_size": 99, "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    config = ContRecConfig(text_config=text, item_tokenizer_config={"input_dim": 24, "token_dim": 16}, **paper)
    assert config.guidance_scale == 3.0 and config.condition_dropout > 0


def test_the_library_recipe_is_the_configs_defaults_with_the_two_measured_overrides():
    """`contrec-hf` = ContRecConfig's defaults + λ_disp 1.0 and no CFG dropout (docs/method.md, "Two recipes"): its
    config reads out at guidance 1, the only guidance an untrained null condition allows."""
    ours = RECIPES["contrec-hf"].config_overrides
    assert ours == {"dispersive_loss_weight": 1.0, "condition_dropout": 0.0}
    text = {"model_type": "llama", "vocab_size": 99, "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    config = ContRecConfig(text_config=text, item_tokenizer_config={"input_dim": 24, "token_dim": 16}, **ours)
    assert config.guidance_scale == 1.0 and config.readout == "x0"
    assert ContRecConfig().condition_dropout > 0  # the config's own default keeps CFG trainable
