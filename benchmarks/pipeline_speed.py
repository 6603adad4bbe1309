"""Pipeline speed and scheduler quality on ML-100K validation users.

Reproduce:
    .venv/bin/python benchmarks/pipeline_speed.py --pipeline runs/pipeline --users 300 --batch-size 32

Prints (1) users/s of the bare LM forward on the fast-path prompts, the fast path with DDIM-20, the fast path
with the x₀ read-out and the full path (text generation), all on the same prompts and batch size, measured
side by side; (2) validation NDCG@10 and denoising ms/user for DDPM with the full training steps vs DDIM-20
(same generator seed); (3) validation NDCG@10 of the read-outs (x₀ estimate, one sample, mean of 8).
Issue targets: fast path DDIM-20 ≥ 0.8× the bare LM's users/s; DDIM-20 within 2% NDCG@10 of DDPM at ≥ 8× less
denoising time.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import compute_metrics, mask_history, target_ranks
from contrec_hf.pipelines import ContRecDiffusionPipeline
from contrec_hf.retrieval import latent_scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="runs/pipeline")
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--guidance-scale", type=float, default=3.0)
    parser.add_argument("--full-path-users", type=int, default=16)
    args = parser.parse_args()

    data = load_sequential_dataset("ml-100k")
    pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    histories, targets = data.split("validation")
    histories, targets = histories[: args.users], targets[: args.users]
    batches = [histories[i : i + args.batch_size] for i in range(0, len(histories), args.batch_size)]
    collator = pipe._collator()
    lm = pipe.recommender.language_model
    training_steps = pipe.scheduler.config.num_train_timesteps
    original = pipe.scheduler.config

    @torch.no_grad()
    def bare_lm():
        for batch in batches:
            inputs = collator([(h, None) for h in batch], train=False)
            lm(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], logits_to_keep=1)

    def fast(readout: str, steps: int = 20):
        pipe.scheduler = DDIMScheduler.from_config(original)
        for batch in batches:
            raw = [[data.item_ids[i] for i in h] for h in batch]
            pipe(raw, num_inference_steps=steps, guidance_scale=args.guidance_scale, readout=readout,
                 generator=torch.Generator().manual_seed(0))  # fmt: skip

    def full():
        raw = [[data.item_ids[i] for i in h] for h in histories[: args.full_path_users]]
        pipe(raw, generate_text=True, readout="x0", guidance_scale=args.guidance_scale)

    timings = {}
    for name, fn, n in [("bare LM forward (fast-path prompts)", bare_lm, len(histories)),
                        ("fast path, DDIM-20 sample", lambda: fast("sample"), len(histories)),
                        ("fast path, x0 read-out", lambda: fast("x0"), len(histories)),
                        ("full path (greedy text + <pref>), x0", full, args.full_path_users)]:  # fmt: skip
        fn()  # warm-up
        started = time.perf_counter()
        fn()
        timings[name] = n / (time.perf_counter() - started)
    bare = timings["bare LM forward (fast-path prompts)"]
    print(f"batch {args.batch_size}, {len(histories)} users, torch threads {torch.get_num_threads()}\n")
    print("| path | users/s | × bare LM |\n|---|---|---|")
    for name, rate in timings.items():
        print(f"| {name} | {rate:.1f} | {rate / bare:.2f} |")

    # Scheduler quality: condition once, then denoise with each scheduler (denoising time only).
    conditions = torch.cat([pipe.encode_histories(b) for b in batches])
    rows = []
    for scheduler_class, steps in [(DDPMScheduler, training_steps), (DDIMScheduler, 20)]:
        pipe.scheduler = scheduler_class.from_config(original)
        started = time.perf_counter()
        latents = pipe.denoise(conditions, steps, args.guidance_scale, torch.Generator().manual_seed(0))
        ms = 1000 * (time.perf_counter() - started) / len(histories)
        scores = mask_history(latent_scores(latents, pipe.catalog.latents), histories)
        ndcg = compute_metrics(target_ranks(scores, torch.tensor(targets)))["ndcg@10"]
        rows.append((f"{scheduler_class.__name__}-{steps}", ndcg, ms))
    print("\n| scheduler | val NDCG@10 | denoising ms/user |\n|---|---|---|")
    for name, ndcg, ms in rows:
        print(f"| {name} | {ndcg:.4f} | {ms:.2f} |")
    print(
        f"\nDDIM-20 / DDPM: NDCG {rows[1][1] / max(rows[0][1], 1e-9):.3f}×, time {rows[0][2] / rows[1][2]:.1f}× less"
    )

    # Read-outs on the same conditions: the x₀ estimate vs one DDIM-20 sample vs the mean of 8 samples.
    pipe.scheduler = DDIMScheduler.from_config(original)
    readouts = {
        "x0 estimate": lambda: pipe.recommender.predict_x0(conditions, args.guidance_scale),
        "one DDIM-20 sample": lambda: pipe.denoise(
            conditions, 20, args.guidance_scale, torch.Generator().manual_seed(0)
        ),
        "mean of 8 DDIM-20 samples": lambda: (
            pipe.denoise(conditions.repeat_interleave(8, 0), 20, args.guidance_scale, torch.Generator().manual_seed(0))
            .view(len(histories), 8, -1)
            .mean(1)
        ),
    }
    print("\n| read-out | val NDCG@10 |\n|---|---|")
    for name, readout in readouts.items():
        scores = mask_history(latent_scores(readout(), pipe.catalog.latents), histories)
        print(f"| {name} | {compute_metrics(target_ranks(scores, torch.tensor(targets)))['ndcg@10']:.4f} |")


if __name__ == "__main__":
    main()
