"""One lever of the recommender, on and off, inside the main job: the same split, stage 1 and seed as finished runs.

For each ``--reference`` folder (a finished ``contrec-hf run``, e.g. ``runs/seeds/seed-0``) the script copies its
data, its stage 1 (LightGCN features and σ-VAE) and its baselines into ``--output/<name>/seed-S`` and resumes the main
job there with ``--set`` applied to `ContRecConfig`, and otherwise the reference's job options as its ``job.json``
recorded them (seed, stage-2 steps, backbone, …; ``--max-steps`` makes the steps the lever): stage 2, the pipeline
and the evaluation run again, so the lever's row and the reference's differ in that one change only. The table
compares test NDCG@10 / HR@10 over the references (mean ± population std), next to SASRec-CE of the same runs.

A lever of stage 1 instead (``--tokenizer-set``, `ContRecTokenizerConfig` fields, e.g. the VQ tokenizer) copies
the reference's item features but not its tokenizer: the σ-VAE is retrained here, with the reference's seed and the
main job's training arguments, on the same features; stage 2 then trains on the new tokens.

Reproduce (one main job without stage 1 per reference, ~25 min each on 2 cores with nothing else running):
    .venv/bin/python benchmarks/main_job_lever.py --name item-table-tokens --set item_table=tokens \
        --reference runs/seeds/seed-0 runs/seeds/seed-1 runs/seeds/seed-2 --write-docs
    .venv/bin/python benchmarks/main_job_lever.py --name vq-tokens --tokenizer-set quantizer=vq sigma_sampling=false \
        --reference runs/seeds/seed-0 runs/seeds/seed-1 runs/seeds/seed-2 --write-docs
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

from _report import ROOT, publish

from contrec_hf.data import SequentialDataset
from contrec_hf.features import CollaborativeConfig
from contrec_hf.main_job import run_main_job
from contrec_hf.models import effective_rank
from contrec_hf.pipelines import ContRecCatalog
from contrec_hf.training import TokenizerTrainingArguments, run_tokenizer_stage

ROWS = {"contrec": "ContRec, fast path", "contrec_full": "ContRec, full path", "sasrec": "SASRec-CE"}


def parse_value(text: str):
    """A ``--set`` value: JSON when it parses (numbers, true/false, null), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_overrides(pairs: list[str], parser: argparse.ArgumentParser) -> dict:
    overrides = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--set and --tokenizer-set take KEY=VALUE (a config field), got {pair!r}")
        overrides[key] = parse_value(value)
    return overrides


def reference_job(reference: Path) -> dict:
    """The job options a finished reference ran with (its ``job.json``: seed, stage-2 steps, backbone, …)."""
    path = reference / "job.json"
    if not path.is_file():
        raise SystemExit(
            f"{reference} has no job.json (a run from before it was recorded): rerun it with its own `contrec-hf run` "
            "command, which skips every finished stage and records the file"
        )
    return json.loads(path.read_text())


def lever_job_options(args: argparse.Namespace, jobs: list, configured: bool, parser) -> tuple[int, dict]:
    """``(the references' stage-2 steps, the job options the lever changes)``, after checking that the references
    share one schedule and one seed each, and that there is a lever (``configured``: a ``--set`` or
    ``--tokenizer-set``)."""
    steps = {job["max_steps"] for _, job in jobs}
    if len(steps) > 1:
        parser.error(f"the references ran different stage-2 steps ({sorted(steps)}): one table, one schedule")
    (steps,) = steps
    seeds = [job["seed"] for _, job in jobs]
    if len(set(seeds)) < len(seeds):
        parser.error(f"two references ran the same seed ({seeds}): each seed is one row of the table")
    lever = {"max_steps": args.max_steps or steps}
    if args.learning_rate is not None:
        if args.learning_rate in {job.get("learning_rate") for _, job in jobs}:
            parser.error(f"--learning-rate {args.learning_rate} is the references' own: give another, or leave it out")
        lever["learning_rate"] = args.learning_rate
    if args.ema_decay:
        if args.ema_decay in {job.get("ema_decay", 0.0) for _, job in jobs}:
            parser.error(f"--ema-decay {args.ema_decay} is the references' own: give another, or leave it out")
        lever["ema_decay"] = args.ema_decay
    if not configured and lever == {"max_steps": steps}:
        parser.error(f"give the lever: --set, --tokenizer-set, --max-steps other than the references' {steps}, "
                     "--learning-rate, --ema-decay, or several")  # fmt: skip
    return steps, lever


def prepare(reference: Path, folder: Path, seed: int, tokenizer_overrides: dict) -> dict:
    """Copy the reference's finished data, stage 1 and baselines into ``folder``; returns the reference's recipe.

    With ``tokenizer_overrides``, stage 1's tokenizer is retrained in ``folder`` on the reference's features instead.
    """
    done = json.loads((reference / "stages.json").read_text())
    missing = [stage for stage in ("data", "tokenizer", "baselines") if stage not in done]
    if missing or not (reference / "metrics.json").is_file():
        raise SystemExit(f"{reference} is not a finished main job (missing: {missing or ['metrics.json']})")
    recipe = json.loads((reference / "recipe.json").read_text())
    if (folder / "stages.json").is_file():  # resume a lever run
        return recipe
    folder.mkdir(parents=True)
    stages = {s: done[s] for s in ("data", "tokenizer", "baselines")}
    for stage in ("data", "baselines"):
        shutil.copytree(reference / stage, folder / stage)
    if tokenizer_overrides:
        features = folder / "tokenizer" / "features"
        shutil.copytree(reference / "tokenizer" / "features", features)
        kind = json.loads((reference / "tokenizer" / "diagnostics.json").read_text())["feature_kind"]
        started = time.perf_counter()
        run_tokenizer_stage(  # as the main job's stage 1 does; the features are the reference's (cached, same recipe)
            SequentialDataset.load(folder / "data"), kind, folder / "tokenizer", tokenizer_kwargs=tokenizer_overrides,
            args=TokenizerTrainingArguments(seed=seed), features_dir=features,
            collaborative=CollaborativeConfig(seed=seed), progress=False,
        )  # fmt: skip
        stages["tokenizer"] = time.perf_counter() - started
    else:
        shutil.copytree(reference / "tokenizer", folder / "tokenizer")
    (folder / "stages.json").write_text(json.dumps(stages))
    return recipe


def table_rank(run: Path) -> tuple[float, int]:
    """Effective rank and width of the item table a finished run's pipeline scores against (``[num_items, d_z]``,
    ``[num_items, hidden]`` when tied): a learned table that collapses shows here first (docs/method.md)."""
    table = ContRecCatalog.from_pretrained(run / "pipeline" / "catalog").latents
    return effective_rank(table), table.shape[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="the lever's name (its folder and docs section)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="ContRecConfig fields")
    parser.add_argument("--tokenizer-set", nargs="+", default=[], metavar="KEY=VALUE",
                        help="ContRecTokenizerConfig fields: stage 1's tokenizer is retrained with them")  # fmt: skip
    parser.add_argument("--reference", type=Path, nargs="+", required=True, help="finished main-job folders")
    parser.add_argument("--max-steps", type=int,
                        help="the lever's stage-2 steps (default: the references'; others are a lever)")  # fmt: skip
    parser.add_argument("--learning-rate", type=float,
                        help="the lever's stage-2 peak learning rate (default: the references')")  # fmt: skip
    parser.add_argument("--ema-decay", type=float,
                        help="the lever's stage-2 weight-average decay (default: the references', none)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "levers")
    parser.add_argument("--note", default="", help="a sentence for the caption")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    overrides = parse_overrides(args.set, parser)
    tokenizer_overrides = parse_overrides(args.tokenizer_set, parser)
    jobs = [(reference, reference_job(reference)) for reference in args.reference]  # a list: repeats are refused
    reference_steps, lever_job = lever_job_options(args, jobs, bool(overrides or tokenizer_overrides), parser)
    lever_steps = lever_job["max_steps"]

    pairs, ranks = {}, {}
    for reference, job in jobs:
        seed = job["seed"]
        folder = args.output / args.name / f"seed-{seed}"
        recipe = prepare(reference, folder, seed, tokenizer_overrides)
        lever = run_main_job(folder, **{**job, **lever_job}, recipe=recipe["name"],
                             config_overrides=overrides, progress=False)  # fmt: skip
        pairs[seed] = (json.loads((reference / "metrics.json").read_text())["test"], lever["test"])
        (before_rank, before_dim), (after_rank, after_dim) = table_rank(reference), table_rank(folder)
        ranks[seed] = (before_rank, after_rank, before_dim, after_dim)
        before, after = (pair["contrec"]["ndcg@10"] for pair in pairs[seed])
        print(f"seed {seed}: ContRec test NDCG@10 {before:.4f} → {after:.4f}", flush=True)

    def column(index: int, key: str, metric: str) -> list[float]:
        return [pair[index][key][metric] for pair in pairs.values()]

    def cell(values: list[float]) -> str:
        spread = statistics.pstdev(values) if len(values) > 1 else 0.0
        return f"{statistics.mean(values):.4f} ± {spread:.4f}"

    steps = [f"`max_steps={lever_steps}`"] if lever_steps != reference_steps else []
    steps += [f"`learning_rate={args.learning_rate}`"] if args.learning_rate is not None else []
    steps += [f"`ema_decay={args.ema_decay}`"] if args.ema_decay else []
    setting = ", ".join([f"`{k}={v}`" for k, v in overrides.items()] + steps +
                        [f"tokenizer `{k}={v}`" for k, v in tokenizer_overrides.items()])  # fmt: skip
    lines = [
        f"| model | test NDCG@10, reference | test NDCG@10, {setting} | per seed | test HR@10, reference → lever |",
        "|---|---:|---:|---|---|",
    ]
    for key, label in ROWS.items():
        before, after = column(0, key, "ndcg@10"), column(1, key, "ndcg@10")
        per_seed = ", ".join(f"{a:.4f} → {b:.4f}" for a, b in zip(before, after))
        hr = f"{cell(column(0, key, 'hr@10'))} → {cell(column(1, key, 'hr@10'))}"
        lines.append(f"| {label} | {cell(before)} | {cell(after)} | {per_seed} | {hr} |")
    seeds, references = ", ".join(map(str, pairs)), ", ".join(f"`{r}`" for r in args.reference)
    rank_text = ", ".join(f"seed {seed}: {a:.1f} → {b:.1f}" for seed, (a, b, _, _) in ranks.items())
    dims = ", ".join(sorted({f"{a} → {b}" for _, _, a, b in ranks.values()}))
    schedule = (f"{reference_steps} stage-2 steps" if lever_steps == reference_steps
                else f"{reference_steps} stage-2 steps in the references, {lever_steps} in the lever")  # fmt: skip
    lines += [
        "",
        f"ML-100K, leave-one-out, full ranking, history masked, 943 test users; seeds {seeds}; the reference runs: "
        f"{references}; the lever reuses their data, stage 1 and baselines (SASRec-CE is the same model in both "
        f"columns) and retrains stage 2 with one change (a tokenizer lever also retrains the σ-VAE on the same "
        f"features), {schedule}. Effective rank of the item table the pipeline scores against "
        f"(of its columns: {dims}), reference → lever: {rank_text}." + (f" {args.note}" if args.note else ""),
    ]
    publish(lines, "main_job_lever.py", f"lever_{args.name.replace('-', '_')}", f"Lever: {setting}", args.write_docs)


if __name__ == "__main__":
    main()
