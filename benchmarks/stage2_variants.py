"""Stage-2 variants side by side: validation NDCG@10 over training, from the runs' `training_log.json`.

Each run is a `contrec-hf train` on the same split and stage-1 tokenizer (the ones of a main-job run), with the
same seed and validation users; only the options named in the table differ. Train the runs first, e.g.:

    contrec-hf train --dataset runs/demo/data --tokenizer runs/demo/tokenizer --output runs/exp-single-2k \\
        --max-steps 2000 --eval-steps 500 --save-steps 500 --eval-users 500 --history-diffusion-weight 0

then tabulate them:

    python benchmarks/stage2_variants.py --run "paper: <pref> target only, 2000 steps=runs/exp-single-2k" \\
        --run "dense next-item targets, 2000 steps=runs/exp-dense-2k" --write-docs
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _report import command_line, provenance, write_section

SECTION, TITLE = "stage2_variants", "Stage-2 variants: validation NDCG@10 over training"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="LABEL=FOLDER of a `contrec-hf train` run")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    logs = {}
    for spec in args.run:
        label, _, folder = spec.rpartition("=")
        path = Path(folder) / "training_log.json"
        if not label or not path.is_file():
            parser.error(f"--run {spec!r}: expected LABEL=FOLDER with FOLDER/training_log.json")
        logs[label] = {r["step"]: r for r in json.loads(path.read_text())}
    steps = sorted({s for log in logs.values() for s in log})
    header = "| variant | " + " | ".join(f"step {s}" for s in steps) + " | best | s/step |"
    rows = [header, "|---" * (len(steps) + 3) + "|"]
    for label, log in logs.items():
        cells = [f"{log[s]['val_ndcg@10']:.4f}" if s in log else "" for s in steps]
        best = max(r["val_ndcg@10"] for r in log.values())
        last = log[max(log)]
        rows.append(f"| {label} | " + " | ".join(cells) + f" | {best:.4f} | {last['seconds'] / last['step']:.2f} |")
    report = "\n".join(
        [
            "ML-100K, validation NDCG@10 on the trainer's fixed 500-user subset (x₀ read-out, fast path), same split,",
            "stage-1 tokenizer and seed for every row; s/step includes the validation passes.",
            "",
            *rows,
            "",
            provenance(command_line("stage2_variants.py")),
        ]
    )
    print(report)
    if args.write_docs:
        print(f"\nwrote {write_section(SECTION, report, TITLE)}")


if __name__ == "__main__":
    main()
