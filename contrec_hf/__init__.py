"""contrec_hf: ContRec, diffusion generative recommendation with continuous tokens, on Hugging Face.

Paper: Qu et al., "Diffusion Generative Recommendation with Continuous Tokens" (arXiv 2504.12007).
"""

from __future__ import annotations

from .baselines import (
    TIGER,
    PopularityRecommender,
    SASRec,
    SASRecConfig,
    SASRecTrainer,
    SASRecTrainingArguments,
    TIGERConfig,
    TIGERTrainer,
    TIGERTrainingArguments,
)
from .data import SequentialDataset, load_interactions, load_sequential_dataset
from .errors import ContRecError, DataError, DatasetNotFoundError, EvaluationError
from .evaluation import compute_metrics, evaluate_scorer
from .models import (
    ContRecConfig,
    ContRecDenoiser,
    ContRecForRecommendation,
    ContRecOutput,
    ContRecTokenizer,
    ContRecTokenizerConfig,
    ContRecTokenizerOutput,
)
from .pipelines import ContRecCatalog, ContRecDiffusionPipeline, ContRecPipelineOutput

__version__ = "0.1.0.dev0"

__all__ = [
    "TIGER",
    "ContRecCatalog",
    "ContRecConfig",
    "ContRecDenoiser",
    "ContRecDiffusionPipeline",
    "ContRecError",
    "ContRecForRecommendation",
    "ContRecOutput",
    "ContRecPipelineOutput",
    "ContRecTokenizer",
    "ContRecTokenizerConfig",
    "ContRecTokenizerOutput",
    "DataError",
    "DatasetNotFoundError",
    "EvaluationError",
    "PopularityRecommender",
    "SASRec",
    "SASRecConfig",
    "SASRecTrainer",
    "SASRecTrainingArguments",
    "SequentialDataset",
    "TIGERConfig",
    "TIGERTrainer",
    "TIGERTrainingArguments",
    "__version__",
    "compute_metrics",
    "evaluate_scorer",
    "load_interactions",
    "load_sequential_dataset",
]
