"""The paper's ablations of the recommender, each trained the way the main job trains ContRec, on its split.

Reproduce (after `make demo`, which writes runs/demo; ~11 min per variant on a 2-core CPU):
    python benchmarks/stage2_ablations.py --demo runs/demo --variants vq-tokens regression-head dispersive-off \
        dispersive-flipped seed-1 seed-2 text-features --write-docs

Every variant trains stage 2 for the main job's 2,000 steps with its validation schedule (500 users every 500 steps,
best checkpoint kept), from runs/demo's stage-1 tokenizer unless it replaces the tokenizer, and with one change
against the main job's settings. Its best model is then evaluated like the main job's ContRec row: fast path, x₀
read-out, guidance 1, all users, leave-one-out, full ranking, history masked. Results are cached per variant under
`--output`; a variant whose results exist is not retrained (`--retrain` forces it). The table lists every variant
with results, against the main job's own model (`runs/demo/recommender`), evaluated here the same way.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
import traceback
from pathlib import Path

import torch
from _report import command_line, parse_device, provenance, write_section

from contrec_hf.data import SequentialDataset
from contrec_hf.main_job import contrec_metrics
from contrec_hf.models import ContRecForRecommendation
from contrec_hf.pipelines import build_pipeline
from contrec_hf.training import RecommenderTrainingArguments, load_stage1, run_recommender_stage, run_tokenizer_stage
from contrec_hf.utils import write_json

# name → (what changes, config overrides, stage-1 tokenizer: None = the demo's, seed)
VARIANTS: dict[str, tuple[str, dict, str | None, int]] = {
    "vq-tokens": ("discrete tokens: VQ-VAE tokenizer (K = 2 codes of 256 per item, straight-through)", {}, "vq", 0),
    "regression-head": (
        "deterministic regression head (same network and target, no diffusion)",
        {"regression_head": True},
        None,
        0,
    ),
    "dispersive-off": ("Dispersive Loss off (λ_disp = 0)", {"dispersive_loss_weight": 0.0}, None, 0),
    "dispersive-flipped": (
        "Dispersive Loss with the sign of the authors' code",
        {"flip_dispersive_sign": True},
        None,
        0,
    ),
    "paper-single-target": (
        "the paper's single `<pref>` diffusion target (no dense next-item targets)",
        {"history_diffusion_weight": 0.0},
        None,
        0,
    ),
    "epsilon": ("ε-prediction instead of x₀-prediction", {"prediction_type": "epsilon"}, None, 0),
    "text-features": ("text item features (title + genres through the text encoder)", {}, "runs/tokenizer-text", 0),
    "hybrid-features": ("hybrid item features (collaborative ⊕ text)", {}, "runs/tokenizer-hybrid", 0),
    "seed-1": ("the reference, stage-2 seed 1", {}, None, 1),
    "seed-2": ("the reference, stage-2 seed 2", {}, None, 2),
}
METRICS = ("hr@10", "ndcg@10", "ndcg@20", "mrr")


def vq_tokenizer(demo: Path, data: SequentialDataset, output: Path) -> Path:
    """Stage 1 with discrete tokens: the demo's collaborative features, its tokenizer settings, VQ on, σ-sampling
    off (noise before a nearest-neighbour snap has no purpose)."""
    folder = output / "tokenizer-vq"
    if not (folder / "features").is_dir():  # the same features as the demo's tokenizer (stage 2 reads them here)
        shutil.copytree(demo / "tokenizer" / "features", folder / "features")
    if not (folder / "config.json").is_file():
        vq = {"quantizer": "vq", "sigma_sampling": False}
        run_tokenizer_stage(data, "collaborative", folder, tokenizer_kwargs=vq, overwrite=True)
    return folder


def code_usage(tokenizer_dir: Path, data: SequentialDataset) -> dict:
    """How discrete a VQ tokenizer's items are: codebook entries in use per token, distinct code tuples."""
    tokenizer, features = load_stage1(tokenizer_dir, data)
    codes = tokenizer.codes(features.features.float())  # [N, K]
    return {
        "codes_used_per_token": [int(codes[:, k].unique().numel()) for k in range(codes.shape[1])],
        "distinct_items": len({tuple(row) for row in codes.tolist()}),
        "num_items": codes.shape[0],
    }


def evaluate(recommender_dir: Path, tokenizer_dir: Path, data: SequentialDataset, device, full_path=False) -> dict:
    """Validation and test metrics of a trained recommender: fast path (or full path), x₀ read-out, guidance 1."""
    from transformers import AutoTokenizer

    _, features = load_stage1(tokenizer_dir, data)
    recommender = ContRecForRecommendation.from_pretrained(recommender_dir)
    text_tokenizer = AutoTokenizer.from_pretrained(recommender_dir / "text_tokenizer")
    pipe = build_pipeline(recommender, text_tokenizer, data, features.features).to(device)
    with torch.no_grad():
        return {split: contrec_metrics(pipe, data, split, full_path=full_path) for split in ("validation", "test")}


def mean_std(values: list[float]) -> str:
    values = torch.tensor(values, dtype=torch.float64)
    return f"{float(values.mean()):.4f} ± {float(values.std(unbiased=False)):.4f}"


def seeds_table(rows: list[dict], demo: Path, data, output: Path, baselines: Path | None, device) -> str:
    """ContRec's fast and full paths over the stage-2 seeds, next to the baselines' seeds (if given)."""
    seeds = [r for r in rows if r["name"] in ("reference", "seed-1", "seed-2")]
    for row in seeds:  # the full path is evaluated once per seed and cached in the results file
        if "metrics_full" not in row:
            folder = demo / "recommender" if row["name"] == "reference" else output / row["name"] / "training" / "best"
            row["metrics_full"] = evaluate(folder, demo / "tokenizer", data, device, full_path=True)
            write_json(
                output / ("reference.json" if row["name"] == "reference" else f"{row['name']}/results.json"), row
            )
    models = {
        "ContRec, fast path": [r["metrics"]["test"] for r in seeds],
        "ContRec, full path (text, then `<pref>`)": [r["metrics_full"]["test"] for r in seeds],
    }
    if baselines is not None:
        for name, results in json.loads(baselines.read_text()).items():
            models[{"sasrec": "SASRec-CE", "pop": "Popularity"}.get(name, name)] = [r["test"] for r in results]
    lines = [
        "| model | seeds | test HR@10 | test NDCG@10 | test NDCG@20 | test MRR |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, tests in models.items():
        cells = " | ".join(mean_std([t[m] for t in tests]) for m in ("hr@10", "ndcg@10", "ndcg@20", "mrr"))
        lines.append(f"| {name} | {len(tests)} | {cells} |")
    if "SASRec-CE" in models:
        ratio = statistics.mean(t["ndcg@10"] for t in models["ContRec, fast path"]) / statistics.mean(
            t["ndcg@10"] for t in models["SASRec-CE"]
        )
        lines += ["", f"ContRec (fast path) / SASRec-CE test NDCG@10: **{ratio:.2f}×** (goal ≥ 1.05×)."]
    lines += ["", f"ContRec seeds: stage-2 seeds {[r['seed'] for r in seeds]} on the stage-1 tokenizer of `{demo}`."]
    return "\n".join(lines)


def run_variant(name: str, demo: Path, data: SequentialDataset, output: Path, retrain: bool, device) -> dict:
    results = output / name / "results.json"
    if results.is_file() and not retrain:
        return json.loads(results.read_text())
    label, overrides, tokenizer, seed = VARIANTS[name]
    tokenizer_dir = vq_tokenizer(demo, data, output) if tokenizer == "vq" else Path(tokenizer or demo / "tokenizer")
    args = RecommenderTrainingArguments(output_dir=str(output / name / "training"), max_steps=2000, eval_steps=500,
                                        save_steps=250, eval_users=500, seed=seed)  # fmt: skip
    started = time.perf_counter()
    run_recommender_stage(data, tokenizer_dir, args, config_overrides=overrides, progress=False)
    seconds = time.perf_counter() - started
    log = json.loads((output / name / "training" / "training_log.json").read_text())
    best_val = max(row["val_ndcg@10"] for row in log if "val_ndcg@10" in row)
    metrics = evaluate(output / name / "training" / "best", tokenizer_dir, data, device)
    diagnostics = json.loads((tokenizer_dir / "diagnostics.json").read_text())
    out = {"name": name, "label": label, "overrides": overrides, "tokenizer": str(tokenizer_dir), "seed": seed,
           "train_seconds": seconds, "best_val_ndcg@10_500_users": best_val, "metrics": metrics,
           "tokenizer_heldout_mse": diagnostics.get("heldout_mse")}  # fmt: skip
    if tokenizer == "vq":
        out["code_usage"] = code_usage(tokenizer_dir, data)
    write_json(results, out)
    return out


def reference(demo: Path, data: SequentialDataset, output: Path, device) -> dict:
    results = output / "reference.json"
    if not results.is_file():
        log = json.loads((demo / "recommender-training" / "training_log.json").read_text())
        diagnostics = json.loads((demo / "tokenizer" / "diagnostics.json").read_text())
        write_json(results, {
            "name": "reference", "label": "reference: the main job's ContRec (σ-VAE, dense targets, λ_disp 0.5)",
            "seed": 0, "metrics": evaluate(demo / "recommender", demo / "tokenizer", data, device),
            "best_val_ndcg@10_500_users": max(row["val_ndcg@10"] for row in log if "val_ndcg@10" in row),
            "tokenizer_heldout_mse": diagnostics.get("heldout_mse"),
        })  # fmt: skip
    return json.loads(results.read_text())


def table(rows: list[dict]) -> str:
    ref = rows[0]["metrics"]["test"]["ndcg@10"]
    lines = [
        "| variant | stage-1 held-out MSE | best val NDCG@10 (500 users) | "
        + " | ".join(f"test {m}" for m in METRICS) + " | test NDCG@10 vs reference |",
        "|---|---:|---:|" + "---:|" * len(METRICS) + "---:|",
    ]  # fmt: skip
    for row in rows:
        test = row["metrics"]["test"]
        mse = row.get("tokenizer_heldout_mse")
        lines.append(
            f"| {row['label']} | {mse:.4f} | {row['best_val_ndcg@10_500_users']:.4f} | "
            + " | ".join(f"{test[m]:.4f}" for m in METRICS)
            + f" | {test['ndcg@10'] / ref:.2f}× |"
        )
    seeds = [r for r in rows if r["name"] in ("reference", "seed-1", "seed-2")]
    if len(seeds) > 1:
        values = torch.tensor([r["metrics"]["test"]["ndcg@10"] for r in seeds])
        std = float(values.std(unbiased=False))
        lines += [
            "",
            f"Reference over stage-2 seeds {[r['seed'] for r in seeds]}: test NDCG@10 {float(values.mean()):.4f} ± "
            f"{std:.4f}; differences smaller than about twice that are noise.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--output", default="runs/ablations")
    parser.add_argument("--variants", nargs="*", default=[], choices=sorted(VARIANTS))
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--baselines-json", type=Path, help="`baselines_ml100k.py --json` output, for the seeds table")
    parser.add_argument(
        "--device",
        default="cpu",
        help="where the trained models are evaluated (stage-2 training "
        "runs where accelerate puts it: the GPU when one is visible)",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    device = parse_device(parser, args.device)

    demo, output = Path(args.demo), Path(args.output)
    data = SequentialDataset.load(demo / "data")
    for name in args.variants:
        print(f"== {name}: {VARIANTS[name][0]}", flush=True)
        try:
            run_variant(name, demo, data, output, args.retrain, device)
        except Exception:  # report and go on with the other variants
            traceback.print_exc()
    rows = [reference(demo, data, output, device)]
    rows += [json.loads(p.read_text()) for name in VARIANTS if (p := output / name / "results.json").is_file()]
    body = table(rows)
    print(body)
    seeds = seeds_table(rows, demo, data, output, args.baselines_json, device)
    print(seeds)
    if args.write_docs:
        body += (
            "\n\nML-100K (943 users), the split and stage-1 tokenizer of `runs/demo`; each row changes one thing "
            "against the reference and trains stage 2 for 2,000 steps (batch 16, tiny Llama backbone), keeping the "
            "best of 4 validations; test: fast path, x₀ read-out, guidance 1, full ranking.\n\n"
        )
        names = [row["name"] for row in rows[1:]]
        body += provenance(
            command_line("stage2_ablations.py", ["--demo", args.demo, "--variants", *names, "--write-docs"]), device
        )
        write_section("stage2_ablations", body, "The paper's ablations: one change at a time")
        extra = ["--baselines-json", str(args.baselines_json)] if args.baselines_json else []
        seeds += "\n\n" + provenance(
            command_line("stage2_ablations.py", ["--demo", args.demo, *extra, "--write-docs"]), device
        )
        write_section("contrec_seeds", seeds, "ContRec over seeds against the baselines")


if __name__ == "__main__":
    main()
