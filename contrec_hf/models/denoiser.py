"""The conditional denoiser of ContRec's Dispersive Diffusion head, and the Dispersive Loss (docs/method.md §4).

The denoiser is a small MLP with adaptive LayerNorm, the shape of MAR's diffusion head (Li et al., 2024,
"Autoregressive Image Generation without Vector Quantization"): an input projection, residual blocks whose
LayerNorms are shifted, scaled and gated by (timestep embedding + condition), zero-initialised modulations
and output, so the untrained head predicts 0. Timesteps go through sinusoidal features and may be floats
(Euler-type schedulers), never through an embedding lookup.

The Dispersive Loss (Wang & He, 2025, "Diffuse and Disperse", arXiv 2506.09027, InfoNCE-L2 form) spreads
the denoiser's intermediate representations r_1 … r_B of a batch apart:
    L_disp = log( (1/B²) Σ_{i,j} exp(−‖r_i − r_j‖² / (d·τ)) ).
NOTE: the authors' released code had this sign flipped; minimising L_disp here *increases* the distances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils import BaseOutput
from torch import nn

from ..errors import InputError
from ..utils import check_number

__all__ = ["ContRecDenoiser", "ContRecDenoiserOutput", "dispersive_loss"]


def dispersive_loss(representations: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """L_disp = log( (1/B²) Σ_{i,j} exp(−‖r_i − r_j‖² / (d·τ)) ) over a batch (Wang & He 2025, eq. InfoNCE-L2).

    Args:
        representations (`torch.Tensor` of shape `[batch, ...]`): flattened to `[batch, d]`.
        temperature (`float`): τ.

    Returns:
        `torch.Tensor` of shape `()`. It is ≤ 0 and *decreases* as the batch spreads out (0 when all
        representations coincide).
    """
    check_number("temperature", temperature, 0.0, low_open=True)
    r = representations.flatten(1)  # [B, d]
    distances = torch.cdist(r, r).pow(2)  # [B, B], ‖r_i − r_j‖²
    logits = -distances / (r.shape[1] * temperature)
    return torch.logsumexp(logits.flatten(), dim=0) - 2 * math.log(r.shape[0])


@dataclass
class ContRecDenoiserOutput(BaseOutput):
    """Output of [`ContRecDenoiser`].

    Args:
        sample (`torch.Tensor` of shape `[batch, latent_dim]`): the prediction (ε, x₀ or v by prediction type).
        representation (`torch.Tensor` of shape `[batch, hidden_dim]`, *optional*): the last block's output,
            where the Dispersive Loss applies.
    """

    sample: torch.Tensor
    representation: torch.Tensor | None = None


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class _AdaLNBlock(nn.Module):
    """x + gate · MLP(LN(x)·(1 + scale) + shift), with (shift, scale, gate) from the conditioning vector."""

    def __init__(self, hidden_dim: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        inner = int(hidden_dim * mlp_ratio)
        self.norm = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(hidden_dim, inner), nn.SiLU(), nn.Dropout(dropout), nn.Linear(inner, hidden_dim)
        )
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 3 * hidden_dim))

    def forward(self, x: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        """`modulation`: this block's `[B or 1, 3H]` slice of [`ContRecDenoiser.modulate`]."""
        shift, scale, gate = modulation.chunk(3, dim=-1)  # 3 × [B or 1, H]
        return x + gate * self.mlp(_modulate(self.norm(x), shift, scale))


class ContRecDenoiser(ModelMixin, ConfigMixin):
    """Predicts the noise (or x₀, or v) of a noisy latent given the timestep and the LM's condition.

    Args:
        latent_dim (`int`): size of the generated latent x₀ (the item latent, d_z).
        condition_dim (`int`): size of the condition c = proj(h).
        hidden_dim (`int`): width of the residual blocks.
        num_blocks (`int`): residual adaLN blocks.
        mlp_ratio (`float`): inner width of each block's MLP, as a multiple of `hidden_dim`.
        dropout (`float`): dropout inside the blocks.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf.models import ContRecDenoiser
        >>> denoiser = ContRecDenoiser(latent_dim=16, condition_dim=32, hidden_dim=37, num_blocks=2)
        >>> out = denoiser(torch.randn(4, 16), torch.tensor([0, 10, 99, 5]), torch.randn(4, 32))
        >>> out.sample.shape, bool(out.sample.abs().max() == 0)   # zero-initialised output
        (torch.Size([4, 16]), True)
        ```
    """

    @register_to_config
    def __init__(
        self,
        latent_dim: int = 64,
        condition_dim: int = 64,
        hidden_dim: int = 256,
        num_blocks: int = 3,
        mlp_ratio: float = 1.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        sizes = {"latent_dim": latent_dim, "condition_dim": condition_dim, "hidden_dim": hidden_dim}
        for name, value in {**sizes, "num_blocks": num_blocks}.items():
            check_number(name, value, 1, integer=True)
        self.input_proj = nn.Linear(latent_dim, hidden_dim)
        self.time_proj = Timesteps(hidden_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embedding = TimestepEmbedding(hidden_dim, hidden_dim)
        self.condition_proj = nn.Linear(condition_dim, hidden_dim)
        self.blocks = nn.ModuleList(_AdaLNBlock(hidden_dim, mlp_ratio, dropout) for _ in range(num_blocks))
        self.final_norm = nn.LayerNorm(hidden_dim, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_dim, 2 * hidden_dim))
        self.output_proj = nn.Linear(hidden_dim, latent_dim)
        self._zero_init()

    def _zero_init(self) -> None:
        """Zero the modulations and the output layer: at initialisation every block is the identity and the
        prediction is 0 (MAR / DiT practice)."""
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.final_modulation[-1], self.output_proj):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def modulation_dim(self) -> int:
        """Width of [`modulate`]'s output: (shift, scale, gate) per block, then the final (shift, scale)."""
        return (3 * len(self.blocks) + 2) * self.config.hidden_dim

    def embed(self, timestep: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """The adaLN conditioning vector e = TimestepEmbedding(t) + proj(c).

        Args:
            timestep (`torch.Tensor` of shape `[N]` or `[1]`): integer or float timesteps.
            condition (`torch.Tensor` of shape `[N, condition_dim]` or `[1, condition_dim]`): c.

        Returns:
            `torch.Tensor` of shape `[N, hidden_dim]` (`[1, hidden_dim]` when both have one row).
        """
        return self.embed_timesteps(timestep, condition.dtype) + self.embed_conditions(condition)

    def embed_timesteps(self, timestep: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """TimestepEmbedding(t): `[N]` → `[N, hidden_dim]`, the first term of [`embed`]."""
        return self.time_embedding(self.time_proj(timestep).to(dtype))

    def embed_conditions(self, condition: torch.Tensor) -> torch.Tensor:
        """proj(c): `[N, condition_dim]` → `[N, hidden_dim]`, the second term of [`embed`]."""
        return self.condition_proj(condition)

    def modulate(self, embedding: torch.Tensor) -> torch.Tensor:
        """Every adaLN modulation of one forward pass from e = [`embed`]: `[N, modulation_dim]`.

        They depend on (t, c) only, not on x_t, so a sampling loop can compute them for all its steps in one batched
        pass (see `ContRecDiffusionHead.sampling_modulations`) and hand each step its rows.
        """
        hidden = F.silu(embedding)  # the SiLU every modulation starts with, computed once
        layers = [block.modulation[1] for block in self.blocks] + [self.final_modulation[1]]
        return torch.cat([layer(hidden) for layer in layers], dim=-1)

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int | None,
        condition: torch.Tensor | None,
        return_dict: bool = True,
        modulation: torch.Tensor | None = None,
    ) -> ContRecDenoiserOutput | tuple:
        """
        Args:
            sample (`torch.Tensor` of shape `[batch, latent_dim]`): the noisy latent x_t (scaled by the
                scheduler's `scale_model_input` where it has one).
            timestep (`torch.Tensor` of shape `[batch]` or `()`, or a number): integer or float timesteps. A
                single timestep is embedded once and broadcast over the batch.
            condition (`torch.Tensor` of shape `[batch, condition_dim]` or `[1, condition_dim]`): c; one row is
                broadcast over the batch (with a single timestep, the adaLN modulations are then computed once:
                classifier-free guidance's unconditional half costs only the blocks' MLPs).
            return_dict (`bool`): return a [`ContRecDenoiserOutput`] (default) or a tuple.
            modulation (`torch.Tensor` of shape `[batch or 1, modulation_dim]`, *optional*): precomputed
                `modulate(embed(timestep, condition))`; `timestep` and `condition` are then not used.
        """
        if sample.ndim != 2 or sample.shape[1] != self.config.latent_dim:
            raise InputError(f"sample must be [batch, {self.config.latent_dim}], got {tuple(sample.shape)}")
        if modulation is None:
            modulation = self.modulate(self._embed_checked(sample, timestep, condition))
        elif modulation.ndim != 2 or modulation.shape[0] not in (1, sample.shape[0]):
            raise InputError(
                f"modulation must be [{sample.shape[0]} or 1, {self.modulation_dim}], got {tuple(modulation.shape)}"
            )
        hidden = self.config.hidden_dim
        x = self.input_proj(sample)  # [B, H]
        for index, block in enumerate(self.blocks):
            x = block(x, modulation[:, 3 * hidden * index : 3 * hidden * (index + 1)])  # [B, H]; broadcasts
        shift, scale = modulation[:, 3 * hidden * len(self.blocks) :].chunk(2, dim=-1)
        out = self.output_proj(_modulate(self.final_norm(x), shift, scale))  # [B, latent_dim]
        if not return_dict:
            return (out, x)
        return ContRecDenoiserOutput(sample=out, representation=x)

    def _embed_checked(self, sample: torch.Tensor, timestep, condition: torch.Tensor) -> torch.Tensor:
        if condition is None or condition.ndim != 2 or condition.shape[0] not in (1, sample.shape[0]):
            shape = None if condition is None else tuple(condition.shape)
            raise InputError(
                f"condition must be [{sample.shape[0]}, {self.config.condition_dim}] or "
                f"[1, {self.config.condition_dim}], got {shape}"
            )
        if condition.shape[1] != self.config.condition_dim:
            raise InputError(
                f"condition must be [{sample.shape[0]}, {self.config.condition_dim}], got {tuple(condition.shape)}"
            )
        timestep = torch.as_tensor(timestep, device=sample.device)
        if timestep.ndim == 0:
            timestep = timestep[None]  # [1]: embedded once, broadcast below
        elif timestep.shape != (sample.shape[0],):
            raise InputError(f"timestep must be a scalar or [{sample.shape[0]}], got {tuple(timestep.shape)}")
        return self.embed(timestep, condition.to(sample.dtype))  # [B or 1, H]
