"""FaissIndex: exact for "flat", high recall for "hnsw"/"ivf", history excluded, bad arguments refused."""

import numpy as np
import pytest
import torch

from contrec_hf.errors import InputError
from contrec_hf.retrieval import latent_scores, top_k

pytest.importorskip("faiss")

from contrec_hf.retrieval_faiss import FaissIndex


def clustered(num_items=2000, dim=16, clusters=20, queries=32, seed=0):
    """Items around `clusters` Gaussian centres; queries are noisy mixtures of two items of one cluster."""
    g = torch.Generator().manual_seed(seed)
    centres = 3 * torch.randn(clusters, dim, generator=g)
    labels = torch.randint(clusters, (num_items,), generator=g)
    items = centres[labels] + torch.randn(num_items, dim, generator=g)
    anchors = torch.randint(num_items, (queries,), generator=g)
    partners = [int(np.flatnonzero(labels.numpy() == labels[a].item())[0]) for a in anchors]
    latents = 0.7 * items[anchors] + 0.3 * items[partners] + 0.3 * torch.randn(queries, dim, generator=g)
    histories = [[int(a), p, (7 * r) % num_items] for r, (a, p) in enumerate(zip(anchors, partners))]
    return items, latents, histories


def recall(ids, exact_ids):
    hits = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), exact_ids.tolist()))
    return hits / exact_ids.numel()


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_flat_equals_exact_top_k(metric):
    g = torch.Generator().manual_seed(0)
    items, latents = torch.randn(300, 16, generator=g), torch.randn(6, 16, generator=g)
    histories = [[], [0, 1, 2], [5, 5, 9], list(range(0, 300, 7)), [299], torch.tensor([3, 4])]
    exact_ids, exact_scores = top_k(latent_scores(latents, items, metric), 10, [list(map(int, h)) for h in histories])
    ids, scores = FaissIndex(items, kind="flat", metric=metric).search(latents, 10, histories)
    assert ids.dtype == torch.int64 and scores.dtype == torch.float32
    assert ids.tolist() == exact_ids.tolist()
    assert torch.allclose(scores, exact_scores, rtol=1e-4, atol=1e-4)
    no_history_ids, _ = FaissIndex(items, kind="flat", metric=metric).search(latents, 10)
    assert no_history_ids.tolist() == top_k(latent_scores(latents, items, metric), 10)[0].tolist()


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_approximate_kinds_recall_clustered_catalog(kind, metric):
    items, latents, histories = clustered()
    exact_ids, _ = top_k(latent_scores(latents, items, metric), 10, histories)
    index = FaissIndex(items, kind=kind, metric=metric, hnsw_m=16, nlist=32, nprobe=8)
    ids, scores = index.search(latents, 10, histories)
    assert ids.shape == (32, 10) and (ids >= 0).all() and (ids < len(items)).all()
    assert not any(set(h) & set(r) for h, r in zip(histories, ids.tolist()))
    assert all(len(set(r)) == 10 for r in ids.tolist())
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-5).all()  # best first, higher is better for every metric
    assert recall(ids, exact_ids) >= 0.95


def test_ivf_parameters_and_short_rows_are_refilled_exhaustively():
    items, latents, histories = clustered(num_items=400, clusters=40)
    exact_ids, exact_scores = top_k(latent_scores(latents, items), 30, histories)
    # 100 lists of ~4 items and one probed: faiss returns fewer than k + history neighbours for most rows.
    index = FaissIndex(items, kind="ivf", nlist=100, nprobe=1, train_size=200, seed=3)
    assert (index.nlist, index.nprobe) == (100, 1)
    ids, scores = index.search(latents, 30, histories)
    assert ids.tolist() == exact_ids.tolist() and torch.allclose(scores, exact_scores, atol=1e-5)
    index.set_search_parameters(nprobe=100)  # every list: exact
    assert index.search(latents, 30, histories)[0].tolist() == exact_ids.tolist()
    default = FaissIndex(items[:10], kind="ivf")  # 4·√n lists would exceed 10 items: capped
    assert default.nlist == 10 and default.nprobe == 10


def test_hnsw_search_parameters():
    items, latents, histories = clustered(num_items=500)
    index = FaissIndex(items, kind="hnsw", hnsw_m=8, ef_construction=20, ef_search=16)
    index.set_search_parameters(ef_search=200)
    assert index.ef_search == 200 and index.index.hnsw.efSearch == 200
    exact_ids, _ = top_k(latent_scores(latents, items), 10, histories)
    assert recall(index.search(latents, 10, histories)[0], exact_ids) >= 0.95
    empty_ids, empty_scores = index.search(latents[:0], 10, [])
    assert empty_ids.shape == empty_scores.shape == (0, 10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "annoy"}, "unknown faiss index kind 'annoy'"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"kind": "hnsw", "device": "cuda"}, "faiss has no GPU HNSW index"),
        ({"kind": "hnsw", "hnsw_m": 1}, "hnsw_m must be an integer ≥ 2"),
        ({"kind": "hnsw", "ef_search": 0}, "ef_search must be an integer ≥ 1"),
        ({"kind": "ivf", "nlist": 51}, "nlist=51 exceeds the 50 items"),
        ({"kind": "ivf", "nlist": 8, "nprobe": 9}, "nprobe=9 exceeds nlist=8"),
        ({"kind": "ivf", "nlist": 8, "nprobe": 2.5}, "nprobe must be an integer"),
        ({"kind": "ivf", "nlist": 8, "train_size": 4}, "train_size=4 is below nlist=8"),
    ],
)
def test_bad_index_arguments(kwargs, message):
    with pytest.raises(InputError, match=message):
        FaissIndex(torch.randn(50, 4), **kwargs)


def test_cuda_needs_a_gpu_build_of_faiss():
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        pytest.skip("faiss has GPU support here")
    with pytest.raises(InputError, match="device='cuda' needs a faiss build with GPU support"):
        FaissIndex(torch.randn(50, 4), kind="ivf", nlist=4, device="cuda")


def test_bad_item_latents():
    with pytest.raises(InputError, match=r"item_latents must have shape \[n, d\], got \(50,\)"):
        FaissIndex(torch.randn(50))
    with pytest.raises(InputError, match="must be a torch.Tensor or numpy array"):
        FaissIndex([[0.0, 1.0]])
    with pytest.raises(InputError, match="at least one item"):
        FaissIndex(torch.empty(0, 4))
    for bad in (float("nan"), float("inf")):
        items = torch.randn(50, 4)
        items[3, 1] = bad
        with pytest.raises(InputError, match=r"item_latents contain NaN or inf values \(1 of 50 rows\)"):
            FaissIndex(items)


def test_bad_search_arguments():
    index = FaissIndex(torch.randn(50, 4), kind="flat")
    latents = torch.randn(2, 4)
    with pytest.raises(InputError, match="latents have dimension 5 but the index holds item latents of dimension 4"):
        index.search(torch.randn(2, 5), 3)
    with pytest.raises(InputError, match=r"latents must have shape \[n, d\]"):
        index.search(torch.randn(4), 3)
    with pytest.raises(InputError, match="latents contain NaN or inf"):
        index.search(torch.tensor([[0.0, float("nan"), 0.0, 0.0]]), 3)
    with pytest.raises(InputError, match="k must be an integer between 1 and 48"):
        index.search(latents, 49, [[0, 1, 1], [2]])
    with pytest.raises(InputError, match="k must be an integer between 1 and 50"):
        index.search(latents, 0)
    with pytest.raises(InputError, match="k must be an integer"):
        index.search(latents, 2.0)
    with pytest.raises(InputError, match="got 1 histories for 2 latents"):
        index.search(latents, 3, [[0]])
    with pytest.raises(InputError, match=r"history item index 50 is outside the catalog \[0, 50\)"):
        index.search(latents, 3, [[0], [50]])
    with pytest.raises(InputError, match="history item index -1"):
        index.search(latents, 3, [[-1], []])
    with pytest.raises(InputError, match="history 1 must be a flat list of integer item indices"):
        index.search(latents, 3, [[0], [1.5]])
    with pytest.raises(InputError, match="one list of integer item indices per row"):
        index.search(latents, 3, [1, 2])
    with pytest.raises(InputError, match="nprobe applies to kind='ivf'"):
        index.set_search_parameters(nprobe=4)
    with pytest.raises(InputError, match="ef_search applies to kind='hnsw'"):
        index.set_search_parameters(ef_search=4)
    with pytest.raises(ValueError):  # InputError is a ValueError for callers that catch the built-in type
        index.search(latents, 0)
