"""Tiny, seeded ContRec objects shared by the tests (and by the child processes some tests start).

Odd sizes on purpose (hidden 37, condition 29, denoiser 31) so that a mixed-up dimension fails loudly.
"""

from __future__ import annotations

import torch

from contrec_hf.models import ContRecTokenizer, ContRecTokenizerConfig
from contrec_hf.pipelines import build_pipeline
from contrec_hf.training import RecommenderTrainer, RecommenderTrainingArguments, prepare_recommender

OVERRIDES = {"projector_hidden_size": 37, "condition_dim": 29, "denoiser_hidden_size": 31, "max_history": 5}
FEATURE_DIM = 24


def tiny_features(data, seed: int = 1) -> torch.Tensor:
    return torch.randn(data.num_items, FEATURE_DIM, generator=torch.Generator().manual_seed(seed))


def tiny_tokenizer(features: torch.Tensor) -> ContRecTokenizer:
    tokenizer = ContRecTokenizer(
        ContRecTokenizerConfig(input_dim=FEATURE_DIM, token_dim=16, encoder_hidden_sizes=[19])
    )
    tokenizer.fit_normalization(features)
    return tokenizer


def tiny_recommender(data, features: torch.Tensor, seed: int = 0, **overrides):
    """``(model, text_tokenizer)``: a randomly initialised recommender over the tiny default backbone."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer(features)
    return prepare_recommender(data, tokenizer, config_overrides={**OVERRIDES, **overrides})


def tiny_pipeline(data, seed: int = 0, **overrides):
    features = tiny_features(data)
    model, text_tokenizer = tiny_recommender(data, features, seed, **overrides)
    return build_pipeline(model, text_tokenizer, data, features)


def tiny_trainer(data, output_dir, **kwargs) -> RecommenderTrainer:
    """A seeded stage-2 trainer: 6 steps, validation and a checkpoint every 3."""
    features = tiny_features(data)
    model, text_tokenizer = tiny_recommender(data, features)
    defaults = {"batch_size": 8, "max_steps": 6, "eval_steps": 3, "save_steps": 3, "warmup_steps": 2, "patience": 10}
    args = RecommenderTrainingArguments(output_dir=str(output_dir), **{**defaults, **kwargs})
    return RecommenderTrainer(model, text_tokenizer, data, features, args)
