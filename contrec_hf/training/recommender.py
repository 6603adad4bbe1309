"""Stage 2: train ContRecForRecommendation on sliding-window samples, with accelerate (docs/method.md §3–4).

One global batch order per epoch, derived from the seed; with several processes each takes its share of
every global batch (gradients are averaged by accelerate), so one and two processes walk the same data.
Checkpoints (trainable weights, optimizer, LR scheduler, RNGs and the data position; safetensors + JSON, no
pickle) are written every ``save_steps``; a rerun with the same output folder resumes from the last one.
Validation NDCG@10 is computed on the fast path (prompt + ``<pref>``), reading out the denoiser's x₀ estimate
(or a sampled latent) and ranking the whole catalog; the best model is saved with ``save_pretrained``.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from tqdm.auto import tqdm

from ..data.prompts import ContRecCollator, PromptBuilder, sliding_window_samples
from ..data.split import SequentialDataset
from ..errors import ConfigError, ContRecError, InputError
from ..evaluation import evaluate_scorer
from ..models.contrec import ContRecForRecommendation
from ..models.diffusion_head import READOUTS
from ..saving import atomic_directory
from ..utils import check_recorded, require_positive, set_seed, write_json
from .checkpoint import START_OVER, load_training_state, load_training_tensors, save_training_state
from .devices import check_mixed_precision, process_state, resolve_device
from .ema import ParameterAverage, check_ema_decay

__all__ = ["RecommenderTrainer", "RecommenderTrainingArguments", "unused_parameters"]

logger = logging.getLogger(__name__)

# Arguments a resume may change: where the training runs, not what it computes (RecommenderTrainer.maybe_resume).
_WHERE_IT_RUNS = ("output_dir", "device", "mixed_precision", "eval_batch_size")


@dataclass
class RecommenderTrainingArguments:
    """How :class:`RecommenderTrainer` trains.

    Attributes:
        output_dir (`str`): checkpoints under ``checkpoints/``, the best model under ``best/``, logs.
        batch_size (`int`): global batch size (split across processes).
        learning_rate (`float`): AdamW peak learning rate (linear warm-up, then cosine decay).
        weight_decay (`float`): AdamW weight decay.
        max_steps (`int`): optimizer steps in all.
        warmup_steps (`int`): linear warm-up steps.
        max_grad_norm (`float`): gradient clipping.
        eval_steps (`int`): validate every this many steps (and at the end).
        save_steps (`int`): write a resumable checkpoint every this many steps.
        patience (`int`): stop after this many validations without a better NDCG@10.
        eval_users (`int`): validate on this many users (a fixed, seeded subset; 0 = all).
        eval_batch_size (`int`): users per validation batch.
        readout (`str`, *optional*): ``"x0"`` (the denoiser's one-step x₀ estimate), ``"sample"`` (one DDIM-20
            sample) or ``"mean"`` (the mean of 8); see [`ContRecDiffusionHead.read_out`]. Default: the model config's
            `readout`, the read-out every other entry point uses.
        guidance_scale (`float`, *optional*): classifier-free guidance at validation (default: the config's).
        seed (`int`): seeds the data order, response drops, noise and initialisation.
        ema_decay (`float`): validate, keep as the best model and checkpoint a moving average of the trainable
            weights with this decay d in (0, 1) ([`ParameterAverage`], warm-up min(d, (1 + t) / (10 + t))); 0 (the
            default) validates and keeps the trained weights.
        device (`str`, *optional*): ``"cpu"`` or ``"cuda"``; `None` (the default): a CUDA GPU when torch sees one,
            else the CPU. accelerate places the model there (each process of a `torchrun` / `accelerate launch` run
            on its own GPU: pick GPUs with ``CUDA_VISIBLE_DEVICES``).
        mixed_precision (`str`, *optional*): ``"no"``, ``"bf16"`` or ``"fp16"`` (a CUDA GPU only), through
            accelerate: the forward passes are autocast (and fp16 losses scaled), the weights stay fp32. `None`
            (the default): what `accelerate launch --mixed_precision` set, else ``"no"``. accelerate fixes a
            process's device and precision at its first trainer: a later one in the same process must agree.
    """

    output_dir: str
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    max_steps: int = 2000
    warmup_steps: int = 100
    max_grad_norm: float = 1.0
    eval_steps: int = 250
    save_steps: int = 250
    patience: int = 4
    eval_users: int = 0
    eval_batch_size: int = 64
    readout: str | None = None
    guidance_scale: float | None = None
    seed: int = 0
    ema_decay: float = 0.0
    device: str | None = None
    mixed_precision: str | None = None

    def __post_init__(self) -> None:
        require_positive(self, "batch_size", "learning_rate", "max_steps", "eval_steps", "save_steps", "patience")
        check_ema_decay(self.ema_decay)
        if self.readout is not None and self.readout not in READOUTS:
            raise ConfigError(f"readout must be one of {READOUTS}, got {self.readout!r}")
        if self.device is not None and self.device not in ("cpu", "cuda"):
            raise ConfigError(
                f"device must be 'cpu', 'cuda' or None (a GPU when there is one), got {self.device!r}; accelerate "
                "gives each process its own GPU: choose GPUs with CUDA_VISIBLE_DEVICES"
            )
        check_mixed_precision(self.mixed_precision, resolve_device(self.device))


def unused_parameters(
    model: torch.nn.Module, collator: ContRecCollator, batch: list[tuple[list[int], int]]
) -> list[str]:
    """Names of the trainable parameters a training step can leave without a gradient.

    DDP must be told of such parameters (``find_unused_parameters=True``, a graph traversal every step, and a
    warning every step when none is found). The probe is one forward and backward pass on ``batch`` with the
    fewest parts of the model in use: fast-path prompts only (no response, so no language-model loss), unless
    every training sample carries a response (``fast_path_probability`` 0). An untied LM head is then unused, for
    instance; the tiny backbone ties it to the input embeddings. Random states are restored afterwards, and the
    gradients cleared, so training walks the same numbers with or without the probe.

    Args:
        model (`torch.nn.Module`): the recommender (a PEFT model too), on the device it trains on.
        collator ([`ContRecCollator`]): the training collator (a copy of it collates the probe: its own random
            state is left alone).
        batch (`list[tuple[list[int], int]]`): a few (history, target) training samples.

    Returns:
        `list[str]`: the parameter names, empty when every trainable parameter gets a gradient.
    """
    probe = dataclasses.replace(collator, fast_path_probability=1.0 if collator.fast_path_probability > 0 else 0.0)
    device = next(model.parameters()).device
    was_training = model.training
    model.train()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        inputs = {k: v.to(device) for k, v in probe(batch, train=True).items()}
        model(**inputs).loss.backward()
    names = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return names


def _accelerator(device: str, mixed_precision: str | None, handlers: list) -> Accelerator:
    """The accelerator of a trainer; a conflict with the process's earlier settings is a `ConfigError`."""
    try:
        accelerator = Accelerator(cpu=device == "cpu", mixed_precision=mixed_precision, kwargs_handlers=handlers)
    except ValueError as err:  # accelerate sets a process's device and precision once, at its first Accelerator
        raise ConfigError(
            f"cannot train with device={device!r} and mixed_precision={mixed_precision!r}: this process already "
            f"trained with other settings ({err}); start a new process"
        ) from err
    if accelerator.device.type != torch.device(device).type:
        raise ConfigError(
            f"device={device!r}, but accelerate already runs this process on {accelerator.device}; start a new process"
        )
    return accelerator


class RecommenderTrainer:
    """Trains a [`ContRecForRecommendation`] whose item tokenizer is already trained (stage 1).

    Args:
        model ([`ContRecForRecommendation`]): with `add_special_tokens(text_tokenizer)` already called.
        text_tokenizer (`PreTrainedTokenizerBase`): the LM's tokenizer.
        data ([`SequentialDataset`]): the split; only training histories are trained on.
        item_features (`torch.Tensor` of shape `[num_items, input_dim]`): the catalog's features.
        args ([`RecommenderTrainingArguments`]): how to train.
    """

    def __init__(
        self,
        model: ContRecForRecommendation,
        text_tokenizer,
        data: SequentialDataset,
        item_features: torch.Tensor,
        args: RecommenderTrainingArguments,
    ) -> None:
        if item_features.shape[0] != data.num_items:
            raise InputError(f"item_features has {item_features.shape[0]} rows but the dataset {data.num_items} items")
        self.args, self.data, self.text_tokenizer = args, data, text_tokenizer
        self.output_dir = Path(args.output_dir)
        device = resolve_device(args.device)
        state = process_state(device)
        set_seed(args.seed + state.process_index)
        builder = PromptBuilder(
            titles=data.items["title"].tolist(),
            categories=data.items["category"].tolist(),
            num_item_tokens=model.config.num_item_tokens,
            max_history=model.config.max_history,
            max_title_length=model.config.max_title_length,
        )
        self.collator = ContRecCollator(
            text_tokenizer,
            builder,
            item_features.float(),
            fast_path_probability=model.config.fast_path_probability,
            seed=args.seed + state.process_index,
        )
        self.samples = sliding_window_samples(data.train_sequences(), model.config.max_history)
        if not self.samples:
            raise ContRecError("no training samples: every training history is shorter than 2 items")
        handlers = []
        if state.num_processes > 1:  # DDP: traverse the graph for unused parameters only if some can be unused
            probe = [self._sample(i) for i in range(min(4, len(self.samples)))]
            unused = unused_parameters(model.to(state.device), self.collator, probe)
            if unused:
                logger.info("DDP looks for unused parameters: a step can leave %s without a gradient", unused[:5])
                handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
        self.accelerator = _accelerator(device, args.mixed_precision, handlers)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=args.learning_rate, weight_decay=args.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self._lr_factor)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        # Every process averages its own (identical) copy, so any of them could validate or save the average.
        self.average = ParameterAverage(self._unwrapped, args.ema_decay) if args.ema_decay else None
        self.state = {"step": 0, "best_ndcg": -1.0, "best_step": 0, "stale": 0, "history": []}
        users = list(range(data.num_users))
        if args.eval_users and args.eval_users < len(users):
            users = sorted(random.Random(args.seed).sample(users, args.eval_users))
        self.eval_users = users

    # ------------------------------------------------------------------------------------ schedule
    def _lr_factor(self, step: int) -> float:
        """The learning-rate factor of ``step``: linear warm-up, then cosine decay to 0.

        Not `transformers.get_cosine_schedule_with_warmup`, on purpose: its warm-up starts at factor 0 (step /
        warmup), which makes the first step a no-op, where this one starts at 1 / warmup; switching would change
        every trained weight of every saved run and benchmark. The factor is computed from the step alone, so a
        resumed run needs no scheduler state in its checkpoint.
        """
        if step < self.args.warmup_steps:
            return (step + 1) / self.args.warmup_steps
        progress = (step - self.args.warmup_steps) / max(1, self.args.max_steps - self.args.warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    def _global_batch(self, step: int) -> list[tuple[list[int], int]]:
        """The samples of global step ``step``: a seeded permutation per epoch, walked in order."""
        per_epoch = len(self.samples) // self.args.batch_size or 1
        epoch, index = divmod(step, per_epoch)
        order = torch.randperm(len(self.samples), generator=torch.Generator().manual_seed(self.args.seed + epoch))
        chosen = order[index * self.args.batch_size : (index + 1) * self.args.batch_size].tolist()
        return [self._sample(i) for i in chosen]

    def _sample(self, index: int) -> tuple[list[int], int]:
        """Training sample ``index`` as ``(history, target)``: every item before the target. The collator's prompt
        keeps the last `max_history` of them; the ranking softmax can leave them all out (`ranking_mask_history`)."""
        user, end, target = self.samples[index]
        return self.data.sequences[user][:end], target

    @property
    def _unwrapped(self) -> ContRecForRecommendation:
        return self.accelerator.unwrap_model(self.model)

    @property
    def model_config(self):
        return self._unwrapped.config

    def averaged_weights(self):
        """A context manager holding the weights that validation scores and ``best/`` keeps in the model: the
        moving average with ``ema_decay`` > 0 (the trained weights are back after the block), else the trained
        ones as they are. E.g. ``with trainer.averaged_weights(): trainer.evaluate("test")``."""
        return self.average.applied(self._unwrapped) if self.average else contextlib.nullcontext()

    # --------------------------------------------------------------------------------- checkpoints
    def _checkpoint_dir(self) -> Path:
        return self.output_dir / "checkpoints" / "last"

    def save_checkpoint(self) -> None:
        """Everything needed to resume: trainable weights, optimizer, LR scheduler, RNGs, data position."""
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_training_state(
                self._checkpoint_dir(),
                self._unwrapped,
                self.optimizer,
                self.scheduler,
                self.state,
                rngs={"collator": self.collator._rng},
                tensors={"ema": self.average.state_dict()} if self.average else None,
            )
        self.accelerator.wait_for_everyone()

    def maybe_resume(self) -> bool:
        """Resume from the last checkpoint in ``output_dir`` if there is one.

        ``training_args.json`` records the arguments the folder's training started with (all but where it runs:
        the folder, the device, the precision, the validation batch); a resume with others, e.g. another
        ``max_steps``, whose cosine schedule would jump mid-run, is refused with a [`ConfigError`] naming them.
        """
        recorded = {k: v for k, v in asdict(self.args).items() if k not in _WHERE_IT_RUNS}
        if not self.args.ema_decay:  # off is not recorded, so folders from before the option stay resumable
            del recorded["ema_decay"]
        check_recorded(self.output_dir / "training_args.json", recorded, "other training arguments", START_OVER)
        target = self._checkpoint_dir()
        if not (target / "trainer_state.json").is_file():
            return False
        self.state = load_training_state(
            target, self._unwrapped, self.optimizer, self.scheduler, rngs={"collator": self.collator._rng}
        )
        if self.average:
            self.average.load_state_dict(load_training_tensors(target, "ema"))
        self.accelerator.print(f"resumed from {target} at step {self.state['step']}")
        return True

    # ---------------------------------------------------------------------------------- evaluation
    @torch.no_grad()
    def conditions(self, histories: list[list[int]]) -> torch.Tensor:
        """Fast-path conditions c for histories: `[batch, condition_dim]`."""
        model = self.accelerator.unwrap_model(self.model)
        return model.batch_conditions(self.collator([(h, None) for h in histories], train=False))

    @torch.no_grad()
    def evaluate(self, split: str = "validation", users: list[int] | None = None, progress: bool = False):
        """Full-ranking metrics on the fast path with the configured read-out."""
        model = self.accelerator.unwrap_model(self.model)
        model.eval()
        item_latents = model.item_table(self.collator.item_features.to(self.accelerator.device))
        histories, targets = self.data.split(split)
        users = list(range(len(targets))) if users is None else users
        histories = [histories[u] for u in users]
        targets = [targets[u] for u in users]

        def scorer(batch: list[list[int]]) -> torch.Tensor:
            generator = torch.Generator(device="cpu").manual_seed(self.args.seed)  # sampled read-outs: DDIM-20
            latent = model.diffusion_head.read_out(self.conditions(batch), self.args.readout, None, 20,
                                                   self.args.guidance_scale, generator)  # fmt: skip
            return model.item_scores(latent, item_latents).cpu()

        result = evaluate_scorer(
            scorer,
            histories,
            targets,
            self.data.num_items,
            batch_size=self.args.eval_batch_size,
            progress=progress,
            desc=f"ContRec {split}",
        )
        model.train()
        return result

    # ------------------------------------------------------------------------------------- training
    def train(self, progress: bool = True, stop_at_step: int | None = None) -> dict[str, Any]:
        """Train (resuming if a checkpoint exists) with early stopping; returns the trainer state.

        ``stop_at_step`` ends this call early (after that step's checkpoint/validation) without changing the
        schedule, as an interruption would; a later call resumes from the last checkpoint.
        """
        args, acc = self.args, self.accelerator
        self.maybe_resume()
        last = min(args.max_steps, stop_at_step or args.max_steps)
        self.model.train()
        bar = tqdm(
            total=args.max_steps,
            initial=self.state["step"],
            desc="ContRec training",
            disable=not (progress and acc.is_main_process),
        )
        running, started = [], time.perf_counter()
        while self.state["step"] < last and self.state["stale"] < args.patience:
            batch = self._global_batch(self.state["step"])[acc.process_index :: acc.num_processes]
            inputs = self.collator(batch, train=True)
            inputs = {k: v.to(acc.device) for k, v in inputs.items()}
            out = self.model(**inputs)
            acc.backward(out.loss)
            if args.max_grad_norm:
                acc.clip_grad_norm_(self.model.parameters(), args.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            if self.average:
                self.average.update(self._unwrapped, self.state["step"])
            self.state["step"] += 1
            parts = ("loss", "lm_loss", "diffusion_loss", "dispersive_loss", "history_diffusion_loss", "ranking_loss")
            running.append({k: getattr(out, k).item() for k in parts if getattr(out, k) is not None})
            bar.update(1)
            bar.set_postfix(loss=f"{out.loss.item():.3f}", best=f"{self.state['best_ndcg']:.4f}")
            step = self.state["step"]
            if step % args.eval_steps == 0 or step == args.max_steps:
                self._validate(running, started)
                running = []
            if step % args.save_steps == 0 or step == args.max_steps:
                self.save_checkpoint()
        bar.close()
        acc.wait_for_everyone()
        return self.state

    def _save_best(self, model, directory: Path) -> None:
        """A plain ContRec checkpoint (+ its text tokenizer). A PEFT model is saved merged, so the folder loads with
        `ContRecForRecommendation.from_pretrained` and builds a pipeline; its adapter is kept in `adapter/`."""
        with atomic_directory(directory) as tmp:  # the three parts are swapped in together
            if hasattr(model, "merge_and_unload"):
                model.save_pretrained(tmp / "adapter")
                model = copy.deepcopy(model).merge_and_unload()
            model.save_pretrained(tmp)
            self.text_tokenizer.save_pretrained(tmp / "text_tokenizer")

    def _validate(self, running: list[dict[str, float]], started: float) -> None:
        with self.averaged_weights():  # validated and kept as the best model alike
            self._validate_and_keep(running, started)

    def _validate_and_keep(self, running: list[dict[str, float]], started: float) -> None:
        acc = self.accelerator
        metrics = self.evaluate("validation", self.eval_users).metrics if acc.is_main_process else {}
        means = {k: sum(r[k] for r in running if k in r) / max(1, sum(k in r for r in running)) for k in running[0]}
        record = {"step": self.state["step"], "seconds": time.perf_counter() - started, **means}
        record.update({f"val_{k}": v for k, v in metrics.items()})
        tau = self._unwrapped.diffusion_head.ranking_temperature
        if torch.is_tensor(tau):  # a learned τ (ranking_temperature_learnable), logged as it trains
            record["ranking_temperature"] = tau.item()
        self.state["history"].append(record)
        ndcg = torch.tensor([metrics.get("ndcg@10", 0.0)], device=acc.device)
        ndcg = float(acc.reduce(ndcg, reduction="sum"))  # only the main process evaluated
        if ndcg > self.state["best_ndcg"]:
            self.state.update(best_ndcg=ndcg, best_step=self.state["step"], stale=0)
            if acc.is_main_process:
                self._save_best(acc.unwrap_model(self.model), self.output_dir / "best")
        else:
            self.state["stale"] += 1
        if acc.is_main_process:
            write_json(self.output_dir / "training_log.json", self.state["history"])
            acc.print(f"step {record['step']}: loss {means.get('loss', float('nan')):.4f} val ndcg@10 {ndcg:.4f}")
