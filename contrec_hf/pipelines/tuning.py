"""Choosing λ_text of the text + latent fusion on validation (METHOD.md §5)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .. import retrieval
from ..data.split import SequentialDataset
from ..evaluation import compute_metrics, mask_history, target_ranks
from .pipeline_contrec import ContRecDiffusionPipeline

__all__ = ["tune_text_weight"]


@torch.no_grad()
def tune_text_weight(
    pipe: ContRecDiffusionPipeline,
    data: SequentialDataset,
    weights: Sequence[float] = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0),
    *,
    users: int = 200,
    num_inference_steps: int = 20,
    guidance_scale: float = 3.0,
    readout: str = "x0",
    seed: int = 0,
    split: str = "validation",
) -> tuple[float, dict[float, dict[str, float]]]:
    """Run the full path once on the first ``users`` users of ``split`` (0 = all) and rank with each λ_text in
    ``weights``.

    Returns ``(best λ_text by NDCG@10, {λ_text: metrics})``. Text-only is reported under ``float("inf")``; λ = 0
    is the latent score alone. Choose λ on validation; pass ``split="test"`` only to report the chosen one.
    """
    histories, targets = data.split(split)
    users = users or len(histories)
    histories, targets = histories[:users], torch.tensor(targets[:users])
    condition, texts = pipe.generate_and_encode(histories)
    if readout == "x0":
        latents = pipe.recommender.predict_x0(condition, guidance_scale)
    else:
        generator = torch.Generator().manual_seed(seed)
        latents = pipe.denoise(condition, num_inference_steps, guidance_scale, generator)
    latent = retrieval.latent_scores(latents, pipe.catalog.latents)
    text = retrieval.text_scores(texts, pipe.catalog.config.titles, pipe.catalog.config.categories)
    results = {}
    for weight in [*weights, float("inf")]:
        scores = text.clone() if weight == float("inf") else retrieval.fuse_scores(latent, text, weight)
        ranks = target_ranks(mask_history(scores, histories), targets)
        results[weight] = compute_metrics(ranks)
    best = max(weights, key=lambda w: results[w]["ndcg@10"])
    return best, results
