"""Train and evaluate a baseline on a split, the way the CLI, the benchmarks and the main job do."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..data.split import SequentialDataset
from ..errors import ConfigError
from ..evaluation import evaluate_scorer
from ..utils import write_json
from .popularity import PopularityRecommender
from .sasrec import SASRecConfig, SASRecTrainer, SASRecTrainingArguments

__all__ = ["BASELINES", "run_baseline"]

BASELINES = ("pop", "sasrec")


def run_baseline(
    name: str,
    data: SequentialDataset,
    *,
    seed: int = 0,
    output_dir: str | Path | None = None,
    model_kwargs: dict[str, Any] | None = None,
    training_kwargs: dict[str, Any] | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit baseline ``name`` (``"pop"`` or ``"sasrec"``) on ``data``'s training part, select on validation,
    evaluate on validation and test.

    ``model_kwargs`` and ``training_kwargs`` go to :class:`SASRecConfig` and :class:`SASRecTrainingArguments`
    (``training_kwargs={"device": "cuda"}`` trains and evaluates SASRec on a GPU, the default is the CPU;
    ``"mixed_precision": "bf16"`` autocasts its training forward passes).

    Returns ``{"validation": metrics, "test": metrics, "seconds": …, "config": …}``. With ``output_dir`` it also
    writes ``metrics.json`` there (and, for SASRec, the trained model and its training history).
    """
    if name not in BASELINES:
        raise ConfigError(f"unknown baseline {name!r}; choose one of {BASELINES}")
    started = time.perf_counter()
    config: dict[str, Any] = {"model": name, "seed": seed, "dataset": data.name, "preset": data.info.get("preset")}
    history: list[dict[str, float]] = []
    if name == "pop":
        scorer = PopularityRecommender().fit(data).score
    else:
        model_config = SASRecConfig(num_items=data.num_items, **(model_kwargs or {}))
        args = SASRecTrainingArguments(seed=seed, **(training_kwargs or {}))
        trainer = SASRecTrainer(data, model_config, args)
        model = trainer.train(progress=progress)
        scorer, history = model.score, trainer.history
        config.update(model=name, architecture=vars(model_config), training=vars(args))
    result: dict[str, Any] = {}
    for split in ("validation", "test"):
        histories, targets = data.split(split)
        evaluation = evaluate_scorer(
            scorer, histories, targets, data.num_items, progress=progress, desc=f"{name} {split}"
        )
        result[split] = evaluation.metrics
    result["seconds"] = time.perf_counter() - started
    result["config"] = config
    if output_dir is not None:
        output_dir = Path(output_dir)
        write_json(output_dir / "metrics.json", result)
        if name == "sasrec":
            model.save_pretrained(output_dir / "model")
            write_json(output_dir / "training_history.json", history)
    return result
