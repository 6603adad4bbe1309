import pytest
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler

from contrec_hf.errors import ConfigError, InputError
from contrec_hf.models import ContRecConfig, ContRecDiffusionHead, ContRecForRecommendation
from contrec_hf.models.diffusion_head import exp_noise_betas

TEXT = {"model_type": "llama", "vocab_size": 99, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
        "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip


def config(**overrides) -> ContRecConfig:
    return ContRecConfig(
        text_config=TEXT,
        item_tokenizer_config={"input_dim": 24, "num_tokens": 2, "token_dim": 16, "encoder_hidden_sizes": [19]},
        condition_dim=29,
        denoiser_hidden_size=31,
        denoiser_num_blocks=2,
        num_train_timesteps=50,
        **overrides,
    )


def head(seed=0, **overrides) -> ContRecDiffusionHead:
    """A head moved off its zero initialisation (the untrained denoiser predicts 0 everywhere)."""
    torch.manual_seed(seed)
    module = ContRecDiffusionHead(config(**overrides))
    for p in [*module.denoiser.parameters(), module.null_condition]:
        torch.nn.init.normal_(p, std=0.2)
    return module


def test_forward_returns_the_losses_and_trains_the_denoiser_and_the_null_condition():
    module = head(condition_dropout=0.5).train()
    torch.manual_seed(1)
    out = module(torch.randn(5, 29), torch.randn(5, 16))
    assert out.diffusion_loss.shape == () and torch.isfinite(out.dispersive_loss)
    (out.diffusion_loss + out.dispersive_loss).backward()
    assert module.denoiser.input_proj.weight.grad is not None and module.null_condition.grad is not None
    torch.manual_seed(1)  # one seed, one result
    again = module(torch.randn(5, 29), torch.randn(5, 16))
    torch.testing.assert_close(again.diffusion_loss, out.diffusion_loss, rtol=0, atol=0)


def denoiser_inputs(module, condition, x0):
    """`(x_t, t, c)` of the one denoiser pass of `module(condition, x0)`, and the losses."""
    seen = []
    hook = module.denoiser.register_forward_hook(lambda _, args, __: seen.append(args))
    try:
        out = module(condition, x0)
    finally:
        hook.remove()
    assert len(seen) == 1
    return *seen[0], out


@pytest.mark.parametrize("multiplier", [1, 3])
def test_append_mode_keeps_every_condition_and_trains_the_chosen_rows_again_under_the_null(multiplier):
    module = head(condition_dropout=1.0, condition_dropout_mode="append", diffusion_batch_multiplier=multiplier)
    condition, x0 = torch.randn(4, 29), torch.randn(4, 16)
    torch.manual_seed(2)
    x_t, t, c, out = denoiser_inputs(module.train(), condition, x0)
    rows = 4 * multiplier
    assert x_t.shape == (2 * rows, 16) and t.shape == (2 * rows,)
    torch.testing.assert_close(c[:rows], condition.repeat_interleave(multiplier, 0), rtol=0, atol=0)
    assert torch.equal(c[rows:], module.null_condition.detach().expand(rows, -1))
    assert not torch.allclose(x_t[:rows], x_t[rows:])  # the null rows draw noise of their own
    out.diffusion_loss.backward()
    assert module.null_condition.grad.abs().sum() > 0
    _, _, c, _ = denoiser_inputs(module.eval(), condition, x0)  # no CFG rows outside training
    assert c.shape == (rows, 29)


def test_replace_mode_swaps_the_chosen_rows_condition_for_the_null():
    module = head(condition_dropout=1.0).train()
    x_t, _, c, _ = denoiser_inputs(module, torch.randn(4, 29), torch.randn(4, 16))
    assert x_t.shape == (4, 16) and torch.equal(c, module.null_condition.detach().expand(4, -1))
    with pytest.raises(ConfigError, match="condition_dropout_mode.*expected one of"):
        config(condition_dropout_mode="prepend")


def test_condition_dropout_mode_round_trips(tmp_path):
    config(condition_dropout_mode="append").save_pretrained(tmp_path)
    assert ContRecConfig.from_pretrained(tmp_path).condition_dropout_mode == "append"


def test_guidance_needs_a_trained_null_condition():
    """condition_dropout=0 never trains the null condition: a guidance scale other than 1 is refused everywhere."""
    with pytest.raises(ConfigError, match="guidance_scale=3 .* never trained with condition_dropout=0"):
        config(condition_dropout=0.0, guidance_scale=3.0)
    module, condition = head(condition_dropout=0.0).eval(), torch.randn(2, 29)
    assert module.read_out(condition).shape == (2, 16)  # guidance 1 reads the conditional branch only
    scheduler = DDIMScheduler.from_config(module.noise_scheduler.config)
    calls = [
        lambda: module.read_out(condition, guidance_scale=2.0),
        lambda: module.read_out(condition, "sample", num_inference_steps=2, guidance_scale=0.0),
        lambda: module.sample(condition, scheduler, 2, 2.0),
        lambda: module.x0_estimate(condition, 3.0),
    ]
    for call in calls:
        with pytest.raises(InputError, match="never trained with condition_dropout=0"):
            call()


def test_regression_head_ablation_regresses_x0_from_one_fixed_input():
    """regression_head: L_diff = MSE(denoiser(0, T − 1, c), x₀), and the x₀ read-out returns that output."""
    module = head(regression_head=True, condition_dropout=0.0)
    condition, x0 = torch.randn(3, 29), torch.randn(3, 16)
    with torch.no_grad():
        expected = module.denoiser(torch.zeros(3, 16), torch.full((3,), 49), condition).sample
    torch.testing.assert_close(module.read_out(condition, "x0"), expected)
    torch.testing.assert_close(module(condition, x0).diffusion_loss, F.mse_loss(expected, x0))
    with pytest.raises(ValueError, match="regression_head .* prediction_type='sample'"):
        config(regression_head=True, prediction_type="epsilon")


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_sampling_modulations_match_the_per_step_passes(guidance_scale):
    """A loop's modulations computed for all steps at once give the per-step guided predictions."""
    module = head().eval()
    timesteps, condition, x = torch.tensor([49, 30, 12, 0]), torch.randn(3, 29), torch.randn(3, 16)
    with torch.no_grad():
        plan = module.sampling_modulations(timesteps, condition, guidance_scale)
        assert len(plan) == 4 and (plan[0][1] is None) == (guidance_scale == 1.0)
        for i, t in enumerate(timesteps):
            torch.testing.assert_close(
                module.guided_prediction(x, t, condition, guidance_scale, plan[i]),
                module.guided_prediction(x, t, condition, guidance_scale),
                rtol=1e-4,  # one null-condition row per step (GEMV) against all steps at once (GEMM): rounding only
                atol=1e-5,
            )
        assert module.sampling_modulations(timesteps, condition, guidance_scale, max_bytes=1) is None


def test_guided_prediction_is_classifier_free_guidance():
    """pred_uncond + s·(pred_cond − pred_uncond), the unconditional half with the learned null condition."""
    module = head().eval()
    x, c, t = torch.randn(3, 16), torch.randn(3, 29), torch.full((3,), 17)
    with torch.no_grad():
        cond = module.denoiser(x, t, c).sample
        uncond = module.denoiser(x, t, module.null_condition.expand(3, -1)).sample
        for timestep in (t, torch.tensor(17)):
            torch.testing.assert_close(
                module.guided_prediction(x, timestep, c, 2.5), uncond + 2.5 * (cond - uncond), rtol=1e-5, atol=1e-6
            )
        torch.testing.assert_close(module.guided_prediction(x, t, c, 1.0), cond)


def test_read_out_defaults_come_from_the_config():
    """None takes the config's read-out: the same call gives the x₀ estimate or a seeded DDIM sample."""
    condition = torch.randn(4, 29)
    x0_head = head(guidance_scale=2.0).eval()
    torch.testing.assert_close(x0_head.read_out(condition), x0_head.x0_estimate(condition, 2.0))
    sample_head = head(readout="sample", guidance_scale=2.0, num_inference_steps=7).eval()
    scheduler = DDIMScheduler.from_config(sample_head.noise_scheduler.config, clip_sample=False)
    expected = sample_head.sample(condition, scheduler, 7, 2.0, torch.Generator().manual_seed(3))
    torch.testing.assert_close(sample_head.read_out(condition, generator=torch.Generator().manual_seed(3)), expected)
    mean = sample_head.read_out(condition, "mean", num_samples=3, generator=torch.Generator().manual_seed(3))
    assert mean.shape == (4, 16) and not torch.allclose(mean, expected)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"readout": "median"}, "readout must be one of"), ({"guidance_scale": -1.0}, "guidance_scale must be"),
     ({"guidance_scale": float("inf")}, "guidance_scale must be"), ({"num_inference_steps": 0}, "num_inference_steps"),
     ({"num_inference_steps": 2.5}, "num_inference_steps")],
)  # fmt: skip
def test_bad_read_out_settings_are_refused(kwargs, message):
    with pytest.raises(InputError, match=message):
        head().read_out(torch.randn(2, 29), **kwargs)


def test_config_refuses_a_bad_default_read_out():
    with pytest.raises(ConfigError, match="readout.*expected one of"):
        config(readout="median")
    with pytest.raises(ConfigError, match="guidance_scale"):
        config(guidance_scale=-1.0)


def test_exp_schedule_matches_the_method():
    betas = exp_noise_betas(200)
    alpha_bar = torch.tensor([1 - b for b in betas], dtype=torch.float64).cumprod(0)
    assert betas[0] == pytest.approx(6.2e-4, rel=0.02) and betas[-1] == pytest.approx(0.049, rel=0.02)
    assert float(alpha_bar[-1]) == pytest.approx(6.25e-3, rel=0.05)


def test_a_checkpoint_saved_before_the_head_had_its_own_module_loads_unchanged(tmp_path):
    """Old parameter names (`denoiser.*`, `null_condition`) map onto `diffusion_head.*`: nothing is re-initialised."""
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    model = ContRecForRecommendation(config())
    for p in [*model.diffusion_head.denoiser.parameters(), model.diffusion_head.null_condition]:
        torch.nn.init.normal_(p, std=0.2)
    model.save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    old = {k.removeprefix("diffusion_head."): v for k, v in weights.items()}
    assert "null_condition" in old and any(k.startswith("denoiser.") for k in old)
    save_file(old, tmp_path / "model.safetensors", metadata={"format": "pt"})
    back = ContRecForRecommendation.from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], tensor, rtol=0, atol=0, msg=name)


def test_preference_term_is_preferdiffs_bpr_on_the_denoising_errors():
    """L_pref = mean −log σ(−γ (e⁺ − e⁻)), e⁻ the error of the previous condition's target at the same timestep."""
    module = head(regression_head=True, condition_dropout=0.0, preference_loss_weight=0.5, preference_gamma=3.0)
    condition, x0 = torch.randn(4, 29), torch.randn(4, 16)
    out = module(condition, x0)
    with torch.no_grad():
        prediction = module.denoiser(torch.zeros(4, 16), torch.full((4,), 49), condition).sample  # the fixed input
    positive = (prediction - x0).pow(2).mean(-1)
    negative = (prediction - x0.roll(1, 0)).pow(2).mean(-1)
    torch.testing.assert_close(out.preference_loss, -F.logsigmoid(-3.0 * (positive - negative)).mean())
    out.preference_loss.backward()
    assert module.denoiser.output_proj.weight.grad.abs().sum() > 0
    # One condition per noise draw group: the negative is the previous group's target, never a copy of its own.
    diffusion = head(condition_dropout=0.0, preference_loss_weight=0.5, diffusion_batch_multiplier=3)
    torch.manual_seed(2)
    first = diffusion(condition, x0).preference_loss
    assert torch.isfinite(first) and first > 0
    torch.manual_seed(2)
    torch.testing.assert_close(diffusion(condition, x0).preference_loss, first, rtol=0, atol=0)
    # Off by default: no term, and no extra random draw (the default path is unchanged).
    assert head()(condition, x0).preference_loss is None
    with pytest.raises(ValueError, match="preference_gamma must be > 0"):
        config(preference_gamma=0.0)
    with pytest.raises(ValueError, match="preference_loss_weight must be ≥ 0"):
        config(preference_loss_weight=-1.0)


def test_learned_ranking_temperature_starts_at_tau_trains_and_stops_at_its_bound():
    """ranking_temperature_learnable: τ = exp(−s) of a parameter s that starts at log(1/τ₀), gets a gradient from
    L_rank, and is held at τ = MIN_RANKING_TEMPERATURE; a fixed τ has no parameter."""
    from contrec_hf.models.diffusion_head import MIN_RANKING_TEMPERATURE

    fixed = head(ranking_temperature=0.2)
    assert fixed.ranking_log_scale is None and fixed.ranking_temperature == 0.2
    module = head(ranking_temperature=0.2, ranking_temperature_learnable=True)
    assert "ranking_log_scale" in dict(module.named_parameters())
    torch.testing.assert_close(module.ranking_temperature, torch.tensor(0.2))
    condition, table, labels = torch.randn(3, 29), torch.randn(7, 16), torch.tensor([0, 4, 6])
    module.eval()
    loss = module.ranking_loss(condition, table, labels, 0.0)
    cosine = F.normalize(module.x0_estimate(condition), dim=-1) @ F.normalize(table, dim=-1).T
    torch.testing.assert_close(loss, F.cross_entropy(cosine / 0.2, labels))
    loss.backward()
    assert module.ranking_log_scale.grad.abs() > 0
    with torch.no_grad():
        module.ranking_log_scale.fill_(10.0)  # 1/τ = e¹⁰, beyond the bound
    torch.testing.assert_close(module.ranking_temperature, torch.tensor(MIN_RANKING_TEMPERATURE))
    module.zero_grad()
    module.ranking_loss(condition, table, labels, 0.0).backward()
    assert module.ranking_log_scale.grad == 0  # held at the bound, as CLIP's clamp holds its logit scale
    with pytest.raises(ConfigError, match=r"learnable keeps τ ≥ 0.01.*got ranking_temperature=0.005"):
        config(ranking_temperature=0.005, ranking_temperature_learnable=True)
