"""Models: the σ-VAE item tokenizer, the recommender, its diffusion head and denoiser (registered with the Auto
classes)."""

from transformers import AutoConfig, AutoModel

from .contrec import ContRecConfig, ContRecForRecommendation, ContRecOutput, ContRecPreTrainedModel
from .denoiser import ContRecDenoiser, ContRecDenoiserOutput, dispersive_loss
from .diffusion_head import READOUTS, ContRecDiffusionHead, DiffusionHeadOutput
from .tokenizer import (
    ContRecTokenizer,
    ContRecTokenizerConfig,
    ContRecTokenizerOutput,
    collapse_diagnostics,
    effective_rank,
)

AutoConfig.register(ContRecTokenizerConfig.model_type, ContRecTokenizerConfig, exist_ok=True)
AutoModel.register(ContRecTokenizerConfig, ContRecTokenizer, exist_ok=True)
AutoConfig.register(ContRecConfig.model_type, ContRecConfig, exist_ok=True)
AutoModel.register(ContRecConfig, ContRecForRecommendation, exist_ok=True)

__all__ = [
    "READOUTS",
    "ContRecConfig",
    "ContRecDenoiser",
    "ContRecDenoiserOutput",
    "ContRecDiffusionHead",
    "ContRecForRecommendation",
    "ContRecOutput",
    "ContRecPreTrainedModel",
    "ContRecTokenizer",
    "ContRecTokenizerConfig",
    "ContRecTokenizerOutput",
    "DiffusionHeadOutput",
    "collapse_diagnostics",
    "dispersive_loss",
    "effective_rank",
]
