"""Train and evaluate a baseline on a split, the way the CLI, the benchmarks and the main job do."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..data.split import SequentialDataset
from ..errors import ConfigError
from ..evaluation import evaluate_scorer
from ..utils import write_json
from .popularity import PopularityRecommender
from .sasrec import SASRecConfig, SASRecTrainer, SASRecTrainingArguments
from .tiger import TIGERConfig, TIGERTrainer, TIGERTrainingArguments
from .tiger.training_tiger import check_beam_size

__all__ = ["BASELINES", "run_baseline"]

BASELINES = ("pop", "sasrec", "tiger")


def run_baseline(
    name: str,
    data: SequentialDataset,
    *,
    seed: int = 0,
    output_dir: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
    training_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
    resume: bool = True,
) -> dict[str, Any]:
    """Fit baseline ``name`` (``"pop"``, ``"sasrec"`` or ``"tiger"``) on ``data``'s training part, select on
    validation, evaluate on validation and test.

    ``model_kwargs`` and ``training_kwargs`` go to :class:`SASRecConfig` and :class:`SASRecTrainingArguments`, or
    :class:`TIGERConfig` and :class:`TIGERTrainingArguments` (``training_kwargs={"device": "cuda"}`` trains and
    evaluates on a GPU, the default is the CPU; ``"mixed_precision": "bf16"`` autocasts the training forward passes).
    TIGER's item features (``TIGERConfig.features``, MiniLM text by default) are cached in ``output_dir/features``.
    SASRec's and TIGER's training resumes from ``output_dir/training`` (unless ``training_kwargs`` names another
    ``output_dir``); ``resume=False`` deletes that folder first, once every option is checked, and trains from the
    start.

    Returns ``{"validation": metrics, "test": metrics, "seconds": …, "config": …}`` (TIGER adds ``"semantic_ids"``,
    its codebook usage and collisions). With ``output_dir`` it also writes ``metrics.json`` there (and, for SASRec
    and TIGER, the trained model in ``model/`` and its training history).
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    started = time.perf_counter()
    output_dir = Path(output_dir) if output_dir is not None else None
    config: dict[str, Any] = {"model": name, "seed": seed, "dataset": data.name, "preset": data.info.get("preset")}
    model, history, result, batch_size = None, [], {}, 256
    if name == "pop":
        scorer = PopularityRecommender().fit(data).score
    elif name == "sasrec":
        model_config = SASRecConfig(num_items=data.num_items, **(model_kwargs or {}))
        args = SASRecTrainingArguments(seed=seed, **_with_training_folder(output_dir, training_kwargs))
        _start_over(args, resume)
        trainer = SASRecTrainer(data, model_config, args)
        model = trainer.train(progress=progress)
        scorer, history = model.score, trainer.history
        config.update(architecture=vars(model_config), training=vars(args))
    else:
        trainer = _tiger_trainer(data, seed, output_dir, model_kwargs, training_kwargs, progress, resume)
        model = trainer.train(progress=progress)
        scorer, history, result["semantic_ids"] = model.score, trainer.history, trainer.diagnostics
        batch_size = trainer.args.eval_batch_size  # users per constrained beam search
        config.update(architecture=asdict(trainer.config), training=asdict(trainer.args))
    for split in ("validation", "test"):
        histories, targets = data.split(split)
        evaluation = evaluate_scorer(
            scorer,
            histories,
            targets,
            data.num_items,
            batch_size=batch_size,
            progress=progress,
            desc=f"{name} {split}",
        )
        result[split] = evaluation.metrics
    result["seconds"] = time.perf_counter() - started
    result["config"] = config
    if output_dir is not None:
        write_json(output_dir / "metrics.json", result)
        if model is not None:
            model.save_pretrained(output_dir / "model")
            write_json(output_dir / "training_history.json", history)
    return result


def _tiger_trainer(data, seed: int, output_dir: Path | None, model_kwargs, training_kwargs, progress: bool,
                   resume: bool):  # fmt: skip
    """TIGER's trainer, every option checked before an earlier training is deleted (``resume=False``) and before
    its item features are built (or reused from the cache)."""
    from ..features import build_item_features

    config = TIGERConfig(num_items=data.num_items, **(model_kwargs or {}))
    args = TIGERTrainingArguments(seed=seed, **_with_training_folder(output_dir, training_kwargs))
    check_beam_size(config)
    _start_over(args, resume)
    cache = output_dir / "features" if output_dir is not None else None
    features = build_item_features(data, config.features, cache_dir=cache, progress=progress).features
    return TIGERTrainer(data, features, config, args)


def _with_training_folder(output_dir: Path | None, training_kwargs: dict | None) -> dict:
    """The training arguments, with ``output_dir/training`` as the folder to resume from unless they name one."""
    folder = {"output_dir": str(output_dir / "training")} if output_dir is not None else {}
    return {**folder, **(training_kwargs or {})}


def _start_over(args, resume: bool) -> None:
    """Delete an earlier training's resume folder when asked to start over (the arguments are checked by now)."""
    if not resume and args.output_dir and Path(args.output_dir).is_dir():
        shutil.rmtree(args.output_dir)
