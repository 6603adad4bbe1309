"""Read-out variants of trained main-job pipelines, without retraining: which condition, guidance and history to score.

Reproduce (after `make demo`, and after `contrec-hf run --dataset ml-100k --seed 1 --output runs/seeds/seed-1`):
    python benchmarks/readout_variants.py --runs runs/demo runs/seeds/seed-1 --write-docs

Each row scores the whole catalog for every user of a split with the run's saved pipeline and one change to the fast
path's read-out (the x₀ estimate of the head, cosine against the catalog table). The default row is what
`metrics.json` reports. Other rows: classifier-free guidance above 1; the condition at the prompt's last `</item>`
(trained by the dense next-item targets to predict the same next item) instead of `<pref>`; the mean of the two
score matrices; more history items at inference than the model was trained with (`max_history` 20). The choice is
made on validation; the test column is reported once. NDCG@10 through the shared evaluator (history masked). No
timing: the numbers are the same on every run of a host.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from _report import publish

from contrec_hf.data import SequentialDataset
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.pipelines import ContRecDiffusionPipeline

# (label, condition, guidance, history at inference); condition "both" is the mean of the two score matrices.
VARIANTS = (
    ("`<pref>`, guidance 1 (the default)", "pref", 1.0, None),
    ("`<pref>`, guidance 1.5", "pref", 1.5, None),
    ("`<pref>`, guidance 2", "pref", 2.0, None),
    ("last `</item>` instead of `<pref>`", "item_end", 1.0, None),
    ("mean of the `<pref>` and last-`</item>` scores", "both", 1.0, None),
    ("`<pref>`, 30 history items at inference", "pref", 1.0, 30),
    ("`<pref>`, 50 history items at inference", "pref", 1.0, 50),
)


@torch.no_grad()
def conditions(pipe, histories: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The conditions `[batch, condition_dim]` at `<pref>` and at each prompt's last `</item>`, from one LM pass."""
    model = pipe.recommender
    inputs = pipe._collator()([(h, None) for h in histories], train=False)
    ids = inputs["input_ids"]
    embeds = model.embed_prompt(ids, inputs["item_features"], inputs.get("user_features"))
    hidden = model.language_model(
        inputs_embeds=embeds, attention_mask=inputs["attention_mask"], output_hidden_states=True, logits_to_keep=1
    ).hidden_states[-1]  # [B, S, H]
    positions = torch.arange(ids.shape[1])

    def last(token_id: int) -> torch.Tensor:  # [B, H] at each row's last `token_id`
        return hidden[torch.arange(ids.shape[0]), torch.where(ids == token_id, positions, -1).max(dim=1).values]

    return model.condition(last(model.config.pref_token_id)), model.condition(last(model.config.item_end_token_id))


def variant_ndcg(pipe, data: SequentialDataset, split: str, variant: tuple) -> float:
    """NDCG@10 of one read-out variant on ``split``."""
    _, where, guidance, history = variant
    config = pipe.recommender.config
    trained = config.max_history

    def scores(condition: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        return pipe.score_latents(pipe.read_out(condition, readout="x0", guidance_scale=scale))

    def scorer(batch: list[list[int]]) -> torch.Tensor:
        pref, item_end = conditions(pipe, batch)
        if where == "both":
            return (scores(pref) + scores(item_end)) / 2
        return scores(pref if where == "pref" else item_end, guidance)

    histories, targets = data.split(split)
    config.max_history = history or trained  # the prompt builder reads it at each batch
    try:
        result = evaluate_scorer(scorer, histories, targets, data.num_items, batch_size=64, progress=False)
    finally:
        config.max_history = trained
    return result.metrics["ndcg@10"]


def check_default(run: Path, default: dict[str, float]) -> None:
    """The default row must be what the main job reported for the run, or this probe scores something else."""
    reported = json.loads((run / "metrics.json").read_text())
    for split, value in default.items():
        if abs(value - reported[split]["contrec"]["ndcg@10"]) > 1e-6:
            raise RuntimeError(f"{run}: the default read-out gives {split} NDCG@10 {value:.6f}, metrics.json says "
                               f"{reported[split]['contrec']['ndcg@10']:.6f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="finished main-job folders")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    for run in args.runs:
        if not all((run / name).exists() for name in ("pipeline", "data", "metrics.json")):
            parser.error(f"{run} is not a finished main-job folder (no pipeline/, data/ or metrics.json)")
    results = {}  # (variant index, split) -> [NDCG@10 per run]
    for run in args.runs:
        pipe, data = ContRecDiffusionPipeline.from_pretrained(run / "pipeline"), SequentialDataset.load(run / "data")
        for index, variant in enumerate(VARIANTS):
            for split in ("validation", "test"):
                results.setdefault((index, split), []).append(variant_ndcg(pipe, data, split, variant))
            print(run, variant[0], [f"{results[(index, s)][-1]:.4f}" for s in ("validation", "test")], flush=True)
        check_default(run, {split: results[(0, split)][-1] for split in ("validation", "test")})
    base = {split: statistics.mean(results[(0, split)]) for split in ("validation", "test")}
    lines = [
        "| read-out (fast path, x₀ estimate) | validation NDCG@10, per run | mean | × default | test NDCG@10, per run "
        "| mean | × default |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for index, variant in enumerate(VARIANTS):
        cells = []
        for split in ("validation", "test"):
            values = results[(index, split)]
            mean = statistics.mean(values)
            cells += [", ".join(f"{v:.4f}" for v in values), f"{mean:.4f}", f"{mean / base[split]:.3f}×"]
        lines.append(f"| {variant[0]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"ML-100K, leave-one-out, full ranking, history masked, 943 users per split; the saved pipelines of "
        f"{', '.join(f'`{run}`' for run in args.runs)} (stage 2 trained with 20 history items), scored as they are.",
    ]
    title = "Read-out variants of a trained pipeline"
    publish(lines, "readout_variants.py", "readout_variants", title, args.write_docs)


if __name__ == "__main__":
    main()
