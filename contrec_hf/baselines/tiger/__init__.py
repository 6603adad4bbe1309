"""TIGER (Rajput et al., NeurIPS 2023): discrete semantic IDs, a T5 generator, constrained beam search."""

from .modeling_tiger import TIGER, TIGERConfig
from .semantic_ids import SemanticIdConstraint, SemanticIdVocabulary, unique_semantic_ids
from .training_tiger import TIGERTrainer, TIGERTrainingArguments, semantic_id_diagnostics

__all__ = [
    "TIGER",
    "SemanticIdConstraint",
    "SemanticIdVocabulary",
    "TIGERConfig",
    "TIGERTrainer",
    "TIGERTrainingArguments",
    "semantic_id_diagnostics",
    "unique_semantic_ids",
]
