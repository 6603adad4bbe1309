"""Choosing λ_text of the text + latent fusion on validation (docs/method.md, §5 Retrieval and read-outs).

The full path runs once per user; every λ_text is then ranked from the same latent and text scores through the
shared evaluator (history masking, non-finite check, tie rule), so a fused figure is comparable with every other.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import retrieval
from ..data.split import SequentialDataset
from ..evaluation import evaluate_scorer
from .pipeline_contrec import ContRecDiffusionPipeline

__all__ = ["TEXT_WEIGHTS", "full_path_scores", "tune_text_weight"]

TEXT_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


@torch.no_grad()
def full_path_scores(
    pipe: ContRecDiffusionPipeline,
    histories: Sequence[Sequence[int]],
    *,
    readout: str | None = None,
    guidance_scale: float | None = None,
    num_inference_steps: int | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The full path's latent and text scores of every catalog item for each history.

    Args:
        pipe ([`ContRecDiffusionPipeline`]): the pipeline.
        histories (`list[list[int]]`): item-index histories, one per user.
        readout, guidance_scale, num_inference_steps: as in the pipeline's `read_out` (`None`: the recommender's
            config).
        seed (`int`): seeds the sampling read-outs (one generator for the whole run).
        batch_size (`int`): users per read-out batch.

    Returns:
        `tuple[torch.Tensor, torch.Tensor]`: latent scores and text scores, each `[len(histories), num_items]`.
    """
    generator = torch.Generator(pipe.device).manual_seed(seed)
    latent, texts = [], []
    for start in range(0, len(histories), batch_size):
        batch = [list(h) for h in histories[start : start + batch_size]]
        condition, generated = pipe.generate_and_encode(batch, batch_size=batch_size)
        latents = pipe.read_out(condition, readout, num_inference_steps, guidance_scale, generator)
        latent.append(pipe.score_latents(latents).cpu())
        texts += generated
    # One call for all users: the catalog's word sets are built once (rows do not depend on each other).
    text = retrieval.text_scores(texts, pipe.catalog.config.titles, pipe.catalog.config.categories)
    return torch.cat(latent), text


@torch.no_grad()
def tune_text_weight(
    pipe: ContRecDiffusionPipeline,
    data: SequentialDataset,
    weights: Sequence[float] = TEXT_WEIGHTS,
    *,
    users: int = 200,
    num_inference_steps: int | None = None,
    guidance_scale: float | None = None,
    readout: str | None = None,
    seed: int = 0,
    split: str = "validation",
) -> tuple[float, dict[float, dict[str, float]]]:
    """Run the full path once on the first ``users`` users of ``split`` (0 = all) and rank with each λ_text in
    ``weights``: s = z-norm(latent) + λ_text · text (:func:`~contrec_hf.retrieval.fuse_scores`). The read-out
    arguments are those of :func:`full_path_scores` (`None`: the recommender's config).

    Returns:
        `tuple`: ``(best λ_text by NDCG@10, {λ_text: metrics})``. Text-only is reported under ``float("inf")``;
        λ = 0 is the latent score alone. Choose λ on validation; pass ``split="test"`` only to report the chosen one.

    Example:
        ```python
        >>> best, results = tune_text_weight(pipe, data, users=0)  # doctest: +SKIP
        >>> results[0.0]["ndcg@10"], results[best]["ndcg@10"]  # doctest: +SKIP
        ```
    """
    histories, targets = data.split(split)
    users = users or len(histories)
    histories, targets = histories[:users], targets[:users]
    latent, text = full_path_scores(
        pipe, histories, readout=readout, guidance_scale=guidance_scale, num_inference_steps=num_inference_steps,
        seed=seed,
    )  # fmt: skip
    results, rows = {}, list(range(len(histories)))
    for weight in [*weights, float("inf")]:
        scores = text if weight == float("inf") else retrieval.fuse_scores(latent, text, weight)

        def scorer(batch: list[list[int]], rows: list[int], scores=scores) -> torch.Tensor:
            return scores[torch.as_tensor(rows)]

        evaluation = evaluate_scorer(scorer, histories, targets, data.num_items, users=rows, progress=False)
        results[weight] = evaluation.metrics
    best = max(weights, key=lambda w: results[w]["ndcg@10"])
    return best, results
