"""Configuration of ContRecForRecommendation (ContRec, arXiv 2504.12007; docs/method.md §3–4)."""

import dataclasses
from typing import Any, ClassVar, Literal

from huggingface_hub.dataclasses import strict
from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from ...errors import ConfigError
from ...utils import check_number
from ..config_utils import raise_config_errors, reject_unknown_kwargs
from ..diffusion_head import (
    CONDITION_DROPOUT_MODES,
    MIN_RANKING_TEMPERATURE,
    NOISE_SCHEDULES,
    READOUTS,
    check_guidance,
)
from ..tokenizer import ContRecTokenizerConfig

__all__ = ["ITEM_TABLES", "OPTION_FIELDS", "PREDICTION_TYPES", "ContRecConfig", "option_defaults"]

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")
ITEM_TABLES = ("latent", "tokens", "residual", "tied")

# A small Llama that trains in minutes on a CPU: the default backbone of the main job and of the tests.
TINY_LLAMA = {
    "vocab_size": 4096,
    "hidden_size": 128,
    "intermediate_size": 344,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
    "tie_word_embeddings": True,
}


@raise_config_errors
@strict
class ContRecConfig(PreTrainedConfig):
    r"""Configuration of [`ContRecForRecommendation`]: any causal LM (`text_config`) plus the σ-VAE item
    tokenizer (`item_tokenizer_config`), the projector from tokens to the LM, and the Dispersive Diffusion head.

    Args:
        text_config (`dict` or `PreTrainedConfig`, *optional*): the causal LM's config, resolved through
            `AutoConfig` (a dict needs `model_type`). Defaults to a tiny Llama.
        item_tokenizer_config (`dict` or [`ContRecTokenizerConfig`], *optional*): the item tokenizer's config.
        user_tokenizer_config (`dict` or [`ContRecTokenizerConfig`], *optional*): a σ-VAE over user features; when
            set, the prompt carries the user's K continuous tokens after the instruction (`<user_token>`
            placeholders, id `user_token_id`). Off (`None`) by default.
        item_start_token_id / item_end_token_id / item_token_id / pref_token_id (`int`, *optional*): ids of
            `<item>`, `</item>`, the continuous-token placeholder (repeated K times per item) and `<pref>`.
            Set by [`ContRecForRecommendation.add_special_tokens`] (or by you).
        max_history (`int`, defaults to 20): L, the number of most recent history items in a prompt.
        max_title_length (`int`, defaults to 50): characters of each title kept in a prompt.
        projector_hidden_size (`int`, defaults to 256): hidden width of the d_z → LM-hidden projector.
        condition_dim (`int`, defaults to 256): size of the condition c = proj(h) fed to the denoiser.
        denoiser_hidden_size (`int`, defaults to 256): width of the denoiser's residual blocks.
        denoiser_num_blocks (`int`, defaults to 3): number of the denoiser's residual blocks.
        num_train_timesteps (`int`, defaults to 200): T.
        noise_schedule (`str`, defaults to `"exp"`): the authors' "exp" VP schedule (passed to diffusers as
            `trained_betas`), or a diffusers `beta_schedule`: `"linear"`, `"scaled_linear"`, `"squaredcos_cap_v2"`.
        prediction_type (`str`, defaults to `"sample"`): what the denoiser predicts: `"epsilon"`, `"sample"` (x₀,
            as in DreamRec) or `"v_prediction"`.
        condition_dropout (`float`, defaults to 0.1): probability that a training row meets the learned null
            condition of classifier-free guidance; 0 never trains it, so `guidance_scale` must then be 1.
        condition_dropout_mode (`str`, defaults to `"replace"`): how: `"replace"` swaps the row's c for the null
            (Ho & Salimans, 2022); `"append"` trains the row once more under the null with its own noise and
            timestep, so every row still trains its own c (the null rows cost only denoiser passes).
        lm_loss_weight (`float`, defaults to 0.5): λ_lm.
        dispersive_loss_weight (`float`, defaults to 0.5): λ_disp.
        flip_dispersive_sign (`bool`, defaults to `False`): ablation: minimise −L_disp, the sign of the authors'
            released code, which pulls the denoiser's representations together instead of spreading them.
        dispersive_temperature (`float`, defaults to 1.0): τ of the Dispersive Loss.
        detach_condition (`bool`, defaults to `False`): stop diffusion gradients from reaching the LM.
        fast_path_probability (`float`, defaults to 0.8): fraction of training samples whose response is
            dropped, `<pref>` following the prompt directly, so the fast path (no text generation) is trained. A
            response holds the target's own title before `<pref>`, so the rows that keep it teach the condition to
            read the answer; 0.8 instead of 0.5 lifted validation NDCG@10 on ML-100K by 38% on the full path and 2%
            on the fast path (docs/benchmarks.md, "Lever: `fast_path_probability=0.8`").
        diffusion_batch_multiplier (`int`, defaults to 1): noise draws per condition in each training step (MAR's
            trick, 4 there: the LM runs once, the head several times). On ML-100K 4 draws cost a fifth of a step on
            the CPU and did not gain on validation (docs/benchmarks.md, "Lever: `diffusion_batch_multiplier=1`").
        history_diffusion_weight (`float`, defaults to 1.0): weight of an extra diffusion loss at every history
            item: the hidden state at each `</item>` is a condition for the *next* item's latent (the last one's
            for the target), so one prompt of L items trains the head L + 1 times, as SASRec trains every
            position. 0 is the paper's single `<pref>` target. Not in the paper: on ML-100K it lifted validation
            NDCG@10 from 0.030 to 0.083 (docs/benchmarks.md).
        regression_head (`bool`, defaults to `False`): ablation of the diffusion head: train the denoiser at one
            deterministic input (x_t = 0, t = T − 1) to regress x₀ with the MSE, i.e. a regression head with the
            same network and target; the x₀ read-out then returns its output. Needs `prediction_type="sample"`.

        ranking_loss_weight (`float`, defaults to 1.0): λ_rank, weight of a softmax over the whole catalog on the
            head's x₀ read-out (the one the pipeline ranks with): L_rank = −log softmax_j(cos(x̂₀, e_j)/τ)[target],
            e_j item j's row of the item table, at `<pref>` and (with `history_diffusion_weight` > 0) at every
            `</item>`. Not in the paper: the strongest diffusion and LLM recommenders rank with such a softmax
            (DiffuRec, HLLM, E4SRec; docs/method.md); on ML-100K it is the largest lever measured
            (docs/benchmarks.md). 0 is the paper's MSE-only head. Needs the catalog's features and the target ids
            in `forward` (`ContRecCollator` batches carry both).
        ranking_temperature (`float`, defaults to 0.07): τ of the ranking softmax (HLLM's initial value).
        ranking_temperature_learnable (`bool`, defaults to `False`): learn τ with the model (HLLM, CLIP): the head
            holds log(1/τ), starts at `ranking_temperature` and keeps τ ≥ `MIN_RANKING_TEMPERATURE` = 0.01 (CLIP's
            cap of 100 on 1/τ). τ scales only the training loss: cosine scores rank the same at any τ.
        ranking_negatives (`int`, defaults to 0): 0 ranks against the whole catalog (a full softmax); n > 0 ranks
            against the batch's targets and n uniformly drawn items, logQ-corrected (a sampled softmax for catalogs
            too large for one row of logits per target; n ≥ the catalog size is the full softmax again).
        ranking_mask_history (`bool`, defaults to `True`): leave out of the ranking softmax, for each target, every
            item its user interacted with before it (the target itself stays in), as the evaluation masks the history
            before ranking (`contrec_hf.retrieval.mask_history`). Without it the loss pushes down the history items,
            whose frozen latents lie near the items the user is likely to pick next. Needs `history_ids` in
            `forward` (`ContRecCollator` training batches carry them); no effect without a ranking loss
            (`ranking_loss_weight=0`, the paper's recipe). Measured on ML-100K: docs/benchmarks.md, "Lever:
            `ranking_mask_history=True`".
        preference_loss_weight (`float`, defaults to 0.0): λ_pref, weight of PreferDiff's preference term (Liu et al.,
            ICLR 2025, Eq. 8 with one in-batch negative): L_pref = −log σ(−γ (e⁺ − e⁻)), e⁺ the denoising error of
            the target and e⁻ that of another row's target noised at the same timestep under the same condition,
            added at every diffusion target. 0 (off) is the paper's ContRec; PreferDiff uses λ 0.4–0.6.
        preference_gamma (`float`, defaults to 5.0): γ of that term (PreferDiff's).
        item_table (`str`, defaults to `"latent"`): the item table e that retrieval (and the ranking loss) scores
            against. `"latent"`: the frozen σ-VAE latent, the mean of the K μ's (the paper's). `"tokens"`: that latent
            plus a learned MLP of the item's K tokens (zero-initialised, so training starts from the paper's table;
            every item, cold ones too, is scored from its content alone). Trained only through the ranking loss;
            diffusion targets stay the frozen latents. `"residual"`: the `"tokens"` table plus a learned per-item
            residual row, kept at zero for items never seen in training ([`mark_trained_items`]), so cold items still
            score from their content alone. `"tied"`: the table is tied to the item input, e_j = P(z_j), the
            projector P that turns the item's tokens into LM inputs applied to its frozen latent z_j, and retrieval
            scores P(x̂) against it (the read-out x̂ is still generated in the latent space); the ranking loss trains P
            as an input and an output map at once, as the tied tables of SASRec and of the quality ladder's rung 3
            (docs/benchmarks.md), and cold items score from their content. A saved pipeline's catalog stores the table
            it scores with.
        num_catalog_items (`int`, *optional*): N, the catalog size; needed by `item_table="residual"` (one row per
            item, in catalog order; `prepare_recommender` sets it from the dataset).
        readout (`str`, defaults to `"x0"`): the read-out the model is trained for, the default of every entry point
            (the pipeline, the trainer's validation, the main job, `contrec-hf recommend`): `"x0"`, the head's
            one-step x₀ estimate (what the ranking loss trains, at guidance 1), `"sample"` (one diffusion sample, the
            paper's, at guidance 3 with 200 DDPM steps) or `"mean"` (the mean of several samples).
        guidance_scale (`float`, defaults to 1.0): classifier-free guidance s of that read-out.
        num_inference_steps (`int`, defaults to 50): denoising steps of a sampled read-out.

    Example:
        ```python
        >>> from transformers import Qwen2Config
        >>> from contrec_hf import ContRecConfig
        >>> config = ContRecConfig(text_config=Qwen2Config(vocab_size=99, hidden_size=32, intermediate_size=37,
        ...     num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2))
        >>> config.num_item_tokens, config.prediction_type
        (2, 'sample')
        ```
    """

    model_type = "contrec"
    sub_configs_defaults: ClassVar[dict[str, SubConfigSpec]] = {
        "text_config": SubConfigSpec(config_class=AutoConfig, model_type="llama", init_kwargs=TINY_LLAMA),
        "item_tokenizer_config": SubConfigSpec(config_class=ContRecTokenizerConfig),
        "user_tokenizer_config": SubConfigSpec(config_class=ContRecTokenizerConfig, optional=True),
    }

    text_config: dict | PreTrainedConfig | None = None
    item_tokenizer_config: dict | PreTrainedConfig | None = None
    user_tokenizer_config: dict | PreTrainedConfig | None = None
    item_start_token_id: int | None = None
    item_end_token_id: int | None = None
    item_token_id: int | None = None
    pref_token_id: int | None = None
    user_token_id: int | None = None
    max_history: int = 20
    max_title_length: int = 50
    projector_hidden_size: int = 256
    condition_dim: int = 256
    denoiser_hidden_size: int = 256
    denoiser_num_blocks: int = 3
    num_train_timesteps: int = 200
    noise_schedule: Literal[NOISE_SCHEDULES] = "exp"
    prediction_type: Literal[PREDICTION_TYPES] = "sample"
    condition_dropout: float = 0.1
    condition_dropout_mode: Literal[CONDITION_DROPOUT_MODES] = "replace"
    lm_loss_weight: float = 0.5
    dispersive_loss_weight: float = 0.5
    dispersive_temperature: float = 1.0
    detach_condition: bool = False
    fast_path_probability: float = 0.8
    diffusion_batch_multiplier: int = 1
    history_diffusion_weight: float = 1.0
    regression_head: bool = False
    flip_dispersive_sign: bool = False
    ranking_loss_weight: float = 1.0
    ranking_temperature: float = 0.07
    ranking_temperature_learnable: bool = False
    ranking_negatives: int = 0
    ranking_mask_history: bool = True
    preference_loss_weight: float = 0.0
    preference_gamma: float = 5.0
    item_table: Literal[ITEM_TABLES] = "latent"
    num_catalog_items: int | None = None
    readout: Literal[READOUTS] = "x0"
    guidance_scale: float = 1.0
    num_inference_steps: int = 50
    tie_word_embeddings: bool = False

    def __post_init__(self, **kwargs):
        reject_unknown_kwargs(self, kwargs)
        super().__post_init__(**kwargs)
        self._check_causal_lm()
        # The choices (Literal fields) and the types are checked by @strict; the ranges here.
        for name in ("max_history", "max_title_length", "projector_hidden_size", "condition_dim",
                     "denoiser_hidden_size", "denoiser_num_blocks", "num_train_timesteps",
                     "diffusion_batch_multiplier", "num_inference_steps"):  # fmt: skip
            check_number(name, getattr(self, name), 1, integer=True)
        for name in ("condition_dropout", "fast_path_probability"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        for name in ("lm_loss_weight", "dispersive_loss_weight", "dispersive_temperature", "history_diffusion_weight",
                     "ranking_loss_weight", "preference_loss_weight", "guidance_scale"):  # fmt: skip
            check_number(name, getattr(self, name), 0.0)
        check_number("ranking_negatives", self.ranking_negatives, 0, integer=True)  # 0: the full softmax
        check_number("preference_gamma", self.preference_gamma, 0.0, low_open=True)
        check_number("ranking_temperature", self.ranking_temperature, 0.0, low_open=True)
        check_guidance(self.guidance_scale, self.condition_dropout, ConfigError)
        if self.item_table != "latent" and self.ranking_loss_weight == 0:
            raise ConfigError(
                f"item_table={self.item_table!r} is learned through the ranking loss: set ranking_loss_weight > 0"
            )
        if self.item_table == "residual" and (self.num_catalog_items is None or self.num_catalog_items < 1):
            raise ConfigError(
                "item_table='residual' learns one row per item: set num_catalog_items ≥ 1, "
                f"got {self.num_catalog_items}"
            )
        if self.ranking_temperature_learnable and self.ranking_temperature < MIN_RANKING_TEMPERATURE:
            raise ConfigError(
                f"ranking_temperature_learnable keeps τ ≥ {MIN_RANKING_TEMPERATURE}: start it there or above, "
                f"got ranking_temperature={self.ranking_temperature}"
            )
        if self.regression_head and self.prediction_type != "sample":
            raise ConfigError(
                f"regression_head regresses x₀ and needs prediction_type='sample', got {self.prediction_type!r}"
            )

    def _check_causal_lm(self) -> None:
        """Refuse a text_config that is not a decoder-only causal LM (an encoder such as BERT, a seq2seq)."""
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )

        text, kind = self.text_config, self.text_config.model_type
        encoder = kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(text, "is_decoder", False)
        if kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or encoder or text.is_encoder_decoder:
            raise ConfigError(
                f"text_config must describe a decoder-only causal LM (AutoModelForCausalLM), got model_type {kind!r}; "
                "use e.g. llama, qwen2, gpt2 or mistral"
            )

    @property
    def num_item_tokens(self) -> int:
        """K, the continuous tokens per item (the item tokenizer's `num_tokens`)."""
        return self.item_tokenizer_config.num_tokens

    @property
    def num_user_tokens(self) -> int:
        """K of the user tokenizer, 0 when user tokens are off."""
        return 0 if self.user_tokenizer_config is None else self.user_tokenizer_config.num_tokens

    @property
    def latent_dim(self) -> int:
        """d_z, the size of an item latent and of the generated preference latent."""
        return self.item_tokenizer_config.token_dim


# Fields that are not options a user sets: the sub-configs, the special-token ids (set when the tokens are added),
# the catalog size (set from the dataset) and the embedding tie (the backbone's).
_SET_BY_THE_LIBRARY = (
    "text_config", "item_tokenizer_config", "user_tokenizer_config", "item_start_token_id", "item_end_token_id",
    "item_token_id", "pref_token_id", "user_token_id", "num_catalog_items", "tie_word_embeddings",
)  # fmt: skip
_FIELDS = {f.name: f for f in dataclasses.fields(ContRecConfig)}
# ContRecConfig's own option fields, in order (not transformers' base fields): the CLI's stage-2 flags.
OPTION_FIELDS = tuple(
    name for name in vars(ContRecConfig)["__annotations__"] if name in _FIELDS and name not in _SET_BY_THE_LIBRARY
)


def option_defaults() -> dict[str, Any]:
    """The default of every field of [`OPTION_FIELDS`]: what a run trains with unless it sets the field. A main-job
    folder records them, so a folder trained before a default changed is not resumed as today's.

    Returns:
        `dict[str, Any]`: field name → default, JSON-serialisable.

    Example:
        ```python
        >>> from contrec_hf.models.contrec.configuration_contrec import option_defaults
        >>> option_defaults()["ranking_mask_history"], "pref_token_id" in option_defaults()
        (True, False)
        ```
    """
    return {name: _FIELDS[name].default for name in OPTION_FIELDS}
