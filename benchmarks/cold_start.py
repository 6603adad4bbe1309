"""Cold-start items: ContRec with text, collaborative or hybrid item features against SASRec, Popularity and a text
nearest-neighbour baseline, on users whose test item was never interacted with in training.

Reproduce (after `make demo`, which writes runs/demo; ~12 min per ContRec feature kind and ~6 min for SASRec on a
2-core CPU):
    python benchmarks/cold_start.py --demo runs/demo --write-docs

The split (:func:`contrec_hf.data.cold_start_split`) makes `--fraction` of the distinct test-target items of the
demo's ML-100K split cold: they are removed from every training history and validation target and stay only as
test targets. Every model trains on that split only (item features, stage 1, stage 2, SASRec, Popularity) and ranks
the whole catalog, cold items included. Stage 1 sees every item's *features* (text is side information a new item
has); no interaction with a cold item reaches any model. ContRec trains like the main job (2,000 steps, best of 4
validations) and is read out like it (fast path, x₀, guidance 1). Results are cached per model under `--output`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import command_line, parse_device, provenance, write_section

from contrec_hf.baselines import PopularityRecommender, SASRec, SASRecConfig, SASRecTrainer, SASRecTrainingArguments
from contrec_hf.data import SequentialDataset, cold_start_split
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.features import build_item_features
from contrec_hf.main_job import contrec_scorer
from contrec_hf.models import ContRecForRecommendation
from contrec_hf.pipelines import build_pipeline
from contrec_hf.retrieval import mask_history
from contrec_hf.training import RecommenderTrainingArguments, load_stage1, run_recommender_stage, run_tokenizer_stage
from contrec_hf.utils import write_json

LABELS = {
    "pop": "Popularity",
    "sasrec": "SASRec-CE",
    "text-knn": "text nearest neighbours (mean of the history's text embeddings, cosine)",
    "contrec-text": "ContRec, text item features",
    "contrec-collaborative": "ContRec, collaborative item features",
    "contrec-hybrid": "ContRec, hybrid item features",
}


def counting_cold(scorer, cold: set[int], shares: list[float]):
    """``scorer``, also appending each row's share of cold items in its top 10 (history masked) to ``shares``."""

    def counted(batch: list[list[int]]) -> torch.Tensor:
        scores = scorer(batch).float().cpu()
        masked = mask_history(scores.clone(), batch)
        shares.extend(sum(int(i) in cold for i in row) / 10 for row in masked.topk(10, dim=-1).indices.tolist())
        return scores

    return counted


def evaluate(scorer, data: SequentialDataset, users: dict[str, list[int]], cold: set[int]) -> dict:
    """Test metrics of ``scorer`` on each user group, and the share of cold items in its top 10."""
    histories, targets = data.split("test")
    out = {}
    for group, members in users.items():
        shares: list[float] = []
        result = evaluate_scorer(
            counting_cold(scorer, cold, shares),
            [histories[u] for u in members],
            [targets[u] for u in members],
            data.num_items,
            progress=False,
        )
        out[group] = {**result.metrics, "cold_share_top10": sum(shares) / len(shares), "users": len(members)}
    return out


def text_knn_scorer(features: torch.Tensor):
    """Cosine between the mean of a history's unit text embeddings and every item's: needs no interaction data."""
    items = F.normalize(features.float(), dim=-1)  # [I, H]

    def scorer(batch: list[list[int]]) -> torch.Tensor:
        profiles = torch.stack([items[h].mean(0) for h in batch])  # [B, H]
        return F.normalize(profiles, dim=-1) @ items.T

    return scorer


def sasrec_scorer(data: SequentialDataset, folder: Path, device):
    if not (folder / "model.safetensors").is_file():
        training = SASRecTrainingArguments(seed=0, device=None if device.type == "cpu" else str(device))
        trainer = SASRecTrainer(data, SASRecConfig(num_items=data.num_items), training)
        trainer.train(progress=False).save_pretrained(folder)
    return SASRec.from_pretrained(folder).to(device).score


def contrec_model(kind: str, data: SequentialDataset, output: Path, device):
    """Stage 1 (features of ``kind``) and stage 2 on the cold-start split, as the main job trains them."""
    tokenizer_dir, training = output / f"tokenizer-{kind}", output / f"contrec-{kind}" / "training"
    if not (tokenizer_dir / "config.json").is_file():
        run_tokenizer_stage(data, kind, tokenizer_dir, overwrite=True, progress=False)
    if not (training / "best" / "config.json").is_file():
        args = RecommenderTrainingArguments(output_dir=str(training), max_steps=2000, eval_steps=500, save_steps=250,
                                            eval_users=500, seed=0)  # fmt: skip
        run_recommender_stage(data, tokenizer_dir, args, progress=False)
    from transformers import AutoTokenizer

    _, features = load_stage1(tokenizer_dir, data)
    recommender = ContRecForRecommendation.from_pretrained(training / "best")
    text_tokenizer = AutoTokenizer.from_pretrained(training / "best" / "text_tokenizer")
    return contrec_scorer(build_pipeline(recommender, text_tokenizer, data, features.features).to(device), False)


def table(results: dict[str, dict]) -> str:
    lines = [
        "| model | cold users: HR@10 | cold users: NDCG@10 | cold users: cold share of top 10 | "
        "warm users: NDCG@10 | warm users: cold share of top 10 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, row in results.items():
        cold, warm = row["cold"], row["warm"]
        lines.append(
            f"| {LABELS[name]} | {cold['hr@10']:.4f} | {cold['ndcg@10']:.4f} | {cold['cold_share_top10']:.3f} | "
            f"{warm['ndcg@10']:.4f} | {warm['cold_share_top10']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", default="runs/demo", help="a main-job folder: its data/ split is used")
    parser.add_argument("--output", type=Path, default=Path("runs/cold-start"))
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--seed", type=int, default=0, help="seeds the choice of cold items")
    parser.add_argument("--models", nargs="+", default=[m for m in LABELS if m != "contrec-hybrid"], choices=LABELS)
    parser.add_argument("--device", default="cpu", help="where the models are evaluated (and SASRec trains)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    device = parse_device(parser, args.device)

    split = cold_start_split(SequentialDataset.load(Path(args.demo) / "data"), args.fraction, seed=args.seed)
    data, cold = split.data, set(split.cold_items)
    output = args.output / f"fraction{args.fraction:g}-seed{args.seed}"
    users = {"cold": split.cold_users, "warm": split.warm_users}
    print(
        f"{len(cold)} cold items, {len(split.cold_users)} cold users, {len(split.warm_users)} warm users", flush=True
    )

    results: dict[str, dict] = {}
    for name in args.models:
        cached = output / name / "results.json"
        if cached.is_file():
            results[name] = json.loads(cached.read_text())
            continue
        started = time.perf_counter()
        if name == "pop":
            scorer = PopularityRecommender().fit(data).score
        elif name == "sasrec":
            scorer = sasrec_scorer(data, output / "sasrec", device)
        elif name == "text-knn":
            text = build_item_features(data, "text", cache_dir=output / "tokenizer-text" / "features", progress=False)
            scorer = text_knn_scorer(text.features.to(device))
        else:
            scorer = contrec_model(name.removeprefix("contrec-"), data, output, device)
        results[name] = evaluate(scorer, data, users, cold)
        results[name]["seconds"] = time.perf_counter() - started
        write_json(cached, results[name])
        print(f"{name}: cold NDCG@10 {results[name]['cold']['ndcg@10']:.4f} ({results[name]['seconds']:.0f}s)")

    body = table(results)
    print(body)
    if args.write_docs:
        removed = split.removed_interactions
        body += (
            f"\n\nML-100K, the demo's leave-one-out split with {len(cold)} of its "
            f"{len({s[-1] for s in data.sequences})} test-target items made cold (fraction {args.fraction:g}, seed "
            f"{args.seed}; {removed:,} interactions removed from histories): {len(split.cold_users)} users have a "
            f"cold test item, {len(split.warm_users)} a warm one. Test split, full ranking over all "
            f"{data.num_items:,} items, history masked; one training seed per model.\n\n"
        )
        extra = ["--fraction", str(args.fraction), "--seed", str(args.seed), "--models", *args.models]
        body += provenance(command_line("cold_start.py", ["--demo", args.demo, *extra, "--write-docs"]), device)
        write_section("cold_start", body, "Cold-start items")


if __name__ == "__main__":
    main()
