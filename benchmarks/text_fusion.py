"""Text + latent fusion (docs/method.md §5) against the latent score alone and the text score alone.

Reproduce (after `make demo`):
    python benchmarks/text_fusion.py --run runs/demo --write-docs

The full path writes its reasoning (greedy, the generated category and title) for every user, then reads the
preference latent at `<pref>` (x₀ read-out). λ_text is chosen on validation over `--weights`; the test table gives
the latent score alone (λ = 0), the fused score at the chosen λ and the text score alone, all users, history masked.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _report import command_line, parse_device, provenance, write_section

from contrec_hf.data import SequentialDataset
from contrec_hf.pipelines import ContRecDiffusionPipeline, tune_text_weight


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="a main-job folder (data/ and pipeline/)")
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0])
    parser.add_argument("--guidance-scale", type=float, default=1.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    parse_device(parser, args.device)

    run = Path(args.run)
    data = SequentialDataset.load(run / "data")
    pipe = ContRecDiffusionPipeline.from_pretrained(run / "pipeline").to(args.device)
    pipe.set_progress_bar_config(disable=True)
    started = time.perf_counter()
    kwargs = {"weights": args.weights, "users": 0, "guidance_scale": args.guidance_scale}
    with torch.no_grad():
        best, validation = tune_text_weight(pipe, data, split="validation", **kwargs)
        _, test = tune_text_weight(pipe, data, split="test", **kwargs)
    seconds = time.perf_counter() - started
    rows = [("latent score only (λ = 0)", 0.0), (f"fused, λ_text = {best:g} (best on validation)", best),
            ("text score only", float("inf"))]  # fmt: skip
    lines = [
        "| score | val NDCG@10 | test HR@10 | test NDCG@10 | test MRR |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, weight in rows:
        t = test[weight]
        lines.append(
            f"| {label} | {validation[weight]['ndcg@10']:.4f} | {t['hr@10']:.4f} | {t['ndcg@10']:.4f} | "
            f"{t['mrr']:.4f} |"
        )
    sweep = ", ".join(f"λ {w:g}: {validation[w]['ndcg@10']:.4f}" for w in args.weights)
    lines += [
        "",
        f"Validation NDCG@10 over λ_text: {sweep}.",
        "",
        f"ML-100K, all {data.num_users} users, the full path of `{run / 'pipeline'}` (greedy reasoning, "
        f"then `<pref>`, "
        f"x₀ read-out, guidance {args.guidance_scale:g}); {seconds:.0f} s for both splits.",
        "",
        provenance(command_line("text_fusion.py"), args.device),
    ]
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        write_section("text_fusion", body, "Text + latent fusion")


if __name__ == "__main__":
    main()
