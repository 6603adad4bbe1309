"""Models: the σ-VAE item tokenizer (and, later, the recommender and its denoiser), registered with Auto*."""

from transformers import AutoConfig, AutoModel

from .tokenizer import (
    ContRecTokenizer,
    ContRecTokenizerConfig,
    ContRecTokenizerOutput,
    collapse_diagnostics,
    effective_rank,
)

AutoConfig.register(ContRecTokenizerConfig.model_type, ContRecTokenizerConfig, exist_ok=True)
AutoModel.register(ContRecTokenizerConfig, ContRecTokenizer, exist_ok=True)

__all__ = [
    "ContRecTokenizer",
    "ContRecTokenizerConfig",
    "ContRecTokenizerOutput",
    "collapse_diagnostics",
    "effective_rank",
]
