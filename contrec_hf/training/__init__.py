"""Trainers: stage 1 (the σ-VAE item tokenizer) and stage 2 (the recommender)."""

from .recommender import RecommenderTrainer, RecommenderTrainingArguments
from .stage2 import load_stage1, prepare_recommender, run_recommender_stage
from .tokenizer import (
    TokenizerTrainingArguments,
    TokenizerTrainingResult,
    run_tokenizer_stage,
    split_items,
    train_tokenizer,
)

__all__ = [
    "RecommenderTrainer",
    "RecommenderTrainingArguments",
    "TokenizerTrainingArguments",
    "TokenizerTrainingResult",
    "load_stage1",
    "prepare_recommender",
    "run_recommender_stage",
    "run_tokenizer_stage",
    "split_items",
    "train_tokenizer",
]
