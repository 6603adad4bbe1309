"""The paper's ablations of the recommender, each trained the way the main job trains ContRec, on its split.

Reproduce (after `make demo`, which writes runs/demo; ~11 min per 2,000-step variant (backbone-4x256: ~36,
history-50: ~29), 30-50 min per 6,000-step one, on a 2-core CPU with nothing else running):
    python benchmarks/stage2_ablations.py --demo runs/demo --variants seed-1 seed-2 vq-tokens no-sigma-sampling \
        no-feature-masking shared-encoder regression-head regression-head@1 regression-head@2 dispersive-off \
        dispersive-flipped epsilon text-features hybrid-features steps-6000 regression-head-steps-6000 \
        history-50 backbone-4x256 dispersive-off@1 dispersive-off@2 dispersive-flipped@1 dispersive-flipped@2 \
        vq-tokens@1 shared-encoder@1 --sampled-readout --write-docs

Every variant trains stage 2 for the main job's 2,000 steps with its validation schedule (500 users every 500 steps,
best checkpoint kept) unless it changes the schedule, from runs/demo's stage-1 tokenizer unless it replaces the
tokenizer, and with one change against the main job's settings (the last variant combines two). Its best model is
then evaluated like the main job's ContRec row: fast path, x₀ read-out, guidance 1, all users, leave-one-out, full
ranking, history masked. Results are cached per variant under `--output`; a variant whose results exist is not
retrained (`--retrain` forces it). The table lists every variant with results, against the main job's own model
(`runs/demo/recommender`), evaluated here the same way.
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
from _report import IMAGES, command_line, parse_device, provenance, write_section
from diffusers import DDIMScheduler

from contrec_hf.data import SequentialDataset
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.main_job import contrec_metrics, contrec_scorer
from contrec_hf.models import ContRecForRecommendation
from contrec_hf.pipelines import build_pipeline
from contrec_hf.training import RecommenderTrainingArguments, load_stage1, run_recommender_stage, run_tokenizer_stage
from contrec_hf.utils import write_json

# The `backbone-4x256` variant's Llama: twice the tiny backbone's width and depth, heads of the same size.
LARGER_BACKBONE = {"hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4, "num_attention_heads": 8,
                   "num_key_value_heads": 4}  # fmt: skip
# name → (what changes, stage-2 config overrides, stage-1 tokenizer, seed). The tokenizer is None for the demo's, a
# folder for a tokenizer trained elsewhere, or a dict of tokenizer config switches: stage 1 is then retrained here on
# the demo's own features with those switches (and the demo's settings otherwise).
VARIANTS: dict[str, tuple[str, dict, str | dict | None, int]] = {
    "vq-tokens": (
        "discrete tokens: VQ-VAE tokenizer (K = 2 codes of 256 per item, straight-through)",
        {},
        # σ-sampling off: noise before a nearest-neighbour snap has no purpose
        {"quantizer": "vq", "sigma_sampling": False},
        0,
    ),
    "no-sigma-sampling": ("σ-VAE without σ-sampling (stage 1 retrained)", {}, {"sigma_sampling": False}, 0),
    "no-feature-masking": ("σ-VAE without feature masking (stage 1 retrained)", {}, {"feature_masking": False}, 0),
    "shared-encoder": ("σ-VAE with one shared encoder (stage 1 retrained)", {}, {"multi_encoder": False}, 0),
    "sigma-vae-plain": (
        "σ-VAE with all three techniques off (stage 1 retrained)",
        {},
        {"sigma_sampling": False, "feature_masking": False, "multi_encoder": False},
        0,
    ),
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
    "history-50": ("history length L = 50 items (SASRec's) instead of 20", {"max_history": 50}, None, 0),
    "backbone-4x256": (
        "a larger backbone: Llama with 4 layers of width 256 (the tiny one: 2 of 128)",
        {"text_config": LARGER_BACKBONE},
        None,
        0,
    ),
    "ranking-loss": (
        "a catalog softmax on the x₀ read-out (λ_rank = 1, cosine / τ 0.07, at <pref> and the dense targets)",
        {"ranking_loss_weight": 1.0},
        None,
        0,
    ),
    "ranking-loss-dispersive-off": (
        "two changes: the ranking loss (λ_rank = 1) and the Dispersive Loss off",
        {"ranking_loss_weight": 1.0, "dispersive_loss_weight": 0.0},
        None,
        0,
    ),
    "seed-0": ("the reference retrained here, stage-2 seed 0 (the demo's own settings)", {}, None, 0),
    "seed-1": ("the reference, stage-2 seed 1", {}, None, 1),
    "seed-2": ("the reference, stage-2 seed 2", {}, None, 2),
    "steps-6000": ("3× the schedule: 6,000 stage-2 steps (validated every 1,000)", {}, None, 0),
    "regression-head-steps-6000": (
        "two changes: the regression head and 6,000 steps (validated every 1,000)",
        {"regression_head": True},
        None,
        0,
    ),
}
# The main job's stage-2 schedule, and the variants that change it.
SCHEDULE = {"max_steps": 2000, "eval_steps": 500, "save_steps": 250, "eval_users": 500}
LONG_SCHEDULE = {"max_steps": 6000, "eval_steps": 1000, "save_steps": 500}
SCHEDULES = {"steps-6000": LONG_SCHEDULE, "regression-head-steps-6000": LONG_SCHEDULE}
METRICS = ("hr@10", "ndcg@10", "ndcg@20", "mrr")
BASELINE_NAMES = {"sasrec": "SASRec-CE", "pop": "Popularity"}  # `baselines_ml100k.py --json` keys


def retrained_tokenizer(name: str, switches: dict, demo: Path, data: SequentialDataset, output: Path) -> Path:
    """Stage 1 again on the demo's collaborative features, with the demo's tokenizer settings but ``switches``."""
    folder = output / f"tokenizer-{name}"
    if not (folder / "features").is_dir():  # the same features as the demo's tokenizer (stage 2 reads them here)
        shutil.copytree(demo / "tokenizer" / "features", folder / "features")
    if not (folder / "config.json").is_file():
        run_tokenizer_stage(data, "collaborative", folder, tokenizer_kwargs=switches, overwrite=True, progress=False)
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


def load_pipeline(recommender_dir: Path, tokenizer_dir: Path, data: SequentialDataset, device):
    from transformers import AutoTokenizer

    _, features = load_stage1(tokenizer_dir, data)
    recommender = ContRecForRecommendation.from_pretrained(recommender_dir)
    text_tokenizer = AutoTokenizer.from_pretrained(recommender_dir / "text_tokenizer")
    return build_pipeline(recommender, text_tokenizer, data, features.features).to(device)


def evaluate(recommender_dir: Path, tokenizer_dir: Path, data: SequentialDataset, device, full_path=False) -> dict:
    """Validation and test metrics of a trained recommender: fast path (or full path), x₀ read-out, guidance 1."""
    pipe = load_pipeline(recommender_dir, tokenizer_dir, data, device)
    with torch.no_grad():
        return {split: contrec_metrics(pipe, data, split, full_path=full_path) for split in ("validation", "test")}


def evaluate_sampled(recommender_dir: Path, tokenizer_dir: Path, data: SequentialDataset, device) -> dict:
    """Test metrics with a sampling read-out: the mean of 8 DDIM-20 samples at guidance 3 (fast path, seed 0)."""
    pipe = load_pipeline(recommender_dir, tokenizer_dir, data, device)
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    generator = torch.Generator(device).manual_seed(0)
    scorer = contrec_scorer(pipe, False, readout="mean", guidance_scale=3.0, num_inference_steps=20, num_samples=8,
                            generator=generator)  # fmt: skip
    histories, targets = data.split("test")
    return evaluate_scorer(scorer, histories, targets, data.num_items, batch_size=64, progress=False).metrics


def model_dirs(row: dict, demo: Path, output: Path) -> tuple[Path, Path, Path]:
    """A result's (trained recommender, its stage-1 tokenizer, its results file)."""
    if row["name"] == "reference":
        return demo / "recommender", demo / "tokenizer", output / "reference.json"
    folder = output / row["name"]
    return folder / "training" / "best", Path(row["tokenizer"]), folder / "results.json"


def mean_std(values: list[float]) -> str:
    """``mean ± std`` (population std) of several values; one value as it is."""
    if len(values) == 1:
        return f"{values[0]:.4f}"
    values = torch.tensor(values, dtype=torch.float64)
    return f"{float(values.mean()):.4f} ± {float(values.std(unbiased=False)):.4f}"


def seeds_table(rows: list[dict], demo: Path, data, output: Path, baselines: Path | None, device) -> str:
    """ContRec's fast and full paths over the stage-2 seeds, next to the baselines' seeds (if given)."""
    seeds = [r for r in rows if r["name"] in ("reference", "seed-1", "seed-2")]
    for row in seeds:  # the full path is evaluated once per seed and cached in the results file
        if "metrics_full" not in row:
            recommender, tokenizer, results = model_dirs(row, demo, output)
            row["metrics_full"] = evaluate(recommender, tokenizer, data, device, full_path=True)
            write_json(results, row)
    models = {
        "ContRec, fast path": [r["metrics"]["test"] for r in seeds],
        "ContRec, full path (text, then `<pref>`)": [r["metrics_full"]["test"] for r in seeds],
    }
    if baselines is not None:
        for name, results in json.loads(baselines.read_text()).items():
            models[BASELINE_NAMES.get(name, name)] = [r["test"] for r in results]
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


def variant_name(text: str) -> str:
    """``NAME`` or ``NAME@SEED`` (the variant with another stage-2 seed), checked; for argparse."""
    base, _, seed = text.partition("@")
    if base not in VARIANTS or (seed and not seed.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME or NAME@SEED, NAME one of {', '.join(VARIANTS)}")
    return text


def group_of(name: str) -> str:
    """The variant a result belongs to: its name without ``@SEED`` (the reference's seeds are ``seed-N``)."""
    base = name.partition("@")[0]
    return "reference" if base in ("seed-1", "seed-2") else base


def run_variant(name: str, demo: Path, data: SequentialDataset, output: Path, retrain: bool, device) -> dict:
    results = output / name / "results.json"
    if results.is_file() and not retrain:
        return json.loads(results.read_text())
    base, _, seed_text = name.partition("@")
    label, overrides, tokenizer, seed = VARIANTS[base]
    seed = int(seed_text) if seed_text else seed
    if isinstance(tokenizer, dict):  # stage 1 is shared by the stage-2 seeds of a variant
        tokenizer_dir = retrained_tokenizer(base, tokenizer, demo, data, output)
    else:
        tokenizer_dir = Path(tokenizer or demo / "tokenizer")
    schedule = {**SCHEDULE, **SCHEDULES.get(base, {})}
    args = RecommenderTrainingArguments(output_dir=str(output / name / "training"), seed=seed, **schedule)
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
    if isinstance(tokenizer, dict) and tokenizer.get("quantizer") == "vq":
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


def grouped(rows: list[dict]) -> dict[str, list[dict]]:
    """The results of each variant (its stage-2 seeds), variants in the order of ``rows``."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(group_of(row["name"]), []).append(row)
    return groups


def plot(rows: list[dict], baselines: Path | None, path: Path) -> None:
    """Test NDCG@10 of every variant (x₀ read-out and, where measured, the mean of 8 samples), mean ± std over its
    stage-2 seeds, against the baselines' means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = grouped(rows)
    names = list(groups)[::-1]  # the reference on top
    positions = torch.arange(len(names), dtype=torch.float64)
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(names) + 1.4))
    bars = [("x₀ read-out (the default)", "metrics", 0.2)]
    if all("metrics_sampled" in r for r in rows):
        bars.append(("mean of 8 DDIM-20 samples, w = 3", "metrics_sampled", -0.2))
    for label, key, offset in bars:
        values = [[r[key]["test"]["ndcg@10"] if key == "metrics" else r[key]["ndcg@10"] for r in groups[n]]
                  for n in names]  # fmt: skip
        means = [statistics.mean(v) for v in values]
        spreads = [statistics.pstdev(v) if len(v) > 1 else float("nan") for v in values]  # no bar for one seed
        ax.barh(positions + offset, means, height=0.38, xerr=spreads, capsize=2, label=label)
    if baselines is not None:
        for (name, results), style in zip(json.loads(baselines.read_text()).items(), ("--", ":"), strict=False):
            mean = statistics.mean(r["test"]["ndcg@10"] for r in results)
            label = f"{BASELINE_NAMES.get(name, name)} (mean over seeds)"
            ax.axvline(mean, color="black", linestyle=style, linewidth=1, label=label)
    ax.set_yticks(positions.tolist(), names)
    ax.set_xlabel("test NDCG@10 (ML-100K, leave-one-out, full ranking)")
    ax.set_title("The paper's ablations: one change at a time")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[dict]) -> str:
    """One line per variant: means over its seeds (test NDCG@10 with its spread), against the reference's mean over
    the same seeds (every variant's seeds must be among the reference's)."""
    groups = grouped(rows)

    def mean(group: list[dict], key) -> float:
        return statistics.mean(key(r) for r in group)

    reference = {r["seed"]: r["metrics"]["test"]["ndcg@10"] for r in groups["reference"]}
    sampled = all("metrics_sampled" in r for r in rows)
    lines = [
        "| variant | stage-2 seeds | stage-1 held-out MSE | best val NDCG@10 (500 users) | test NDCG@10 | "
        + " | ".join(f"test {m}" for m in METRICS if m != "ndcg@10") + " | test NDCG@10 vs reference |"
        + (" test NDCG@10, mean of 8 DDIM-20 samples (w = 3) |" if sampled else ""),
        "|---|---|---:|---:|---:|" + "---:|" * (len(METRICS) - 1) + "---:|" + ("---:|" if sampled else ""),
    ]  # fmt: skip
    for group in groups.values():
        ndcg = [r["metrics"]["test"]["ndcg@10"] for r in group]
        cells = [
            group[0]["label"],
            ", ".join(str(r["seed"]) for r in group),
            f"{group[0].get('tokenizer_heldout_mse'):.4f}",
            f"{mean(group, lambda r: r['best_val_ndcg@10_500_users']):.4f}",
            mean_std(ndcg),
            *(f"{mean(group, lambda r, m=m: r['metrics']['test'][m]):.4f}" for m in METRICS if m != "ndcg@10"),
            # against the reference's mean over the same stage-2 seeds
            f"{statistics.mean(ndcg) / statistics.mean(reference[r['seed']] for r in group):.2f}×",
        ]
        if sampled:
            cells.append(mean_std([r["metrics_sampled"]["ndcg@10"] for r in group]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo")
    parser.add_argument("--output", default="runs/ablations")
    parser.add_argument(
        "--variants",
        nargs="*",
        default=[],
        type=variant_name,
        help=f"of {', '.join(VARIANTS)}; NAME@SEED trains NAME with another stage-2 seed (its rows are averaged)",
    )
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument(
        "--sampled-readout",
        action="store_true",
        help="also evaluate every model with the mean of 8 DDIM-20 samples at guidance 3 (test, fast path)",
    )
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
        print(f"== {name}: {VARIANTS[name.partition('@')[0]][0]}", flush=True)
        try:
            run_variant(name, demo, data, output, args.retrain, device)
        except Exception:  # report and go on with the other variants
            traceback.print_exc()
    rows = [reference(demo, data, output, device)]
    found = {
        p.parent.name for p in output.glob("*/results.json") if group_of(p.parent.name) in (*VARIANTS, "reference")
    }
    order = list(VARIANTS)  # variants in their order here, each variant's seeds in increasing order
    found = sorted(found, key=lambda n: (order.index(n.partition("@")[0]), int(n.partition("@")[2] or 0)))
    rows += [json.loads((output / name / "results.json").read_text()) for name in found]
    for row in rows if args.sampled_readout else []:  # evaluated once per model, cached in its results file
        if "metrics_sampled" not in row:
            recommender, tokenizer, results = model_dirs(row, demo, output)
            row["metrics_sampled"] = evaluate_sampled(recommender, tokenizer, data, device)
            write_json(results, row)
    body = table(rows)
    print(body)
    seeds = seeds_table(rows, demo, data, output, args.baselines_json, device)
    print(seeds)
    if args.write_docs:
        body += (
            "\n\nML-100K (943 users), the split and stage-1 tokenizer of `runs/demo`; each row changes one thing "
            "against the reference (the last rows' names say otherwise) and trains stage 2 for 2,000 steps "
            "(batch 16, tiny Llama backbone), keeping the best of 4 validations (6,000-step rows: the best of 6); "
            "test: fast path, x₀ read-out, guidance 1, full ranking. Rows that retrain stage 1 do so on the same "
            "collaborative features with the demo's tokenizer settings but the one switch. Metrics are means over "
            "the stage-2 seeds listed (NDCG@10 with its standard deviation); the last column divides by the "
            "reference's mean over the same seeds.\n\n"
        )
        IMAGES.mkdir(parents=True, exist_ok=True)
        plot(rows, args.baselines_json, IMAGES / "stage2_ablations.png")
        body += "![test NDCG@10 of every variant](img/stage2_ablations.png)\n\n"
        names = [row["name"] for row in rows[1:]]
        sampled = ["--sampled-readout"] if args.sampled_readout else []
        command = ["--demo", args.demo, "--variants", *names, *sampled, "--write-docs"]
        body += provenance(command_line("stage2_ablations.py", command), device)
        write_section("stage2_ablations", body, "The paper's ablations: one change at a time")
        extra = ["--baselines-json", str(args.baselines_json)] if args.baselines_json else []
        seeds += "\n\n" + provenance(
            command_line("stage2_ablations.py", ["--demo", args.demo, *extra, "--write-docs"]), device
        )
        write_section("contrec_seeds", seeds, "ContRec over seeds against the baselines")


if __name__ == "__main__":
    main()
