"""Pop and SASRec-CE on ML-100K over several seeds (leave-one-out, full ranking, history masked).

Reproduce (CPU; add --device cuda on a GPU machine, the script is otherwise unchanged):
    .venv/bin/python benchmarks/baselines_ml100k.py --seeds 0 1 2 --write-docs

Prints a mean ± std table over the seeds and, with --write-docs, replaces the section between the
markers in docs/benchmarks.md with it (command, date and machine included).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from _report import parse_device, provenance, write_section

from contrec_hf.baselines import run_baseline
from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import format_metrics_table

SECTION, TITLE = "baselines_ml100k", "Baselines on MovieLens-100K"


def summarise(runs: list[dict[str, float]]) -> dict[str, str]:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        out[key] = f"{statistics.mean(values):.4f} ± {spread:.4f}"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=["pop", "sasrec"])
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--json", type=Path, help="also write every run's metrics here")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where SASRec trains and is evaluated (Pop: CPU)")
    args = parser.parse_args()
    device = parse_device(parser, args.device)

    data = load_sequential_dataset("ml-100k")
    per_model: dict[str, list[dict]] = {m: [] for m in args.models}
    for model in args.models:
        for seed in args.seeds:
            result = run_baseline(model, data, seed=seed, training_kwargs={"device": args.device}, progress=False)
            per_model[model].append(result)
            print(
                f"{model} seed {seed}: test ndcg@10 {result['test']['ndcg@10']:.4f} ({result['seconds']:.0f}s)",
                flush=True,
            )

    rows, seconds = {}, {}
    for model, results in per_model.items():
        rows[model] = summarise([r["test"] for r in results])
        seconds[model] = statistics.mean(r["seconds"] for r in results)
    per_seed = {m: [round(r["test"]["ndcg@10"], 4) for r in rs] for m, rs in per_model.items()}
    table = format_metrics_table(rows)
    command = "python benchmarks/baselines_ml100k.py --seeds " + " ".join(map(str, args.seeds))
    if args.device != "cpu":
        command += f" --device {args.device}"
    report = "\n".join(
        [
            f"Test metrics, mean ± std over seeds {args.seeds} (ML-100K, 943 users, leave-one-out, full ranking,",
            "history masked, pessimistic ties). SASRec: defaults of `SASRecConfig` / `SASRecTrainingArguments`.",
            "",
            table,
            "",
            "Test NDCG@10 per seed: " + "; ".join(f"{m} {v}" for m, v in per_seed.items()),
            "",
            "Mean wall time per run: " + ", ".join(f"{m} {s:.0f} s" for m, s in seconds.items()),
            "",
            provenance(command, device),
        ]
    )
    print("\n" + report)
    if args.json:
        args.json.write_text(json.dumps(per_model, indent=1))
    if args.write_docs:
        print(f"\nwrote {write_section(SECTION, report, TITLE)}")


if __name__ == "__main__":
    main()
