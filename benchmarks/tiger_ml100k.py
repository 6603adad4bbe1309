"""TIGER next to ContRec (both recipes and with VQ tokens), SASRec-CE and Pop on ML-100K, over seeds, in one table.

Each TIGER run is ``run_baseline("tiger", …, seed=S)`` into ``--output/NAME/seed-S`` (a finished folder is read, not
rerun), on the leave-one-out split of the main job, scored by the same evaluator. ContRec, SASRec-CE and Pop come
from the main job's seed folders (``benchmarks/main_job_seeds.py``: ``runs/seeds`` and ``runs/seeds-paper``; ContRec
with VQ tokens from ``benchmarks/main_job_lever.py``'s ``runs/levers/vq-tokens``, the same runs with stage 1's σ-VAE
replaced by a VQ-VAE), whose split is the same ML-100K leave-one-out split. ``--set FIELD=VALUE`` changes a
`TIGERConfig` or `TIGERTrainingArguments` field (e.g. ``learning_rate=3e-3``), for tuning on validation.

Reproduce (each seed is about 20 to 30 minutes on one core; seeds can run as separate processes, one torch thread
each, and a last call with every seed reads the finished folders and writes the table; ``--also`` adds the rows
of other finished variants):
    .venv/bin/python benchmarks/tiger_ml100k.py --seeds 0 1 2 --threads 1
    .venv/bin/python benchmarks/tiger_ml100k.py --seeds 0 1 2 --threads 1 --name patience-6 --set patience=6
    .venv/bin/python benchmarks/tiger_ml100k.py --seeds 0 1 2 --also patience-6 --write-docs
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
from pathlib import Path

import torch
from _report import ROOT, publish

from contrec_hf.baselines import TIGERConfig, TIGERTrainingArguments, run_baseline
from contrec_hf.data import load_sequential_dataset

SEEDS = "`benchmarks/main_job_seeds.py`"
VQ = "`benchmarks/main_job_lever.py --name vq-tokens --tokenizer-set quantizer=vq sigma_sampling=false`"
MAIN_JOB = {  # row label → (seed folders under runs/, metrics key, the command that writes them)
    "ContRec (default recipe, fast path)": ("seeds", "contrec", SEEDS),
    "ContRec (paper recipe, fast path)": ("seeds-paper", "contrec", SEEDS),
    "ContRec with VQ tokens (default recipe, fast path)": ("levers/vq-tokens", "contrec", VQ),
    "SASRec-CE": ("seeds", "sasrec", SEEDS),
    "Popularity": ("seeds", "pop", SEEDS),
}
STAGE_SECONDS = ("tokenizer", "recommender")  # ContRec's training time: stage 1 and stage 2


def overrides(pairs: list[str]) -> tuple[dict, dict]:
    """``FIELD=VALUE`` pairs → (`TIGERConfig` kwargs, `TIGERTrainingArguments` kwargs), values parsed as JSON."""
    fields = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (TIGERConfig, TIGERTrainingArguments)}
    model, training = {}, {}
    for pair in pairs:
        name, _, text = pair.partition("=")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        if name in fields[TIGERConfig]:
            model[name] = value
        elif name in fields[TIGERTrainingArguments]:
            training[name] = value
        else:
            raise SystemExit(f"--set {pair}: {name!r} is no TIGERConfig or TIGERTrainingArguments field")
    return model, training


def run_tiger(output: Path, seed: int, model: dict, training: dict) -> dict:
    """One seed's TIGER result (read from ``output/seed-S/metrics.json`` when it is there)."""
    folder = output / f"seed-{seed}"
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    data = load_sequential_dataset("ml-100k")
    return run_baseline("tiger", data, seed=seed, output_dir=folder, model_kwargs=model, training_kwargs=training,
                        progress=False)  # fmt: skip


def mean_std(values: list[float]) -> str:
    """Mean ± population std over seeds; a single seed's figure alone (it has no spread)."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}"


def row(label: str, results: list[dict], seconds: list[float]) -> str:
    """A table row: test NDCG@10 per seed, NDCG@10 and HR@10 mean ± std, validation NDCG@10, training time."""
    test = [r["test"]["ndcg@10"] for r in results]
    per_seed = " / ".join(f"{v:.4f}" for v in test)
    hr = mean_std([r["test"]["hr@10"] for r in results])
    val = statistics.mean(r["validation"]["ndcg@10"] for r in results)
    return f"| {label} | {per_seed} | {mean_std(test)} | {hr} | {val:.4f} | {statistics.mean(seconds):.0f} s |"


def variant_row(folder: Path, name: str, seeds: list[int]) -> str:
    """The row of a finished TIGER variant, over the seeds of ``seeds`` that it has finished (named when not all)."""
    done = [s for s in seeds if (folder / f"seed-{s}" / "metrics.json").is_file()]
    if not done:
        return f"| TIGER ({name}) | not run | | | | |"
    results = [json.loads((folder / f"seed-{s}" / "metrics.json").read_text()) for s in done]
    label = name if done == seeds else f"{name}, seed{'s' * (len(done) > 1)} {', '.join(map(str, done))} only"
    return row(f"TIGER ({label})", results, [r["seconds"] for r in results])


def main_job_rows(seeds: list[int]) -> list[str]:
    rows = []
    for label, (folder, key, command) in MAIN_JOB.items():
        runs = [ROOT / "runs" / folder / f"seed-{s}" for s in seeds]
        if not all((run / "metrics.json").is_file() for run in runs):
            rows.append(f"| {label} | not run: {command} writes `runs/{folder}` | | | | |")
            continue
        metrics = [json.loads((run / "metrics.json").read_text()) for run in runs]
        results = [{"test": m["test"][key], "validation": m["validation"][key]} for m in metrics]
        if key in ("sasrec", "pop"):
            seconds = [json.loads((run / "baselines" / key / "metrics.json").read_text())["seconds"] for run in runs]
        else:
            stages = [json.loads((run / "stages.json").read_text()) for run in runs]
            seconds = [sum(stage[name] for name in STAGE_SECONDS) for stage in stages]
        rows.append(row(label, results, seconds))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--name", default="default", help="the TIGER variant's folder under --output")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="TIGER fields to change")
    parser.add_argument("--also", nargs="*", default=[], metavar="NAME", help="finished variants to add as rows")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "tiger")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/benchmarks.md")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # TIGER's epochs, as they end
    if args.threads:
        torch.set_num_threads(args.threads)
    model, training = overrides(args.set)
    results = [run_tiger(args.output / args.name, seed, model, training) for seed in args.seeds]
    semantic = results[0]["semantic_ids"]
    options = json.dumps({**model, **training}) if model or training else "the defaults"
    lines = [
        f"ML-100K leave-one-out, full ranking, history masked; seeds {', '.join(map(str, args.seeds))}. Training time:"
        " TIGER's RQ-VAE and T5 with their validations; ContRec's stage 1 and stage 2; SASRec's training.",
        "",
        "| model | test NDCG@10 per seed | test NDCG@10 | test HR@10 | validation NDCG@10 | training time |",
        "|---|---|---|---|---|---|",
        row(f"TIGER ({args.name})", results, [r["seconds"] for r in results]),
        *(variant_row(args.output / name, name, args.seeds) for name in args.also),
        *main_job_rows(args.seeds),
        "",
        f"TIGER's semantic IDs (seed {args.seeds[0]}): codebook usage per level "
        f"{', '.join(f'{u:.0%}' for u in semantic['codebook_usage'])}, {semantic['distinct_codes']:,} distinct "
        f"code tuples for {semantic['num_items']:,} items, {semantic['colliding_items']:,} items share theirs with "
        f"another (collision codes up to {semantic['collision_codes'] - 1}); RQ-VAE held-out MSE "
        f"{semantic['rq_heldout_mse']:.3f}. TIGER's options: {options}.",
    ]
    title = "TIGER next to ContRec, SASRec-CE and Pop"
    publish(lines, "tiger_ml100k.py", "tiger_ml100k", title, args.write_docs)


if __name__ == "__main__":
    sys.exit(main())
