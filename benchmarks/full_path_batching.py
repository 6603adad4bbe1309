"""The full path in batches against one user at a time: the same texts and conditions, and how much faster.

`ContRecDiffusionPipeline.generate_and_encode` generates `batch_size` users at once (left-padded prompts, the
position ids following the attention mask) and then runs one right-padded forward for the conditions at `<pref>`.
With ``batch_size=1`` the same code runs one user at a time, with no padding at all: the reference. Both run over
the same users of one split, one after the other; the script reports their wall times, how many generated texts
are identical, the largest difference of a condition, and the full path's NDCG@10 (x₀ read-out) of each.

Reproduce (after `make demo`, with nothing else running):
    python benchmarks/full_path_batching.py --pipeline runs/demo/pipeline --write-docs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _report import publish

from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.pipelines import ContRecDiffusionPipeline


@torch.no_grad()
def full_path(pipe, histories: list[list[int]], batch_size: int) -> tuple[torch.Tensor, list[str], float]:
    """Conditions, texts and wall seconds of the full path over ``histories``."""
    started = time.perf_counter()
    condition, texts = pipe.generate_and_encode(histories, batch_size=batch_size)
    return condition, texts, time.perf_counter() - started


@torch.no_grad()
def ndcg(pipe, condition: torch.Tensor, histories, targets, num_items: int) -> float:
    """Full-path NDCG@10 of ``condition`` through the shared evaluator (history masked), x₀ read-out."""
    scores = pipe.score_latents(pipe.read_out(condition, "x0", guidance_scale=1.0))
    result = evaluate_scorer(
        lambda batch, rows: scores[torch.as_tensor(rows)], histories, targets, num_items,
        users=list(range(len(histories))), progress=False,
    )  # fmt: skip
    return result.metrics["ndcg@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", type=Path, default=Path("runs/demo/pipeline"), help="a saved ContRec pipeline")
    parser.add_argument("--data", default=None, help="the run's data folder (default: the pipeline's ../data)")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--users", type=int, default=0, help="the first N users of the split (0 = all)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if not (args.pipeline / "model_index.json").is_file():
        parser.error(f"{args.pipeline} is not a saved pipeline (run `make demo` first, or pass --pipeline)")
    data = load_sequential_dataset(args.data or str(args.pipeline.parent / "data"))
    pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    histories, targets = data.split(args.split)
    users = args.users or len(histories)
    histories, targets = [list(h) for h in histories[:users]], targets[:users]

    alone, alone_texts, alone_s = full_path(pipe, histories, batch_size=1)
    batched, texts, batched_s = full_path(pipe, histories, batch_size=args.batch_size)
    same = [a == b for a, b in zip(alone_texts, texts)]
    gap = (alone - batched).abs().max(dim=1).values  # [users]
    rows = [
        ("one user at a time", alone_s, ndcg(pipe, alone, histories, targets, data.num_items)),
        (f"{args.batch_size} users a batch", batched_s, ndcg(pipe, batched, histories, targets, data.num_items)),
    ]
    lines = [
        f"Pipeline `{args.pipeline}`, {users} {args.split} users, greedy generation (at most 48 new tokens); the two "
        "ran one after the other in one process.",
        "",
        "| full path | wall s | users/s | × one at a time | NDCG@10 (x₀) |",
        "|---|---:|---:|---:|---:|",
        *(f"| {name} | {s:.1f} | {users / s:.1f} | {alone_s / s:.2f}× | {score:.4f} |" for name, s, score in rows),
        "",
        f"Identical generated texts: {sum(same)} of {users}. Largest |Δ| of a condition entry: "
        f"{float(gap.max()):.2e} (over the rows with identical texts: "
        f"{float(gap[torch.tensor(same)].max()) if any(same) else float('nan'):.2e}).",
    ]
    publish(lines, "full_path_batching.py", "full_path_batching", "The full path in batches", args.write_docs)


if __name__ == "__main__":
    main()
