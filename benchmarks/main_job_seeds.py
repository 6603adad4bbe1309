"""The main job over seeds: every random stage reseeded (features, σ-VAE, stage 2, SASRec), side by side.

Each seed runs ``contrec-hf run --dataset ml-100k --seed S`` into ``--output/seed-S`` (a finished folder skips every
stage, an unfinished one resumes, and one run with other options is refused), so ContRec and the baselines of one
row come from one run on one split. The table gives
the mean ± std (population) over the seeds of test HR@10 / NDCG@10, the ratio of ContRec's mean NDCG@10 to
SASRec-CE's, and the job's wall time.

Reproduce (~30 min per seed on 2 cores with nothing else running; the paper's recipe into its own folder and docs
section; seeds can run as separate processes side by side, one torch thread each, and a last call with every seed
reads the finished folders and writes the table):
    .venv/bin/python benchmarks/main_job_seeds.py --seeds 0 1 2 --write-docs
    .venv/bin/python benchmarks/main_job_seeds.py --recipe paper --seeds 0 1 2 --write-docs
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from _report import ROOT, publish

from contrec_hf.main_job import MAIN_JOB_MAX_STEPS

SECTIONS = {  # one docs section per recipe
    "contrec-hf": ("main_job_seeds", "The main job over seeds (every stage reseeded)"),
    "paper": ("main_job_seeds_paper", "The main job over seeds, the paper's recipe (`--recipe paper`)"),
}
CLI = Path(sys.executable).with_name("contrec-hf")
ROWS = {
    "contrec": "ContRec, fast path",
    "contrec_full": "ContRec, full path",
    "contrec_fused": "ContRec, full path + text (λ_text on validation)",
    "sasrec": "SASRec-CE",
    "pop": "Popularity",
}


def mean_std(values: list[float]) -> str:
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--output", type=Path, help="default: runs/seeds (runs/seeds-paper for --recipe paper)")
    parser.add_argument("--max-steps", type=int, default=MAIN_JOB_MAX_STEPS)
    parser.add_argument("--recipe", default="contrec-hf", choices=("contrec-hf", "paper"))
    parser.add_argument("--note", default="", help="a sentence for the caption (e.g. how the jobs shared the machine)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    args.output = args.output or ROOT / "runs" / ("seeds" if args.recipe == "contrec-hf" else "seeds-paper")

    runs = {}
    for seed in args.seeds:
        folder = args.output / f"seed-{seed}"
        command = [str(CLI), "run", "--dataset", "ml-100k", "--output", str(folder), "--seed", str(seed),
                   "--max-steps", str(args.max_steps), "--recipe", args.recipe, "--no-progress"]  # fmt: skip
        # Always run: a finished folder skips every stage, and one that ran other options (job.json) is refused.
        folder.mkdir(parents=True, exist_ok=True)
        with (folder.parent / f"seed-{seed}.log").open("a") as log:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, check=True)
        runs[seed] = json.loads((folder / "metrics.json").read_text())["test"]
        seconds = sum(json.loads((folder / "stages.json").read_text()).values())
        runs[seed]["seconds"] = seconds
        print(f"seed {seed}: ContRec {runs[seed]['contrec']['ndcg@10']:.4f}, SASRec "
              f"{runs[seed]['sasrec']['ndcg@10']:.4f} ({seconds:.0f}s)", flush=True)  # fmt: skip

    sasrec = statistics.mean(r["sasrec"]["ndcg@10"] for r in runs.values())
    lines = [
        "| model | test HR@10 | test NDCG@10 | NDCG@10 per seed | ÷ SASRec-CE |",
        "|---|---:|---:|---|---:|",
    ]
    for key, label in ROWS.items():
        ndcg = [r[key]["ndcg@10"] for r in runs.values()]
        hr = [r[key]["hr@10"] for r in runs.values()]
        per_seed = ", ".join(f"{v:.4f}" for v in ndcg)
        lines.append(f"| {label} | {mean_std(hr)} | {mean_std(ndcg)} | {per_seed} | "
                     f"{statistics.mean(ndcg) / sasrec:.2f}× |")  # fmt: skip
    weights = ", ".join(f"{r['contrec_fused']['text_weight']:g}" for r in runs.values())
    times = ", ".join(f"{r['seconds']:.0f}" for r in runs.values())
    lines += [
        "",
        f"ML-100K, leave-one-out, full ranking over 1,682 items, history masked, 943 test users; recipe "
        f"`{args.recipe}`, {args.max_steps} stage-2 steps; seeds {', '.join(map(str, args.seeds))} (each seeds the "
        f"LightGCN features, the σ-VAE, stage 2 and SASRec). λ_text chosen on validation per seed: {weights}. Wall "
        f"time per job (s): {times}." + (f" {args.note}" if args.note else ""),
    ]
    publish(lines, "main_job_seeds.py", *SECTIONS[args.recipe], args.write_docs)


if __name__ == "__main__":
    main()
