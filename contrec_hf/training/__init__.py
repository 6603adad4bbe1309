"""Trainers: stage 1 (the σ-VAE item tokenizer) and stage 2 (the recommender)."""

from .assembly import RecommenderOptions, load_pipeline, load_stage1, prepare_recommender, run_recommender_stage
from .devices import MIXED_PRECISIONS, check_mixed_precision, end_processes, resolve_device
from .ema import ParameterAverage
from .recommender import RecommenderTrainer, RecommenderTrainingArguments, unused_parameters
from .tokenizer import (
    TokenizerTrainingArguments,
    TokenizerTrainingResult,
    run_tokenizer_stage,
    split_items,
    train_item_tokenizer,
)

__all__ = [
    "MIXED_PRECISIONS",
    "ParameterAverage",
    "RecommenderOptions",
    "RecommenderTrainer",
    "RecommenderTrainingArguments",
    "TokenizerTrainingArguments",
    "TokenizerTrainingResult",
    "check_mixed_precision",
    "end_processes",
    "load_pipeline",
    "load_stage1",
    "prepare_recommender",
    "resolve_device",
    "run_recommender_stage",
    "run_tokenizer_stage",
    "split_items",
    "train_item_tokenizer",
    "unused_parameters",
]
