"""Where does ContRec lose quality? A probe of the item latent space, without the language model.

A SASRec-shaped causal transformer over item ids (the same architecture and windows as our SASRec baseline) is
trained to regress the next item's vector at every position (MSE, the x₀ target), and ranks the catalog by the
cosine between its prediction and every item's vector, the ContRec retrieval rule. The vectors are either the
σ-VAE latents of a trained run (what ContRec's diffusion head generates and retrieves against) or the raw
collaborative features they encode. If this probe ranks well, the latent space is not what limits ContRec: the
recommender stage is.

    python benchmarks/latent_probe.py --run runs/demo --seeds 0 1 2 --write-docs

(CPU; add --device cuda on a GPU machine, the script is otherwise unchanged.)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from _report import command_line, parse_device, provenance, write_section

from contrec_hf.baselines.sasrec import SASRec, SASRecConfig
from contrec_hf.data import SequentialDataset
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.training import load_stage1
from contrec_hf.utils import set_seed

SECTION, TITLE = "latent_probe", "Where ContRec loses quality: a probe of the latent space"


def windows(sequence: list[int], length: int) -> tuple[list[int], list[int]]:
    """Inputs and next-item labels of the last ``length`` positions of a training sequence."""
    w = sequence[-(length + 1) :]
    return w[:-1], w[1:]


def train_probe(data: SequentialDataset, vectors: torch.Tensor, seed: int, args) -> dict[str, float]:
    """Train on every position of every training sequence; keep the epoch with the best validation NDCG@10."""
    device = torch.device(args.device)
    generator = set_seed(seed)  # a CPU generator: the data order is the same on every device
    model = SASRec(SASRecConfig(num_items=data.num_items, hidden_size=64, max_length=args.max_length))
    head = torch.nn.Linear(64, vectors.shape[1])
    model, head, vectors = model.to(device), head.to(device), vectors.to(device)  # initialised on the CPU
    params = [*model.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=args.learning_rate, weight_decay=0.0)
    items = F.normalize(vectors, dim=-1)
    sequences = [s for s in data.train_sequences() if len(s) >= 2]

    @torch.no_grad()
    def score(histories: list[list[int]]) -> torch.Tensor:
        model.eval(), head.eval()
        w = [h[-args.max_length :] for h in histories]
        ids = torch.zeros(len(w), max(map(len, w)), dtype=torch.long)
        for row, h in enumerate(w):
            ids[row, : len(h)] = torch.tensor(h) + 1
        last = torch.tensor([len(h) - 1 for h in w], device=device)
        states = model.hidden_states(ids.to(device))[torch.arange(len(w), device=device), last]
        return F.normalize(head(states), dim=-1) @ items.T  # on `device`: evaluate_scorer ranks it there

    def ndcg(split: str) -> float:
        histories, targets = data.split(split)
        return evaluate_scorer(score, histories, targets, data.num_items, progress=False).metrics["ndcg@10"]

    best = {"val": -1.0, "test": 0.0, "epoch": -1}
    for epoch in range(args.max_epochs):
        model.train(), head.train()
        order = torch.randperm(len(sequences), generator=generator).tolist()
        for start in range(0, len(order), args.batch_size):
            pairs = [windows(sequences[i], args.max_length) for i in order[start : start + args.batch_size]]
            length = max(len(x) for x, _ in pairs)
            ids = torch.zeros(len(pairs), length, dtype=torch.long)
            labels = torch.full((len(pairs), length), -1)
            for row, (x, y) in enumerate(pairs):
                ids[row, : len(x)], labels[row, : len(y)] = torch.tensor(x) + 1, torch.tensor(y)
            ids, labels = ids.to(device), labels.to(device)
            mask = labels >= 0
            prediction = head(model.hidden_states(ids)[mask])  # [P, d]
            loss = F.mse_loss(prediction, vectors[labels[mask]])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        val = ndcg("validation")
        if val > best["val"]:
            best = {"val": val, "test": ndcg("test"), "epoch": epoch}
        elif epoch - best["epoch"] >= args.patience:
            break
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", default="runs/demo", help="a folder written by `contrec-hf run`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--max-length", type=int, default=50)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the probe trains and is evaluated")
    args = parser.parse_args()
    device = parse_device(parser, args.device)

    data = SequentialDataset.load(f"{args.run}/data")
    tokenizer, features = load_stage1(f"{args.run}/tokenizer", data)
    with torch.no_grad():
        targets = {"σ-VAE latents (ContRec's target space)": tokenizer.latent(features.features).float(),
                   "raw collaborative features": features.features.float()}  # fmt: skip
    rows = []
    for name, vectors in targets.items():
        started, results = time.perf_counter(), [train_probe(data, vectors, seed, args) for seed in args.seeds]
        val, test = np.array([r["val"] for r in results]), np.array([r["test"] for r in results])
        rows.append((name, vectors.shape[1], val, test, (time.perf_counter() - started) / len(args.seeds)))
        print(f"{name}: validation {val.mean():.4f} ± {val.std():.4f}, test {test.mean():.4f} ± {test.std():.4f}")
    table = [
        "| regression target | d | validation NDCG@10 | test NDCG@10 | s per seed |",
        "|---|---|---|---|---|",
        *(f"| {n} | {d} | {v.mean():.4f} ± {v.std():.4f} | {t.mean():.4f} ± {t.std():.4f} | {s:.0f} |"
          for n, d, v, t, s in rows),
    ]  # fmt: skip
    report = "\n".join(
        [
            f"ML-100K, the split and stage-1 tokenizer of `{args.run}`; seeds {args.seeds}; a 2-layer SASRec-shaped "
            "transformer over item ids regresses the next item's vector at every position (MSE), ranking by "
            "cosine against every item's vector, history masked; best validation epoch.",
            "",
            *table,
            "",
            provenance(command_line("latent_probe.py"), device),
        ]
    )
    print("\n" + report)
    if args.write_docs:
        print(f"\nwrote {write_section(SECTION, report, TITLE)}")


if __name__ == "__main__":
    main()
