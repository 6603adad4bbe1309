"""Item (and user) features for the ContRec tokenizer: collaborative (LightGCN / MF-BPR), text, hybrid."""

from __future__ import annotations

from .collaborative import (
    CollaborativeConfig,
    CollaborativeModel,
    CollaborativeResult,
    normalized_adjacency,
    train_collaborative,
    training_pairs,
)
from .store import FEATURE_KINDS, ItemFeatures, build_item_features, dataset_fingerprint
from .text import DEFAULT_TEXT_ENCODER, default_text_encoder_path, encode_texts, item_texts

__all__ = [
    "DEFAULT_TEXT_ENCODER",
    "FEATURE_KINDS",
    "CollaborativeConfig",
    "CollaborativeModel",
    "CollaborativeResult",
    "ItemFeatures",
    "build_item_features",
    "dataset_fingerprint",
    "default_text_encoder_path",
    "encode_texts",
    "item_texts",
    "normalized_adjacency",
    "train_collaborative",
    "training_pairs",
]
