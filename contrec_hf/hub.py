"""Pushing a finished run to the Hugging Face Hub, with model cards (``contrec-hf push``)."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import HfApi, ModelCard, ModelCardData

from .errors import ContRecError

__all__ = ["COMPONENTS", "model_card", "push_run"]

COMPONENTS = {
    "tokenizer": ("ContRecTokenizer", "the σ-VAE item tokenizer (stage 1)"),
    "recommender": (
        "ContRecForRecommendation",
        "the recommender: causal LM + continuous item tokens + diffusion head",
    ),
    "pipeline": (
        "ContRecDiffusionPipeline",
        "the full pipeline: recommender, scheduler, text tokenizer, item catalog",
    ),
}
PAPER = "https://arxiv.org/abs/2504.12007"


def _metrics_table(metrics: dict) -> str:
    rows = metrics.get("test", {})
    if not rows:
        return "(no metrics.json in the run)"
    columns = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")
    lines = ["| model | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    lines += [
        f"| {name} | " + " | ".join(f"{m.get(c, float('nan')):.4f}" for c in columns) + " |"
        for name, m in rows.items()
    ]
    return "\n".join(lines)


def model_card(component: str, repo_id: str, run: Path, base_model: str | None = None) -> ModelCard:
    """The model card of one component of a run: what it is, the paper, data and split, metrics, usage."""
    class_name, what = COMPONENTS[component]
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    dataset = metrics.get("dataset", {})
    data = ModelCardData(
        library_name="contrec_hf",
        tags=["recommendation", "sequential-recommendation", "diffusion", "contrec", component],
        base_model=base_model,
    )
    if component == "pipeline":
        usage = (
            "import torch\nfrom diffusers import DDIMScheduler\nfrom contrec_hf import ContRecDiffusionPipeline\n\n"
            f'pipe = ContRecDiffusionPipeline.from_pretrained("{repo_id}")\n'
            "pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)  # swap schedulers freely\n"
            'out = pipe([["1", "50", "181"]], top_k=10, generator=torch.Generator().manual_seed(0))\n'
            "print(out.item_ids)"
        )
    else:
        usage = f'from contrec_hf import {class_name}\n\nmodel = {class_name}.from_pretrained("{repo_id}")'
    body = f"""
# {repo_id.split("/")[-1]}

{class_name}: {what}, trained with [contrec_hf](https://github.com/contrec-hf/contrec_hf) — an implementation of
ContRec, *Diffusion Generative Recommendation with Continuous Tokens* (Qu et al., [arXiv 2504.12007]({PAPER})).

- Dataset: {dataset.get("name", "unknown")} ({dataset.get("users", "?")} users, {dataset.get("items", "?")} items,
  {dataset.get("interactions", "?")} interactions; preset: {dataset.get("preset")}), chronological leave-one-out
  split (last item test, second-to-last validation).
- Evaluation: full ranking over every item, history masked, pessimistic ties.
- Base language model: {base_model or "a tiny Llama trained from scratch"}.

## Test metrics of the run

{_metrics_table(metrics)}

## Usage

```python
{usage}
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{body}")


def push_run(
    run: str | Path,
    repo_prefix: str,
    *,
    token: str | None = None,
    private: bool = False,
    base_model: str | None = None,
) -> dict[str, str]:
    """Push ``run/{tokenizer,recommender,pipeline}`` to ``{repo_prefix}-{component}``, each with a model card.

    Returns ``{component: repo_id}``.
    """
    run = Path(run)
    missing = [c for c in COMPONENTS if not (run / c).is_dir()]
    if missing:
        raise ContRecError(f"{run} lacks the finished component folder(s) {missing}: run `contrec-hf run` first")
    if "/" not in repo_prefix:
        raise ContRecError(f"--repo-prefix must look like USER/NAME, got {repo_prefix!r}")
    api, pushed = HfApi(token=token), {}
    for component in COMPONENTS:
        repo_id = f"{repo_prefix}-{component}"
        api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(folder_path=str(run / component), repo_id=repo_id, commit_message=f"Upload {component}")
        model_card(component, repo_id, run, base_model).push_to_hub(repo_id, token=token)
        pushed[component] = repo_id
    return pushed
