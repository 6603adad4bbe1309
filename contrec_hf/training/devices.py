"""Where training runs and in which precision: ``--device`` and ``--mixed-precision`` of the command line.

The recommender (stage 2) trains through accelerate, which places it on its device and autocasts its forward pass.
The item tokenizer (stage 1) and SASRec are plain PyTorch loops with a device of their own (the CPU by default, so
that a seed gives the same numbers on any machine); they autocast with `torch.autocast` themselves, because
accelerate's device and precision are set once per process and would tie them to the recommender's.
"""

from __future__ import annotations

import contextlib

import torch
from accelerate import PartialState

from ..errors import ConfigError
from ..utils import check_device

__all__ = [
    "MIXED_PRECISIONS", "autocast", "check_mixed_precision", "end_processes", "grad_scaler", "optimizer_step",
    "process_state", "resolve_device",
]  # fmt: skip

MIXED_PRECISIONS = ("no", "bf16", "fp16")
"""The ``mixed_precision`` values, as accelerate names them."""


def resolve_device(device: str | None = "auto") -> str:
    """The device a ``--device`` value means.

    Args:
        device (`str`, *optional*): ``"auto"`` or `None` (a CUDA GPU when torch sees one, else the CPU), ``"cpu"``,
            ``"cuda"`` or ``"cuda:N"``.

    Returns:
        `str`: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a CUDA device torch does not see raises a `ConfigError`.
    """
    if device is None or device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    check_device(device)
    return device


def check_mixed_precision(mixed_precision: str | None, device: str) -> None:
    """Refuse a precision the device cannot train in, before anything is loaded or trained.

    Args:
        mixed_precision (`str`, *optional*): ``"no"``, ``"bf16"`` or ``"fp16"`` (`None`: not set).
        device (`str`): where training runs (a value of [`resolve_device`]).
    """
    if mixed_precision is None:
        return
    if mixed_precision not in MIXED_PRECISIONS:
        raise ConfigError(f"mixed_precision must be one of {MIXED_PRECISIONS}, got {mixed_precision!r}")
    kind = torch.device(device).type
    if mixed_precision == "fp16" and kind != "cuda":
        # accelerate accepts fp16 on the CPU but then trains in fp32 without a word: refuse it instead.
        raise ConfigError(
            f"mixed_precision='fp16' needs a CUDA GPU, but training runs on {device!r}; on the CPU use 'bf16' "
            "(or 'no')"
        )
    if mixed_precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError("mixed_precision='bf16' but this GPU has no bf16 support; use 'fp16' (or 'no')")


def autocast(device: torch.device, mixed_precision: str | None) -> contextlib.AbstractContextManager:
    """The autocast context of a training forward pass (a no-op for ``"no"`` and `None`).

    Args:
        device (`torch.device`): where the model is.
        mixed_precision (`str`, *optional*): ``"no"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        `contextlib.AbstractContextManager`: `torch.autocast` in bf16 / fp16, or `contextlib.nullcontext`.
    """
    if mixed_precision in (None, "no"):
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if mixed_precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, mixed_precision: str | None) -> torch.amp.GradScaler:
    """The loss scaler of a training loop: fp16 gradients underflow without one; for any other precision it is
    disabled, and then a pass-through (``scale`` returns the loss, ``step`` calls the optimizer's).

    Args:
        device (`torch.device`): where the model is.
        mixed_precision (`str`, *optional*): ``"no"``, ``"bf16"`` or ``"fp16"``.

    Returns:
        `torch.amp.GradScaler`
    """
    return torch.amp.GradScaler(device.type, enabled=mixed_precision == "fp16")


def optimizer_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
    """One plain training step of ``loss`` (the loops of stage 1, SASRec and TIGER): clear the gradients,
    backpropagate through ``scaler`` (a pass-through unless fp16, see `grad_scaler`), step and update the scale."""
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()


def process_state(device: str) -> PartialState:
    """accelerate's process-wide state (process index and count, device), set up for ``device``.

    Under ``torchrun`` / ``accelerate launch`` it joins the processes (gloo on the CPU, NCCL on GPUs).

    Returns:
        `accelerate.PartialState`: the state; a conflict with the device this process already uses is a
        `ConfigError`.
    """
    try:
        return PartialState(cpu=device == "cpu")
    except ValueError as err:  # accelerate sets a process's device once
        raise ConfigError(f"cannot use {device!r} in this process ({err}); start a new process") from err


def end_processes() -> None:
    """Leave the process group this process joined under ``torchrun`` / ``accelerate launch``; no-op without one.

    A gloo group still open when Python exits can abort its process while the group's threads are torn down
    ("terminate called without an active exception", SIGABRT), after all its work is done, and the launcher then
    reports the whole run as failed. The ``contrec-hf`` commands call this last; a script of one's own that runs
    under a launcher should too (see ``examples/train_distributed.py``).

    Example:
        >>> end_processes()  # a single process joined no group: nothing to do
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
