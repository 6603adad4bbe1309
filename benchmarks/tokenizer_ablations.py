"""σ-VAE ablations on ML-100K: each anti-collapse technique switched off in turn (docs/method.md §2).

Reproduce (CPU; add --device cuda on a GPU machine, the script is otherwise unchanged):
    .venv/bin/python benchmarks/tokenizer_ablations.py --features collaborative --seeds 0 1 2 --write-docs

Item features are built once (cached under --cache) and the tokenizer is trained once per variant and seed
on the same 80/10/10 item split of that seed. Reported: held-out reconstruction MSE (standardised features:
predicting the mean scores 1.0), effective rank of the items' token means (max K·d_z), the effective rank
of the retrieval latent (mean of the K tokens, max d_z) and the fraction of near-dead dimensions.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from _report import ROOT, parse_device, provenance, write_section

from contrec_hf.data import load_sequential_dataset
from contrec_hf.features import build_item_features
from contrec_hf.models import ContRecTokenizerConfig
from contrec_hf.training import TokenizerTrainingArguments, train_item_tokenizer

VARIANTS = {
    "all three on (default)": {},
    "no σ-sampling": {"sigma_sampling": False},
    "no feature masking": {"feature_masking": False},
    "one shared encoder": {"multi_encoder": False},
    "all three off": {"sigma_sampling": False, "feature_masking": False, "multi_encoder": False},
}
COLUMNS = ("heldout_mse", "effective_rank", "latent_effective_rank", "dead_fraction")


def cell(values: list[float]) -> str:
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", choices=("collaborative", "text", "hybrid"), default="collaborative")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cache", type=Path, default=ROOT / "runs" / "features-cache")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the tokenizers train and are measured")
    args = parser.parse_args()
    device = parse_device(parser, args.device)

    data = load_sequential_dataset("ml-100k")
    features = build_item_features(data, args.features, cache_dir=args.cache / args.features)
    print(f"{args.features} features: {tuple(features.features.shape)}", flush=True)
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for name, switches in VARIANTS.items():
        for seed in args.seeds:
            config = ContRecTokenizerConfig(input_dim=features.dim, **switches)
            training = TokenizerTrainingArguments(seed=seed, device=args.device)
            result = train_item_tokenizer(features.features, config, training, progress=False)
            results[name].append(result.diagnostics)
            d = result.diagnostics
            print(
                f"{name} seed {seed}: heldout_mse {d['heldout_mse']:.4f} erank {d['effective_rank']:.2f} "
                f"({d['epochs']} epochs, {d['seconds']:.0f}s)",
                flush=True,
            )

    lines = ["| variant | " + " | ".join(COLUMNS) + " |", "|---|" + "---|" * len(COLUMNS)]
    for name, runs in results.items():
        lines.append(f"| {name} | " + " | ".join(cell([r[c] for r in runs]) for c in COLUMNS) + " |")
    command = f"python benchmarks/tokenizer_ablations.py --features {args.features} --seeds " + " ".join(
        map(str, args.seeds)
    )
    if args.device != "cpu":
        command += f" --device {args.device}"
    k, d_z = ContRecTokenizerConfig().num_tokens, ContRecTokenizerConfig().token_dim
    report = "\n".join(
        [
            f"ML-100K, {args.features} features {tuple(features.features.shape)}, K = {k}, d_z = {d_z}; "
            f"mean ± std over seeds {args.seeds}. Max effective rank: {k * d_z} (tokens), {d_z} (latent).",
            "",
            *lines,
            "",
            provenance(command, device),
        ]
    )
    print("\n" + report)
    if args.write_docs:
        docs = write_section(
            f"tokenizer_ablations_{args.features}", report, f"σ-VAE ablations ({args.features} features)"
        )
        print(f"\nwrote {docs}", file=sys.stderr)


if __name__ == "__main__":
    main()
