"""An exponential moving average (EMA) of a model's trainable parameters, the weights a trainer validates and saves
when ``ema_decay`` is set (docs/training.md, "Averaged weights").

Diffusion models are usually trained this way (DDPM, MAR; diffusers' `EMAModel`): the averaged weights are less noisy
than the last step's. This is the library's own small version, so that its state lives in the trainers' pickle-free
checkpoints (a safetensors group) and its names follow the unwrapped model's, with one or several processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from ..errors import ConfigError, ContRecError
from ..utils import check_number

__all__ = ["ParameterAverage", "check_ema_decay"]


def check_ema_decay(decay: float) -> float:
    """``decay``, or a [`ConfigError`] naming ``ema_decay`` unless it is a number in [0, 1) (0: no averaging)."""
    return check_number("ema_decay", decay, 0.0, 1.0, high_open=True, wanted="a number in [0, 1) (0: no averaging)")


class ParameterAverage:
    """θ̄ ← d_t · θ̄ + (1 − d_t) · θ after every optimizer step t, for the model's trainable parameters, with the
    warm-up d_t = min(d, (1 + t) / (10 + t)) (diffusers' `EMAModel` default), so the first steps' random weights fade
    out quickly and the horizon grows to 1 / (1 − d) steps.

    Args:
        model (`torch.nn.Module`): the model being trained (unwrapped: the names are its own); its trainable
            parameters are averaged, starting from their current values.
        decay (`float`): d, in (0, 1).

    Example:

    ```python
    >>> import torch
    >>> from contrec_hf.training import ParameterAverage
    >>> layer = torch.nn.Linear(2, 1, bias=False)
    >>> _ = layer.weight.data.fill_(0.0)
    >>> average = ParameterAverage(layer, decay=0.5)
    >>> _ = layer.weight.data.fill_(1.0)
    >>> average.update(layer, step=100)  # d_100 = min(0.5, 101 / 110) = 0.5
    >>> with average.applied(layer):
    ...     layer.weight.tolist()
    [[0.5, 0.5]]
    >>> layer.weight.tolist()  # the trained weights are back
    [[1.0, 1.0]]

    ```
    """

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        check_ema_decay(decay)
        if decay == 0.0:
            raise ConfigError("ParameterAverage needs ema_decay > 0 (0 means no averaging: build none)")
        self.decay = float(decay)
        self.shadow = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}

    def decay_at(self, step: int) -> float:
        """d_t of the update after optimizer step ``step`` (0-based)."""
        return min(self.decay, (1 + step) / (10 + step))

    def _parameters(self, model: torch.nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        parameters = dict(model.named_parameters())
        for name, shadow in self.shadow.items():
            if name not in parameters or parameters[name].shape != shadow.shape:
                raise ContRecError(f"the averaged weights' {name!r} is not in the model, or not of its shape: another "
                                   "model")  # fmt: skip
            yield shadow, parameters[name]

    @torch.no_grad()
    def update(self, model: torch.nn.Module, step: int) -> None:
        """Fold the model's current trainable parameters in, after optimizer step ``step`` (0-based)."""
        weight = 1.0 - self.decay_at(step)
        for shadow, parameter in self._parameters(model):
            shadow.lerp_(parameter.detach(), weight)

    @contextmanager
    @torch.no_grad()
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The averaged weights in ``model`` inside the block (to validate or save it); the trained ones after it,
        also when the block raises."""
        pairs = list(self._parameters(model))
        trained = [parameter.detach().clone() for _, parameter in pairs]
        for shadow, parameter in pairs:
            parameter.copy_(shadow)
        try:
            yield
        finally:
            for kept, (_, parameter) in zip(trained, pairs, strict=True):
                parameter.copy_(kept)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The averaged weights by parameter name (a checkpoint's tensor group)."""
        return dict(self.shadow)

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore :meth:`state_dict`'s tensors; other names or shapes are a [`ContRecError`]."""
        if set(tensors) != set(self.shadow):
            diff = sorted(set(tensors) ^ set(self.shadow))[:5]
            raise ContRecError(f"the checkpoint's averaged weights do not match the model (names differ: {diff})")
        for name, value in tensors.items():
            if value.shape != self.shadow[name].shape:
                raise ContRecError(f"the checkpoint's averaged {name!r} has shape {tuple(value.shape)}, the model's "
                                   f"{tuple(self.shadow[name].shape)}")  # fmt: skip
            self.shadow[name].copy_(value)
