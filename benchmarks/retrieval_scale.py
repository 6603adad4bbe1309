"""Retrieval at scale: exact torch top-K vs faiss (flat, HNSW, IVF) on synthetic catalogs of 10⁴–10⁶ items.

Reproduce (CPU; add --device cuda on a GPU machine, the script is otherwise unchanged):
    .venv/bin/python benchmarks/retrieval_scale.py --sizes 10000 100000 1000000 --write-docs

For every catalog size: ms/user of each search (queries in batches, after one warm-up batch, best of
--repeats timed passes over all queries), recall@10 against the exact answer, and the build time. Every
search excludes each user's history (--history-length items), as the pipeline does. Approximate indexes are
swept over their search breadth (IVF nprobe, HNSW efSearch) so the table shows the speed/recall trade-off,
not a single point. Issue goal at 10⁶ items: ≤ 5 ms/user with recall@10 ≥ 0.95.

Synthetic catalog (a Gaussian mixture, not iid noise, so that recall means something):
  * an anisotropic spectrum s_j ∝ (1 + j)^-1/2 over the d dimensions (rescaled to ‖s‖² = d), as in learned
    embeddings whose variance concentrates in a few directions;
  * C = round(√n) clusters with Zipf(0.8) popularity (cluster sizes ~ Multinomial(n, p)), centres μ_c ~ N(0,
    diag s²), and items x = μ_c + σ_c · s ⊙ ε with a per-cluster spread σ_c ~ U(0.3, 0.6);
  * each user has two taste clusters (drawn by cluster size) and a history of distinct items, each from the
    first taste w.p. 0.6, the second w.p. 0.3 and the whole catalog w.p. 0.1; the query latent is a
    Dirichlet(1, 1, 1) mixture of three history items plus 0.2 · s ⊙ ε noise, so its nearest items are its own
    history (excluded) and their neighbours.
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from _report import IMAGES, command_line, device_name, parse_device, provenance, write_section

from contrec_hf.retrieval import latent_scores, top_k
from contrec_hf.retrieval_faiss import FaissIndex

SECTION, TITLE = "retrieval_scale", "Retrieval at scale: exact torch vs faiss"
GOAL_MS, GOAL_RECALL = 5.0, 0.95


# --------------------------------------------------------------------------------------------- data


@dataclass
class Catalog:
    items: torch.Tensor  # [n, d] float32, CPU
    queries: torch.Tensor  # [q, d]
    histories: list[list[int]]
    clusters: int


def make_catalog(n: int, dim: int, queries: int, history_length: int, seed: int) -> Catalog:
    """The Gaussian-mixture catalog and users described in the module docstring (deterministic in ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    spectrum = (1.0 + torch.arange(dim, dtype=torch.float32)) ** -0.5
    spectrum *= math.sqrt(dim) / spectrum.norm()
    clusters = max(2, round(math.sqrt(n)))
    popularity = (1.0 + np.arange(clusters)) ** -0.8
    sizes = rng.multinomial(n, popularity / popularity.sum())
    labels = torch.from_numpy(rng.permutation(np.repeat(np.arange(clusters), sizes)))
    centres = torch.randn(clusters, dim, generator=g) * spectrum
    spread = 0.3 + 0.3 * torch.rand(clusters, generator=g)
    items = centres[labels] + spread[labels, None] * torch.randn(n, dim, generator=g) * spectrum

    members = np.argsort(labels.numpy(), kind="stable")  # item ids grouped by cluster
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    size_p = sizes / sizes.sum()
    length = min(history_length, n - 1)
    histories, mixes = [], []
    for _ in range(queries):
        tastes = rng.choice(clusters, 2, p=size_p)
        history: dict[int, None] = {}  # insertion-ordered set
        while len(history) < length:
            draw = rng.random(2 * length)
            cluster = np.where(draw < 0.6, tastes[0], tastes[1])
            picks = members[offsets[cluster] + (rng.random(2 * length) * sizes[cluster]).astype(np.int64)]
            picks = np.where(draw >= 0.9, rng.integers(0, n, 2 * length), picks)
            history.update(dict.fromkeys(picks.tolist()))
        history_list = list(history)[:length]
        histories.append(history_list)
        mixes.append(rng.choice(history_list, 3, replace=False) if length >= 3 else history_list * 3)
    weights = torch.from_numpy(rng.dirichlet(np.ones(3), queries)).float()
    anchors = items[torch.as_tensor(np.asarray(mixes)[:, :3])]  # [q, 3, d]
    latents = (weights[:, :, None] * anchors).sum(1) + 0.2 * torch.randn(queries, dim, generator=g) * spectrum
    return Catalog(items.contiguous(), latents.contiguous(), histories, clusters)


# ------------------------------------------------------------------------------------------ methods


class ExactTorch:
    """Exact top-K with torch on ``device``: items pre-normalised once (cosine), scored chunk by chunk
    (``chunk`` items at a time, so 10⁶ items fit), history masked in each chunk, per-chunk top-K merged."""

    def __init__(self, items: torch.Tensor, metric: str, device: torch.device, chunk: int) -> None:
        self.metric, self.chunk = metric, chunk
        items = items.to(device)
        self.items = F.normalize(items, dim=-1) if metric == "cosine" else items
        self.sq_norms = self.items.pow(2).sum(-1) if metric == "l2" else None

    def search(self, latents: torch.Tensor, k: int, histories: list[list[int]]):
        device = self.items.device
        q = latents.to(device)
        q = F.normalize(q, dim=-1) if self.metric == "cosine" else q
        longest = max(map(len, histories), default=0)
        hist = torch.full((len(histories), max(longest, 1)), -1, dtype=torch.long)
        for row, h in enumerate(histories):
            hist[row, : len(h)] = torch.as_tensor(h, dtype=torch.long)
        hist = hist.to(device)
        rows = torch.arange(len(histories), device=device)[:, None].expand_as(hist)
        best_v = best_i = None
        for lo in range(0, self.items.shape[0], self.chunk):
            block = self.items[lo : lo + self.chunk]
            scores = q @ block.T
            if self.metric == "l2":  # −‖q − x‖² = 2 q·x − ‖x‖² − ‖q‖²
                scores = 2 * scores - self.sq_norms[lo : lo + self.chunk] - q.pow(2).sum(-1, keepdim=True)
            local = hist - lo
            inside = (local >= 0) & (local < block.shape[0])
            scores[rows[inside], local[inside]] = float("-inf")
            v, i = scores.topk(min(k, block.shape[0]), dim=1)
            i = i + lo
            if best_v is not None:
                v, pos = torch.cat([best_v, v], 1).topk(k, dim=1)
                i = torch.cat([best_i, i], 1).gather(1, pos)
            best_v, best_i = v, i
        return best_i.cpu(), best_v.cpu()


class LibraryTorch:
    """The pipeline's default exact path as it stands: `retrieval.latent_scores` then `retrieval.top_k` on the
    whole catalog at once (a `[batch, num_items]` score matrix)."""

    def __init__(self, items: torch.Tensor, metric: str, device: torch.device) -> None:
        self.items, self.metric = items.to(device), metric

    def search(self, latents: torch.Tensor, k: int, histories: list[list[int]]):
        ids, values = top_k(latent_scores(latents.to(self.items.device), self.items, self.metric), k, histories)
        return ids.cpu(), values.cpu()


@dataclass
class Row:
    items: int
    method: str
    params: str
    build_s: float
    ms_per_user: float
    recall: float
    note: str = ""
    sweep: str = field(default="", repr=False)  # the parameter swept (for the plot)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_search(search, catalog: Catalog, k: int, batch: int, repeats: int, device: torch.device):
    """(ms/user over the best of ``repeats`` passes, the ids of one pass) after one untimed warm-up batch."""
    batches = [
        (catalog.queries[lo : lo + batch].to(device), catalog.histories[lo : lo + batch])
        for lo in range(0, len(catalog.histories), batch)
    ]
    search(batches[0][0], k, batches[0][1])
    sync(device)
    best, ids = float("inf"), None
    for _ in range(repeats):
        out = []
        start = time.perf_counter()
        for latents, histories in batches:
            out.append(search(latents, k, histories)[0])
        sync(device)
        best = min(best, time.perf_counter() - start)
        ids = torch.cat(out)
    return 1000 * best / len(catalog.histories), ids


def recall_at_k(ids: torch.Tensor, exact: torch.Tensor) -> float:
    hits = sum(len(set(a) & set(b)) for a, b in zip(ids.tolist(), exact.tolist()))
    return hits / exact.numel()


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def faiss_device(device: torch.device) -> tuple[str, str]:
    """Where faiss runs: ``("cuda", …)`` only with a GPU build of faiss; the note says why otherwise."""
    if device.type != "cuda":
        return "cpu", ""
    import faiss

    if hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0:
        return "cuda", "faiss flat and IVF on the GPU (faiss GPU build); HNSW on the CPU (faiss has no GPU HNSW)"
    return "cpu", "faiss on the CPU: the installed faiss has no GPU support (faiss-cpu)"


def bench_size(n: int, args, device: torch.device) -> list[Row]:
    (catalog, gen_s) = timed(lambda: make_catalog(n, args.dim, args.queries, args.history_length, args.seed))
    print(f"\n{n:,} items, {catalog.clusters} clusters (generated in {gen_s:.1f}s)", flush=True)
    rows: list[Row] = []
    run = dict(catalog=catalog, k=args.k, batch=args.batch_size, repeats=args.repeats, device=device)

    def report(row: Row) -> None:
        rows.append(row)
        print(
            f"  {row.method:<24} {row.params:<34} build {row.build_s:7.2f}s  {row.ms_per_user:8.3f} ms/user  "
            f"recall@{args.k} {row.recall:.4f}",
            flush=True,
        )

    exact, build = timed(lambda: ExactTorch(catalog.items, args.metric, device, args.chunk))
    sync(device)
    ms, truth = timed_search(exact.search, **run)
    report(Row(n, "torch exact (chunked)", f"chunk {args.chunk:,}", build, ms, 1.0))
    if n <= args.library_max_items:
        library, build = timed(lambda: LibraryTorch(catalog.items, args.metric, device))
        ms, ids = timed_search(library.search, **run)
        report(Row(n, "torch exact (retrieval.top_k)", "whole catalog", build, ms, recall_at_k(ids, truth)))

    where, _ = faiss_device(device)
    flat, build = timed(lambda: FaissIndex(catalog.items, "flat", args.metric, device=where))
    ms, ids = timed_search(flat.search, **run)
    report(Row(n, "faiss flat", "exact", build, ms, recall_at_k(ids, truth)))
    del flat

    nlist = args.nlist or max(1, min(n, int(4 * math.sqrt(n))))
    train_size = min(n, args.ivf_train_per_list * nlist)
    ivf, build = timed(
        lambda: FaissIndex(
            catalog.items, "ivf", args.metric, nlist=nlist, train_size=train_size, seed=args.seed, device=where
        )
    )
    for nprobe in sorted(p for p in args.nprobe if p <= nlist):
        ivf.set_search_parameters(nprobe=nprobe)
        ms, ids = timed_search(ivf.search, **run)
        params = f"nlist {nlist}, nprobe {nprobe}"
        report(Row(n, "faiss IVF-flat", params, build, ms, recall_at_k(ids, truth), sweep=f"nprobe {nprobe}"))
    del ivf

    if n <= args.hnsw_max_items:
        hnsw, build = timed(
            lambda: FaissIndex(
                catalog.items, "hnsw", args.metric, hnsw_m=args.hnsw_m, ef_construction=args.ef_construction
            )
        )
        for ef in sorted(args.ef_search):
            hnsw.set_search_parameters(ef_search=ef)
            ms, ids = timed_search(hnsw.search, **run)
            params = f"M {args.hnsw_m}, efC {args.ef_construction}, efS {ef}"
            report(Row(n, "faiss HNSW-flat", params, build, ms, recall_at_k(ids, truth), sweep=f"efS {ef}"))
        del hnsw
    return rows


# ------------------------------------------------------------------------------------------- report


def operating_points(rows: list[Row]) -> dict[tuple[str, int], Row]:
    """Per method and size: the fastest setting with recall ≥ GOAL_RECALL, else the most accurate one."""
    points: dict[tuple[str, int], Row] = {}
    for key in {(r.method, r.items) for r in rows}:
        candidates = [r for r in rows if (r.method, r.items) == key]
        good = [r for r in candidates if r.recall >= GOAL_RECALL]
        points[key] = min(good, key=lambda r: r.ms_per_user) if good else max(candidates, key=lambda r: r.recall)
    return points


def markdown_table(rows: list[Row], k: int) -> str:
    lines = [
        f"| items | method | parameters | build s | ms/user | recall@{k} |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.items:,} | {r.method} | {r.params} | {r.build_s:.2f} | {r.ms_per_user:.3f} | {r.recall:.4f} |"
        )
    return "\n".join(lines)


def plot(rows: list[Row], path, k: int, title_suffix: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = operating_points(rows)
    methods = list(dict.fromkeys(r.method for r in rows))
    colours = dict(zip(methods, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    sizes = sorted({r.items for r in rows})
    markers = dict(zip(sizes, "osD^v<>"))
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2))
    for method in methods:
        pts = sorted((p for (m, _), p in points.items() if m == method), key=lambda p: p.items)
        left.plot([p.items for p in pts], [p.ms_per_user for p in pts], "o-", color=colours[method], label=method)
        for p in pts if pts[0].sweep else ():  # exact methods: recall 1 by construction, not labelled
            tag = f"{p.recall:.3f}\n{p.sweep}"
            left.annotate(tag, (p.items, p.ms_per_user), textcoords="offset points", xytext=(6, -4), fontsize=7)
    left.axhline(GOAL_MS, color="grey", ls="--", lw=1)
    left.text(sizes[0], GOAL_MS * 1.08, f"goal ≤ {GOAL_MS:g} ms/user", fontsize=8, color="grey")
    left.set(xscale="log", yscale="log", xlabel="catalog size (items)", ylabel="ms / user")
    left.set_title(f"ms/user vs catalog size (labels: recall@{k}, setting; exact methods: 1)", fontsize=10)
    left.legend(fontsize=8)
    left.grid(True, which="both", alpha=0.3)
    for method in methods:
        for n in sizes:
            pts = [r for r in rows if r.method == method and r.items == n]  # in sweep order
            if pts:
                right.plot(
                    [p.ms_per_user for p in pts],
                    [p.recall for p in pts],
                    marker=markers[n],
                    color=colours[method],
                    ls="-" if len(pts) > 1 else "none",
                    alpha=0.85,
                )
    for method in methods:
        right.plot([], [], color=colours[method], label=method)
    for n in sizes:
        right.plot([], [], marker=markers[n], color="black", ls="none", label=f"{n:,} items")
    right.axhline(GOAL_RECALL, color="grey", ls="--", lw=1)
    right.axvline(GOAL_MS, color="grey", ls="--", lw=1)
    right.set(xscale="log", xlabel="ms / user", ylabel=f"recall@{k} vs exact")
    right.set_title("speed/recall trade-off (IVF nprobe and HNSW efSearch swept)", fontsize=10)
    right.legend(fontsize=8)
    right.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"Top-{k} retrieval with history excluded — {title_suffix}", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def goal_line(rows: list[Row], k: int) -> str:
    largest = max(r.items for r in rows)
    met = [r for r in rows if r.items == largest and r.ms_per_user <= GOAL_MS and r.recall >= GOAL_RECALL]
    if met:
        best = min(met, key=lambda r: r.ms_per_user)
        return (
            f"Goal at {largest:,} items (≤ {GOAL_MS:g} ms/user with recall@{k} ≥ {GOAL_RECALL}): **met** — fastest "
            f"setting reaching it: {best.method} ({best.params}), {best.ms_per_user:.3f} ms/user at recall "
            f"{best.recall:.4f}."
        )
    good = [r for r in rows if r.items == largest and r.recall >= GOAL_RECALL]
    closest = min(good, key=lambda r: r.ms_per_user) if good else None
    detail = f" fastest with recall ≥ {GOAL_RECALL}: {closest.method} ({closest.params}), {closest.ms_per_user:.3f}"
    return f"Goal at {largest:,} items: **not met**." + (detail + " ms/user." if closest else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=64, help="latent size (ContRec's d_z is 64)")
    parser.add_argument("--queries", type=int, default=1000, help="users searched per size")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--history-length", type=int, default=50, help="history items per user, excluded")
    parser.add_argument("--batch-size", type=int, default=256, help="users per search call")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes over all users; the best is kept")
    parser.add_argument("--metric", choices=("cosine", "dot", "l2"), default="cosine")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the exact torch search runs")
    parser.add_argument("--chunk", type=int, default=65_536, help="items per chunk of the exact torch search")
    parser.add_argument(
        "--library-max-items", type=int, default=1_000_000, help="skip retrieval.top_k above this catalog size"
    )
    parser.add_argument("--nlist", type=int, help="IVF lists (default 4·√n)")
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32, 64], help="IVF nprobe sweep")
    parser.add_argument("--ivf-train-per-list", type=int, default=64, help="IVF k-means sample: this × nlist")
    parser.add_argument("--hnsw-m", type=int, default=32)
    parser.add_argument("--ef-construction", type=int, default=100, help="HNSW build breadth (faiss: 40)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128, 256, 512], help="HNSW efSearch sweep")
    parser.add_argument("--hnsw-max-items", type=int, default=10**9, help="skip HNSW above this catalog size")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true", help="write docs/benchmarks.md and the PNG")
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    torch.manual_seed(args.seed)
    where, faiss_note = faiss_device(device)
    if faiss_note:
        print(faiss_note)

    start = time.perf_counter()
    rows = [row for n in args.sizes for row in bench_size(n, args, device)]
    wall = time.perf_counter() - start
    table = markdown_table(rows, args.k)
    goal = goal_line(rows, args.k)
    command = command_line("retrieval_scale.py", [a for a in sys.argv[1:] if a != "--write-docs"])
    print("\n" + table + "\n\n" + goal + f"\n\nwall time {wall:.0f}s")
    if not args.write_docs:
        return

    import faiss

    image = IMAGES / "retrieval_scale.png"
    plot(rows, image, args.k, f"{device_name(device)}, d = {args.dim}, {args.metric}")
    where_text = (
        f"Exact torch on `{args.device}`; faiss {faiss.__version__} on the "
        + ("GPU for flat and IVF, CPU for HNSW" if where == "cuda" else "CPU")
        + (f" ({faiss_note})" if faiss_note else "")
        + "."
    )
    paragraphs = [
        (
            f"Top-{args.k} by {args.metric} similarity over synthetic catalogs of d = {args.dim} latents, each of "
            f"{args.queries:,} users' {args.history_length} history items excluded (over-fetch k + longest history, "
            f"then drop), queries in batches of {args.batch_size} users. ms/user: best of {args.repeats} timed "
            "passes over all users after one warm-up batch, results copied to the CPU. recall@k: overlap with "
            "the chunked exact torch answer. Build: pre-normalising and moving items (torch), adding (flat, "
            f"HNSW), k-means on min(n, {args.ivf_train_per_list}·nlist) items plus adding (IVF). {where_text}"
        ),
        (
            "Catalog generator (`make_catalog`, seeded): a Gaussian mixture of round(√n) clusters with Zipf(0.8) "
            "sizes, centres `N(0, diag s²)` under an anisotropic spectrum `s_j ∝ (1 + j)^(-1/2)`, items at a "
            "per-cluster spread `U(0.3, 0.6)·s`; each user draws 60%/30% of a distinct-item history from two "
            "taste clusters and 10% from the whole catalog, and queries with a Dirichlet(1,1,1) mixture of three "
            "of those history items plus `0.2·s` noise."
        ),
    ]
    body = "\n".join(
        [
            *(textwrap.fill(p, width=110, break_on_hyphens=False) + "\n" for p in paragraphs),
            table,
            "",
            goal,
            "",
            f"![ms/user vs catalog size and the speed/recall trade-off](img/{image.name})",
            "",
            f"Total wall time {wall:.0f} s.",
            "",
            provenance(command, device),
        ]
    )
    print(f"\nwrote {write_section(SECTION, body, TITLE)} and {image}")


if __name__ == "__main__":
    main()
