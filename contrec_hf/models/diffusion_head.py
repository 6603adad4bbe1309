"""ContRec's Dispersive Diffusion head: one home for the denoiser, the null condition, the noise schedule, the
training losses, sampling and the read-out (docs/method.md §4–5).

The shape is MAR's diffusion head (Li et al., 2024, "Autoregressive Image Generation without Vector Quantization"):
a module that takes a condition c from the sequence model and owns everything about p(x₀ | c). Its ``forward``
returns the training losses of Eq. (diffusion) and the Dispersive Loss; ``sample`` generates with any diffusers
scheduler and classifier-free guidance; ``read_out`` is the library's single switch between the x₀ estimate, one
sample and the mean of samples (the pipeline, the trainer's validation and the main job all call it); and
``ranking_loss`` is the catalog softmax on the x₀ read-out. The recommender keeps the LM, the splicing of item
tokens, the item table and the weighting of the losses.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, SchedulerMixin
from torch import nn
from transformers import PreTrainedConfig
from transformers.utils import ModelOutput

from ..errors import InputError
from .denoiser import ContRecDenoiser, dispersive_loss

# The head reads a `ContRecConfig`'s fields; it is typed as transformers' base config so that the config module can
# take READOUTS and NOISE_SCHEDULES from here without an import circle.

__all__ = [
    "CONDITION_DROPOUT_MODES", "MIN_RANKING_TEMPERATURE", "NOISE_SCHEDULES", "READOUTS", "ContRecDiffusionHead",
    "DiffusionHeadOutput", "build_noise_scheduler", "check_guidance", "exp_noise_betas", "sampling_guidance",
]  # fmt: skip

# The read-outs of `ContRecDiffusionHead.read_out`: the x₀ estimate, one sample, the mean of N samples. This is
# their one home: `ContRecConfig.readout`, the pipeline, the trainer and the CLI take their choices from here.
READOUTS = ("x0", "sample", "mean")
# The noise schedules of `build_noise_scheduler`: the authors' "exp" VP schedule and diffusers' beta schedules.
NOISE_SCHEDULES = ("exp", "linear", "scaled_linear", "squaredcos_cap_v2")
# How CFG training meets the null condition (`ContRecConfig.condition_dropout_mode`): a chosen row's condition is
# replaced by it, or the chosen row is trained once more under it.
CONDITION_DROPOUT_MODES = ("replace", "append")
# The smallest τ a learned ranking temperature reaches (`ContRecConfig.ranking_temperature_learnable`): CLIP's cap of
# 100 on its logit scale (Radford et al., 2021), so the softmax cannot sharpen without bound.
MIN_RANKING_TEMPERATURE = 0.01


def check_guidance(guidance_scale: float, condition_dropout: float, error: type[Exception] = InputError) -> None:
    """Refuse a guidance scale other than 1 when the null condition was never trained: pred_uncond + s·(pred_cond −
    pred_uncond) reads the null condition, which only `condition_dropout` > 0 trains.

    Raises:
        `error` ([`InputError`] by default; the config passes [`ConfigError`]).
    """
    if guidance_scale != 1.0 and condition_dropout == 0:
        raise error(
            f"guidance_scale={guidance_scale:g} reads the null condition of classifier-free guidance, which is never "
            "trained with condition_dropout=0: use guidance_scale=1, or train with condition_dropout > 0"
        )


def sampling_guidance(condition_dropout: float, trained: float = 3.0) -> float:
    """The guidance scale to sample a model with when none is asked for: the paper's s = 3 (``trained``) where CFG's
    null condition was trained (`condition_dropout` > 0), else 1, the only scale [`check_guidance`] allows. E.g. the
    main job's scheduler sweep and `examples/swap_schedulers.py`."""
    return trained if condition_dropout > 0 else 1.0


def exp_noise_betas(num_steps: int = 200, beta_min: float = 0.1, beta_max: float = 10.0) -> list[float]:
    """The authors' "exp" VP schedule: β_t = 1 − exp(−β_min/T − u_t·(β_max − β_min)/(2T²)), u = linspace(1, 2T+1, T).
    With T = 200: β_1 ≈ 6.2e-4, β_T ≈ 0.049, ᾱ_T ≈ 6.25e-3 (docs/method.md §4)."""
    u = torch.linspace(1, 2 * num_steps + 1, num_steps, dtype=torch.float64)
    betas = 1 - torch.exp(-beta_min / num_steps - u * (beta_max - beta_min) / (2 * num_steps**2))
    return betas.tolist()


def build_noise_scheduler(config: PreTrainedConfig) -> DDPMScheduler:
    """The training noise scheduler (DDPM) described by ``config`` (a [`ContRecConfig`]); ``clip_sample`` is off."""
    kwargs = {
        "num_train_timesteps": config.num_train_timesteps,
        "prediction_type": config.prediction_type,
        "clip_sample": False,
    }
    if config.noise_schedule == "exp":
        kwargs["trained_betas"] = exp_noise_betas(config.num_train_timesteps)
    else:
        kwargs["beta_schedule"] = config.noise_schedule
    scheduler = DDPMScheduler(**kwargs)
    # Spell every default out: a config that lists `_use_default_values` makes `X.from_config` fall back to X's
    # own defaults for those keys (e.g. Euler's timestep_spacing), and a saved config does not list them, so a
    # swapped scheduler would behave differently before and after save_pretrained.
    return DDPMScheduler.from_config({k: v for k, v in scheduler.config.items() if not k.startswith("_")})


@dataclass
class DiffusionHeadOutput(ModelOutput):
    """Output of [`ContRecDiffusionHead.forward`].

    Args:
        diffusion_loss (`torch.FloatTensor` of shape `()`): L_diff, the MSE against the prediction type's target.
        dispersive_loss (`torch.FloatTensor` of shape `()`): L_disp on the denoiser's representations.
        preference_loss (`torch.FloatTensor` of shape `()`, *optional*): PreferDiff's L_pref, when
            `preference_loss_weight` > 0.
    """

    diffusion_loss: torch.FloatTensor | None = None
    dispersive_loss: torch.FloatTensor | None = None
    preference_loss: torch.FloatTensor | None = None


class ContRecDiffusionHead(nn.Module):
    """p(x₀ | c): the denoiser, CFG's null condition and the noise schedule, with training, sampling and read-out.

    Args:
        config ([`ContRecConfig`]): reads `latent_dim`, `condition_dim`, `denoiser_hidden_size`,
            `denoiser_num_blocks`, `num_train_timesteps`, `noise_schedule`, `prediction_type`, `condition_dropout`,
            `condition_dropout_mode`, `diffusion_batch_multiplier`, `dispersive_temperature`, `regression_head`,
            `ranking_temperature` and `ranking_temperature_learnable`.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf import ContRecConfig
        >>> from contrec_hf.models.diffusion_head import ContRecDiffusionHead
        >>> config = ContRecConfig(text_config={"model_type": "llama", "vocab_size": 99, "hidden_size": 32,
        ...     "intermediate_size": 37, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2},
        ...     item_tokenizer_config={"input_dim": 24, "token_dim": 16}, condition_dim=29)
        >>> head = ContRecDiffusionHead(config)
        >>> losses = head(torch.randn(3, 29), torch.randn(3, 16))
        >>> losses.diffusion_loss.shape, head.read_out(torch.randn(3, 29)).shape
        (torch.Size([]), torch.Size([3, 16]))
        ```
    """

    def __init__(self, config: PreTrainedConfig) -> None:
        super().__init__()
        self.config = config
        self.denoiser = ContRecDenoiser(
            latent_dim=config.latent_dim,
            condition_dim=config.condition_dim,
            hidden_dim=config.denoiser_hidden_size,
            num_blocks=config.denoiser_num_blocks,
        )
        self.null_condition = nn.Parameter(torch.zeros(config.condition_dim))  # CFG's unconditional input
        # log(1/τ) of the ranking softmax when τ is learned (CLIP's logit scale); a fixed τ has no parameter.
        learned = nn.Parameter(torch.empty(())) if config.ranking_temperature_learnable else None
        self.register_parameter("ranking_log_scale", learned)
        self.reset_ranking_temperature()
        self._noise_scheduler: DDPMScheduler | None = None

    @property
    def noise_scheduler(self) -> DDPMScheduler:
        """The training scheduler, built lazily from the config (never a module buffer: no meta-device trap)."""
        if self._noise_scheduler is None:
            self._noise_scheduler = build_noise_scheduler(self.config)
        return self._noise_scheduler

    @torch.no_grad()
    def reset_ranking_temperature(self) -> None:
        """Start a learned τ at `ranking_temperature` (the recommender's weight init calls this too); a fixed τ has
        nothing to reset."""
        if self.ranking_log_scale is not None:
            self.ranking_log_scale.fill_(-math.log(self.config.ranking_temperature))

    @property
    def ranking_temperature(self) -> torch.Tensor | float:
        """τ of the ranking softmax: the config's fixed τ, or the learned one (`ranking_temperature_learnable`),
        exp(−log(1/τ)) held at τ ≥ `MIN_RANKING_TEMPERATURE` (its gradient stops at the bound, as CLIP's clamp
        does)."""
        if self.ranking_log_scale is None:
            return self.config.ranking_temperature
        return self.ranking_log_scale.clamp(max=-math.log(MIN_RANKING_TEMPERATURE)).neg().exp()

    # ---------------------------------------------------------------------------------------- train
    def forward(self, condition: torch.Tensor, x0: torch.Tensor) -> DiffusionHeadOutput:
        """L_diff and L_disp of one batch: each (c, x₀) pair is noised `diffusion_batch_multiplier` times at uniform
        timesteps (x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε), in training a row is chosen with probability `condition_dropout` for
        the null condition of CFG (its c replaced, or the row trained once more under the null:
        `condition_dropout_mode`), and the denoiser's output is regressed on ε, x₀ or v.

        Args:
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            x0 (`torch.Tensor` of shape `[batch, latent_dim]`): the target latents.

        Returns:
            [`DiffusionHeadOutput`].
        """
        config = self.config
        m = 1 if config.regression_head else config.diffusion_batch_multiplier
        condition, x0 = condition.repeat_interleave(m, 0), x0.repeat_interleave(m, 0)  # [B·m, ·]
        noise, t, x_t = self._noised(x0)
        if self.training and config.condition_dropout > 0:  # classifier-free guidance training
            condition, x0, noise, t, x_t = self._null_condition_rows(condition, x0, noise, t, x_t)
        out = self.denoiser(x_t, t, condition)
        target = self._target(x0, noise, t)
        preference = None
        if config.preference_loss_weight > 0:
            preference = self.preference_loss(condition, x0, noise, t, (out.sample - target).pow(2).mean(-1))
        return DiffusionHeadOutput(
            diffusion_loss=F.mse_loss(out.sample, target),
            dispersive_loss=dispersive_loss(out.representation, config.dispersive_temperature),
            preference_loss=preference,
        )

    def _noised(self, x0: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """`(noise, t, x_t)` of each row of x₀ `[rows, latent_dim]`: x_t = √ᾱ_t x₀ + √(1−ᾱ_t) ε at a uniform timestep;
        the regression head's one deterministic input instead (ablation: no noise, x_t = 0 at t = T − 1)."""
        scheduler = self.noise_scheduler
        if self.config.regression_head:
            t = torch.full((x0.shape[0],), scheduler.config.num_train_timesteps - 1, device=x0.device)
            return None, t, torch.zeros_like(x0)
        noise = torch.randn_like(x0)
        t = torch.randint(0, scheduler.config.num_train_timesteps, (x0.shape[0],), device=x0.device)
        return noise, t, scheduler.add_noise(x0, noise, t)

    def _null_condition_rows(
        self, condition: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor | None, t: torch.Tensor,
        x_t: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:  # fmt: skip
        """CFG training: each row is chosen with probability `condition_dropout`, and a chosen row's condition is
        replaced by the null condition (`condition_dropout_mode="replace"`, Ho & Salimans 2022) or the row is
        appended once more under the null condition with a noise draw and timestep of its own (`"append"`), so every
        row still trains its own condition. Returns the rows `(condition, x0, noise, t, x_t)`."""
        drop = torch.rand(x0.shape[0], 1, device=x0.device) < self.config.condition_dropout
        null = self.null_condition.to(condition.dtype)
        if self.config.condition_dropout_mode == "replace":
            return torch.where(drop, null, condition), x0, noise, t, x_t
        extra_x0 = x0[drop.squeeze(1)]  # [k, d_z]
        extra_noise, extra_t, extra_x_t = self._noised(extra_x0)
        extra_condition = null.expand(extra_x0.shape[0], -1)
        noise = None if noise is None else torch.cat([noise, extra_noise])
        return (torch.cat([condition, extra_condition]), torch.cat([x0, extra_x0]), noise, torch.cat([t, extra_t]),
                torch.cat([x_t, extra_x_t]))  # fmt: skip

    def _target(self, x0: torch.Tensor, noise: torch.Tensor | None, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser regresses on: ε, x₀ or v (`prediction_type`)."""
        if self.config.prediction_type == "epsilon":
            return noise
        if self.config.prediction_type == "sample":
            return x0
        return self.noise_scheduler.get_velocity(x0, noise, t)

    def preference_loss(
        self, condition: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor | None, t: torch.Tensor,
        positive_error: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """PreferDiff's preference term (Liu et al., ICLR 2025, Eq. 8; docs/method.md, "PreferDiff's term"):
        L_pref = mean −log σ(−γ (e⁺ − e⁻)), the denoising error e⁺ of each row's target below the error e⁻ of an
        in-batch negative (the previous condition's target) noised at the same timestep, under the same condition.

        Args:
            condition (`torch.Tensor` of shape `[rows, condition_dim]`): c of each row (after CFG dropout).
            x0 (`torch.Tensor` of shape `[rows, latent_dim]`): each row's target; rows come in groups of
                `diffusion_batch_multiplier` noise draws of one condition (one row each for the regression head).
            noise (`torch.Tensor` of shape `[rows, latent_dim]`, *optional*): the positives' noise (`None`: the
                regression head's fixed input).
            t (`torch.LongTensor` of shape `[rows]`): each row's timestep.
            positive_error (`torch.Tensor` of shape `[rows]`): e⁺, the mean squared error of each row.

        Returns:
            `torch.Tensor` of shape `()`.
        """
        shift = 1 if noise is None else self.config.diffusion_batch_multiplier
        negative = x0.roll(shift, 0)  # another condition's target (itself for a batch of one: a constant term)
        if noise is None:  # the regression head: its one fixed input
            negative_noise, x_t = None, torch.zeros_like(negative)
        else:
            negative_noise = torch.randn_like(negative)
            x_t = self.noise_scheduler.add_noise(negative, negative_noise, t)
        prediction = self.denoiser(x_t, t, condition).sample
        negative_error = (prediction - self._target(negative, negative_noise, t)).pow(2).mean(-1)
        return -F.logsigmoid(-self.config.preference_gamma * (positive_error - negative_error)).mean()

    def ranking_loss(
        self,
        condition: torch.Tensor,
        table: torch.Tensor,
        labels: torch.Tensor,
        log_inclusion: torch.Tensor | float,
        query: Callable[[torch.Tensor], torch.Tensor] | None = None,
        exclude: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """L_rank = −log softmax_j(cos(q(x̂₀(c)), e_j)/τ − log π_j)[label]: the catalog softmax on the x₀ read-out.

        x̂₀(c) is [`x0_estimate`] at guidance 1, the estimate the pipeline and the trainer rank with, so the loss
        trains exactly the scores that are evaluated. Sources: the catalog-softmax objectives of DiffuRec (Li et al.,
        TOIS 2023, CE on the denoised output) and HLLM (Chen et al., 2024, cosine/τ, τ₀ = 0.07, τ fixed or
        learned: [`ranking_temperature`]); the logQ term log π_j is 0 for a full softmax (docs/method.md, "The ranking
        objective").

        Args:
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            table (`torch.Tensor` of shape `[num_candidates, latent_dim]`): the candidates' item-table rows e_j.
            labels (`torch.LongTensor` of shape `[batch]`): each row's positive, as an index into `table`.
            log_inclusion (`torch.Tensor` of shape `[num_candidates]` or `float`): log π_j of a sampled softmax.
            query (`Callable`, *optional*): q, maps x̂₀ `[batch, latent_dim]` into the table's space (the recommender's
                `retrieval_query`); `None` is the identity.
            exclude (`torch.BoolTensor` of shape `[batch, num_candidates]`, *optional*): candidates left out of each
                row's softmax (their logits at −∞), e.g. the user's history, as the evaluation masks it; never a label.

        Returns:
            `torch.Tensor` of shape `()`.
        """
        from ..retrieval import latent_scores

        x0 = self.x0_estimate(condition)  # [B, d_z]
        x0 = x0 if query is None else query(x0)
        logits = latent_scores(x0, table) / self.ranking_temperature - log_inclusion  # [B, C]
        if exclude is not None:
            logits = logits.masked_fill(exclude.to(logits.device), float("-inf"))
        return F.cross_entropy(logits, labels.to(logits.device))

    # ------------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def read_out(
        self,
        condition: torch.Tensor,
        readout: str | None = None,
        scheduler: SchedulerMixin | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_samples: int = 8,
        progress_bar: Callable[[Iterable], Iterable] | None = None,
    ) -> torch.Tensor:
        """The preference latent of each condition: the one read-out switch of the library (the pipeline, the
        trainer's validation and the main job all come here; docs/method.md §5). `None` takes the config's value
        (`readout`, `num_inference_steps`, `guidance_scale`), so every entry point has the same defaults.

        Args:
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            readout (`str`, *optional*): one of [`READOUTS`]: `"x0"` (the one-step x₀ estimate, deterministic, no
                scheduler), `"sample"` (one diffusion sample, the paper's) or `"mean"` (the mean of `num_samples`).
            scheduler: a diffusers scheduler for the sampled read-outs (default: DDIM on the training schedule).
            num_inference_steps (`int`, *optional*): denoising steps of the sampled read-outs.
            guidance_scale (`float`, *optional*): classifier-free guidance s (1 = plain conditioning).
            generator (`torch.Generator`, *optional*): the noise of the sampled read-outs.
            num_samples (`int`): samples averaged by `"mean"`.
            progress_bar: wraps the timesteps (the pipeline passes its own).

        Returns:
            `torch.Tensor` of shape `[batch, latent_dim]`.
        """
        readout, num_inference_steps, guidance_scale = self.read_out_settings(
            readout, num_inference_steps, guidance_scale
        )
        if readout == "x0":
            return self.x0_estimate(condition, guidance_scale)
        if scheduler is None:
            from diffusers import DDIMScheduler

            scheduler = DDIMScheduler.from_config(self.noise_scheduler.config, clip_sample=False)
        repeats = num_samples if readout == "mean" else 1
        samples = self.sample(
            condition.repeat_interleave(repeats, 0), scheduler, num_inference_steps, guidance_scale, generator,
            progress_bar,
        )  # fmt: skip
        return samples.view(condition.shape[0], repeats, -1).mean(1) if repeats > 1 else samples

    def read_out_settings(
        self, readout: str | None = None, num_inference_steps: int | None = None, guidance_scale: float | None = None
    ) -> tuple[str, int, float]:
        """`(readout, num_inference_steps, guidance_scale)` with each `None` replaced by the config's, checked."""
        config = self.config
        readout = config.readout if readout is None else readout
        steps = config.num_inference_steps if num_inference_steps is None else num_inference_steps
        scale = config.guidance_scale if guidance_scale is None else guidance_scale
        if readout not in READOUTS:
            raise InputError(f"readout must be one of {READOUTS}, got {readout!r}")
        if not isinstance(scale, numbers.Real) or isinstance(scale, bool) or not 0 <= scale < float("inf"):
            raise InputError(f"guidance_scale must be a finite number ≥ 0, got {scale!r}")
        if not isinstance(steps, numbers.Integral) or isinstance(steps, bool) or steps < 1:
            raise InputError(f"num_inference_steps must be a positive integer, got {steps!r}")
        check_guidance(scale, config.condition_dropout)
        return readout, int(steps), float(scale)

    def x0_estimate(self, condition: torch.Tensor, guidance_scale: float = 1.0) -> torch.Tensor:
        """The denoiser's x₀ estimate from pure noise at the last timestep with the noise set to its mean (0): a
        deterministic one-step read-out close to the posterior mean, with gradients (the ranking loss trains it).

        Args:
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            guidance_scale (`float`): classifier-free guidance s.

        Returns:
            `torch.Tensor` of shape `[batch, latent_dim]`.
        """
        check_guidance(guidance_scale, self.config.condition_dropout)
        scheduler = self.noise_scheduler
        t_last = scheduler.config.num_train_timesteps - 1
        x_t = torch.zeros(condition.shape[0], self.config.latent_dim, device=condition.device, dtype=condition.dtype)
        t = torch.tensor(t_last, device=condition.device)  # one timestep for the whole batch
        pred = self.guided_prediction(x_t, t, condition, guidance_scale)
        alpha_bar = scheduler.alphas_cumprod[t_last].to(condition.device)
        if self.config.prediction_type == "sample":
            return pred
        if self.config.prediction_type == "epsilon":
            return (x_t - math.sqrt(1 - alpha_bar) * pred) / math.sqrt(alpha_bar)
        return math.sqrt(alpha_bar) * x_t - math.sqrt(1 - alpha_bar) * pred  # from v

    def guided_prediction(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        condition: torch.Tensor,
        guidance_scale: float,
        modulations: tuple[torch.Tensor, torch.Tensor | None] | None = None,
    ) -> torch.Tensor:
        """pred_uncond + s·(pred_cond − pred_uncond) (classifier-free guidance; s = 1 is plain conditioning).

        `t` is `[batch]` or a scalar; with a scalar (every sampling loop) the unconditional half runs with the one
        null condition broadcast, so its time embedding and adaLN modulations are computed once, not per row.
        `modulations`: this step's `(conditional [batch, D], unconditional [1, D] or None)` rows of
        [`sampling_modulations`], which then replace the per-step embedding and modulation passes.
        """

        def predict(half: int) -> torch.Tensor:  # 0: conditional, 1: unconditional
            if modulations is not None:
                return self.denoiser(x_t, None, None, modulation=modulations[half]).sample
            c = condition if half == 0 else self.null_condition.to(condition.dtype)[None]
            return self.denoiser(x_t, t, c).sample

        cond = predict(0)
        if guidance_scale == 1.0:
            return cond
        uncond = predict(1)
        return uncond + guidance_scale * (cond - uncond)

    @torch.no_grad()
    def sample(
        self,
        condition: torch.Tensor,
        scheduler: SchedulerMixin,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | list[torch.Generator] | None = None,
        progress_bar: Callable[[Iterable], Iterable] | None = None,
    ) -> torch.Tensor:
        """Sample x̂ `[batch, latent_dim]` with any diffusers scheduler and classifier-free guidance.

        Written against the generic scheduler contract (`set_timesteps`, `init_noise_sigma`, `scale_model_input`,
        `step`); the noise comes from `randn_tensor` with `generator`; `progress_bar` wraps the timesteps (the
        pipeline passes its own).
        """
        from diffusers.utils.torch_utils import randn_tensor

        check_guidance(guidance_scale, self.config.condition_dropout)
        # 1. Start from noise, scaled as the scheduler expects.
        shape = (condition.shape[0], self.config.latent_dim)
        latents = randn_tensor(shape, generator=generator, device=condition.device, dtype=condition.dtype)
        scheduler.set_timesteps(num_inference_steps, device=condition.device)
        latents = latents * scheduler.init_noise_sigma
        # Stochastic schedulers (DDPM, Euler-ancestral …) take the generator in step(); others do not accept it.
        step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        # 2. The adaLN modulations of every step at once (they depend on t and c, not on x_t), when they fit.
        plan = self.sampling_modulations(scheduler.timesteps, condition, guidance_scale)
        # 3. Denoise: pred = pred_uncond + s·(pred_cond − pred_uncond), then one scheduler step.
        timesteps = scheduler.timesteps if progress_bar is None else progress_bar(scheduler.timesteps)
        for i, t in enumerate(timesteps):
            model_input = scheduler.scale_model_input(latents, t)
            pred = self.guided_prediction(model_input, t, condition, guidance_scale, None if plan is None else plan[i])
            latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
        return latents

    @torch.no_grad()
    def sampling_modulations(
        self,
        timesteps: torch.Tensor,
        condition: torch.Tensor,
        guidance_scale: float,
        max_bytes: int = 64 * 2**20,
    ) -> list[tuple[torch.Tensor, torch.Tensor | None]] | None:
        """The denoiser's adaLN modulations for every step of a sampling loop, in two batched passes.

        They depend only on (t, c), so instead of two small passes per step (conditional, unconditional) the
        loop computes them once for all `S` timesteps: `S·batch` conditional rows and `S` unconditional ones.

        Args:
            timesteps (`torch.Tensor` of shape `[S]`): the scheduler's timesteps, in order.
            condition (`torch.Tensor` of shape `[batch, condition_dim]`): c.
            guidance_scale (`float`): s; at 1 the unconditional rows are not needed (`None`).
            max_bytes (`int`): above this size for the `[S, batch, D]` block, return `None` (compute per step).

        Returns:
            One `(conditional [batch, D], unconditional [1, D] or None)` pair per timestep, or `None`.
        """
        denoiser, steps, batch = self.denoiser, timesteps.shape[0], condition.shape[0]
        if steps * batch * denoiser.modulation_dim * condition.element_size() > max_bytes:
            return None
        timesteps = timesteps.to(condition.device)
        t_emb = denoiser.embed_timesteps(timesteps, condition.dtype)  # [S, H]
        projected = denoiser.embed_conditions(condition)  # [B, H], once for all steps
        cond = denoiser.modulate((t_emb[:, None] + projected[None]).flatten(0, 1)).view(steps, batch, -1)
        if guidance_scale == 1.0:
            return [(cond[i], None) for i in range(steps)]
        null = denoiser.embed_conditions(self.null_condition.to(condition.dtype)[None])  # [1, H]
        uncond = denoiser.modulate(t_emb + null)  # [S, D]
        return [(cond[i], uncond[i : i + 1]) for i in range(steps)]
