"""Approximate top-K over large catalogs with faiss (optional extra: `pip install contrec-hf[faiss]`).

Same interface as :func:`contrec_hf.retrieval.top_k` on latents: ``index.search(latents, k, histories)`` returns
``(indices, scores)`` with every history item excluded. Cosine similarity is served as inner product over
L2-normalised vectors; ``"l2"`` as negative squared distance (higher is better for every metric, as in
:func:`contrec_hf.retrieval.latent_scores`). History items are excluded by asking faiss for
``k + longest history`` neighbours and dropping them (vectorised over the batch), so the answer is exact for
``kind="flat"``. A row for which an approximate index returns too few neighbours once its history is dropped
is searched again exhaustively (every IVF list, or HNSW's flat storage), so every returned index is a real item.

Speed and recall of each kind on synthetic catalogs of 10⁴–10⁶ items: ``benchmarks/retrieval_scale.py`` and
docs/benchmarks.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain

import numpy as np
import torch

from .errors import InputError
from .retrieval import SIMILARITIES
from .utils import check_number

__all__ = ["INDEX_TYPES", "FaissIndex"]

INDEX_TYPES = ("flat", "hnsw", "ivf")
_DEVICES = ("cpu", "cuda")


def _positive_int(name: str, value, minimum: int = 1) -> int:
    return int(check_number(name, value, minimum, integer=True, error=InputError))


def _as_matrix(name: str, latents, dim: int | None = None) -> torch.Tensor:
    """A finite float32 CPU matrix `[rows, d]` (``d == dim`` when given), or an `InputError` naming the problem."""
    if not isinstance(latents, (torch.Tensor, np.ndarray)):
        raise InputError(f"{name} must be a torch.Tensor or numpy array of shape [n, d], got {type(latents).__name__}")
    x = torch.as_tensor(latents).detach()
    if x.ndim != 2:
        raise InputError(f"{name} must have shape [n, d], got {tuple(x.shape)}")
    if x.is_complex() or x.dtype == torch.bool:
        raise InputError(f"{name} must hold real numbers, got dtype {x.dtype}")
    if dim is not None and x.shape[1] != dim:
        raise InputError(f"{name} have dimension {x.shape[1]} but the index holds item latents of dimension {dim}")
    x = x.float().cpu()
    if not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        raise InputError(f"{name} contain NaN or inf values ({bad} of {x.shape[0]} rows)")
    return x


class FaissIndex:
    """A faiss index over item latents, searched with each user's history excluded.

    Args:
        item_latents (`torch.Tensor` of shape `[num_items, d]`): the catalog's latents (finite values).
        kind (`str`): ``"flat"`` (exact brute force), ``"hnsw"`` (graph, no training) or ``"ivf"`` (inverted
            lists over a k-means coarse quantizer, trained on the catalog; exact within the probed lists).
        metric (`str`): ``"cosine"``, ``"dot"`` or ``"l2"``.
        hnsw_m (`int`): HNSW graph degree M (memory and build time grow with it; recall too).
        ef_construction (`int`): HNSW candidate list size while building (faiss' default, 40). Larger builds a
            better graph, slower: on the clustered 10⁵-item catalog of ``benchmarks/retrieval_scale.py``, 100
            instead of 40 took recall@10 at ``ef_search=128`` from 0.95 to 0.97 for 1.6× the build time.
        ef_search (`int`): HNSW candidate list size while searching; faiss uses at least the number of
            neighbours fetched (``k`` + longest history).
        nlist (`int`, *optional*): IVF lists; default ``4·√num_items`` (at most ``num_items``).
        nprobe (`int`, *optional*): IVF lists scanned per query; default ``min(16, nlist)``.
        train_size (`int`, *optional*): items sampled (seeded) to train the IVF quantizer; default: faiss' own
            cap of 256 per list. Fewer points train faster (faiss warns below 39 per list).
        seed (`int`): seed of that sample and of faiss' k-means.
        device (`str`): ``"cpu"``, or ``"cuda"`` to move a flat or IVF index to GPU 0 (needs a faiss build with
            GPU support; faiss has no GPU HNSW).

    The search-time breadth can be changed after building with :meth:`set_search_parameters`.

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
        ef_construction: int = 40,
        ef_search: int = 128,
        nlist: int | None = None,
        nprobe: int | None = None,
        train_size: int | None = None,
        seed: int = 0,
        device: str = "cpu",
    ) -> None:
        try:
            import faiss
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("FaissIndex needs faiss: pip install 'contrec-hf[faiss]'") from err
        if kind not in INDEX_TYPES:
            raise InputError(f"unknown faiss index kind {kind!r}; choose one of {INDEX_TYPES}")
        if metric not in SIMILARITIES:
            raise InputError(f"unknown metric {metric!r}; choose one of {SIMILARITIES}")
        if device not in _DEVICES:
            raise InputError(f"unknown device {device!r}; choose one of {_DEVICES}")
        hnsw_m = _positive_int("hnsw_m", hnsw_m, minimum=2)
        ef_construction = _positive_int("ef_construction", ef_construction)
        ef_search = _positive_int("ef_search", ef_search)
        seed = _positive_int("seed", seed, minimum=0)
        if device == "cuda":
            if kind == "hnsw":
                raise InputError("faiss has no GPU HNSW index; use kind='flat' or 'ivf' with device='cuda'")
            if not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
                raise InputError("device='cuda' needs a faiss build with GPU support and a visible GPU")
        self.metric, self.kind, self.device = metric, kind, device
        vectors = self._prepare(_as_matrix("item_latents", item_latents))
        n, d = vectors.shape
        if n == 0 or d == 0:
            raise InputError(f"item_latents must hold at least one item of dimension ≥ 1, got shape {(n, d)}")
        self.num_items, self.dim = n, d
        self.nlist = self.nprobe = None
        self._faiss = faiss
        self._cpu_index = None  # a CPU copy of a GPU index, made on demand for the exhaustive fallback
        faiss_metric = faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexFlat(d, faiss_metric)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, hnsw_m, faiss_metric)
            index.hnsw.efConstruction = ef_construction
            index.hnsw.efSearch = ef_search
        else:
            index, nlist, nprobe = self._ivf_index(vectors, faiss_metric, nlist, nprobe, train_size, seed)
            self.nlist = nlist
        self.hnsw_m = hnsw_m if kind == "hnsw" else None
        self.ef_search = ef_search if kind == "hnsw" else None
        if device == "cuda":  # pragma: no cover - needs a GPU build of faiss
            self._gpu_resources = faiss.StandardGpuResources()
            index = faiss.index_cpu_to_gpu(self._gpu_resources, 0, index)
        index.add(vectors)
        self.index = index
        if kind == "ivf":
            self.set_search_parameters(nprobe=nprobe)
        elif nprobe is not None:
            _positive_int("nprobe", nprobe)

    def _ivf_index(self, vectors: np.ndarray, faiss_metric, nlist, nprobe, train_size, seed: int) -> tuple:
        """A trained IVF index over ``vectors`` `[n, d]`, with its ``nlist`` and ``nprobe`` (defaults filled in)."""
        faiss, (n, d) = self._faiss, vectors.shape
        nlist = max(1, min(n, int(4 * math.sqrt(n)))) if nlist is None else _positive_int("nlist", nlist)
        if nlist > n:
            raise InputError(f"nlist={nlist} exceeds the {n} items to cluster")
        nprobe = min(16, nlist) if nprobe is None else _positive_int("nprobe", nprobe)
        if nprobe > nlist:
            raise InputError(f"nprobe={nprobe} exceeds nlist={nlist}")
        index = faiss.IndexIVFFlat(faiss.IndexFlat(d, faiss_metric), d, nlist, faiss_metric)
        index.cp.seed = seed
        train = vectors
        if train_size is not None:
            train_size = _positive_int("train_size", train_size)
            if train_size < nlist:
                raise InputError(f"train_size={train_size} is below nlist={nlist}: every list needs a point")
            if train_size < n:
                rows = np.random.default_rng(seed).choice(n, train_size, replace=False)
                train = vectors[np.sort(rows)]
            index.cp.max_points_per_centroid = max(1, math.ceil(train.shape[0] / nlist))
        index.train(train)
        return index, nlist, nprobe

    def set_search_parameters(self, *, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Change the search breadth without rebuilding: ``nprobe`` (IVF, 1 … nlist) or ``ef_search`` (HNSW)."""
        if nprobe is not None:
            if self.kind != "ivf":
                raise InputError(f"nprobe applies to kind='ivf', not {self.kind!r}")
            nprobe = _positive_int("nprobe", nprobe)
            if nprobe > self.nlist:
                raise InputError(f"nprobe={nprobe} exceeds nlist={self.nlist}")
            self.nprobe = self.index.nprobe = nprobe
        if ef_search is not None:
            if self.kind != "hnsw":
                raise InputError(f"ef_search applies to kind='hnsw', not {self.kind!r}")
            self.ef_search = self.index.hnsw.efSearch = _positive_int("ef_search", ef_search)

    def _prepare(self, x: torch.Tensor) -> np.ndarray:
        if self.metric == "cosine":
            x = torch.nn.functional.normalize(x, dim=-1)
        return np.ascontiguousarray(x.numpy(), dtype=np.float32)

    def _histories(self, histories, batch: int) -> tuple[np.ndarray, int]:
        """Sorted unique keys ``row · num_items + item`` of every history item, and the longest history."""
        if histories is None:
            return np.empty(0, dtype=np.int64), 0
        if len(histories) != batch:
            raise InputError(f"got {len(histories)} histories for {batch} latents; pass one (possibly empty) per row")
        histories = [h.tolist() if isinstance(h, (torch.Tensor, np.ndarray)) else h for h in histories]
        try:
            lengths = np.fromiter(map(len, histories), dtype=np.int64, count=batch)
        except TypeError as err:
            raise InputError("histories must be one list of integer item indices per row") from err
        items = np.array(list(chain.from_iterable(histories)))  # one conversion for the whole batch
        if items.size and (items.ndim != 1 or items.dtype.kind not in "iu"):
            row = next(r for r, h in enumerate(histories) if np.asarray(h).dtype.kind not in "iu" or np.ndim(h) != 1)
            raise InputError(f"history {row} must be a flat list of integer item indices, got {histories[row]!r}")
        items = items.astype(np.int64)
        if items.size and (items.min() < 0 or items.max() >= self.num_items):
            bad = items[(items < 0) | (items >= self.num_items)][0]
            raise InputError(f"history item index {bad} is outside the catalog [0, {self.num_items})")
        keys = np.sort(np.repeat(np.arange(batch), lengths) * self.num_items + items)
        keys = keys[np.diff(keys, prepend=-1) != 0]  # unique (np.unique is slower)
        longest = int(np.bincount(keys // self.num_items, minlength=batch).max()) if keys.size else 0
        return keys, longest

    def _search(self, x: np.ndarray, fetch: int, exhaustive: bool = False) -> tuple[np.ndarray, np.ndarray]:
        if not exhaustive:
            return self.index.search(x, fetch)
        if self.device == "cuda":  # pragma: no cover - needs a GPU build of faiss
            if self._cpu_index is None:
                self._cpu_index = self._faiss.index_gpu_to_cpu(self.index)
            index = self._cpu_index
        else:
            index = self.index
        if self.kind == "hnsw":  # the graph's vectors, searched by brute force
            return self._faiss.downcast_index(index.storage).search(x, fetch)
        return index.search(x, fetch, params=self._faiss.SearchParametersIVF(nprobe=self.nlist))

    def search(
        self, latents: torch.Tensor, k: int, histories: Sequence[Sequence[int]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` items per query, history items excluded.

        Args:
            latents (`torch.Tensor` of shape `[batch, d]`): the preference latents (any device, finite).
            k (`int`): between 1 and ``num_items`` minus the longest history (distinct items).
            histories (`list[list[int]]`, *optional*): one list of catalog indices per row, excluded.

        Returns:
            ``(indices, scores)``: CPU tensors `[batch, k]` (int64, float32), best first; higher scores are
            better for every metric (``"l2"`` gives the negative squared distance).
        """
        x = self._prepare(_as_matrix("latents", latents, self.dim))
        batch = x.shape[0]
        keys, longest = self._histories(histories, batch)
        top = self.num_items - longest
        wanted = f"an integer between 1 and {top} (catalog minus the longest history)"
        check_number("k", k, 1, top, integer=True, error=InputError, wanted=wanted)
        if batch == 0:
            return torch.empty(0, k, dtype=torch.int64), torch.empty(0, k, dtype=torch.float32)
        fetch = min(self.num_items, k + longest)
        scores, ids = self._search(x, fetch)
        out_ids, out_scores, kept = self._drop_history(ids, scores, keys, k)
        short = np.flatnonzero(kept < k)
        if short.size and self.kind != "flat":  # an approximate index came up short for these rows
            s, i = self._search(x[short], fetch, exhaustive=True)
            out_ids[short], out_scores[short], _ = self._drop_history(i, s, keys, k, rows=short)
        if self.metric == "l2":
            out_scores = -out_scores  # faiss returns squared distances; higher is better everywhere here
        return torch.from_numpy(out_ids), torch.from_numpy(out_scores)

    def _drop_history(self, ids, scores, keys, k, rows=None):
        """The first ``k`` neighbours of each row that are real items outside its history (vectorised)."""
        rows = np.arange(len(ids)) if rows is None else rows
        keep = ids >= 0
        if keys.size:
            query = rows[:, None] * self.num_items + np.where(keep, ids, 0)
            pos = np.minimum(np.searchsorted(keys, query), keys.size - 1)
            keep &= keys[pos] != query
        order = np.argsort(~keep, axis=1, kind="stable")[:, :k]  # kept neighbours first, in faiss' order
        out_ids = np.take_along_axis(ids, order, axis=1).astype(np.int64)
        out_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32)
        valid = np.take_along_axis(keep, order, axis=1)
        out_ids[~valid] = -1
        out_scores[~valid] = np.inf if self.metric == "l2" else -np.inf
        return out_ids, out_scores, valid.sum(axis=1)
