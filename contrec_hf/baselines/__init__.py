"""Baselines evaluated in the same harness and on the same splits as ContRec."""

from .popularity import PopularityRecommender
from .runner import BASELINES, run_baseline
from .sasrec import SASRec, SASRecConfig, SASRecTrainer, SASRecTrainingArguments

__all__ = [
    "BASELINES",
    "PopularityRecommender",
    "SASRec",
    "SASRecConfig",
    "SASRecTrainer",
    "SASRecTrainingArguments",
    "run_baseline",
]
