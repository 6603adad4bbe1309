"""ContRecDiffusionPipeline: generate a user's preference latent and retrieve the top-K items (docs/method.md §4–5).

Shaped like diffusers' Kandinsky 2.2 prior pipeline: a transformers model produces the condition, a denoiser and
a swappable scheduler generate an embedding, and retrieval ranks the catalog against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers import DDPMScheduler
from diffusers.utils import BaseOutput

from .. import retrieval
from ..data.prompts import ContRecCollator, PromptBuilder
from ..errors import CheckpointError, ConfigError, DataError, InputError
from ..models.contrec import ContRecForRecommendation
from ..models.diffusion_head import READOUTS
from ..saving import AtomicSaveMixin, load_guard, local_folder
from ..utils import check_number
from .catalog import ContRecCatalog

__all__ = ["READOUTS", "ContRecDiffusionPipeline", "ContRecPipelineOutput"]

# Schedulers known not to serve a prediction type (docs/schedulers.md; checked on diffusers 0.42).
_UNSUPPORTED = {
    "EulerAncestralDiscreteScheduler": {"sample"},
    "KDPM2DiscreteScheduler": {"sample"},
    "KDPM2AncestralDiscreteScheduler": {"sample"},
    "PNDMScheduler": {"sample"},
    "EDMEulerScheduler": {"sample"},
}
_RECOMMENDED = (
    "DDPMScheduler, DDIMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler, EulerDiscreteScheduler"
)


@dataclass
class ContRecPipelineOutput(BaseOutput):
    """Output of [`ContRecDiffusionPipeline`].

    Args:
        item_ids (`list[list[str]]`): the top-K raw item ids per user, best first.
        scores (`torch.Tensor` or `np.ndarray` of shape `[batch, top_k]`): their scores.
        latents (`torch.Tensor` or `np.ndarray` of shape `[batch, latent_dim]`): the preference latents x̂.
        texts (`list[str]`, *optional*): the generated reasoning (full path only).
    """

    item_ids: list[list[str]]
    scores: torch.Tensor | np.ndarray
    latents: torch.Tensor | np.ndarray
    texts: list[str] | None = None


class ContRecDiffusionPipeline(AtomicSaveMixin, DiffusionPipeline):
    """Recommend items from raw item-id histories.

    Args:
        recommender ([`ContRecForRecommendation`]): the trained recommender (LM, item tokenizer, denoiser).
        scheduler ([`SchedulerMixin`]): any diffusers scheduler serving the recommender's prediction type.
        text_tokenizer ([`PreTrainedTokenizerBase`]): the LM's tokenizer (with ContRec's special tokens).
        catalog ([`ContRecCatalog`]): every item's raw id, text, features and latent.

    Example:
        ```python
        >>> from diffusers import DDIMScheduler
        >>> from contrec_hf import ContRecDiffusionPipeline
        >>> pipe = ContRecDiffusionPipeline.from_pretrained("runs/demo/pipeline")  # doctest: +SKIP
        >>> pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # doctest: +SKIP
        >>> out = pipe([["1", "50", "181"]], num_inference_steps=20, top_k=10)  # doctest: +SKIP
        ```
    """

    model_cpu_offload_seq = "recommender"

    def __init__(self, recommender, scheduler, text_tokenizer, catalog, text_weight: float = 0.0) -> None:
        super().__init__()
        self.register_modules(
            recommender=recommender, scheduler=scheduler, text_tokenizer=text_tokenizer, catalog=catalog
        )
        # λ_text of the full path's fusion, saved with the pipeline (set it from `tune_text_weight`).
        self.register_to_config(text_weight=float(text_weight))
        self.retrieval_index = None

    def set_retrieval_index(self, index) -> None:
        """Serve the latent-only top-K from an approximate index (e.g. `contrec_hf.retrieval_faiss.FaissIndex`
        over `catalog.latents`, queried with the recommender's `retrieval_query` of the read-out) instead of the
        exact torch search; `None` restores the exact search."""
        self.retrieval_index = index

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs):
        """Load from a folder, or from a Hub repository (downloaded first: diffusers alone cannot load
        third-party components from the Hub)."""
        path = local_folder(pretrained_model_name_or_path)
        if path is None:
            from huggingface_hub import snapshot_download

            hub_keys = ("revision", "token", "cache_dir", "local_files_only")
            hub = {k: kwargs[k] for k in hub_keys if k in kwargs}
            with load_guard(pretrained_model_name_or_path):
                path = Path(snapshot_download(pretrained_model_name_or_path, **hub))
            kwargs = {k: v for k, v in kwargs.items() if k not in hub_keys}
        if not (path / "model_index.json").is_file():
            raise CheckpointError(
                f"{pretrained_model_name_or_path} is not a saved ContRec pipeline (no model_index.json)"
            )
        missing = [c for c in ("recommender", "scheduler", "text_tokenizer", "catalog") if not (path / c).is_dir()]
        if missing:
            raise CheckpointError(f"the pipeline folder {path} lacks the component folder(s) {missing}")
        kwargs.setdefault("use_safetensors", True)
        with load_guard(path):
            return super().from_pretrained(str(path), **kwargs)

    # -------------------------------------------------------------------------------------- helpers
    def _check_scheduler(self) -> None:
        prediction = self.recommender.config.prediction_type
        name = type(self.scheduler).__name__
        configured = getattr(self.scheduler.config, "prediction_type", prediction)
        fix = f"use one of {_RECOMMENDED} with `X.from_config(pipe.scheduler.config)`"
        if prediction in _UNSUPPORTED.get(name, set()):
            raise ConfigError(
                f"{name} does not support prediction_type={prediction!r}, which this recommender was trained "
                f"for; {fix}"
            )
        if configured != prediction:
            raise ConfigError(
                f"{name} is set to prediction_type={configured!r} but this recommender was trained to predict "
                f"{prediction!r}; {fix}"
            )

    def _histories(self, histories: Sequence[Sequence[str | int]]) -> list[list[int]]:
        if isinstance(histories, (torch.Tensor, np.ndarray)):  # one user's ids ([n]) or a batch of them ([users, n])
            if histories.ndim not in (1, 2):
                shape = tuple(histories.shape)
                raise DataError(f"a tensor or array of histories must be 1-D or 2-D, got shape {shape}")
            histories = [histories.tolist()] if histories.ndim == 1 else histories.tolist()
        if isinstance(histories, (str, bytes)):
            raise DataError("histories must be a list of item-id lists, one per user")
        histories = [h.tolist() if isinstance(h, (torch.Tensor, np.ndarray)) else h for h in histories]
        if not all(isinstance(h, (list, tuple)) for h in histories):
            raise DataError("histories must be a list of item-id lists, one per user")
        if not histories:
            raise DataError("no histories given")
        empty = [i for i, h in enumerate(histories) if len(h) == 0]
        if empty:
            raise DataError(f"history/histories {empty} are empty: ContRec needs at least one item per user")
        return [self.catalog.index(h) for h in histories]

    def _collator(self) -> ContRecCollator:
        config = self.recommender.config
        builder = PromptBuilder(
            titles=self.catalog.config.titles,
            categories=self.catalog.config.categories,
            num_item_tokens=config.num_item_tokens,
            max_history=config.max_history,
            max_title_length=config.max_title_length,
        )
        return ContRecCollator(self.text_tokenizer, builder, self.catalog.features)

    @torch.no_grad()
    def encode_histories(self, histories: list[list[int]]) -> torch.Tensor:
        """Fast path: one LM forward over prompt + `<pref>` per user → conditions `[batch, condition_dim]`."""
        return self.recommender.batch_conditions(self._collator()([(h, None) for h in histories], train=False))

    def _marker_token_ids(self) -> list[int]:
        """Ids of `<item>`, `</item>`, the item and user placeholders: tokens the generated reasoning must not hold."""
        config = self.recommender.config
        ids = (config.item_start_token_id, config.item_end_token_id, config.item_token_id, config.user_token_id)
        return [i for i in ids if i is not None]

    @torch.no_grad()
    def generate_and_encode(
        self, histories: list[list[int]], max_new_tokens: int = 48, batch_size: int = 64
    ) -> tuple[torch.Tensor, list[str]]:
        """Full path: greedy text generation (KV cache) until `<pref>`, then the condition at `<pref>` of
        prompt + response + `<pref>`.

        Users are generated ``batch_size`` at a time: the embedded prompts are left-padded for generation (the
        position ids follow the attention mask, so a row's tokens get the positions they have alone), and the
        second forward pads on the right. Each row gives the text and condition it gives alone, up to the float
        rounding of batched matrix products (docs/benchmarks.md, "The full path in batches").

        Args:
            histories (`list[list[int]]`): catalog-index histories, one per user.
            max_new_tokens (`int`): the longest response; a row that has not written `<pref>` by then stops there.
            batch_size (`int`): users per generation batch.

        Returns:
            `tuple`: conditions `[len(histories), condition_dim]` and the generated texts (special tokens removed).
        """
        check_number("batch_size", batch_size, 1, integer=True, error=InputError)
        conditions, texts = [], []
        for start in range(0, len(histories), batch_size):
            condition, text = self._generate_and_encode_batch(histories[start : start + batch_size], max_new_tokens)
            conditions.append(condition)
            texts += text
        return torch.cat(conditions), texts

    def _generate_and_encode_batch(
        self, histories: list[list[int]], max_new_tokens: int
    ) -> tuple[torch.Tensor, list[str]]:
        """[`generate_and_encode`] of one batch of users."""
        model, pref, collator = self.recommender, self.recommender.config.pref_token_id, self._collator()
        rows = [collator([(history, None)], train=False) for history in histories]
        prompts = [row["input_ids"][0, :-1].to(self.device) for row in rows]  # without the trailing <pref>
        features = [row["item_features"].to(self.device) for row in rows]
        embeds = [model.embed_prompt(p[None], f)[0] for p, f in zip(prompts, features)]  # [S_b, H] each
        padded, attention = _pad_rows(embeds, 0.0, left=True)  # [B, S, H], [B, S]
        generated = model.language_model.generate(
            inputs_embeds=padded,
            attention_mask=attention,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            eos_token_id=pref,
            pad_token_id=self.text_tokenizer.pad_token_id,
            # A generated placeholder or item marker would need features the prompt does not have: never emit one.
            suppress_tokens=self._marker_token_ids(),
        )  # [B, T]: the new tokens only; a row that stopped is padded after its <pref>
        responses = []
        for tokens in generated:
            stops = (tokens == pref).nonzero()
            responses.append(tokens[: int(stops[0])] if len(stops) else tokens)
        texts = [self.text_tokenizer.decode(r, skip_special_tokens=True) for r in responses]
        marker = torch.tensor([pref], device=self.device)
        full = [torch.cat([p, r.to(self.device), marker]) for p, r in zip(prompts, responses)]
        input_ids, attention = _pad_rows(full, self.text_tokenizer.pad_token_id, left=False)
        out = model(
            input_ids=input_ids, attention_mask=attention, item_features=torch.cat(features), return_loss=False
        )
        return out.condition, texts

    @torch.no_grad()
    def denoise(
        self,
        condition: torch.Tensor,
        num_inference_steps: int,
        guidance_scale: float,
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> torch.Tensor:
        """Sample x̂ `[batch, latent_dim]` with the pipeline's scheduler and classifier-free guidance."""
        return self.recommender.diffusion_head.sample(
            condition, self.scheduler, num_inference_steps, guidance_scale, generator, progress_bar=self.progress_bar
        )

    def read_out(
        self,
        condition: torch.Tensor,
        readout: str | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_samples: int = 8,
    ) -> torch.Tensor:
        """The preference latent `[batch, latent_dim]` of each condition row `[batch, condition_dim]` (from
        [`encode_histories`] or [`generate_and_encode`]) with the pipeline's scheduler: the x₀ estimate (`"x0"`),
        one diffusion sample (`"sample"`) or the mean of `num_samples` samples (`"mean"`); the arguments are those of
        `__call__`, `None` the recommender's config ([`ContRecDiffusionHead.read_out`])."""
        return self.recommender.diffusion_head.read_out(
            condition, readout, self.scheduler, num_inference_steps, guidance_scale, generator, num_samples,
            self.progress_bar,
        )  # fmt: skip

    @torch.no_grad()
    def score_latents(self, latents: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
        """Scores of every catalog item for read-out latents: `metric` between the recommender's
        `retrieval_query(latents)` and `catalog.latents`, the table it was trained to rank (the latents themselves,
        or their input projection with `item_table="tied"`).

        Args:
            latents (`torch.Tensor` of shape `[batch, latent_dim]`): from [`read_out`].
            metric (`str`): `"cosine"`, `"l2"` or `"dot"`.

        Returns:
            `torch.Tensor` of shape `[batch, num_items]`.
        """
        return self.recommender.item_scores(latents, self.catalog.latents, metric)

    # -------------------------------------------------------------------------------------- __call__
    @torch.no_grad()
    def __call__(
        self,
        histories: Sequence[Sequence[str | int]],
        *,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        top_k: int = 10,
        generate_text: bool = False,
        text_weight: float | None = None,
        exclude_history: bool = True,
        readout: str | None = None,
        num_samples: int = 8,
        metric: str = "cosine",
        output_type: str = "pt",
        return_dict: bool = True,
    ) -> ContRecPipelineOutput | tuple:
        """
        Args:
            histories (`list[list[str | int]]`): raw item ids per user, oldest first.
            num_inference_steps (`int`, *optional*): denoising steps of a sampled read-out.
            guidance_scale (`float`, *optional*): classifier-free guidance s ≥ 0 (1 = plain conditioning).
            generator (`torch.Generator`, *optional*): makes sampling deterministic.
            top_k (`int`): items returned per user.
            generate_text (`bool`): full path (write the reasoning, then `<pref>`) instead of the fast path.
            text_weight (`float`, *optional*): λ_text of the text + latent fusion (full path); defaults to the
                pipeline's `config.text_weight`.
            exclude_history (`bool`): mask every history item.
            readout (`str`, *optional*): `"x0"` (the denoiser's one-step x₀ estimate, deterministic, no scheduler
                loop), `"sample"` (one diffusion sample, as the paper) or `"mean"` (mean of `num_samples` samples).
                `readout`, `num_inference_steps` and `guidance_scale` default to the recommender's config (its
                `readout`, `num_inference_steps`, `guidance_scale`: x₀ at guidance 1 for the library's recipe).
                Measured on ML-100K validation (943 users, tiny backbone): NDCG@10 0.0768 for x₀, 0.0335 for
                one DDIM-20 sample, 0.0505 for the mean of 8 samples.
            metric (`str`): `"cosine"`, `"l2"` or `"dot"` against the catalog's item table ([`score_latents`]).
            output_type (`str`): `"pt"` or `"np"`.
            return_dict (`bool`): a [`ContRecPipelineOutput`] or a tuple.
        """
        readout, num_inference_steps, guidance_scale = self.recommender.diffusion_head.read_out_settings(
            readout, num_inference_steps, guidance_scale
        )  # checked before any work
        if output_type not in ("pt", "np"):
            raise InputError(f"output_type must be 'pt' or 'np', got {output_type!r}")
        wanted = f"an integer between 1 and the catalog size {self.catalog.num_items}"
        check_number("top_k", top_k, 1, self.catalog.num_items, integer=True, error=InputError, wanted=wanted)
        self._check_scheduler()
        indices = self._histories(histories)

        # 1. The condition: fast path (prompt + <pref>) or full path (reasoning, then <pref>).
        texts = None
        if generate_text:
            condition, texts = self.generate_and_encode(indices)
        else:
            condition = self.encode_histories(indices)
        # 2. The preference latent.
        latents = self.read_out(condition, readout, num_inference_steps, guidance_scale, generator, num_samples)
        # 3. Retrieval: latent (+ text) scores, history masked, top-K (exact, or from the approximate index).
        text_weight = self.config.text_weight if text_weight is None else text_weight
        masked = indices if exclude_history else None
        if self.retrieval_index is not None and not (texts is not None and text_weight):
            items, values = self.retrieval_index.search(self.recommender.retrieval_query(latents), top_k, masked)
        else:
            scores = self.score_latents(latents, metric)
            if texts is not None and text_weight:
                text = retrieval.text_scores(texts, self.catalog.config.titles, self.catalog.config.categories)
                scores = retrieval.fuse_scores(scores, text.to(scores.device), text_weight)
            items, values = retrieval.top_k(scores, top_k, masked)
        ids = [[self.catalog.config.item_ids[i] for i in row] for row in items.tolist()]
        values, latents = values.cpu(), latents.cpu()
        if output_type == "np":
            values, latents = values.numpy(), latents.numpy()
        self.maybe_free_model_hooks()
        if not return_dict:
            return ids, values, latents, texts
        return ContRecPipelineOutput(item_ids=ids, scores=values, latents=latents, texts=texts)


def build_pipeline(recommender: ContRecForRecommendation, text_tokenizer, data, item_features: torch.Tensor):
    """A pipeline around a trained recommender and a dataset's catalog (DDPM with the training schedule)."""
    recommender.eval()
    with torch.no_grad():
        latents = recommender.item_table(item_features.float())  # the table the recommender was trained to rank
    catalog = ContRecCatalog.build(
        data.item_ids, data.items["title"].tolist(), data.items["category"].tolist(), item_features.float(), latents
    )
    scheduler = DDPMScheduler.from_config(recommender.diffusion_head.noise_scheduler.config, clip_sample=False)
    return ContRecDiffusionPipeline(recommender, scheduler, text_tokenizer, catalog)


def _pad_rows(rows: list[torch.Tensor], value: float, left: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of different lengths (`[S_b]` or `[S_b, H]`) stacked into `[B, S_max, ...]` with ``value`` on the left
    or on the right, and their attention mask `[B, S_max]` (1 on a row's own entries)."""
    length = max(row.shape[0] for row in rows)
    out = rows[0].new_full((len(rows), length, *rows[0].shape[1:]), value)
    attention = torch.zeros(len(rows), length, dtype=torch.long, device=rows[0].device)
    for b, row in enumerate(rows):
        span = slice(length - row.shape[0], length) if left else slice(0, row.shape[0])
        out[b, span], attention[b, span] = row, 1
    return out, attention
