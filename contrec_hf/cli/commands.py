"""What each ``contrec-hf`` command does, given its parsed arguments (the parser is in `parser.py`).

Every command returns its exit status. Errors the library foresees are `ContRecError`s, which `main` prints as
one line with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..errors import CheckpointError, ContRecError
from .arguments import dataclass_options

__all__ = [
    "cmd_baseline", "cmd_data_prepare", "cmd_data_stats", "cmd_pipeline_build", "cmd_push", "cmd_run",
    "cmd_tokenizer_train", "cmd_train", "config_overrides", "load_data",
]  # fmt: skip


def _device_options(args: argparse.Namespace) -> dict[str, str | None]:
    """``--device`` resolved (``auto`` → ``cuda`` or ``cpu``) and ``--mixed-precision``, both checked before any
    data is loaded: a GPU asked for and absent, or fp16 on the CPU, is a one-line error."""
    from ..training.devices import check_mixed_precision, resolve_device

    device = resolve_device(args.device)
    check_mixed_precision(args.mixed_precision, device)
    return {"device": device, "mixed_precision": args.mixed_precision}


def _refuse_to_replace(marker: Path, what: str, args: argparse.Namespace) -> None:
    """Nothing a user saved is replaced silently: an existing ``marker`` needs ``--overwrite``."""
    if marker.exists() and not args.overwrite:
        raise ContRecError(f"{marker.parent} already holds {what}; pass --overwrite to replace it")


def load_data(args: argparse.Namespace):
    """The dataset the ``--dataset`` / ``--data-path`` / ``--items-path`` / ``--preset`` options name."""
    from ..data import load_sequential_dataset

    return load_sequential_dataset(args.dataset, args.data_path, preset=args.preset, **_loader_kwargs(args))


def _loader_kwargs(args: argparse.Namespace) -> dict:
    if not args.items_path:
        return {}
    if args.dataset != "table":
        raise ContRecError("--items-path goes with --dataset table (other loaders find their item files themselves)")
    return {"items_path": args.items_path}


def cmd_data_stats(args: argparse.Namespace) -> int:
    stats = load_data(args).stats()
    if args.json:
        print(json.dumps(stats))
        return 0
    print(f"dataset            {stats['name']} (preset: {stats['preset']})")
    for key in ("users", "items", "interactions", "train_interactions", "validation_users", "test_users"):
        print(f"{key:<18} {stats[key]:,}")
    print(f"dropped_users      {stats['dropped_users']:,} (fewer than 3 interactions)")
    print(f"mean_seq_length    {stats['mean_sequence_length']:.1f}")
    print(f"density            {stats['density']:.4%}")
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    output = Path(args.output)
    _refuse_to_replace(output / "dataset.json", "a saved dataset", args)
    data = load_data(args)
    data.save(output)
    print(f"saved the {data.name} split ({data.num_users:,} users, {data.num_items:,} items) to {output}")
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    from ..baselines import SASRecConfig, SASRecTrainingArguments, TIGERConfig, TIGERTrainingArguments, run_baseline
    from ..evaluation import format_metrics_table

    output = Path(args.output)
    models = list(dict.fromkeys(args.model))
    targets = {m: output if len(models) == 1 else output / m for m in models}
    existing = [str(d / "metrics.json") for d in targets.values() if (d / "metrics.json").exists()]
    if existing and not args.overwrite:
        raise ContRecError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or pick --output")
    devices = _device_options(args)
    devices["mixed_precision"] = devices["mixed_precision"] or "no"
    classes = {"sasrec": (SASRecConfig, SASRecTrainingArguments), "tiger": (TIGERConfig, TIGERTrainingArguments)}
    kwargs = {name: {"model_kwargs": dataclass_options(args, config),
                     "training_kwargs": {**dataclass_options(args, training), **devices}}
              for name, (config, training) in classes.items()}  # fmt: skip
    data = load_data(args)
    results = {}
    for model in models:
        results[model] = run_baseline(
            model, data, seed=args.seed, output_dir=targets[model], progress=not args.no_progress,
            resume=not args.overwrite, **kwargs.get(model, {}),
        )  # fmt: skip
    for split in ("validation", "test"):
        print(f"\n{data.name} — {split} (leave-one-out, full ranking, history masked, seed {args.seed})")
        print(format_metrics_table({m: r[split] for m, r in results.items()}))
    print("\ntime: " + ", ".join(f"{m} {r['seconds']:.1f}s" for m, r in results.items()))
    print(f"metrics written to {', '.join(str(d / 'metrics.json') for d in targets.values())}")
    return 0


def cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from ..features import CollaborativeConfig
    from ..models.tokenizer import ContRecTokenizerConfig
    from ..training import TokenizerTrainingArguments, run_tokenizer_stage

    output = Path(args.output)
    _refuse_to_replace(output / "config.json", "a trained tokenizer", args)
    devices = _device_options(args)
    data = load_data(args)
    training = dataclass_options(args, TokenizerTrainingArguments)
    training.update(seed=args.seed, device=devices["device"], mixed_precision=devices["mixed_precision"] or "no")
    result = run_tokenizer_stage(
        data,
        args.features,
        output,
        tokenizer_kwargs=dataclass_options(args, ContRecTokenizerConfig),
        args=TokenizerTrainingArguments(**training),
        features_dir=args.features_dir,
        collaborative=CollaborativeConfig(**dataclass_options(args, CollaborativeConfig), seed=args.seed),
        text_encoder=args.text_encoder,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    d = result.diagnostics
    print(f"tokenizer for {data.name} ({args.features} features) saved to {output}")
    print(f"trained on         {devices['device']} (mixed precision {training['mixed_precision']})")
    print(f"heldout_mse        {d['heldout_mse']:.4f}  (standardised features; predicting the mean scores 1.0)")
    print(f"validation_mse     {d['validation_mse']:.4f}  (best epoch {d['best_epoch']} of {d['epochs']})")
    print(f"effective_rank     {d['effective_rank']:.2f} of {d['max_effective_rank']}")
    print(f"dead_fraction      {d['dead_fraction']:.3f}")
    print(f"diagnostics written to {output / 'diagnostics.json'}")
    return 0


def config_overrides(args: argparse.Namespace) -> dict:
    """The `ContRecConfig` fields given on the command line (the others keep the config's defaults)."""
    from ..models.contrec import ContRecConfig

    return dataclass_options(args, ContRecConfig)


def cmd_train(args: argparse.Namespace) -> int:
    from ..training import RecommenderOptions, RecommenderTrainingArguments, run_recommender_stage

    output = Path(args.output)
    training = {**dataclass_options(args, RecommenderTrainingArguments), **_device_options(args)}
    train_args = RecommenderTrainingArguments(output_dir=str(output), **training)
    # Everything that can be checked cheaply is checked before anything is deleted or loaded.
    options = RecommenderOptions(backbone=args.backbone, lora=args.lora, config_overrides=config_overrides(args))
    if not (Path(args.tokenizer) / "config.json").is_file():
        raise CheckpointError(f"{args.tokenizer} holds no trained tokenizer (run `contrec-hf tokenizer train`)")
    data = load_data(args)
    if args.overwrite:  # start over: a rerun without --overwrite resumes from the last checkpoint instead
        for stale in ("checkpoints", "best", "training_log.json"):
            path = output / stale
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    trainer = run_recommender_stage(
        data,
        args.tokenizer,
        train_args,
        options=options,
        progress=not args.no_progress,
    )
    state, acc = trainer.state, trainer.accelerator
    if not acc.is_main_process:  # under torchrun / accelerate launch the summary is printed once
        return 0
    print(f"best validation NDCG@10 {state['best_ndcg']:.4f} at step {state['best_step']} ({state['step']} steps run)")
    print(f"trained on {acc.device} × {acc.num_processes} process(es), mixed precision {acc.mixed_precision}")
    print(f"best model saved to {output / 'best'}; log in {output / 'training_log.json'}")
    return 0


def cmd_pipeline_build(args: argparse.Namespace) -> int:
    from ..training import load_pipeline

    output = Path(args.output)
    _refuse_to_replace(output / "model_index.json", "a pipeline", args)
    data = load_data(args)
    load_pipeline(args.recommender, args.tokenizer, data).save_pretrained(output)
    print(f"pipeline for {data.name} ({data.num_items:,} items) saved to {output}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..evaluation import format_metrics_table
    from ..main_job import run_main_job

    devices = _device_options(args)
    metrics = run_main_job(
        args.output,
        args.dataset,
        args.data_path,
        preset=args.preset,
        loader_kwargs=_loader_kwargs(args),
        features=args.features,
        backbone=args.backbone,
        lora=args.lora,
        max_steps=args.max_steps,
        learning_rate=args.learning_rate,
        ema_decay=args.ema_decay,
        recipe=args.recipe,
        config_overrides=config_overrides(args),
        seed=args.seed,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        **devices,
    )
    columns = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20")
    print(f"\n{metrics['dataset']['name']} — test (leave-one-out, full ranking, history masked)")
    print(format_metrics_table(metrics["test"], columns))
    stages = json.loads((Path(args.output) / "stages.json").read_text())
    print("\nstage times: " + ", ".join(f"{k} {v:.0f}s" for k, v in stages.items()))
    precision = devices["mixed_precision"] or "no"
    print(f"training device: {devices['device']}, mixed precision {precision} (evaluation: CPU, fp32)")
    print(f"report: {Path(args.output) / 'report.md'}; metrics: {Path(args.output) / 'metrics.json'}")
    return 0


def cmd_push(args: argparse.Namespace) -> int:
    from ..hub import push_run

    pushed = push_run(
        args.run,
        args.repo_prefix,
        token=args.token,
        private=args.private,
        public=args.public,
        base_model=args.base_model,
    )
    for component, repo in pushed.items():
        print(f"{component:<12} → {repo}")
    return 0
