"""TIGER (Rajput et al., NeurIPS 2023, "Recommender Systems with Generative Retrieval"): a T5 that reads the
history's semantic IDs and writes the next item's, decoded by beam search constrained to valid IDs.

Retrieval rule (docs/baselines.md, "TIGER"): the ``beam_size`` generated items are ranked by their beam score and
every other item after all of them, so the metrics are full ranking over the catalog for every K up to the
beam's size. The beams never hold a history item (the constraint excludes them), so none is lost to masking.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file, save_file
from transformers import LogitsProcessorList, T5Config, T5ForConditionalGeneration

from ...errors import CheckpointError, ConfigError, EvaluationError, InputError
from ...features import FEATURE_KINDS
from ...models.tokenizer import ContRecTokenizer, ContRecTokenizerConfig
from ...saving import atomic_directory, load_guard
from ...utils import check_number, write_json
from .semantic_ids import EOS_TOKEN_ID, PAD_TOKEN_ID, SemanticIdConstraint, SemanticIdVocabulary

__all__ = ["TIGER", "TIGERConfig"]


@dataclass
class TIGERConfig:
    """Architecture of :class:`TIGER`: its semantic IDs (an RQ-VAE over item features) and its T5 generator.

    Attributes:
        num_items (`int`): catalog size.
        features (`str`): item features the RQ-VAE encodes: ``"text"`` (MiniLM, as TIGER), ``"collaborative"``
            or ``"hybrid"``.
        num_levels (`int`): residual-quantisation levels L (codes per item before the collision code).
        codebook_size (`int`): codes per level; TIGER used 256 for about 12k items, ML-100K has 1,682.
        latent_dim (`int`): size of the RQ-VAE latent that the levels quantise.
        rq_hidden_sizes (`tuple[int, ...]`): the RQ-VAE encoder's hidden widths (the decoder mirrors them).
        commitment_weight (`float`): β of the RQ-VAE's commitment term.
        max_history (`int`): the last ``max_history`` history items are the generator's input.
        d_model (`int`): the T5's width.
        num_layers (`int`): encoder layers, and as many decoder layers.
        num_heads (`int`): attention heads.
        d_kv (`int`): width of each attention head.
        d_ff (`int`): feed-forward width.
        dropout (`float`): the T5's dropout.
        beam_size (`int`): beams of the constrained search, and so the items ranked per user; at least the
            largest K of the metrics.
    """

    num_items: int
    features: Literal[FEATURE_KINDS] = "text"
    num_levels: int = 3
    codebook_size: int = 64
    latent_dim: int = 32
    rq_hidden_sizes: tuple[int, ...] = (512, 256, 128)
    commitment_weight: float = 0.25
    max_history: int = 10
    d_model: int = 64
    num_layers: int = 2
    num_heads: int = 4
    d_kv: int = 16
    d_ff: int = 256
    dropout: float = 0.1
    beam_size: int = 20

    def __post_init__(self) -> None:
        for name in ("num_items", "num_levels", "codebook_size", "latent_dim", "max_history", "d_model",
                     "num_layers", "num_heads", "d_kv", "d_ff", "beam_size"):  # fmt: skip
            check_number(name, getattr(self, name), 1, integer=True)
        if self.features not in FEATURE_KINDS:
            raise ConfigError(f"features must be one of {FEATURE_KINDS}, got {self.features!r}")
        self.rq_hidden_sizes = tuple(int(size) for size in self.rq_hidden_sizes)
        if not self.rq_hidden_sizes or min(self.rq_hidden_sizes) < 1:
            raise ConfigError(f"rq_hidden_sizes must hold positive widths, got {self.rq_hidden_sizes}")
        check_number("commitment_weight", self.commitment_weight, 0.0)
        check_number("dropout", self.dropout, 0.0, 1.0, high_open=True)
        if self.codebook_size > self.num_items:
            raise ConfigError(
                f"codebook_size {self.codebook_size} exceeds the catalog's {self.num_items} items: most codes could "
                "never be used; choose a smaller codebook"
            )

    def tokenizer_config(self, input_dim: int) -> ContRecTokenizerConfig:
        """The RQ-VAE as a [`ContRecTokenizerConfig`] (no σ-sampling, no masking: TIGER's plain RQ-VAE)."""
        return ContRecTokenizerConfig(
            input_dim=input_dim, num_tokens=self.num_levels, token_dim=self.latent_dim, quantizer="rq",
            codebook_size=self.codebook_size, commitment_weight=self.commitment_weight, multi_encoder=False,
            encoder_hidden_sizes=list(self.rq_hidden_sizes), decoder_hidden_sizes=list(self.rq_hidden_sizes[::-1]),
            sigma_sampling=False, feature_masking=False, dropout=0.0,
        )  # fmt: skip

    def generator_config(self, vocab_size: int) -> T5Config:
        """The T5's config over ``vocab_size`` tokens (two special tokens and each level's codes)."""
        return T5Config(
            vocab_size=vocab_size, d_model=self.d_model, d_kv=self.d_kv, d_ff=self.d_ff, num_layers=self.num_layers,
            num_decoder_layers=self.num_layers, num_heads=self.num_heads, dropout_rate=self.dropout,
            pad_token_id=PAD_TOKEN_ID, eos_token_id=EOS_TOKEN_ID, decoder_start_token_id=PAD_TOKEN_ID,
        )  # fmt: skip


class TIGER:
    """A trained TIGER: the RQ-VAE item tokenizer, every item's semantic ID and the T5 generator.

    Args:
        config ([`TIGERConfig`]): the architecture.
        item_tokenizer ([`ContRecTokenizer`]): the RQ-VAE (``quantizer="rq"``) that gave the codes.
        semantic_ids (`torch.LongTensor` of shape `[num_items, num_levels + 1]`): the codes and collision code.
        generator (`transformers.T5ForConditionalGeneration`, *optional*): a fresh one (from the config) if omitted.

    Example:
        ```python
        >>> import torch
        >>> from contrec_hf import ContRecTokenizer
        >>> from contrec_hf.baselines import TIGER, TIGERConfig
        >>> from contrec_hf.baselines.tiger import unique_semantic_ids
        >>> config = TIGERConfig(num_items=6, num_levels=2, codebook_size=3, d_model=16, d_kv=4, d_ff=24, beam_size=3)
        >>> tokenizer = ContRecTokenizer(config.tokenizer_config(input_dim=8))
        >>> ids = unique_semantic_ids(torch.tensor([[0, 1], [1, 2], [2, 0], [0, 1], [1, 1], [2, 2]]))
        >>> model = TIGER(config, tokenizer, ids)
        >>> recommended = model.recommend([0, 4], top_k=3)  # an untrained generator: any three unseen items
        >>> len(recommended), {0, 4} & set(recommended)
        (3, set())

        ```
    """

    def __init__(self, config: TIGERConfig, item_tokenizer: ContRecTokenizer, semantic_ids: torch.Tensor,
                 generator: T5ForConditionalGeneration | None = None) -> None:  # fmt: skip
        if semantic_ids.shape != (config.num_items, config.num_levels + 1):
            raise InputError(f"semantic_ids must be [{config.num_items}, {config.num_levels + 1}], got "
                             f"{tuple(semantic_ids.shape)}")  # fmt: skip
        self.config, self.item_tokenizer = config, item_tokenizer
        self.semantic_ids = semantic_ids.long()
        level_sizes = [config.codebook_size] * config.num_levels + [int(semantic_ids[:, -1].max()) + 1]
        self.vocabulary = SemanticIdVocabulary(self.semantic_ids, level_sizes)
        self.generator = generator or T5ForConditionalGeneration(config.generator_config(self.vocabulary.vocab_size))

    @property
    def device(self) -> torch.device:
        return self.generator.device

    def encoder_inputs(self, histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The generator's input: each history's last ``max_history`` items as tokens, then end of sequence,
        right-padded. Returns ``(input_ids, attention_mask)``, both `[batch, length]`."""
        if any(len(history) == 0 for history in histories):
            raise EvaluationError("TIGER cannot read an empty history")
        eos = torch.tensor([EOS_TOKEN_ID])
        rows = [torch.cat([self.vocabulary.tokens(h[-self.config.max_history :]).flatten(), eos]) for h in histories]
        input_ids = torch.full((len(rows), max(len(r) for r in rows)), PAD_TOKEN_ID, dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : len(row)] = row
        return input_ids.to(self.device), (input_ids != PAD_TOKEN_ID).long().to(self.device)

    def labels(self, items: list[int]) -> torch.Tensor:
        """The decoder's targets: each item's semantic-ID tokens, `[batch, num_levels + 1]`."""
        return self.vocabulary.tokens(items).to(self.device)

    @torch.no_grad()
    def generate(self, histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Constrained beam search: ``(items, scores)``, both `[batch, beam_size]`, best first; a beam that found
        no valid unseen item (a catalog nearly all in the history) is item −1 with score −inf."""
        beams = self.config.beam_size
        input_ids, attention_mask = self.encoder_inputs(histories)
        constraint = SemanticIdConstraint(self.vocabulary, histories, beams)
        self.generator.eval()
        out = self.generator.generate(
            input_ids=input_ids, attention_mask=attention_mask, num_beams=beams, num_return_sequences=beams,
            max_new_tokens=self.vocabulary.num_levels, min_new_tokens=self.vocabulary.num_levels, do_sample=False,
            logits_processor=LogitsProcessorList([constraint]), return_dict_in_generate=True, output_scores=True,
        )  # fmt: skip
        found = [self.vocabulary.item_of(tokens) for tokens in out.sequences[:, 1:].tolist()]  # after the start
        items = torch.tensor([-1 if item is None else item for item in found]).view(len(histories), beams)
        scores = out.sequences_scores.float().cpu().view(len(histories), beams)
        for row in items:  # with fewer unseen items than beams, the spare beams repeat a found item at ≈ −1e9
            seen: set[int] = set()
            for beam, item in enumerate(row.tolist()):
                row[beam] = -1 if item in seen else item
                seen.add(item)
        valid = (items >= 0) & torch.isfinite(scores)
        return torch.where(valid, items, -1), torch.where(valid, scores, float("-inf"))

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores over the catalog, `[batch, num_items]`: each beam item's beam score (a mean log-probability), and
        the lowest finite float for every other item, so they rank after every beam item (the retrieval rule above;
        among themselves they tie, and the evaluator's tie rule ranks them)."""
        items, beam_scores = self.generate(histories)
        scores = torch.full((len(histories), self.config.num_items), torch.finfo(torch.float32).min)
        valid = items >= 0
        rows = torch.arange(len(histories)).unsqueeze(1).expand_as(items)
        scores[rows[valid], items[valid]] = beam_scores[valid]
        return scores

    def recommend(self, history: list[int], top_k: int = 10) -> list[int]:
        """The ``top_k`` items (indices) generated after ``history`` (item indices), best first."""
        check_number("top_k", top_k, 1, integer=True)
        if top_k > self.config.beam_size:
            raise ConfigError(
                f"top_k {top_k} exceeds beam_size {self.config.beam_size}: the beams rank only that many"
            )
        items, scores = self.generate([list(history)])
        return [int(i) for i, s in zip(items[0, :top_k], scores[0, :top_k], strict=True) if torch.isfinite(s)]

    def save_pretrained(self, directory: str | Path) -> None:
        """``config.json``, ``semantic_ids.safetensors``, ``generator/`` (the T5) and ``item_tokenizer/`` (the
        RQ-VAE), written atomically."""
        with atomic_directory(directory) as tmp:
            write_json(tmp / "config.json", {"model_type": "tiger", **asdict(self.config)})
            save_file({"semantic_ids": self.semantic_ids.contiguous()}, tmp / "semantic_ids.safetensors")
            self.generator.save_pretrained(tmp / "generator")
            self.item_tokenizer.save_pretrained(tmp / "item_tokenizer")

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> TIGER:
        """Load what :meth:`save_pretrained` wrote; the generator comes back in eval mode."""
        directory = Path(directory)
        for name in ("config.json", "semantic_ids.safetensors", "generator", "item_tokenizer"):
            if not (directory / name).exists():
                raise CheckpointError(f"{directory} is not a saved TIGER: {name} is missing")
        with load_guard(directory):
            config = json.loads((directory / "config.json").read_text())
            semantic_ids = load_file(directory / "semantic_ids.safetensors")["semantic_ids"]
        if config.pop("model_type", None) != "tiger":
            raise ConfigError(f"{directory}/config.json is not a TIGER config")
        generator = T5ForConditionalGeneration.from_pretrained(directory / "generator")
        tokenizer = ContRecTokenizer.from_pretrained(directory / "item_tokenizer")
        return cls(TIGERConfig(**config), tokenizer, semantic_ids, generator.eval())
