"""The epoch loop of the baselines (SASRec, TIGER): train an epoch, validate, keep the best weights, stop early, and
resume from an :class:`~contrec_hf.training.checkpoint.EpochCheckpoint` after a stop (docs/baselines.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm.auto import tqdm

from .checkpoint import EpochCheckpoint

logger = logging.getLogger(__name__)

__all__ = ["EpochLoop"]


@dataclass
class EpochLoop:
    """Early stopping on a validation metric over epochs, resumable.

    Args:
        model (`torch.nn.Module`): what trains; the best epoch's weights are loaded back into it at the end.
        optimizer (`torch.optim.Optimizer`), scaler (`torch.amp.GradScaler`): saved with every checkpoint.
        order (`torch.Generator`): the loop's data-order generator, saved too.
        max_epochs (`int`), patience (`int`): at most ``max_epochs``; stop after ``patience`` epochs without a
            better validation figure.
        checkpoint ([`EpochCheckpoint`], *optional*): where the loop is saved after every epoch and resumed from.
        name (`str`): the model's name in the progress bar and the log.
        extra_state (`Callable[[], dict]`, *optional*), restore_extra (`Callable[[dict], None]`, *optional*): more
            JSON state of the caller's data order (e.g. what is left of a shuffled order), saved and restored.

    Attributes:
        history (`list[dict]`): one row per epoch: ``epoch``, ``loss``, ``val_ndcg@10``, ``seconds``.
        state (`dict`): ``epoch`` (the last finished), ``best``, ``stale`` and ``finished``.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.training.early_stopping import EpochLoop
        >>> model = torch.nn.Linear(2, 1)
        >>> optimizer, scaler = torch.optim.SGD(model.parameters(), lr=0.1), torch.amp.GradScaler("cpu", enabled=False)
        >>> loop = EpochLoop(model, optimizer, scaler, torch.Generator(), max_epochs=5, patience=2, name="demo")
        >>> figures = iter([0.1, 0.3, 0.2, 0.25, 0.9])
        >>> loop.run(lambda: 1.0, lambda: next(figures), progress=False)
        True
        >>> [row["epoch"] for row in loop.history], loop.state["best"]
        ([1, 2, 3, 4], 0.3)

        ```
    """

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    order: torch.Generator
    max_epochs: int
    patience: int
    checkpoint: EpochCheckpoint | None = None
    name: str = "model"
    extra_state: Callable[[], dict[str, Any]] | None = None
    restore_extra: Callable[[dict[str, Any]], None] | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    state: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "best": -1.0, "stale": 0, "finished": False})

    def _resume(self) -> dict[str, torch.Tensor] | None:
        loaded = self.checkpoint.load(self.model, self.optimizer, self.scaler, self.order) if self.checkpoint else None
        if loaded is None:
            return None
        state, best = loaded
        self.history = state.pop("history")
        extra = state.pop("extra")
        if self.restore_extra is not None:
            self.restore_extra(extra)
        self.state = state
        logger.info("%s resumed from %s after epoch %d", self.name, self.checkpoint.directory, state["epoch"])
        return best

    def run(self, train_epoch: Callable[[], float], validate: Callable[[], float], progress: bool = True,
            stop_at_epoch: int | None = None) -> bool:  # fmt: skip
        """Epochs until early stopping (or ``max_epochs``), resuming from the checkpoint when there is one.

        Args:
            train_epoch (`Callable[[], float]`): trains one epoch; returns its mean loss.
            validate (`Callable[[], float]`): the validation figure to maximise (NDCG@10).
            progress (`bool`): show a progress bar.
            stop_at_epoch (`int`, *optional*): stop after that epoch and its checkpoint, as an interruption would,
                and leave the model as it is then.

        Returns:
            `bool`: whether the loop finished (the best weights are then loaded into the model).
        """
        best_state = self._resume()
        epochs = range(self.state["epoch"] + 1, self.max_epochs + 1)
        bar = tqdm(epochs, desc=f"{self.name} training", disable=not progress or self.state["finished"])
        for epoch in bar:
            if self.state["finished"]:
                break
            started = time.perf_counter()
            loss = train_epoch()
            figure = validate()
            self.history.append({"epoch": epoch, "loss": loss, "val_ndcg@10": figure,
                                 "seconds": time.perf_counter() - started})  # fmt: skip
            best, stale = self.state["best"], self.state["stale"]
            if figure > best:
                best, stale = figure, 0
                best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
            else:
                stale += 1
            finished = stale >= self.patience or epoch == self.max_epochs
            self.state = {"epoch": epoch, "best": best, "stale": stale, "finished": finished}
            if self.checkpoint is not None:
                extra = self.extra_state() if self.extra_state is not None else {}
                loop = {**self.state, "history": self.history, "extra": extra}
                self.checkpoint.save(self.model, self.optimizer, self.scaler, self.order, loop, best_state)
            bar.set_postfix(loss=f"{loss:.3f}", val_ndcg10=f"{figure:.4f}", best=f"{best:.4f}")
            logger.info("%s epoch %d: loss %.4f, validation NDCG@10 %.4f (best %.4f)", self.name, epoch, loss,
                        figure, best)  # fmt: skip
            if stop_at_epoch is not None and epoch >= stop_at_epoch and not finished:
                return False
            if finished:
                break
        self.model.load_state_dict(best_state)
        self.model.eval()
        return True
