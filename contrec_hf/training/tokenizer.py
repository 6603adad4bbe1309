"""Stage 1: train the σ-VAE item tokenizer on item features (docs/method.md §2).

Items are split 80/10/10 into train / validation / held-out at random (seeded). The tokenizer trains on the
training items, the checkpoint with the lowest validation reconstruction MSE is kept, and the collapse
diagnostics are measured on it: held-out MSE (in the standardised feature space, so figures are comparable
across feature kinds: 1.0 is what predicting the mean scores), effective rank, variances, dead dimensions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, ContRecError, InputError
from ..models.tokenizer import ContRecTokenizer, ContRecTokenizerConfig, collapse_diagnostics, effective_rank
from ..utils import check_device, require_positive, set_seed, write_json
from .devices import autocast, check_mixed_precision, grad_scaler, optimizer_step

__all__ = [
    "TokenizerTrainingArguments",
    "TokenizerTrainingResult",
    "run_tokenizer_stage",
    "split_items",
    "train_item_tokenizer",
]


@dataclass
class TokenizerTrainingArguments:
    """How :func:`train_item_tokenizer` trains.

    Attributes:
        batch_size (`int`): items per step.
        learning_rate (`float`): AdamW learning rate.
        weight_decay (`float`): AdamW weight decay.
        max_epochs (`int`): upper bound on passes over the training items.
        patience (`int`): stop after this many epochs without a lower validation MSE.
        split (`tuple[float, float, float]`): train / validation / held-out fractions of the items.
        seed (`int`): seeds the item split, initialisation, batches, masks and σ draws.
        device (`str`, *optional*): where the tokenizer trains and is measured: ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``. The tokenizer and the features live there, and the trained tokenizer is returned on it.
            Defaults to ``None``, the CPU (what training always used before this option existed), so that a seed
            gives the same tokenizer whatever GPU the machine has; pass ``"cuda"`` to train on a GPU (masks,
            σ draws and kernels then differ, so the numbers are not the CPU's).
        mixed_precision (`str`): ``"no"`` (the default), ``"bf16"`` or ``"fp16"`` (a CUDA GPU only): the training
            forward passes run under `torch.autocast` in that precision (the weights stay fp32; validation, the
            best-epoch choice and the diagnostics are measured in fp32).
    """

    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 300
    patience: int = 30
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    device: str | None = None
    mixed_precision: str = "no"

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "learning_rate", "max_epochs", "patience")
        if len(self.split) != 3 or any(f <= 0 for f in self.split) or abs(sum(self.split) - 1) > 1e-6:
            raise ConfigError(f"split must be three positive fractions summing to 1, got {self.split}")
        check_device(self.device)
        check_mixed_precision(self.mixed_precision, self.device or "cpu")


@dataclass
class TokenizerTrainingResult:
    """What :func:`train_item_tokenizer` returns: the best tokenizer, its diagnostics and the per-epoch history."""

    tokenizer: ContRecTokenizer
    diagnostics: dict[str, Any]
    history: list[dict[str, float]] = field(default_factory=list)
    split: dict[str, list[int]] = field(default_factory=dict)


def split_items(num_items: int, fractions: tuple[float, float, float], seed: int) -> dict[str, list[int]]:
    """A seeded random split of item indices into ``train`` / ``validation`` / ``heldout``."""
    if num_items < 3:
        raise InputError(f"need at least 3 items to split into train/validation/held-out, got {num_items}")
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = max(1, round(fractions[1] * num_items))
    n_held = max(1, round(fractions[2] * num_items))
    n_train = num_items - n_val - n_held
    return {
        "train": sorted(order[:n_train]),
        "validation": sorted(order[n_train : n_train + n_val]),
        "heldout": sorted(order[n_train + n_val :]),
    }


@torch.no_grad()
def reconstruction_mse(tokenizer: ContRecTokenizer, features: torch.Tensor) -> float:
    """Eval-mode MSE between standardised features and their reconstruction from μ."""
    tokenizer.eval()
    mu = tokenizer.encode(features)  # [N, K, d_z]
    return float(torch.mean((tokenizer.decode(mu, denormalize=False) - tokenizer.normalize(features)) ** 2))


def _train_epoch(
    tokenizer: ContRecTokenizer, train_x: torch.Tensor, order: torch.Tensor, optimizer, scaler, args
) -> float:
    """One pass over ``train_x`` `[n, input_dim]` in ``order``; returns the mean training loss per item."""
    tokenizer.train()
    device, total = train_x.device, 0.0
    for start in range(0, len(order), args.batch_size):
        batch = train_x[order[start : start + args.batch_size]]
        with autocast(device, args.mixed_precision):
            loss = tokenizer(batch).loss
        optimizer_step(loss, optimizer, scaler)
        total += loss.item() * len(batch)
    return total / len(order)


def train_item_tokenizer(
    features: torch.Tensor,
    config: ContRecTokenizerConfig,
    args: TokenizerTrainingArguments | None = None,
    progress: bool = True,
) -> TokenizerTrainingResult:
    """Train a [`ContRecTokenizer`] on ``features`` (`[num_items, input_dim]`) with early stopping.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf import ContRecTokenizerConfig
        >>> from contrec_hf.training import TokenizerTrainingArguments, train_item_tokenizer
        >>> feats = torch.randn(200, 24)
        >>> args = TokenizerTrainingArguments(max_epochs=3)
        >>> result = train_item_tokenizer(feats, ContRecTokenizerConfig(input_dim=24), args, progress=False)
        >>> sorted(result.diagnostics)[:3]
        ['dead_fraction', 'effective_rank', 'epochs']
        ```
    """
    args = args or TokenizerTrainingArguments()
    if features.ndim != 2 or features.shape[1] != config.input_dim:
        raise InputError(f"features must be [num_items, {config.input_dim}], got {tuple(features.shape)}")
    if not torch.isfinite(features).all():
        raise InputError("features hold NaN or inf values")
    device = torch.device(args.device or "cpu")
    features = features.float().to(device)
    generator = set_seed(args.seed)
    split = split_items(features.shape[0], args.split, args.seed)
    train_x, val_x, held_x = (features[split[k]] for k in ("train", "validation", "heldout"))

    tokenizer = ContRecTokenizer(config).to(device)  # initialised on the CPU: the same weights on every device
    tokenizer.fit_normalization(train_x)  # statistics of the training items only
    optimizer = torch.optim.AdamW(tokenizer.parameters(), lr=args.learning_rate, weight_decay=args.weight_decay)
    scaler = grad_scaler(device, args.mixed_precision)  # a pass-through unless fp16
    best, best_state, stale, history = float("inf"), None, 0, []
    started = time.perf_counter()
    bar = tqdm(range(1, args.max_epochs + 1), desc="tokenizer training", disable=not progress)
    for epoch in bar:
        order = torch.randperm(train_x.shape[0], generator=generator).to(device)  # drawn on the CPU, as before
        train_loss = _train_epoch(tokenizer, train_x, order, optimizer, scaler, args)
        val_mse = reconstruction_mse(tokenizer, val_x)
        history.append({"epoch": epoch, "train_loss": train_loss, "val_mse": val_mse})
        if val_mse < best:
            best, stale = val_mse, 0
            best_state = {k: v.detach().clone() for k, v in tokenizer.state_dict().items()}
        else:
            stale += 1
        bar.set_postfix(train=f"{train_loss:.4f}", val_mse=f"{val_mse:.4f}", best=f"{best:.4f}")
        if stale >= args.patience:
            break
    tokenizer.load_state_dict(best_state)
    tokenizer.eval()

    with torch.no_grad():
        mu = tokenizer.encode(features)  # [N, K, d_z], every item
    stats = collapse_diagnostics(mu)
    diagnostics = {
        "heldout_mse": reconstruction_mse(tokenizer, held_x),
        "validation_mse": best,
        "train_mse": reconstruction_mse(tokenizer, train_x),
        "effective_rank": stats["effective_rank"],
        "latent_effective_rank": effective_rank(mu.mean(dim=1)),
        "dead_fraction": stats["dead_fraction"],
        "mean_variance": stats["mean_variance"],
        "per_dim_variance": stats["per_dim_variance"],
        "max_effective_rank": mu.shape[1] * mu.shape[2],
        "epochs": len(history),
        "best_epoch": 1 + min(range(len(history)), key=lambda i: history[i]["val_mse"]),
        "seconds": time.perf_counter() - started,
        "num_items": {k: len(v) for k, v in split.items()},
        "training_arguments": asdict(args),
    }
    return TokenizerTrainingResult(tokenizer=tokenizer, diagnostics=diagnostics, history=history, split=split)


def run_tokenizer_stage(
    data,
    feature_kind: str,
    output_dir: str | Path,
    *,
    tokenizer_kwargs: dict[str, Any] | None = None,
    args: TokenizerTrainingArguments | None = None,
    features_dir: str | Path | None = None,
    collaborative=None,
    text_encoder: str | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> TokenizerTrainingResult:
    """Stage 1 end to end: item features (built, or reused from ``features_dir``) → trained tokenizer.

    Writes to ``output_dir``: the tokenizer (``config.json`` + ``model.safetensors``, loadable with
    ``ContRecTokenizer.from_pretrained``), ``diagnostics.json``, ``training_history.json`` and
    ``item_split.json``; the features go to ``features_dir`` (default ``output_dir/features``).
    An existing tokenizer in ``output_dir`` is never replaced unless ``overwrite=True``.
    """
    from ..features import build_item_features

    output_dir = Path(output_dir)
    if (output_dir / "config.json").exists() and not overwrite:
        raise ContRecError(f"{output_dir} already holds a trained tokenizer; pass overwrite=True (--overwrite)")
    features_dir = Path(features_dir) if features_dir is not None else output_dir / "features"
    features = build_item_features(
        data,
        feature_kind,
        collaborative=collaborative,
        text_encoder=text_encoder,
        cache_dir=features_dir,
        progress=progress,
    )
    config = ContRecTokenizerConfig(input_dim=features.dim, **(tokenizer_kwargs or {}))
    result = train_item_tokenizer(features.features, config, args, progress=progress)
    result.diagnostics.update(feature_kind=feature_kind, dataset=data.name, features_dir=str(features_dir))
    result.tokenizer.save_pretrained(output_dir)
    write_json(output_dir / "diagnostics.json", result.diagnostics)
    write_json(output_dir / "training_history.json", result.history)
    write_json(output_dir / "item_split.json", {k: [data.item_ids[i] for i in v] for k, v in result.split.items()})
    return result
