"""Configuration of the σ-VAE item tokenizer (ContRec, arXiv 2504.12007, §3.1; docs/method.md §2)."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ...errors import ConfigError
from ...utils import check_number
from ..config_utils import raise_config_errors, reject_unknown_kwargs

__all__ = ["ContRecTokenizerConfig"]


@raise_config_errors
@strict
class ContRecTokenizerConfig(PreTrainedConfig):
    r"""Configuration of [`ContRecTokenizer`], the σ-VAE that turns an item (or user) feature vector into
    ``num_tokens`` continuous tokens. Each of the three anti-collapse techniques is a switch.

    Args:
        input_dim (`int`, defaults to 64): size of the feature vectors x (CF, text or hybrid features).
        num_tokens (`int`, defaults to 2): K, the number of continuous tokens per item.
        token_dim (`int`, defaults to 64): d_z, the size of each token.
        encoder_hidden_sizes (`list[int]`, defaults to `[128, 256]`): hidden widths of each encoder MLP.
        decoder_hidden_sizes (`list[int]`, defaults to `[256, 128]`): hidden widths of the decoder MLP.
        dropout (`float`, defaults to 0.1): dropout inside the MLPs.
        normalize_inputs (`bool`, defaults to `True`): standardise features with per-dimension statistics
            fitted on the training items (stored in the checkpoint); reconstruction is measured in that space.
        sigma_sampling (`bool`, defaults to `True`): technique 1, z_k = μ_k + σ·ε with a non-learned
            σ ~ N(0, sigma_std²) drawn per example at every training step (LatentLM's σ-VAE; no KL term).
        sigma_std (`float`, defaults to 0.1): √C_σ.
        feature_masking (`bool`, defaults to `True`): technique 2, zero a random fraction of the input features
            per example during training and add a learned mask offset in their place.
        mask_ratio (`float`, defaults to 0.1): that fraction.
        multi_encoder (`bool`, defaults to `True`): technique 3, K independent encoders; when `False`, one
            shared encoder emits all K tokens at once.
        mu_regularizer_weight (`float`, defaults to 0.0): weight of the optional mean(μ²) regulariser.
        barlow_twins_weight (`float`, defaults to 0.0): weight of the optional Barlow-Twins term between ways.
        barlow_offdiag_weight (`float`, defaults to 0.005): λ_offdiag inside the Barlow-Twins term.
        quantizer (`str`, defaults to `"none"`): `"none"` keeps the tokens continuous (ContRec). `"vq"`, for the
            paper's central ablation, snaps each of the K tokens to the nearest entry of its own codebook (VQ-VAE,
            straight-through estimator), so an item becomes K discrete codes and its tokens are codebook entries.
            `"rq"`, TIGER's semantic IDs (Rajput et al., 2023): one encoder emits one latent, quantised in K levels,
            each level's codebook applied to what the levels before left (residual quantisation); the latent is
            the sum of the K entries. Needs `multi_encoder=False`.
        codebook_size (`int`, defaults to 256): entries per codebook.
        commitment_weight (`float`, defaults to 0.25): β of the VQ-VAE loss ‖sg(z) − e‖² + β‖z − sg(e)‖² (for
            `"rq"`, summed over the levels with each level's residual in place of z).

    Example:
        ```python
        >>> from contrec_hf import ContRecTokenizerConfig
        >>> config = ContRecTokenizerConfig(input_dim=384, num_tokens=2, token_dim=64)
        >>> config.feature_masking
        True
        ```
    """

    model_type = "contrec_tokenizer"

    input_dim: int = 64
    num_tokens: int = 2
    token_dim: int = 64
    encoder_hidden_sizes: list[int] | tuple[int, ...] = (128, 256)
    decoder_hidden_sizes: list[int] | tuple[int, ...] = (256, 128)
    dropout: float = 0.1
    normalize_inputs: bool = True
    sigma_sampling: bool = True
    sigma_std: float = 0.1
    feature_masking: bool = True
    mask_ratio: float = 0.1
    multi_encoder: bool = True
    mu_regularizer_weight: float = 0.0
    barlow_twins_weight: float = 0.0
    barlow_offdiag_weight: float = 0.005
    quantizer: Literal["none", "vq", "rq"] = "none"
    codebook_size: int = 256
    commitment_weight: float = 0.25

    def __post_init__(self, **kwargs):
        reject_unknown_kwargs(self, kwargs)
        super().__post_init__(**kwargs)
        self.encoder_hidden_sizes = [int(s) for s in self.encoder_hidden_sizes]
        self.decoder_hidden_sizes = [int(s) for s in self.decoder_hidden_sizes]
        # The choices (Literal fields) and the types are checked by @strict; the ranges here.
        for name in ("input_dim", "num_tokens", "token_dim", "codebook_size"):
            check_number(name, getattr(self, name), 1, integer=True)
        for name in ("encoder_hidden_sizes", "decoder_hidden_sizes"):
            if any(s < 1 for s in getattr(self, name)):
                raise ConfigError(f"{name} must hold positive widths, got {getattr(self, name)}")
        for name in ("dropout", "mask_ratio"):
            check_number(name, getattr(self, name), 0.0, 1.0, high_open=True)
        for name in ("sigma_std", "mu_regularizer_weight", "barlow_twins_weight", "barlow_offdiag_weight",
                     "commitment_weight"):  # fmt: skip
            check_number(name, getattr(self, name), 0.0)
        if self.quantizer == "rq" and self.multi_encoder:
            raise ConfigError("quantizer='rq' quantises one latent in levels: set multi_encoder=False")
