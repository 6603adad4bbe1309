"""SASRec (Kang & McAuley, ICDM 2018) trained with full softmax cross-entropy over all items.

The strong variant of the baseline (docs/baselines.md, "SASRec with full cross-entropy"): one training sequence per
user, the next-item cross-entropy over the *whole* catalog at every position, early stopping on
validation NDCG@10 with the best weights restored. Sequences are right-padded so causal attention never
sees a padding key before a real one (no key-padding mask, hence no all-masked rows and no NaN, which torch's
TransformerEncoder fast path gives for fully padded rows; the blocks here use causal SDPA instead).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from ..data.split import SequentialDataset
from ..errors import CheckpointError, ConfigError, EvaluationError, InputError
from ..evaluation import evaluate_scorer
from ..saving import atomic_directory, load_guard
from ..training.checkpoint import EpochCheckpoint
from ..training.devices import autocast, check_mixed_precision, grad_scaler, optimizer_step
from ..training.early_stopping import EpochLoop
from ..utils import check_device, require_positive, set_seed, write_json

__all__ = ["SASRec", "SASRecConfig", "SASRecTrainer", "SASRecTrainingArguments"]

WINDOWS = ("last", "random")


@dataclass
class SASRecConfig:
    """Architecture of :class:`SASRec`.

    Attributes:
        num_items (`int`): catalog size (item indices ``0 … num_items-1``; index ``num_items`` is never used).
        hidden_size (`int`): embedding and model width.
        num_layers (`int`): transformer blocks.
        num_heads (`int`): attention heads; must divide ``hidden_size``.
        intermediate_size (`int`): feed-forward width.
        dropout (`float`): dropout on embeddings, attention and feed-forward.
        max_length (`int`): the last ``max_length`` history items are used.
    """

    num_items: int
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 256
    dropout: float = 0.2
    max_length: int = 50

    def __post_init__(self) -> None:
        require_positive(
            self, "num_items", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_length"
        )
        if self.hidden_size % self.num_heads:
            raise ConfigError(f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


class _Block(nn.Module):
    """Pre-LayerNorm transformer block with causal self-attention."""

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.num_heads = config.num_heads
        self.dropout = config.dropout
        self.attn_norm = nn.LayerNorm(config.hidden_size)
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size)
        self.out = nn.Linear(config.hidden_size, config.hidden_size)
        self.ffn_norm = nn.LayerNorm(config.hidden_size)
        self.ffn = nn.Sequential(
            nn.Linear(config.hidden_size, config.intermediate_size),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.intermediate_size, config.hidden_size),
        )
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(self.attn_norm(x)).view(b, n, 3, self.num_heads, h // self.num_heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # [B, heads, N, h/heads]
        drop = self.dropout if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)  # [B, heads, N, h/heads]
        x = x + self.resid_dropout(self.out(att.transpose(1, 2).reshape(b, n, h)))
        return x + self.resid_dropout(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """Self-attentive sequential recommender with tied input/output item embeddings.

    Inputs are item indices shifted by one (``0`` is padding), right-padded: ``[batch, length]``.
    """

    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_embedding = nn.Embedding(config.num_items + 1, config.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_length, config.hidden_size)
        self.embed_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(_Block(config) for _ in range(config.num_layers))
        self.final_norm = nn.LayerNorm(config.hidden_size)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def hidden_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """``[batch, length]`` shifted item indices → ``[batch, length, hidden]`` states."""
        return self.encode(self.item_embedding(input_ids), input_ids > 0)

    def encode(self, item_vectors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The transformer over any item vectors (``benchmarks/quality_ladder.py`` swaps the ID table out).

        Args:
            item_vectors (`torch.Tensor` of shape `[batch, length, hidden]`): one vector per position, before the
                √hidden scale and the position embedding.
            mask (`torch.BoolTensor` of shape `[batch, length]`): `True` at real items, `False` at padding.

        Returns:
            `torch.Tensor` of shape `[batch, length, hidden]`.
        """
        positions = torch.arange(item_vectors.shape[1], device=item_vectors.device)
        x = item_vectors * math.sqrt(self.config.hidden_size) + self.position_embedding(positions)
        x = self.embed_dropout(x) * mask.unsqueeze(-1)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """States ``[..., hidden]`` → scores over the catalog ``[..., num_items]`` (padding row excluded)."""
        return states @ self.item_embedding.weight[1:].T

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Returns ``{"loss"}`` (CE over all items at every labelled position) when ``labels`` is given
        (``[batch, length]`` item indices, ``-100`` ignored), and the ``hidden_states``."""
        states = self.hidden_states(input_ids)  # [B, N, H]
        out = {"hidden_states": states}
        if labels is not None:
            logits = self.logits(states)  # [B, N, num_items]
            out["loss"] = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        return out

    @torch.no_grad()
    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores over all items for the next item after each history: ``[len(histories), num_items]``."""
        if any(len(h) == 0 for h in histories):
            raise EvaluationError("SASRec cannot score an empty history")
        device = self.item_embedding.weight.device
        windows = [h[-self.config.max_length :] for h in histories]
        length = max(len(w) for w in windows)
        input_ids = torch.zeros(len(windows), length, dtype=torch.long, device=device)
        for row, w in enumerate(windows):
            input_ids[row, : len(w)] = torch.as_tensor(w, device=device) + 1
        last = torch.as_tensor([len(w) - 1 for w in windows], device=device)
        states = self.hidden_states(input_ids)[torch.arange(len(windows), device=device), last]  # [B, H]
        return self.logits(states).float()

    def save_pretrained(self, directory: str | Path) -> None:
        """``config.json`` + ``model.safetensors``, written atomically."""
        with atomic_directory(directory) as tmp:
            write_json(tmp / "config.json", {"model_type": "sasrec", **asdict(self.config)})
            save_file({k: v.contiguous() for k, v in self.state_dict().items()}, tmp / "model.safetensors")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> SASRec:
        directory = Path(directory)
        for name in ("config.json", "model.safetensors"):
            if not (directory / name).is_file():
                raise CheckpointError(f"{directory} is not a saved SASRec: {name} is missing")
        with load_guard(directory):
            config = json.loads((directory / "config.json").read_text())
            weights = load_file(directory / "model.safetensors")
        if config.pop("model_type", None) != "sasrec":
            raise ConfigError(f"{directory}/config.json is not a SASRec config")
        try:
            model = cls(SASRecConfig(**config))
            model.load_state_dict(weights)
        except (TypeError, RuntimeError) as err:
            raise CheckpointError(f"{directory} does not hold a consistent SASRec: {err}") from err
        return model.eval()


@dataclass
class SASRecTrainingArguments:
    """How :class:`SASRecTrainer` trains.

    Attributes:
        batch_size (`int`): users per step (small batches, many steps: it matters a lot on ML-100K).
        learning_rate (`float`): Adam learning rate.
        weight_decay (`float`): AdamW decoupled weight decay.
        max_epochs (`int`): upper bound on passes over the users.
        patience (`int`): stop after this many validations without a better NDCG@10.
        window (`str`): ``"last"``: each epoch trains on the last ``max_length + 1`` training items of every
            user; ``"random"``: on a random window of them (a different one each epoch).
        seed (`int`): seeds initialisation, data order, windows and dropout.
        eval_batch_size (`int`): users per evaluation batch.
        device (`str`, *optional*): where the model trains and is evaluated: ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. The model, every batch and the evaluation scores live there, and the trained model is
            returned on it. Defaults to ``None``, the CPU (what SASRec always used before this option existed),
            so that a seed gives the same numbers whatever GPU the machine has; pass ``"cuda"`` to train on a GPU
            (dropout and kernels then differ, so the numbers are not the CPU's).
        mixed_precision (`str`): ``"no"`` (the default), ``"bf16"`` or ``"fp16"`` (a CUDA GPU only): the training
            forward passes run under `torch.autocast` in that precision (the weights stay fp32; validation scores
            are fp32, so full ranking breaks no extra ties).
        output_dir (`str`, *optional*): where training keeps ``options.json`` and a checkpoint after every epoch
            (``checkpoint/``); a rerun with the same folder resumes after the last finished epoch and gives the same
            model, and a folder started with other options is refused. `None` (the default) keeps nothing.
    """

    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    max_epochs: int = 200
    patience: int = 20
    window: Literal[WINDOWS] = "last"
    seed: int = 0
    eval_batch_size: int = 256
    device: str | None = None
    mixed_precision: str = "no"
    output_dir: str | None = None

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "learning_rate", "max_epochs", "patience", "eval_batch_size")
        if self.window not in WINDOWS:
            raise ConfigError(f"window must be one of {WINDOWS}, got {self.window!r}")
        check_device(self.device)
        check_mixed_precision(self.mixed_precision, self.device or "cpu")


class SASRecTrainer:
    """Trains :class:`SASRec` on a :class:`SequentialDataset`'s training histories with early stopping.

    Example:
        ```python
        >>> from contrec_hf.data import load_sequential_dataset
        >>> from contrec_hf.baselines import SASRecConfig, SASRecTrainer, SASRecTrainingArguments
        >>> data = load_sequential_dataset("ml-100k")
        >>> trainer = SASRecTrainer(data, SASRecConfig(num_items=data.num_items), SASRecTrainingArguments(seed=0))
        >>> model = trainer.train()  # a few minutes on 2 CPU cores
        >>> histories, targets = data.split("test")
        >>> trainer.evaluate("test").metrics["ndcg@10"]  # doctest: +SKIP
        ```
    """

    def __init__(self, data: SequentialDataset, config: SASRecConfig, args: SASRecTrainingArguments) -> None:
        if config.num_items != data.num_items:
            raise InputError(f"config.num_items={config.num_items} but the dataset has {data.num_items} items")
        self.data, self.config, self.args = data, config, args
        self.device = torch.device(args.device or "cpu")
        self.generator = set_seed(args.seed)
        self.model = SASRec(config).to(self.device)  # initialised on the CPU: the same weights on every device
        self.sequences = [s for s in data.train_sequences() if len(s) >= 2]
        if not self.sequences:
            raise InputError("no user has the 2 training items SASRec needs (an input and a next item)")
        self.history: list[dict[str, float]] = []

    def _window(self, seq: list[int]) -> list[int]:
        span = self.config.max_length + 1
        if self.args.window == "random" and len(seq) > span:
            end = int(torch.randint(span, len(seq) + 1, (1,), generator=self.generator))
            return seq[end - span : end]
        return seq[-span:]

    def _batch(self, users: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        windows = [self._window(self.sequences[u]) for u in users]
        length = max(len(w) for w in windows) - 1
        inputs = torch.zeros(len(users), length, dtype=torch.long)
        labels = torch.full((len(users), length), -100, dtype=torch.long)
        for row, w in enumerate(windows):
            inputs[row, : len(w) - 1] = torch.as_tensor(w[:-1]) + 1
            labels[row, : len(w) - 1] = torch.as_tensor(w[1:])
        return inputs.to(self.device), labels.to(self.device)

    def evaluate(self, split: str = "validation", progress: bool = False):
        """Full-ranking metrics of the current model on ``"validation"`` or ``"test"`` (scored and ranked on the
        model's device)."""
        histories, targets = self.data.split(split)
        self.model.eval()
        return evaluate_scorer(
            self.model.score,
            histories,
            targets,
            self.data.num_items,
            batch_size=self.args.eval_batch_size,
            progress=progress,
            desc=f"SASRec {split}",
        )

    def _epoch(self, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> float:
        """One pass over the users in a seeded random order; returns the mean loss per user."""
        self.model.train()
        order = torch.randperm(len(self.sequences), generator=self.generator).tolist()
        total = 0.0
        for start in range(0, len(order), self.args.batch_size):
            inputs, labels = self._batch(order[start : start + self.args.batch_size])
            with autocast(self.device, self.args.mixed_precision):
                loss = self.model(inputs, labels)["loss"]
            optimizer_step(loss, optimizer, scaler)
            total += loss.item() * len(inputs)
        return total / len(order)

    def train(self, progress: bool = True, stop_at_epoch: int | None = None) -> SASRec:
        """Train until validation NDCG@10 stops improving; restores and returns the best model.

        With ``args.output_dir``, a rerun resumes from the last epoch's checkpoint. ``stop_at_epoch`` stops after
        that epoch (and its checkpoint), as an interruption would, and returns the model as it is then.
        """
        args = self.args
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
        scaler = grad_scaler(self.device, args.mixed_precision)  # a pass-through unless fp16
        checkpoint = EpochCheckpoint.of_run(self.config, args)
        loop = EpochLoop(self.model, optimizer, scaler, self.generator, args.max_epochs, args.patience, checkpoint,
                         "SASRec")  # fmt: skip
        try:
            loop.run(lambda: self._epoch(optimizer, scaler), lambda: self.evaluate("validation").metrics["ndcg@10"],
                     progress, stop_at_epoch)  # fmt: skip
        finally:
            self.history = loop.history
        return self.model
