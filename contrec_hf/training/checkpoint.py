"""Resumable training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint folder holds ``model.safetensors`` (the trainable state), ``optimizer.safetensors`` +
``optimizer.json`` (per-parameter tensors and the param groups), ``rng.safetensors`` (torch's CPU generator and any
named ``torch.Generator`` of the loop), ``trainer_state.json`` (scheduler state, Python RNG states, data position,
metrics) and one ``NAME.safetensors`` per extra tensor group (e.g. the best weights an early-stopping loop keeps).
It is written to a temporary sibling and renamed into place, so a crash mid-save never leaves a half-written
checkpoint. The ContRec recommender's trainer resumes through it, and SASRec's and TIGER's epoch loops through
:class:`EpochCheckpoint`.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import ContRecError
from ..saving import atomic_directory
from ..utils import check_recorded

__all__ = ["EpochCheckpoint", "load_training_state", "load_training_tensors", "save_training_state"]

# What a refused rerun can do instead (the options a training folder started with are kept in it).
START_OVER = "use another folder, or start over (--overwrite, or delete the folder)"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *meta["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _python_rng_to_json(state: tuple) -> list:
    return [state[0], list(state[1]), state[2]]


def _python_rng_from_json(state: list) -> tuple:
    return (state[0], tuple(state[1]), state[2])


def save_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    trainer_state: dict[str, Any],
    rngs: dict[str, random.Random] | None = None,
    *,
    generators: dict[str, torch.Generator] | None = None,
    tensors: dict[str, dict[str, torch.Tensor]] | None = None,
) -> Path:
    """Write a checkpoint atomically (temporary sibling, then rename).

    Args:
        directory (`str` or `Path`): the checkpoint folder (replaced as a whole).
        model (`torch.nn.Module`): its trainable parameters are saved.
        optimizer (`torch.optim.Optimizer`): its state and param groups.
        scheduler (`LRScheduler`, *optional*): its state; `None` for a loop without one.
        trainer_state (`dict`): JSON-serialisable loop state (step or epoch, metrics, data position).
        rngs (`dict[str, random.Random]`, *optional*): Python generators of the loop, by name.
        generators (`dict[str, torch.Generator]`, *optional*): torch generators of the loop (e.g. data order).
        tensors (`dict[str, dict[str, torch.Tensor]]`, *optional*): extra tensor groups, each saved to
            ``NAME.safetensors`` and read back with :func:`load_training_tensors`.

    Returns:
        `Path`: the checkpoint folder.
    """
    directory = Path(directory)
    with atomic_directory(directory) as tmp:
        trainable = {k: v.detach().cpu().contiguous() for k, v in model.named_parameters() if v.requires_grad}
        save_file(trainable, tmp / "model.safetensors")
        optimizer_tensors, meta = _optimizer_tensors(optimizer)
        save_file(optimizer_tensors, tmp / "optimizer.safetensors")
        (tmp / "optimizer.json").write_text(json.dumps(meta))
        states = {f"generator.{name}": g.get_state() for name, g in (generators or {}).items()}
        save_file({"torch_cpu": torch.get_rng_state(), **states}, tmp / "rng.safetensors")
        for name, group in (tensors or {}).items():
            save_file({k: v.detach().cpu().contiguous() for k, v in group.items()}, tmp / f"{name}.safetensors")
        scheduler_state = None
        if scheduler is not None:
            scheduler_state = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
        payload = {
            "trainer": trainer_state,
            "scheduler": scheduler_state,
            "python_rng": _python_rng_to_json(random.getstate()),
            "rngs": {name: _python_rng_to_json(r.getstate()) for name, r in (rngs or {}).items()},
        }
        (tmp / "trainer_state.json").write_text(json.dumps(payload, indent=1))
    return directory


def load_training_state(
    directory: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    rngs: dict[str, random.Random] | None = None,
    *,
    generators: dict[str, torch.Generator] | None = None,
) -> dict[str, Any]:
    """Restore what :func:`save_training_state` wrote (the same arguments, restored in place); returns the trainer
    state.

    Returns:
        `dict`: the ``trainer_state`` that was saved.
    """
    directory = Path(directory)
    names = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "rng.safetensors", "trainer_state.json")
    missing = [n for n in names if not (directory / n).is_file()]
    if missing:
        raise ContRecError(f"{directory} is not a complete checkpoint: missing {missing}")
    try:
        weights = load_file(directory / "model.safetensors")
        payload = json.loads((directory / "trainer_state.json").read_text())
        optimizer_tensors = load_file(directory / "optimizer.safetensors")
        optimizer_meta = json.loads((directory / "optimizer.json").read_text())
        rng = load_file(directory / "rng.safetensors")
    except (OSError, ValueError, SafetensorError) as err:
        raise ContRecError(f"checkpoint {directory} is corrupt: {err}") from err
    missing_generators = [n for n in (generators or {}) if f"generator.{n}" not in rng]
    if missing_generators or (scheduler is None) != (payload["scheduler"] is None):
        raise ContRecError(f"checkpoint {directory} was written by another training loop")
    missing_keys, unexpected = model.load_state_dict(weights, strict=False)
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    if unexpected or trainable & set(missing_keys):
        raise ContRecError(f"checkpoint {directory} does not match the model (unexpected {unexpected[:5]})")
    _restore_optimizer(optimizer, optimizer_tensors, optimizer_meta)
    if scheduler is not None:
        scheduler.load_state_dict({**payload["scheduler"], "lr_lambdas": [None] * len(optimizer.param_groups)})
    torch.set_rng_state(rng["torch_cpu"])
    for name, generator in (generators or {}).items():
        generator.set_state(rng[f"generator.{name}"])
    random.setstate(_python_rng_from_json(payload["python_rng"]))
    for name, generator in (rngs or {}).items():
        if name in payload["rngs"]:
            generator.setstate(_python_rng_from_json(payload["rngs"][name]))
    return payload["trainer"]


def load_training_tensors(directory: str | Path, name: str) -> dict[str, torch.Tensor]:
    """The tensor group ``name`` that :func:`save_training_state` wrote with ``tensors={name: …}``.

    Returns:
        `dict[str, torch.Tensor]`: the group, on the CPU.
    """
    path = Path(directory) / f"{name}.safetensors"
    if not path.is_file():
        raise ContRecError(f"{directory} is not a complete checkpoint: missing {path.name}")
    try:
        return load_file(path)
    except (OSError, ValueError, SafetensorError) as err:
        raise ContRecError(f"checkpoint {directory} is corrupt: {err}") from err


class EpochCheckpoint:
    """What an epoch loop with early stopping (SASRec's, TIGER's) keeps in ``directory`` to resume.

    ``options.json`` records the options the loop was started with, and a rerun with others is refused;
    ``checkpoint/`` (:func:`save_training_state`) holds the model, the optimizer, the loss scaler, the loop's data
    order generator, the RNG states, the loop's JSON state and the best weights so far, rewritten after each epoch.

    Args:
        directory (`str` or `Path`): the loop's folder (e.g. ``TIGERTrainingArguments.output_dir``).
        options (`dict`): JSON-serialisable options of the run (its config and training arguments).

    Example:
        ```python
        >>> import tempfile, torch
        >>> from contrec_hf.training.checkpoint import EpochCheckpoint
        >>> model = torch.nn.Linear(3, 2)
        >>> optimizer, scaler = torch.optim.AdamW(model.parameters()), torch.amp.GradScaler("cpu", enabled=False)
        >>> order = torch.Generator().manual_seed(0)
        >>> resume = EpochCheckpoint(tempfile.mkdtemp(), {"lr": 1e-3})
        >>> resume.check_options()
        >>> resume.save(model, optimizer, scaler, order, {"epoch": 1}, model.state_dict())
        >>> state, best = resume.load(model, optimizer, scaler, order)
        >>> state["epoch"], sorted(best)
        (1, ['bias', 'weight'])

        ```
    """

    def __init__(self, directory: str | Path, options: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.options = json.loads(json.dumps(options))  # as it reads back from options.json (tuples → lists)

    @classmethod
    def of_run(cls, config: Any, args: Any) -> EpochCheckpoint | None:
        """The checkpoint of a run whose training arguments (a dataclass) have an ``output_dir``, with the options
        checked against the folder's (``config`` and ``args`` as recorded, the folder itself left out); `None`
        when ``args.output_dir`` is `None`."""
        if not args.output_dir:
            return None
        checkpoint = cls(args.output_dir, {"config": asdict(config), "args": {**asdict(args), "output_dir": None}})
        checkpoint.check_options()
        return checkpoint

    def check_options(self) -> None:
        """Record the options in ``options.json``; refuse a folder that a run with other options started."""
        check_recorded(self.directory / "options.json", self.options, "other options", START_OVER)

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             order: torch.Generator, state: dict[str, Any], best: dict[str, torch.Tensor]) -> None:  # fmt: skip
        """Write the checkpoint after an epoch: ``state`` is the loop's JSON state, ``best`` the best weights."""
        save_training_state(self.directory / "checkpoint", model, optimizer, None,
                            {**state, "scaler": scaler.state_dict()}, generators={"order": order},
                            tensors={"best": best})  # fmt: skip

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
             order: torch.Generator) -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:  # fmt: skip
        """Restore the last checkpoint in place.

        Returns:
            `(state, best)`: the loop's JSON state and the best weights, or `None` when there is no checkpoint.
        """
        folder = self.directory / "checkpoint"
        if not (folder / "trainer_state.json").is_file():
            return None
        state = load_training_state(folder, model, optimizer, None, generators={"order": order})
        scaler_state = state.pop("scaler")
        if scaler_state:
            scaler.load_state_dict(scaler_state)
        return state, load_training_tensors(folder, "best")
