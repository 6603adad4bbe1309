"""Where does ContRec lose quality? A ladder from SASRec-CE to the ContRec recommender, one change a rung.

Every rung trains in one harness, the project's `SASRecTrainer` (batch 16 users, lr 1e-3, the next item at every
position of each user's last training window, validation NDCG@10 after each epoch, the best epoch's weights
restored; patience 8 instead of SASRec's 20 to fit the ladder in a session: rung 0 still reproduces the main job's
SASRec-CE test figure of every seed to the last digit), and is scored by one evaluator (full ranking, history
masked). Only the model changes, one thing a rung. Seed s uses the split and the stage-1 σ-VAE of
``RUNS/seed-s`` (the main job's run of that seed, `benchmarks/main_job_seeds.py`), so every stage that is random
is reseeded, and the last row, the ContRec recommender that run trained, shares its tokens with every rung above.

    python benchmarks/quality_ladder.py --runs runs/seeds --seeds 0 1 2 --write-docs

Results are kept per rung and seed in ``--results`` (a JSON file): a rerun skips what is there, so an interrupted
ladder resumes. (CPU; ``--device cuda`` on a GPU machine, the script is otherwise unchanged.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from _report import IMAGES, command_line, parse_device, provenance, write_section
from torch import nn
from transformers import LlamaConfig, LlamaModel

from contrec_hf.baselines import SASRecConfig, SASRecTrainer, SASRecTrainingArguments
from contrec_hf.baselines.sasrec import SASRec
from contrec_hf.data import SequentialDataset
from contrec_hf.models import ContRecConfig, ContRecDiffusionHead
from contrec_hf.models.contrec.configuration_contrec import TINY_LLAMA
from contrec_hf.retrieval import latent_scores
from contrec_hf.training import load_stage1

SECTION, TITLE = "quality_ladder", "Where ContRec loses quality: the ladder"


@dataclass(frozen=True)
class Rung:
    """One model of the ladder; each field is one thing the ContRec recommender does differently from SASRec.

    Attributes:
        change (`str`): what this rung changes from the one above it.
        table (`str`): the input item table: ``"id"`` (free embeddings) or ``"tokens"`` (an MLP of the item's K
            frozen σ-VAE tokens, no per-item parameters).
        score (`str`): ``"dot"`` (SASRec's logits) or ``"cosine"`` (cos/τ, τ = 0.07: ContRec's ranking loss).
        output (`str`): what the next item is scored against: ``"tied"`` (the input table), ``"latent"`` (the
            frozen σ-VAE latents, ContRec's default `item_table="latent"`, through a head of its own) or ``"tokens"``
            (those plus a zero-initialised MLP of the item's tokens, ContRec's `item_table="tokens"`).
        head (`str`): ``"linear"``; ``"denoiser"`` (ContRec's diffusion head, trained only by the ranking loss on its
            x̂₀ estimate) or ``"diffusion"`` (the same + L_diff + λ_disp·L_disp with CFG dropout, ContRec's objective).
        denoiser_init (`str`): ``"recommender"`` (N(0, 0.02), what the denoiser gets inside the recommender) or
            ``"zero"`` (a standalone `ContRecDenoiser`'s zero modulations and output).
        backbone (`str`): ``"sasrec"`` (SASRec's blocks: width 64, dropout 0.2) or ``"llama"`` (ContRec's tiny Llama).
        history (`int`): items in the window (SASRec's 50, ContRec's `max_history` 20).
        layout (`str`): ``"item"`` (one vector per item) or ``"tokens"`` (``<item> z_1 … z_K </item>``: the K tokens
            through ContRec's projector between learned markers, the next item read at ``</item>``).
        preference (`float`): PreferDiff's λ_pref (`ContRecConfig.preference_loss_weight`) on a diffusion rung.
        residual (`bool`): a learned row per item added to the frozen-latent output table, zero for items never in
            a training sequence (`item_table="residual"`'s per-item part).
    """

    change: str
    table: str = "id"
    score: str = "dot"
    output: str = "tied"
    head: str = "linear"
    denoiser_init: str = "recommender"
    backbone: str = "sasrec"
    history: int = 50
    layout: str = "item"
    preference: float = 0.0
    residual: bool = False


LATER_FIELDS = ("preference", "residual")  # added after the first results: in a result's key only when set


def ladder() -> list[Rung]:
    """The rungs, each one change from the one above it."""
    rungs = [Rung("SASRec-CE (free ID embeddings, tied, full-softmax CE)")]
    for change, fields in [
        ("history: 20 items (ContRec's `max_history`) instead of 50", {"history": 20}),
        ("item table: an MLP of the item's K σ-VAE tokens (the issue's probe)", {"table": "tokens"}),
        ("score: cosine / τ (τ = 0.07) instead of the dot product", {"score": "cosine"}),
        ("output table: the frozen σ-VAE latents (ContRec's `item_table`)", {"output": "latent"}),
        ("head: ContRec's denoiser, ranking loss on its x̂₀", {"head": "denoiser"}),
        ("objective: + L_diff + 0.5·L_disp, CFG dropout (ContRec's)", {"head": "diffusion"}),
        ("backbone: ContRec's tiny Llama instead of SASRec's blocks", {"backbone": "llama"}),
        ("layout: `<item>` z₁ … z_K `</item>` per item instead of one vector", {"layout": "tokens"}),
    ]:
        rungs.append(replace(rungs[-1], change=change, **fields))
    return rungs


def levers(rungs: list[Rung]) -> list[Rung]:
    """Side rungs: one change from a ladder rung, not on the way to ContRec."""
    table = next(r for r in rungs if r.output == "latent")  # the first rung on ContRec's frozen-latent table
    diffusion = next(r for r in rungs if r.head == "diffusion")
    return [
        replace(diffusion, change="lever on the objective rung: zero-initialised denoiser", denoiser_init="zero"),
        replace(table, change="lever on rung 4: output table + a learned MLP of the tokens (`item_table='tokens'`)",
                output="tokens"),
        replace(table, change="lever on rung 4: + a learned row per trained item too (`item_table='residual'`)",
                output="tokens", residual=True),
        replace(diffusion, change="lever on the objective rung: + PreferDiff's term (λ 0.5, γ 5)", preference=0.5),
    ]  # fmt: skip


def mlp(d_in: int, d_out: int, hidden: int = 256) -> nn.Sequential:
    """ContRec's projector shape (Linear, GELU, Linear)."""
    return nn.Sequential(nn.Linear(d_in, hidden), nn.GELU(), nn.Linear(hidden, d_out))


class LadderModel(nn.Module):
    """A rung's model with `SASRec`'s interface (``forward(input_ids, labels) → {"loss"}``, ``score(histories)``), so
    `SASRecTrainer` trains and evaluates it unchanged. Inputs are item indices shifted by one (0: padding)."""

    def __init__(
        self,
        rung: Rung,
        config: SASRecConfig,
        tokens: torch.Tensor,
        latents: torch.Tensor,
        head_config: ContRecConfig,
        trained: torch.Tensor,
    ) -> None:
        super().__init__()
        self.rung, self.config = rung, config
        self.num_tokens = tokens.shape[1]
        self.register_buffer("tokens", F.pad(tokens, (0, 0, 0, 0, 1, 0)))  # [N + 1, K, d_z]; row 0 pads
        self.register_buffer("latents", latents)  # [N, d_z]
        if rung.output == "tokens":  # ContRec's item_table="tokens": the latents + an MLP that starts at zero
            self.output_mlp = mlp(self.num_tokens * latents.shape[1], latents.shape[1])
            nn.init.zeros_(self.output_mlp[-1].weight), nn.init.zeros_(self.output_mlp[-1].bias)
        if rung.residual:  # one learned row per item, kept at zero for items no training sequence holds
            self.item_residual = nn.Parameter(torch.zeros_like(latents))
            self.register_buffer("trained", trained.float().unsqueeze(-1))  # [N, 1]
        d_z = latents.shape[1]
        if rung.backbone == "sasrec":
            self.sasrec, width = SASRec(config), config.hidden_size
        else:
            llama = LlamaConfig(**{**TINY_LLAMA, "vocab_size": 1})
            self.llama, width = LlamaModel(llama), llama.hidden_size
        if rung.layout == "tokens":
            self.projector, self.markers = mlp(d_z, width), nn.Parameter(0.02 * torch.randn(2, width))
        elif rung.table == "tokens":
            self.table_mlp = mlp(self.num_tokens * d_z, width)
        elif rung.backbone != "sasrec":
            raise ValueError("the ID table rides on SASRec's own embedding")
        if rung.head != "linear":
            self.condition = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, head_config.condition_dim))
            self.head = ContRecDiffusionHead(head_config)
            if rung.denoiser_init == "recommender":  # transformers' init of the recommender (modeling_contrec.py)
                for module in self.head.denoiser.modules():
                    if isinstance(module, nn.Linear):
                        nn.init.normal_(module.weight, std=0.02), nn.init.zeros_(module.bias)
                nn.init.normal_(self.head.null_condition, std=0.02)
        elif rung.output != "tied":  # a head onto the latent space of the output table
            self.readout = nn.Linear(width, d_z)

    def item_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """``[..]`` shifted indices → ``[.., width]`` input vectors (zero at padding)."""
        if self.rung.table == "id":
            return self.sasrec.item_embedding(ids)
        return self.table_mlp(self.tokens[ids].flatten(-2)) * (ids > 0).unsqueeze(-1)

    def hidden_states(self, ids: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` shifted indices → ``[B, N, width]``: the state that predicts the item after each position."""
        mask = ids > 0
        if self.rung.layout == "tokens":  # [B, N, K + 2, width] → one long sequence, read back at each </item>
            z = self.projector(self.tokens[ids])
            start, end = (m.expand(*ids.shape, 1, -1) for m in self.markers.view(2, 1, 1, 1, -1))
            x, mask = torch.cat([start, z, end], dim=2).flatten(1, 2), mask.repeat_interleave(self.num_tokens + 2, 1)
        else:
            x = self.item_vectors(ids)
        if self.rung.backbone == "sasrec":
            states = self.sasrec.encode(x, mask)
        else:
            states = self.llama(inputs_embeds=x, attention_mask=mask.long()).last_hidden_state
        if self.rung.layout == "tokens":
            states = states.view(*ids.shape, self.num_tokens + 2, -1)[:, :, -1]
        return states

    def output_table(self) -> torch.Tensor:
        """``[N, d_z]``: the frozen latents (+ the learned MLP of the tokens, + the trained items' learned rows)."""
        table = self.latents
        if self.rung.output == "tokens":
            table = table + self.output_mlp(self.tokens[1:].flatten(-2))
        if self.rung.residual:
            table = table + self.item_residual * self.trained
        return table

    def logits(self, states: torch.Tensor) -> torch.Tensor:
        """``[P, width]`` states → ``[P, num_items]`` scores."""
        if self.rung.output == "tied":
            query = states
            table = self.item_vectors(torch.arange(1, self.config.num_items + 1, device=states.device))
        else:
            table = self.output_table()
            query = (
                self.readout(states) if self.rung.head == "linear" else self.head.x0_estimate(self.condition(states))
            )
        if self.rung.score == "cosine":
            return latent_scores(query, table) / 0.07  # the ranking loss's τ (ContRecConfig.ranking_temperature)
        return query @ table.T

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss at every labelled position (``labels``: catalog indices, ``-100`` ignored)."""
        keep = labels != -100
        states, targets = self.hidden_states(input_ids)[keep], labels[keep]  # [P, width], [P]
        if self.rung.head == "linear":
            return {"loss": F.cross_entropy(self.logits(states), targets)}
        condition = self.condition(states)
        loss = self.head.ranking_loss(condition, self.output_table(), targets, 0.0)
        if self.rung.head == "diffusion":  # the recommender's weights: λ_diff 1, λ_disp 0.5 (ContRecConfig)
            out = self.head(condition, self.latents[targets])
            loss = loss + out.diffusion_loss + self.head.config.dispersive_loss_weight * out.dispersive_loss
            if self.rung.preference > 0:
                loss = loss + self.rung.preference * out.preference_loss
        return {"loss": loss}

    @torch.no_grad()
    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """``[len(histories), num_items]`` scores for the item after each history (its last ``history`` items)."""
        device = self.latents.device
        windows = [h[-self.config.max_length :] for h in histories]
        ids = torch.zeros(len(windows), max(map(len, windows)), dtype=torch.long, device=device)
        for row, w in enumerate(windows):
            ids[row, : len(w)] = torch.as_tensor(w, device=device) + 1
        last = torch.as_tensor([len(w) - 1 for w in windows], device=device)
        return self.logits(self.hidden_states(ids)[torch.arange(len(windows), device=device), last]).float()


def train_rung(rung: Rung, run: Path, seed: int, args) -> dict:
    """Train one rung on one seed's run; returns validation and test NDCG@10, epochs and seconds."""
    data = SequentialDataset.load(run / "data")
    tokenizer, features = load_stage1(run / "tokenizer", data)
    with torch.no_grad():
        tokens, latents = tokenizer.encode(features.features).float(), tokenizer.latent(features.features).float()
    config = SASRecConfig(num_items=data.num_items, max_length=rung.history)
    training = SASRecTrainingArguments(
        seed=seed, patience=args.patience, max_epochs=args.max_epochs, device=args.device
    )
    trainer = SASRecTrainer(data, config, training)  # seeds everything; its SASRec is rung 0's model
    if rung != ladder()[0]:
        head_config = ContRecConfig(  # ContRec's defaults
            item_tokenizer_config=tokenizer.config.to_dict(), preference_loss_weight=rung.preference
        )
        trained = torch.zeros(data.num_items, dtype=torch.bool)
        trained[[item for sequence in data.train_sequences() for item in sequence]] = True
        trainer.model = LadderModel(rung, config, tokens, latents, head_config, trained).to(trainer.device)
    started = time.perf_counter()
    trainer.train(progress=args.progress)
    seconds = time.perf_counter() - started
    best = max(trainer.history, key=lambda h: h["val_ndcg@10"])
    return {
        "val": best["val_ndcg@10"],
        "test": trainer.evaluate("test").metrics["ndcg@10"],
        "best_epoch": best["epoch"],
        "epochs": len(trainer.history),
        "seconds": seconds,
    }


def contrec_row(runs: Path, seeds: list[int]) -> dict[int, dict]:
    """The ContRec recommender of each seed's run (its `metrics.json`, fast path)."""
    rows = {}
    for seed in seeds:
        metrics = json.loads((runs / f"seed-{seed}" / "metrics.json").read_text())
        rows[seed] = {
            "val": metrics["validation"]["contrec"]["ndcg@10"],
            "test": metrics["test"]["contrec"]["ndcg@10"],
        }
    return rows


def summary(values: list[float]) -> str:
    return f"{statistics.mean(values):.4f} ± {statistics.pstdev(values):.4f}" if values else "–"


def table(rows: list[tuple[str, str, dict]], seeds: list[int]) -> list[str]:
    """Markdown rows: rung, change, test per seed (– where not run), mean validation and test, the ratio to rung 0
    over the same seeds, epochs and wall seconds a seed."""
    reference = rows[0][2]
    lines = [
        f"| rung | change | test NDCG@10, seeds {', '.join(map(str, seeds))} | validation | test | × rung 0 | epochs "
        "| wall s a seed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, change, results in rows:
        done = [s for s in seeds if s in results]
        test = [results[s]["test"] for s in done]
        ratio = statistics.mean(test) / statistics.mean(reference[s]["test"] for s in done)
        per_seed = ", ".join(f"{results[s]['test']:.4f}" if s in results else "–" for s in seeds)
        epochs = "/".join(str(results[s]["epochs"]) for s in done if "epochs" in results[s]) or "–"
        seconds = [results[s]["seconds"] for s in done if "seconds" in results[s]]
        lines.append(
            f"| {label} | {change} | {per_seed} | {summary([results[s]['val'] for s in done])} | **{summary(test)}** "
            f"| {ratio:.2f}× | {epochs} | {f'{statistics.mean(seconds):.0f}' if seconds else '–'} |"
        )
    return lines


def plot(rows: list[tuple[str, str, dict]], seeds: list[int], path: Path) -> None:
    """Test NDCG@10 per rung, mean over seeds with the spread, the ladder top to bottom."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 0.45 * len(rows) + 1.2))
    values = [[results[s]["test"] for s in seeds if s in results] for _, _, results in rows]
    positions = list(range(len(rows)))[::-1]
    ax.barh(positions, [statistics.mean(v) for v in values], xerr=[statistics.pstdev(v) for v in values], capsize=2)
    names = [f"{label}: {change.split(':', 1)[-1].strip()[:44]}" + ("" if len(results) == len(seeds) else
             f" ({len(results)} seed)") for label, change, results in rows]  # fmt: skip
    ax.set_yticks(positions, names, fontsize=7)
    ax.set_xlabel(f"test NDCG@10 (ML-100K, full ranking; mean ± spread over seeds {seeds})")
    ax.set_title("From SASRec-CE to ContRec, one change a rung")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def key(rung: Rung, seed: int) -> str:
    """A result's key in the results file: the rung's fields (`LATER_FIELDS` only when set) and the seed."""
    fields = {
        k: v for k, v in asdict(rung).items() if k not in LATER_FIELDS or v != Rung.__dataclass_fields__[k].default
    }
    return f"{json.dumps(fields, sort_keys=True)} seed={seed}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="runs/seeds", help="folder of seed-N runs of `contrec-hf run`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--patience", type=int, default=8, help="validations without gain before a rung stops (SASRec's: 20)"
    )
    parser.add_argument("--max-epochs", type=int, default=200, help="SASRecTrainer's bound (its default)")
    parser.add_argument("--rungs", type=int, nargs="*", help="only these rung numbers, in this order (default: all)")
    parser.add_argument("--results", default="runs/ladder/results.json", help="kept per rung and seed; resumed")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--progress", action="store_true", help="SASRecTrainer's progress bar per rung")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    device = parse_device(parser, args.device)
    runs, results_path = Path(args.runs), Path(args.results)
    results = json.loads(results_path.read_text()) if results_path.is_file() else {}
    rungs = ladder() + levers(ladder())
    for number in range(len(rungs)) if args.rungs is None else args.rungs:  # in the order asked
        rung = rungs[number]
        for seed in args.seeds:
            if key(rung, seed) not in results:
                results[key(rung, seed)] = train_rung(rung, runs / f"seed-{seed}", seed, args)
                results_path.parent.mkdir(parents=True, exist_ok=True)
                results_path.write_text(json.dumps(results, indent=1))
            print(f"rung {number} seed {seed}: {results[key(rung, seed)]}  ({rung.change})", flush=True)
    rows = []
    for number, rung in enumerate(rungs):
        found = {s: results[key(rung, s)] for s in args.seeds if key(rung, s) in results}
        if found:
            rows.append((str(number) if rung in ladder() else "lever", rung.change, found))
    main_job = "the main job's recommender: + titles, instruction, reasoning and LM loss, fast path, its schedule"
    rows.append(("ContRec", main_job, contrec_row(runs, args.seeds)))
    body = [
        "ML-100K, leave-one-out, full ranking with the history masked; seed s uses the split and the stage-1 σ-VAE "
        f"of "
        f"`{runs}/seed-s`. Every rung trains in `SASRecTrainer` (batch 16, lr 1e-3, patience {args.patience}, best "
        "validation epoch restored); the last row is the ContRec recommender of the same runs (`metrics.json`, fast "
        "path), trained by the main job. × rung 0: the mean test NDCG@10 over the seeds of the row against rung 0's "
        "over the same seeds. The wall seconds are no timing: the ladder shared the machine with other jobs.",
        "",
        *table(rows, args.seeds),
        "",
        "![test NDCG@10 per rung](img/quality_ladder.png)",
        "",
        provenance(command_line("quality_ladder.py"), device),
    ]
    report = "\n".join(body)
    print("\n" + report)
    if args.write_docs:
        plot(rows, args.seeds, IMAGES / "quality_ladder.png")
        print(f"\nwrote {write_section(SECTION, report, TITLE)}")


if __name__ == "__main__":
    main()
