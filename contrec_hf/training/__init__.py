"""Trainers: stage 1 (the σ-VAE item tokenizer)."""

from .tokenizer import TokenizerTrainingArguments, TokenizerTrainingResult, split_items, train_tokenizer

__all__ = ["TokenizerTrainingArguments", "TokenizerTrainingResult", "split_items", "train_tokenizer"]
