"""Training TIGER: the RQ-VAE's semantic IDs first (stage 1's loop), then the T5 with teacher forcing on every
training window, early stopping on validation NDCG@10 with the best weights restored. With an ``output_dir`` both
stages resume: the semantic IDs are saved once, and a checkpoint after every epoch (docs/baselines.md, TIGER)."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ...data.split import SequentialDataset
from ...errors import ConfigError, InputError
from ...evaluation import evaluate_scorer
from ...saving import atomic_directory
from ...training.checkpoint import EpochCheckpoint
from ...training.devices import autocast, check_mixed_precision, grad_scaler, optimizer_step
from ...training.early_stopping import EpochLoop
from ...training.tokenizer import TokenizerTrainingArguments, train_item_tokenizer
from ...utils import check_device, check_number, require_positive, set_seed, write_json
from .modeling_tiger import TIGER, TIGERConfig
from .semantic_ids import unique_semantic_ids

__all__ = ["TIGERTrainer", "TIGERTrainingArguments", "check_beam_size", "semantic_id_diagnostics"]

KS = (5, 10, 20)  # the cut-offs of every baseline's metrics


@dataclass
class TIGERTrainingArguments:
    """How :class:`TIGERTrainer` trains.

    Attributes:
        batch_size (`int`): training windows per step.
        learning_rate (`float`): AdamW learning rate of the generator.
        weight_decay (`float`): AdamW decoupled weight decay of the generator.
        max_epochs (`int`): upper bound on epochs (one validation after each).
        patience (`int`): stop after this many validations without a better NDCG@10.
        windows_per_epoch (`int`, *optional*): training windows per epoch (at most all of them), the next ones of
            a seeded random order of every window, a fresh order once all are used; `None` is every window, once.
            Fewer validate more often, so early stopping fires sooner: ML-100K has 97,171 windows, and a T5 pass
            per window is what TIGER's training costs.
        rq_batch_size (`int`): items per RQ-VAE step (its first batch also initialises the codebooks by k-means).
        rq_learning_rate (`float`): AdamW learning rate of the RQ-VAE.
        rq_max_epochs (`int`): upper bound on the RQ-VAE's epochs (it stops early on validation reconstruction).
        eval_batch_size (`int`): users per constrained beam search.
        seed (`int`): seeds the RQ-VAE, the generator's initialisation, the window order and dropout.
        device (`str`, *optional*): ``"cpu"`` (the default, `None`), ``"cuda"`` or ``"cuda:N"``.
        mixed_precision (`str`): ``"no"``, ``"bf16"`` or ``"fp16"`` (a CUDA GPU only), for the generator's training
            forward passes.
        output_dir (`str`, *optional*): where training keeps what it needs to resume: ``options.json``,
            ``semantic_ids/`` (the RQ-VAE and every item's IDs, once) and ``checkpoint/`` (after every epoch). A
            rerun with the same folder resumes where the last run stopped and gives the same model; a folder
            started with other options is refused. `None` (the default) keeps nothing.
    """

    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 30
    patience: int = 3
    windows_per_epoch: int | None = 20000
    rq_batch_size: int = 512
    rq_learning_rate: float = 1e-3
    rq_max_epochs: int = 300
    eval_batch_size: int = 128
    seed: int = 0
    device: str | None = None
    mixed_precision: str = "no"
    output_dir: str | None = None

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "learning_rate", "max_epochs", "patience", "rq_batch_size",
                         "rq_learning_rate", "rq_max_epochs", "eval_batch_size")  # fmt: skip
        if self.windows_per_epoch is not None:
            check_number("windows_per_epoch", self.windows_per_epoch, 1, integer=True)
        check_device(self.device)
        check_mixed_precision(self.mixed_precision, self.device or "cpu")


def semantic_id_diagnostics(codes: torch.Tensor, semantic_ids: torch.Tensor, codebook_size: int) -> dict[str, Any]:
    """Codebook usage and collisions of a catalog's codes `[num_items, L]` and semantic IDs `[num_items, L + 1]`."""
    shared = Counter(tuple(row) for row in codes.tolist())
    return {
        "codebook_usage": [len(set(codes[:, level].tolist())) / codebook_size for level in range(codes.shape[1])],
        "distinct_codes": len(shared),
        "colliding_items": sum(count for count in shared.values() if count > 1),
        "collision_codes": int(semantic_ids[:, -1].max()) + 1,
        "num_items": codes.shape[0],
    }


def check_beam_size(config: TIGERConfig) -> None:
    """Refuse a beam narrower than the metrics' largest K: the ranks beyond the beam are not full-ranking ones."""
    if config.beam_size < max(KS):
        raise ConfigError(f"beam_size {config.beam_size} is below {max(KS)}, the largest K of the metrics")


class TIGERTrainer:
    """Trains [`TIGER`] on a [`SequentialDataset`]'s training histories.

    Args:
        data ([`SequentialDataset`]): the split.
        features (`torch.Tensor` of shape `[num_items, dim]`): the item features the RQ-VAE encodes.
        config ([`TIGERConfig`]): the architecture (``num_items`` must match ``data``).
        args ([`TIGERTrainingArguments`]): how to train.

    Example:
        ```python
        >>> from contrec_hf.baselines import TIGERConfig, TIGERTrainer, TIGERTrainingArguments
        >>> from contrec_hf.data import load_sequential_dataset
        >>> from contrec_hf.features import build_item_features
        >>> data = load_sequential_dataset("ml-100k")
        >>> features = build_item_features(data, "text").features
        >>> trainer = TIGERTrainer(data, features, TIGERConfig(num_items=data.num_items), TIGERTrainingArguments())
        >>> model = trainer.train()  # 20 to 40 minutes on one CPU core (docs/benchmarks.md)
        >>> trainer.evaluate("test").metrics["ndcg@10"]  # doctest: +SKIP
        ```
    """

    def __init__(self, data: SequentialDataset, features: torch.Tensor, config: TIGERConfig,
                 args: TIGERTrainingArguments) -> None:  # fmt: skip
        if config.num_items != data.num_items:
            raise InputError(f"config.num_items={config.num_items} but the dataset has {data.num_items} items")
        if features.ndim != 2 or features.shape[0] != data.num_items:
            raise InputError(f"features must be [{data.num_items}, dim], got {tuple(features.shape)}")
        check_beam_size(config)
        self.data, self.features, self.config, self.args = data, features.float(), config, args
        self.device = torch.device(args.device or "cpu")
        self.windows = [(seq[max(0, t - config.max_history) : t], seq[t])
                        for seq in data.train_sequences() for t in range(1, len(seq))]  # fmt: skip
        if not self.windows:
            raise InputError("no user has the 2 training items TIGER needs (a history and a next item)")
        self.history: list[dict[str, float]] = []
        self._order: list[int] = []  # what is left of the current random order of the windows
        self.diagnostics: dict[str, Any] = {}
        self.model: TIGER | None = None

    def train_semantic_ids(self, progress: bool = True) -> TIGER:
        """Train the RQ-VAE (stage 1's loop: items split 80/10/10, best validation reconstruction kept), give
        every item its codes and collision code; returns an untrained TIGER over those IDs."""
        config, args = self.config, self.args
        rq_args = TokenizerTrainingArguments(
            batch_size=args.rq_batch_size, learning_rate=args.rq_learning_rate, max_epochs=args.rq_max_epochs,
            seed=args.seed, device=args.device,
        )  # fmt: skip
        result = train_item_tokenizer(self.features, config.tokenizer_config(self.features.shape[1]), rq_args,
                                      progress=progress)  # fmt: skip
        tokenizer = result.tokenizer.cpu()
        codes = tokenizer.codes(self.features)  # [num_items, L]
        semantic_ids = unique_semantic_ids(codes)
        self.diagnostics = {
            **semantic_id_diagnostics(codes, semantic_ids, config.codebook_size),
            "rq_heldout_mse": result.diagnostics["heldout_mse"],
            "rq_epochs": result.diagnostics["epochs"],
        }
        torch.manual_seed(args.seed)  # the generator's initialisation does not depend on the RQ-VAE's epochs
        return TIGER(config, tokenizer, semantic_ids)

    def evaluate(self, split: str = "validation", progress: bool = False):
        """Full-ranking metrics of the current model on ``"validation"`` or ``"test"`` (the retrieval rule of
        :mod:`~contrec_hf.baselines.tiger.modeling_tiger`)."""
        if self.model is None:
            raise InputError("train TIGER before evaluating it")
        histories, targets = self.data.split(split)
        return evaluate_scorer(
            self.model.score, histories, targets, self.data.num_items, ks=KS, batch_size=self.args.eval_batch_size,
            progress=progress, desc=f"TIGER {split}",
        )  # fmt: skip

    def _next_windows(self, generator: torch.Generator) -> list[int]:
        """The window indices of the next epoch: ``windows_per_epoch`` of them (all by default), taken in turn from
        seeded random orders of every window."""
        wanted = min(self.args.windows_per_epoch or len(self.windows), len(self.windows))
        picked: list[int] = []
        while len(picked) < wanted:
            if not self._order:
                self._order = torch.randperm(len(self.windows), generator=generator).tolist()
            take = min(wanted - len(picked), len(self._order))
            picked, self._order = picked + self._order[:take], self._order[take:]
        return picked

    def _epoch(self, optimizer, scaler, generator: torch.Generator, progress: bool) -> float:
        """One epoch over the next training windows; returns the mean loss per window."""
        model, args = self.model, self.args
        model.generator.train()
        order = self._next_windows(generator)
        total = 0.0
        starts = range(0, len(order), args.batch_size)
        for start in tqdm(starts, desc="TIGER epoch", leave=False, disable=not progress):
            batch = [self.windows[i] for i in order[start : start + args.batch_size]]
            input_ids, attention_mask = model.encoder_inputs([history for history, _ in batch])
            labels = model.labels([target for _, target in batch])
            with autocast(self.device, args.mixed_precision):
                loss = model.generator(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
            optimizer_step(loss, optimizer, scaler)
            total += loss.item() * len(batch)
        return total / len(order)

    def _semantic_id_stage(self, progress: bool) -> TIGER:
        """The untrained TIGER over trained semantic IDs: read from ``output_dir/semantic_ids`` when an earlier run
        saved them, else trained (and saved there). Either way the generator is initialised from the same seed."""
        folder = Path(self.args.output_dir) / "semantic_ids" if self.args.output_dir else None
        if folder is not None and (folder / "diagnostics.json").is_file():
            saved = TIGER.from_pretrained(folder / "model")
            self.diagnostics = json.loads((folder / "diagnostics.json").read_text())
            torch.manual_seed(self.args.seed)  # as train_semantic_ids does before the generator's initialisation
            return TIGER(self.config, saved.item_tokenizer, saved.semantic_ids)
        model = self.train_semantic_ids(progress)
        if folder is not None:
            with atomic_directory(folder) as tmp:
                model.save_pretrained(tmp / "model")
                write_json(tmp / "diagnostics.json", self.diagnostics)
        return model

    def _restore_order(self, extra: dict[str, Any]) -> None:
        self._order = extra["order"]

    def train(self, progress: bool = True, stop_at_epoch: int | None = None) -> TIGER:
        """Semantic IDs, then the generator until validation NDCG@10 stops improving; returns the best model.

        With ``args.output_dir``, a rerun resumes from the last epoch's checkpoint. ``stop_at_epoch`` stops after
        that epoch (and its checkpoint), as an interruption would, and returns the model as it is then.
        """
        args = self.args
        generator = set_seed(args.seed)
        checkpoint = EpochCheckpoint.of_run(self.config, args)
        self.model = self._semantic_id_stage(progress)
        self.model.generator.to(self.device)
        optimizer = torch.optim.AdamW(self.model.generator.parameters(), lr=args.learning_rate,
                                      weight_decay=args.weight_decay)  # fmt: skip
        scaler = grad_scaler(self.device, args.mixed_precision)
        loop = EpochLoop(self.model.generator, optimizer, scaler, generator, args.max_epochs, args.patience,
                         checkpoint, "TIGER", lambda: {"order": self._order}, self._restore_order)  # fmt: skip
        try:
            loop.run(lambda: self._epoch(optimizer, scaler, generator, progress),
                     lambda: self.evaluate("validation").metrics["ndcg@10"], progress, stop_at_epoch)  # fmt: skip
        finally:
            self.history = loop.history
        return self.model
