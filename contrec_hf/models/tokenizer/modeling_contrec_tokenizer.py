"""The σ-VAE item tokenizer of ContRec (Qu et al., arXiv 2504.12007, §3.1; docs/method.md §2).

An item feature vector x ∈ R^{d_in} becomes K continuous tokens z_1 … z_K ∈ R^{d_z}; a decoder rebuilds x
from their mean. Three techniques keep the tokens from collapsing, each switchable in the config:

1. σ-sampling (LatentLM, arXiv 2412.08635): z_k = μ_k + σ·ε, ε ~ N(0, I), with a *non-learned* scale
   σ ~ N(0, C_σ) drawn per example at every training step. No learned variance, no KL term.
2. Feature masking: a random fraction of x is replaced by a learned mask offset during training.
3. K-way encoders: K independent MLP encoders (d_in → 128 → 256 → d_z, LayerNorm, ReLU, dropout).

Loss: MSE(x̂, x) (+ optional μ-regulariser and Barlow-Twins decorrelation between ways).

For the paper's central ablation, `quantizer="vq"` makes the tokens discrete: each token is snapped to the nearest
entry of its own codebook (van den Oord et al., 2017), trained with the straight-through estimator and the loss
‖sg(z) − e‖² + β‖z − sg(e)‖²; the codebooks are initialised from the first training batch's encodings.

`quantizer="rq"` gives TIGER's semantic IDs (Rajput et al., NeurIPS 2023, §3.1): one latent z, K levels, level k
quantises the residual r_k = z − Σ_{j<k} e_j with its own codebook; the quantised latent is Σ_k e_k, its gradient
passes straight through to z, and the loss adds Σ_k ‖sg(r_k) − e_k‖² + β‖r_k − sg(e_k)‖². Each level's codebook is
initialised by k-means on the first training batch's residuals.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput

from ...errors import InputError
from ...saving import AtomicSaveMixin, SafeLoadMixin
from ...utils import gather_rows
from .configuration_contrec_tokenizer import ContRecTokenizerConfig

__all__ = ["ContRecTokenizer", "ContRecTokenizerOutput", "collapse_diagnostics", "effective_rank", "kmeans"]

KMEANS_ITERATIONS = 10  # Lloyd iterations of the residual codebooks' initialisation


@dataclass
class ContRecTokenizerOutput(ModelOutput):
    """Output of [`ContRecTokenizer.forward`].

    Args:
        loss (`torch.FloatTensor` of shape `()`, *optional*): total loss (when `return_loss=True`).
        reconstruction (`torch.FloatTensor` of shape `(batch, input_dim)`): x̂, in the normalised feature space.
        tokens (`torch.FloatTensor` of shape `(batch, num_tokens, token_dim)`): z (μ + σ·ε in training, μ in eval).
        mu (`torch.FloatTensor` of shape `(batch, num_tokens, token_dim)`): the encoders' means μ (`(batch, 1,
            token_dim)` for `"rq"`: one latent).
        reconstruction_loss (`torch.FloatTensor` of shape `()`, *optional*): MSE(x̂, x).
        mu_loss (`torch.FloatTensor` of shape `()`, *optional*): mean(μ²), weighted into `loss` by the config.
        barlow_twins_loss (`torch.FloatTensor` of shape `()`, *optional*): Barlow-Twins term between ways.
        quantization_loss (`torch.FloatTensor` of shape `()`, *optional*): the codebook + commitment loss
            (`quantizer="vq"` or `"rq"` only).
        codes (`torch.LongTensor` of shape `(batch, num_tokens)`, *optional*): the codebook index of each token
            (`"vq"`) or level (`"rq"`).
    """

    loss: torch.FloatTensor | None = None
    reconstruction: torch.FloatTensor | None = None
    tokens: torch.FloatTensor | None = None
    mu: torch.FloatTensor | None = None
    reconstruction_loss: torch.FloatTensor | None = None
    mu_loss: torch.FloatTensor | None = None
    barlow_twins_loss: torch.FloatTensor | None = None
    quantization_loss: torch.FloatTensor | None = None
    codes: torch.LongTensor | None = None


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    """Linear → LayerNorm → ReLU → Dropout for every hidden width; the last layer is a plain Linear."""
    layers: list[nn.Module] = []
    for d_in, d_out in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.ReLU(), nn.Dropout(dropout)]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


@torch.no_grad()
def kmeans(points: torch.Tensor, num_centres: int, iterations: int = KMEANS_ITERATIONS) -> torch.Tensor:
    """Lloyd's k-means of ``points`` `[n, d]` → centres `[num_centres, d]`.

    It starts from ``num_centres`` rows drawn at random (with replacement when there are fewer points than centres,
    jittered by 1% of the points' spread so that centres differ); a centre whose cluster empties keeps its place.
    Uses the global torch random stream, so a seeded run gives the same centres.
    """
    rows = torch.randint(points.shape[0], (num_centres,), device=points.device)
    centres = points[rows] + 0.01 * points.std().clamp_min(1e-6) * torch.randn_like(points[rows])
    for _ in range(iterations):
        nearest = torch.cdist(points, centres).argmin(-1)  # [n]
        sums = torch.zeros_like(centres).index_add_(0, nearest, points)  # [num_centres, d]
        counts = torch.bincount(nearest, minlength=num_centres).unsqueeze(-1)  # [num_centres, 1]
        centres = torch.where(counts > 0, sums / counts.clamp_min(1), centres)
    return centres


def effective_rank(matrix: torch.Tensor) -> float:
    """Effective rank (Roy & Vetterli, 2007) of a ``[N, D]`` matrix after centring its columns:
    exp(H(p)), p_i = s_i / Σ_j s_j over its singular values s. 1 for rank one, D for a white matrix."""
    centred = matrix.double() - matrix.double().mean(0, keepdim=True)
    singular = torch.linalg.svdvals(centred)
    if singular.sum() <= 0:
        return 0.0
    p = singular / singular.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


def collapse_diagnostics(mu: torch.Tensor, dead_threshold: float = 0.01) -> dict[str, float | list[float]]:
    """How collapsed a set of token means is.

    Args:
        mu (`torch.Tensor` of shape `[N, K, d_z]` or `[N, D]`): token means of N items (the K tokens are
            concatenated).
        dead_threshold (`float`): a dimension is *near-dead* when its variance is below this fraction of the
            largest per-dimension variance.

    Returns:
        `dict` with `per_dim_variance` (list), `mean_variance`, `effective_rank`, `dead_fraction`.
    """
    flat = mu.reshape(mu.shape[0], -1).double()  # [N, K·d_z]
    variance = flat.var(dim=0, unbiased=False)
    top = float(variance.max()) if variance.numel() else 0.0
    dead = float((variance <= dead_threshold * top).double().mean()) if top > 0 else 1.0
    return {
        "per_dim_variance": variance.tolist(),
        "mean_variance": float(variance.mean()),
        "effective_rank": effective_rank(flat),
        "dead_fraction": dead,
    }


class ContRecTokenizer(AtomicSaveMixin, SafeLoadMixin, PreTrainedModel):
    """The σ-VAE item tokenizer.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf import ContRecTokenizer, ContRecTokenizerConfig
        >>> tokenizer = ContRecTokenizer(ContRecTokenizerConfig(input_dim=37, num_tokens=2, token_dim=16))
        >>> features = torch.randn(5, 37)
        >>> tokenizer.fit_normalization(features)
        >>> out = tokenizer(features)            # training mode: masking + σ-sampling, out.loss is the MSE
        >>> tokenizer.encode(features).shape     # μ, no noise
        torch.Size([5, 2, 16])
        ```
    """

    config_class = ContRecTokenizerConfig
    base_model_prefix = "item_tokenizer"
    main_input_name = "features"

    def __init__(self, config: ContRecTokenizerConfig) -> None:
        super().__init__(config)
        c = config
        enc_sizes = [c.input_dim, *c.encoder_hidden_sizes]
        if c.quantizer == "rq":  # one latent, quantised in K levels
            self.encoders = nn.ModuleList([_mlp([*enc_sizes, c.token_dim], c.dropout)])
        elif c.multi_encoder:  # technique 3: K independent encoders
            self.encoders = nn.ModuleList(_mlp([*enc_sizes, c.token_dim], c.dropout) for _ in range(c.num_tokens))
        else:  # one shared encoder emits the K tokens together
            self.encoders = nn.ModuleList([_mlp([*enc_sizes, c.num_tokens * c.token_dim], c.dropout)])
        self.decoder = _mlp([c.token_dim, *c.decoder_hidden_sizes, c.input_dim], c.dropout)
        self.mask_offset = nn.Parameter(torch.zeros(c.input_dim))  # technique 2's learned offset
        # Persistent buffers: saved with the weights, so they survive from_pretrained (no meta-device trap).
        self.register_buffer("feature_mean", torch.zeros(c.input_dim))
        self.register_buffer("feature_std", torch.ones(c.input_dim))
        if c.quantizer != "none":  # one codebook per token (vq) or level (rq); filled from the first training batch
            self.codebooks = nn.Parameter(torch.zeros(c.num_tokens, c.codebook_size, c.token_dim))
            self.register_buffer("codebooks_initialized", torch.tensor(False))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            init.xavier_uniform_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, ContRecTokenizer):
            init.zeros_(module.mask_offset)
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)
            if module.config.quantizer != "none":
                init.zeros_(module.codebooks)
                init.zeros_(module.codebooks_initialized)

    # ------------------------------------------------------------------------------------------ input
    def _check_features(self, features: torch.Tensor) -> None:
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise InputError(f"features must be a [batch, {self.config.input_dim}] tensor, got {shape}")
        if features.shape[1] != self.config.input_dim:
            raise InputError(
                f"features have dimension {features.shape[1]}, but this tokenizer was built for "
                f"input_dim={self.config.input_dim}"
            )
        if not torch.isfinite(features).all():
            bad = int((~torch.isfinite(features)).any(dim=1).sum())
            raise InputError(f"features hold NaN or inf values in {bad} row(s)")

    @torch.no_grad()
    def fit_normalization(self, features: torch.Tensor) -> None:
        """Set the per-dimension mean and std used to standardise inputs (fit on training items only)."""
        self._check_features(features)
        if not self.config.normalize_inputs:
            return
        self.feature_mean.copy_(features.mean(0))
        self.feature_std.copy_(features.std(0, unbiased=False).clamp_min(1e-6))

    def normalize(self, features: torch.Tensor) -> torch.Tensor:
        """x → (x − mean) / std when `normalize_inputs`, else x."""
        if not self.config.normalize_inputs:
            return features
        return (features - self.feature_mean) / self.feature_std

    # ---------------------------------------------------------------------------------- encode/decode
    def _mu(self, normalized: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.quantizer == "rq":
            return self.encoders[0](normalized).unsqueeze(1)  # [B, 1, d_z]: one latent
        if c.multi_encoder:
            return torch.stack([encoder(normalized) for encoder in self.encoders], dim=1)  # [B, K, d_z]
        return self.encoders[0](normalized).view(-1, c.num_tokens, c.token_dim)  # [B, K, d_z]

    @torch.no_grad()
    def _init_codebooks(self, mu: torch.Tensor) -> None:
        """Fill each codebook with encodings of the batch (drawn with replacement when the batch is smaller than
        the codebook, then jittered so that entries differ)."""
        batch = mu.shape[0]
        for k in range(self.config.num_tokens):
            rows = torch.randint(batch, (self.config.codebook_size,), device=mu.device)
            entries = mu[rows, k]
            jitter = 0.01 * entries.std().clamp_min(1e-6) * torch.randn_like(entries)
            self.codebooks[k].copy_(entries + jitter)
        self.codebooks_initialized.fill_(True)

    def _pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """The latent of K tokens `[B, K, d_z]` → `[B, d_z]`: their mean, or for `"rq"` the sum of the levels."""
        return tokens.sum(dim=1) if self.config.quantizer == "rq" else tokens.mean(dim=1)

    @torch.no_grad()
    def _init_residual_codebooks(self, z: torch.Tensor) -> None:
        """k-means of each level's residuals of the batch `z [B, 1, d_z]`, level by level."""
        residual = z[:, 0]
        for level in range(self.config.num_tokens):
            centres = kmeans(residual, self.config.codebook_size)
            self.codebooks[level].copy_(centres)
            residual = residual - centres[torch.cdist(residual, centres).argmin(-1)]
        self.codebooks_initialized.fill_(True)

    def _residual_quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """RQ of `z [B, 1, d_z]` → (the K level entries `[B, K, d_z]`, codes `[B, K]`, Σ_k codebook + commitment
        loss). The entries sum to Σ_k e_k exactly, and the gradient of that sum passes straight through to z."""
        if self.training and not bool(self.codebooks_initialized):
            self._init_residual_codebooks(z.detach())
        residual, entries, codes, loss = z[:, 0], [], [], z.new_zeros(())
        for codebook in self.codebooks:  # [C, d_z] per level
            code = torch.cdist(residual, codebook).argmin(-1)  # [B]
            entry = codebook[code]  # [B, d_z]
            loss = loss + F.mse_loss(entry, residual.detach())
            loss = loss + self.config.commitment_weight * F.mse_loss(residual, entry.detach())
            entries.append(entry)
            codes.append(code)
            residual = residual - entry.detach()  # r_{k+1} = r_k − e_k
        # z + sg(Σ_k e_k − z), spread over the levels: the decoder's gradient reaches z, and only the codebook term
        # moves the codebooks (RQ-VAE, Lee et al., 2022, eq. 4–5).
        straight_through = (z - z.detach()) / self.config.num_tokens  # zero in value
        return torch.stack(entries, dim=1).detach() + straight_through, torch.stack(codes, dim=1), loss

    def _quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """VQ of `z [B, K, d_z]` (or RQ of `z [B, 1, d_z]`) → (straight-through tokens `[B, K, d_z]`, codes
        `[B, K]`, codebook + commitment loss)."""
        if self.config.quantizer == "rq":
            return self._residual_quantize(z)
        if self.training and not bool(self.codebooks_initialized):
            self._init_codebooks(z.detach())
        distances = torch.cdist(z.transpose(0, 1), self.codebooks)  # [K, B, C]
        codes = distances.argmin(-1).T  # [B, K]
        offsets = torch.arange(z.shape[1], device=z.device) * self.codebooks.shape[1]  # [K]: codebook k's first row
        entries = gather_rows(self.codebooks.flatten(0, 1), codes + offsets)  # [B, K, d_z], e_{k, code}
        loss = F.mse_loss(entries, z.detach()) + self.config.commitment_weight * F.mse_loss(z, entries.detach())
        return entries + (z - z.detach()), codes, loss  # the value is exactly e; the gradient goes to z

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Token means μ (no masking, no noise, whatever the mode); with a quantizer, their codebook entries.

        Args:
            features (`torch.Tensor` of shape `[batch, input_dim]`): item feature vectors.

        Returns:
            `torch.Tensor` of shape `[batch, num_tokens, token_dim]`.
        """
        self._check_features(features)
        was_training = self.training
        self.eval()
        try:
            mu = self._mu(self.normalize(features))
            return self._quantize(mu)[0] if self.config.quantizer != "none" else mu
        finally:
            self.train(was_training)

    @torch.no_grad()
    def codes(self, features: torch.Tensor) -> torch.Tensor:
        """The discrete codes `[batch, num_tokens]` of a `quantizer="vq"` or `"rq"` tokenizer (for `"rq"`, one
        code per level, coarse to fine)."""
        if self.config.quantizer == "none":
            raise InputError("codes() needs a tokenizer built with quantizer='vq' or 'rq'; this one is continuous")
        self._check_features(features)
        was_training = self.training
        self.eval()
        try:
            return self._quantize(self._mu(self.normalize(features)))[1]
        finally:
            self.train(was_training)

    def latent(self, features: torch.Tensor) -> torch.Tensor:
        """The item's latent in the retrieval space, `[batch, token_dim]`: the mean of its K token means (for
        `"rq"`, the sum of its K level entries)."""
        return self._pool(self.encode(features))

    def decode(self, tokens: torch.Tensor, denormalize: bool = True) -> torch.Tensor:
        """Reconstruct features from tokens `[batch, K, d_z]` (pooled as in `latent`) or a latent `[batch, d_z]`.

        Returns `[batch, input_dim]` in the original feature space (or the normalised one if
        `denormalize=False`).
        """
        if tokens.ndim == 3:
            tokens = self._pool(tokens)
        if tokens.ndim != 2 or tokens.shape[-1] != self.config.token_dim:
            raise InputError(
                f"tokens must be [batch, K, {self.config.token_dim}] or [batch, {self.config.token_dim}], "
                f"got {tuple(tokens.shape)}"
            )
        out = self.decoder(tokens)  # [B, d_in]
        if denormalize and self.config.normalize_inputs:
            out = out * self.feature_std + self.feature_mean
        return out

    # ------------------------------------------------------------------------------------------ train
    def forward(
        self, features: torch.Tensor, return_loss: bool = True, return_dict: bool | None = None
    ) -> ContRecTokenizerOutput | tuple:
        """Encode, sample, decode and (with `return_loss`) compute the loss.

        Args:
            features (`torch.Tensor` of shape `[batch, input_dim]`): item feature vectors.
            return_loss (`bool`): compute `loss` (kept for transformers' Trainer evaluation).
            return_dict (`bool`, *optional*): return a [`ContRecTokenizerOutput`] (default) or a tuple.
        """
        self._check_features(features)
        c = self.config
        target = self.normalize(features)  # [B, d_in]
        inputs = target
        if self.training and c.feature_masking and c.mask_ratio > 0:  # technique 2
            mask = torch.rand_like(inputs) < c.mask_ratio  # [B, d_in]
            inputs = torch.where(mask, self.mask_offset.expand_as(inputs), inputs)
        mu = self._mu(inputs)  # [B, K, d_z]
        tokens = mu
        if self.training and c.sigma_sampling:  # technique 1: σ ~ N(0, C_σ) per example, not learned
            sigma = torch.randn(mu.shape[0], 1, 1, device=mu.device, dtype=mu.dtype) * c.sigma_std
            tokens = mu + sigma * torch.randn_like(mu)
        codes = vq_loss = None
        if c.quantizer != "none":  # discrete tokens: nearest codebook entries (vq, rq), straight-through
            tokens, codes, vq_loss = self._quantize(tokens)
        reconstruction = self.decoder(self._pool(tokens))  # [B, d_in], decoded from the K tokens' latent

        loss = recon_loss = mu_loss = bt_loss = None
        if return_loss:
            recon_loss = F.mse_loss(reconstruction, target)
            loss = recon_loss
            if c.mu_regularizer_weight > 0:
                mu_loss = mu.pow(2).mean()
                loss = loss + c.mu_regularizer_weight * mu_loss
            if c.barlow_twins_weight > 0 and mu.shape[1] > 1:  # K ways (rq has one latent)
                bt_loss = self._barlow_twins(mu)
                loss = loss + c.barlow_twins_weight * bt_loss
            if vq_loss is not None:
                loss = loss + vq_loss
        out = ContRecTokenizerOutput(
            loss=loss,
            reconstruction=reconstruction,
            tokens=tokens,
            mu=mu,
            reconstruction_loss=recon_loss,
            mu_loss=mu_loss,
            barlow_twins_loss=bt_loss,
            quantization_loss=vq_loss,
            codes=codes,
        )
        use_dict = return_dict if return_dict is not None else self.config.return_dict
        return out if use_dict else out.to_tuple()

    def _barlow_twins(self, mu: torch.Tensor) -> torch.Tensor:
        """Barlow Twins (Zbontar et al., 2021) between every pair of ways: Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²,
        C the cross-correlation of the batch-standardised token means, averaged over pairs."""
        standardized = (mu - mu.mean(0)) / (mu.std(0, unbiased=False) + 1e-5)  # [B, K, d_z]
        batch, k, _ = mu.shape
        total = mu.new_zeros(())
        pairs = 0
        for a in range(k):
            for b in range(a + 1, k):
                corr = standardized[:, a].T @ standardized[:, b] / batch  # [d_z, d_z]
                on_diag = (1 - corr.diagonal()).pow(2).sum()
                off_diag = corr.pow(2).sum() - corr.diagonal().pow(2).sum()
                total = total + on_diag + self.config.barlow_offdiag_weight * off_diag
                pairs += 1
        return total / pairs
