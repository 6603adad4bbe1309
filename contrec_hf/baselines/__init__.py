"""Baselines (Pop, SASRec-CE, TIGER) evaluated in the same harness and on the same splits as ContRec."""

from .popularity import PopularityRecommender
from .runner import BASELINES, run_baseline
from .sasrec import SASRec, SASRecConfig, SASRecTrainer, SASRecTrainingArguments
from .tiger import TIGER, TIGERConfig, TIGERTrainer, TIGERTrainingArguments

__all__ = [
    "BASELINES",
    "TIGER",
    "PopularityRecommender",
    "SASRec",
    "SASRecConfig",
    "SASRecTrainer",
    "SASRecTrainingArguments",
    "TIGERConfig",
    "TIGERTrainer",
    "TIGERTrainingArguments",
    "run_baseline",
]
