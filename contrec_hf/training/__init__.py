"""Trainers: stage 1 (the σ-VAE item tokenizer)."""

from .tokenizer import (
    TokenizerTrainingArguments,
    TokenizerTrainingResult,
    run_tokenizer_stage,
    split_items,
    train_tokenizer,
)

__all__ = [
    "TokenizerTrainingArguments",
    "TokenizerTrainingResult",
    "run_tokenizer_stage",
    "split_items",
    "train_tokenizer",
]
