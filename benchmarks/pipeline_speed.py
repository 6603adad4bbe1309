"""Pipeline speed and scheduler quality on ML-100K validation users.

Reproduce:
    python benchmarks/pipeline_speed.py --pipeline runs/demo/pipeline --write-docs

(1) Throughput, users/s on the same prompts and batch size: the bare LM forward (collate + LM forward, the
    last position's logits), the fast path with one DDIM-20 sample, the fast path with the x₀ read-out, and the
    full path (greedy text, then `<pref>`; fewer users). The paths run interleaved, `--repeats` rounds in a
    rotating order; the table gives the median users/s and the median and range of the per-round ratio to the
    bare LM, so both sides of a ratio share the machine's load. The fast path's time is also split into its
    parts (condition = collate + LM forward, denoising, retrieval), timed the same way.
(2) Schedulers: validation NDCG@10 of one diffusion sample and denoising ms/user for DDPM, DDIM, DPM-Solver and
    UniPC at several step counts (DDPM also with the full training chain), mean ± std over generator seeds.
(3) Read-outs and guidance: NDCG@10 of the x₀ estimate, one DDIM-20 sample and the mean of 8 samples against the
    guidance scale.

Issue targets: fast path DDIM-20 ≥ 0.8× the bare LM's users/s; DDIM-20 within 2% NDCG@10 of DDPM (full training
steps) at ≥ 8× less denoising time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import nullcontext

import torch
from _report import IMAGES, command_line, machine, parse_device, provenance, write_section
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from contrec_hf import retrieval
from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import compute_metrics, mask_history, target_ranks
from contrec_hf.pipelines import ContRecDiffusionPipeline

BARE, FAST = "bare LM forward (same prompts)", "fast path, DDIM-20 sample"
PARTS = ("condition (collate + LM forward)", "denoising (DDIM-20, CFG)", "retrieval (top-10)")
SCHEDULERS = {
    "DDPM": DDPMScheduler,
    "DDIM": DDIMScheduler,
    "DPM-Solver++": DPMSolverMultistepScheduler,
    "UniPC": UniPCMultistepScheduler,
}


def ndcg10(latents: torch.Tensor, catalog: torch.Tensor, histories, targets: torch.Tensor) -> float:
    scores = mask_history(retrieval.latent_scores(latents, catalog), histories)
    return compute_metrics(target_ranks(scores.cpu(), targets), ks=(10,))["ndcg@10"]


class Clock:
    """Wall time of a callable, synchronising CUDA so that GPU work is counted."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"

    def __call__(self, fn, *args):
        """`(seconds, fn(*args))`."""
        if self.cuda:
            torch.cuda.synchronize()
        started = time.perf_counter()
        result = fn(*args)
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - started, result


def throughput_rounds(pipe, data, histories, batch_size, full_users, args, clock) -> tuple[dict, dict]:
    """Interleaved rounds of every path at one batch size → (users/s per round and path, s per fast-path part)."""
    batches = [histories[i : i + batch_size] for i in range(0, len(histories), batch_size)]
    raw = [[[data.item_ids[i] for i in h] for h in batch] for batch in batches]
    full_raw = [[data.item_ids[i] for i in h] for h in histories[:full_users]]
    collator, lm, device = pipe._collator(), pipe.recommender.language_model, pipe.device
    ddim = DDIMScheduler.from_config(pipe.scheduler.config)

    @torch.no_grad()
    def bare_lm():
        for batch in batches:
            inputs = collator([(h, None) for h in batch], train=False)
            lm(input_ids=inputs["input_ids"].to(device), attention_mask=inputs["attention_mask"].to(device),
               logits_to_keep=1)  # fmt: skip

    def fast(readout: str):
        pipe.scheduler = ddim
        for batch in raw:
            pipe(batch, num_inference_steps=20, guidance_scale=args.guidance_scale, readout=readout,
                 generator=torch.Generator(device).manual_seed(0))  # fmt: skip

    def full():
        pipe(full_raw, generate_text=True, readout="x0", guidance_scale=args.guidance_scale)

    parts = dict.fromkeys(PARTS, 0.0)

    def fast_parts():  # the fast path's three stages, timed separately
        pipe.scheduler = ddim
        for batch in batches:
            seconds, condition = clock(pipe.encode_histories, batch)
            parts[PARTS[0]] += seconds
            generator = torch.Generator(device).manual_seed(0)
            seconds, latents = clock(pipe.denoise, condition, 20, args.guidance_scale, generator)
            parts[PARTS[1]] += seconds
            seconds, _ = clock(lambda x, h: retrieval.top_k(retrieval.latent_scores(x, pipe.catalog.latents), 10, h),
                               latents, batch)  # fmt: skip
            parts[PARTS[2]] += seconds

    paths = {
        BARE: (bare_lm, len(histories)),
        FAST: (lambda: fast("sample"), len(histories)),
        "fast path, x₀ read-out": (lambda: fast("x0"), len(histories)),
    }
    if full_users:
        paths[f"full path (greedy text + `<pref>`), x₀, {full_users} users"] = (full, full_users)
    for fn, _ in paths.values():
        fn()  # warm-up
    rates = {name: [] for name in paths}
    names = list(paths)
    for round_ in range(args.repeats):
        for name in names[round_ % len(names) :] + names[: round_ % len(names)]:  # rotate the order
            fn, users = paths[name]
            rates[name].append(users / clock(fn)[0])
        fast_parts()
    return rates, parts


def throughput(pipe, data, histories, args, clock, label: str) -> tuple[str, dict]:
    """Section (1) for one pipeline: a table of paths × batch sizes, and the fast path's time split."""
    lines = [
        f"**{label}.** {len(histories)} validation users, guidance {args.guidance_scale}; {args.repeats} interleaved "
        "rounds per batch size (order rotated each round); the ratio is taken within each round.",
        "",
        "| batch | path | users/s (median) | × bare LM, median | × bare LM, range |",
        "|---:|---|---:|---:|---:|",
    ]
    split = ["", "Where the fast path (DDIM-20) spends its time:", "", "| batch | " + " | ".join(PARTS) + " |"]
    split.append("|---:|" + "---:|" * len(PARTS))
    summary = {}
    for index, batch_size in enumerate(args.batch_sizes):
        full_users = args.full_path_users if index == 0 else 0
        rates, parts = throughput_rounds(pipe, data, histories, batch_size, full_users, args, clock)
        for name, values in rates.items():
            ratios = [r / b for r, b in zip(values, rates[BARE])]
            summary[(batch_size, name)] = statistics.median(ratios)
            lines.append(
                f"| {batch_size} | {name} | {statistics.median(values):.1f} | {statistics.median(ratios):.2f} | "
                f"{min(ratios):.2f}–{max(ratios):.2f} |"
            )
        total = sum(parts.values())
        split.append(f"| {batch_size} | " + " | ".join(f"{100 * parts[p] / total:.0f}%" for p in PARTS) + " |")
        print(f"  batch {batch_size}: fast/bare {summary[(batch_size, FAST)]:.2f}", flush=True)
    met = [b for b in args.batch_sizes if summary[(b, FAST)] >= 0.8]
    lines += split
    lines += [
        "",
        f"Goal (fast path DDIM-20 ≥ 0.8× the bare LM's users/s): met at batch sizes {met or 'none'} of "
        f"{args.batch_sizes}.",
    ]
    return "\n".join(lines), summary


def timing_pipeline(backbone: str, tokenizer: str, data) -> ContRecDiffusionPipeline:
    """A pipeline around ``backbone`` with untrained ContRec heads, for timing only (speed does not depend on the
    weights' values)."""
    from contrec_hf.pipelines.pipeline_contrec import build_pipeline
    from contrec_hf.training import load_stage1, prepare_recommender

    item_tokenizer, features = load_stage1(tokenizer, data)
    recommender, text_tokenizer = prepare_recommender(data, item_tokenizer, backbone)
    return build_pipeline(recommender, text_tokenizer, data, features.features)


def scheduler_sweep(pipe, conditions, histories, targets, args, clock):
    """Section (2): one-sample NDCG@10 and denoising ms/user per scheduler and step count, over seeds."""
    original, catalog = pipe.scheduler.config, pipe.catalog.latents
    chain = original.num_train_timesteps
    grid = [("DDPM", chain)] + [(name, steps) for name in SCHEDULERS for steps in args.steps]
    rows = []
    for name, steps in grid:
        pipe.scheduler = SCHEDULERS[name].from_config(original)
        ndcgs, seconds = [], []
        for seed in args.seeds:
            generator = torch.Generator(pipe.device).manual_seed(seed)
            elapsed, latents = clock(pipe.denoise, conditions, steps, args.guidance_scale, generator)
            seconds.append(elapsed)
            ndcgs.append(ndcg10(latents, catalog, histories, targets))
        ms = 1000 * statistics.median(seconds) / len(histories)
        rows.append((name, steps, statistics.mean(ndcgs), statistics.pstdev(ndcgs), ms))
        print(f"  {name}-{steps}: NDCG@10 {rows[-1][2]:.4f} ± {rows[-1][3]:.4f}, {ms:.2f} ms/user", flush=True)
    pipe.scheduler = DDPMScheduler.from_config(original)
    reference = next(r for r in rows if r[0] == "DDPM" and r[1] == chain)
    ddim20 = next(r for r in rows if r[0] == "DDIM" and r[1] == 20)
    lines = [
        f"One diffusion sample per user (readout `sample`), guidance {args.guidance_scale}, all {len(histories)} "
        f"validation users; NDCG@10 mean ± std over generator seeds {args.seeds}; denoising ms/user: median over "
        "the seeds (conditions computed once beforehand).",
        "",
        "| scheduler | steps | val NDCG@10 | denoising ms/user |",
        "|---|---:|---|---:|",
    ]
    lines += [f"| {n} | {s} | {m:.4f} ± {sd:.4f} | {ms:.2f} |" for n, s, m, sd, ms in rows]
    gap = (reference[2] - ddim20[2]) / reference[2]
    speedup = reference[4] / ddim20[4]
    met = gap <= 0.02 and speedup >= 8
    lines += [
        "",
        f"DDIM-20 vs DDPM-{chain}: NDCG@10 {ddim20[2]:.4f} vs {reference[2]:.4f} ({-100 * gap:+.1f}%), "
        f"{speedup:.1f}× less denoising time. Goal (within 2% at ≥ 8× less time): **{'met' if met else 'not met'}**.",
    ]
    return "\n".join(lines), rows


def readouts_and_guidance(pipe, conditions, histories, targets, args) -> tuple[str, dict]:
    """Section (3): NDCG@10 of the x₀ estimate, one DDIM-20 sample and the mean of 8 samples per guidance scale."""
    pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
    catalog, n = pipe.catalog.latents, len(histories)

    def latents(readout: str, w: float) -> torch.Tensor:
        generator = torch.Generator(pipe.device).manual_seed(0)
        return pipe.read_out(conditions, readout, 20, w, generator, num_samples=8)

    readouts = {
        "x₀ estimate (default)": "x0",
        "one DDIM-20 sample (paper)": "sample",
        "mean of 8 DDIM-20 samples": "mean",
    }
    table = {
        name: [ndcg10(latents(readout, w), catalog, histories, targets) for w in args.guidance]
        for name, readout in readouts.items()
    }
    pipe.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    header = " | ".join(f"w = {w:g}" for w in args.guidance)
    lines = [
        f"Validation NDCG@10, all {n} users, fast path; guidance scale w (1 = plain conditioning, 0 = unconditional).",
        "",
        f"| read-out | {header} |",
        "|---|" + "---:|" * len(args.guidance),
    ]
    lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in values) + " |" for name, values in table.items()]
    return "\n".join(lines), table


def plot(rows, table, guidance, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for name in SCHEDULERS:
        points = sorted((ms, m, sd) for n, _, m, sd, ms in rows if n == name)
        left.errorbar([p[0] for p in points], [p[1] for p in points], yerr=[p[2] for p in points], marker="o",
                      capsize=3, label=name)  # fmt: skip
    left.set_xscale("log")
    left.set_xlabel("denoising ms/user")
    left.set_ylabel("val NDCG@10 (one sample)")
    left.set_title("Schedulers: quality vs denoising time")
    left.legend()
    for name, values in table.items():
        right.plot(guidance, values, marker="o", label=name)
    right.set_xlabel("guidance scale w")
    right.set_ylabel("val NDCG@10")
    right.set_title("Read-out and guidance")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="runs/demo/pipeline")
    parser.add_argument("--users", type=int, default=320, help="validation users timed in (1)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 32, 128])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--full-path-users", type=int, default=16)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--guidance", type=float, nargs="+", default=[0.0, 1.0, 2.0, 3.0, 5.0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--timing-backbone", help="also time a pipeline around this backbone (e.g. smollm2)")
    parser.add_argument("--timing-users", type=int, default=16, help="users timed with --timing-backbone")
    parser.add_argument("--timing-batch-sizes", type=int, nargs="+", default=[8])
    parser.add_argument("--timing-repeats", type=int, default=3)
    parser.add_argument("--tokenizer", default="runs/demo/tokenizer", help="stage-1 folder for --timing-backbone")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()

    device = parse_device(parser, args.device)
    clock = Clock(device)
    data = load_sequential_dataset("ml-100k")
    pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline).to(device)
    pipe.set_progress_bar_config(disable=True)
    histories, targets = data.split("validation")
    targets = torch.tensor(targets)
    sections = []
    with torch.inference_mode() if device.type == "cuda" else nullcontext():
        if not args.skip_throughput:
            text, _ = throughput(
                pipe, data, histories[: args.users], args, clock, f"Trained pipeline `{args.pipeline}`"
            )
            print(text, flush=True)
            sections.append(text)
        if args.timing_backbone:
            other = timing_pipeline(args.timing_backbone, args.tokenizer, data).to(device)
            other.set_progress_bar_config(disable=True)
            size = sum(p.numel() for p in other.recommender.language_model.parameters()) / 1e6
            label = f"Backbone `{args.timing_backbone}` ({size:.0f}M parameters; ContRec heads untrained, timing only)"
            timing = argparse.Namespace(**{**vars(args), "batch_sizes": args.timing_batch_sizes,
                                           "repeats": args.timing_repeats, "full_path_users": 0})  # fmt: skip
            text, _ = throughput(other, data, histories[: args.timing_users], timing, clock, label)
            print(text, flush=True)
            sections.append(text)
            del other
        conditions = torch.cat([pipe.encode_histories(histories[i : i + 64]) for i in range(0, len(histories), 64)])
        text, rows = scheduler_sweep(pipe, conditions, histories, targets, args, clock)
        print(text, flush=True)
        sections.append(text)
        text, table = readouts_and_guidance(pipe, conditions, histories, targets, args)
        print(text, flush=True)
        sections.append(text)
    if args.write_docs:
        path = IMAGES / "pipeline_speed.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        plot(rows, table, args.guidance, path)
        body = "\n\n".join(sections) + "\n\n![schedulers and read-outs](img/pipeline_speed.png)\n\n"
        body += f"Pipeline `{args.pipeline}` ({machine(device)}).\n\n"
        body += provenance(command_line("pipeline_speed.py"), device)
        write_section("pipeline_speed", body, "Inference: throughput, schedulers, read-outs")


if __name__ == "__main__":
    main()
