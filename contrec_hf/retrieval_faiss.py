"""Approximate top-K over large catalogs with faiss (optional extra: `pip install contrec-hf[faiss]`).

Same interface as :func:`contrec_hf.retrieval.top_k` on latents: ``index.search(latents, k, histories)`` returns
``(indices, scores)`` with every history item excluded. Cosine similarity is served as inner product over
L2-normalised vectors; ``"l2"`` as negative squared distance. History items are excluded by asking faiss for
``k + longest history`` neighbours and dropping them, so the answer is exact for ``kind="flat"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["FaissIndex"]

KINDS = ("flat", "hnsw", "ivf")


class FaissIndex:
    """A faiss index over item latents.

    Args:
        item_latents (`torch.Tensor` of shape `[num_items, d]`).
        kind (`str`): ``"flat"`` (exact), ``"hnsw"`` (graph, no training) or ``"ivf"`` (inverted lists, trained).
        metric (`str`): ``"cosine"``, ``"dot"`` or ``"l2"``.
        hnsw_m (`int`) / ef_search (`int`): HNSW graph degree and search breadth.
        nlist (`int`) / nprobe (`int`): IVF lists and lists probed per query.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.retrieval_faiss import FaissIndex
        >>> index = FaissIndex(torch.randn(1000, 16), kind="hnsw")
        >>> ids, scores = index.search(torch.randn(2, 16), k=10, histories=[[1, 2], []])
        >>> ids.shape
        torch.Size([2, 10])
        ```
    """

    def __init__(
        self,
        item_latents: torch.Tensor,
        kind: str = "flat",
        metric: str = "cosine",
        *,
        hnsw_m: int = 32,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int = 16,
    ) -> None:
        try:
            import faiss
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("FaissIndex needs faiss: pip install 'contrec-hf[faiss]'") from err
        if kind not in KINDS:
            raise ValueError(f"unknown faiss index kind {kind!r}; choose one of {KINDS}")
        if metric not in ("cosine", "dot", "l2"):
            raise ValueError(f"unknown metric {metric!r}; choose 'cosine', 'dot' or 'l2'")
        self.metric, self.kind = metric, kind
        vectors = self._prepare(item_latents)
        n, d = vectors.shape
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlat(d, faiss_metric)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss_metric)
            index.hnsw.efSearch = ef_search
        else:
            nlist = nlist or max(1, int(4 * np.sqrt(n)))
            index = faiss.IndexIVFFlat(faiss.IndexFlat(d, faiss_metric), d, nlist, faiss_metric)
            index.train(vectors)
            index.nprobe = nprobe
        index.add(vectors)
        self.index, self.num_items = index, n

    def _prepare(self, latents: torch.Tensor) -> np.ndarray:
        x = latents.detach().float().cpu()
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=-1)
        return np.ascontiguousarray(x.numpy())

    def search(
        self, latents: torch.Tensor, k: int, histories: Sequence[Sequence[int]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items per query `[batch, d]`, history items excluded: ``(indices, scores)`` `[batch, k]`."""
        longest = max((len(set(h)) for h in histories), default=0) if histories is not None else 0
        if not 1 <= k <= self.num_items - longest:
            raise ValueError(f"k must be between 1 and {self.num_items - longest} (catalog minus history), got {k}")
        scores, ids = self.index.search(self._prepare(latents), min(self.num_items, k + longest))
        if self.metric == "l2":
            scores = -scores  # faiss returns squared distances; higher is better everywhere here
        out_ids = np.full((len(ids), k), -1, dtype=np.int64)
        out_scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
        for row in range(len(ids)):
            seen = set(histories[row]) if histories is not None else set()
            keep = [(i, s) for i, s in zip(ids[row], scores[row]) if i >= 0 and i not in seen][:k]
            for col, (i, s) in enumerate(keep):
                out_ids[row, col], out_scores[row, col] = i, s
        return torch.from_numpy(out_ids), torch.from_numpy(out_scores)
