"""Swap the pipeline's scheduler (DDPM ↔ DDIM ↔ DPM-Solver ↔ UniPC) at several step counts and print validation
NDCG@10 and ms/user for each.

Run:
    .venv/bin/python examples/swap_schedulers.py --pipeline runs/pipeline --dataset ml-100k --users 300
"""

import argparse
import time

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

from contrec_hf.data import load_sequential_dataset
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.models.diffusion_head import sampling_guidance
from contrec_hf.pipelines import ContRecDiffusionPipeline

parser = argparse.ArgumentParser()
parser.add_argument("--pipeline", required=True)
parser.add_argument("--dataset", default="ml-100k")
parser.add_argument("--data-path")
parser.add_argument("--items-path")
parser.add_argument("--users", type=int, default=300, help="validation users (the first N)")
parser.add_argument("--guidance-scale", type=float,
                    help="default: the paper's 3, or 1 for a model trained without CFG dropout")  # fmt: skip
args = parser.parse_args()

data = load_sequential_dataset(
    args.dataset, args.data_path, **({"items_path": args.items_path} if args.items_path else {})
)
pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
pipe.set_progress_bar_config(disable=True)
guidance = args.guidance_scale
guidance = sampling_guidance(pipe.recommender.config.condition_dropout) if guidance is None else guidance
print(f"guidance scale {guidance:g}")
histories, targets = data.split("validation")
histories, targets = histories[: args.users], targets[: args.users]
latents = pipe.catalog.latents
original = pipe.scheduler.config

print("| scheduler | steps | val NDCG@10 | ms/user |\n|---|---|---|---|")
for scheduler_class, steps in [(DDPMScheduler, 200), (DDIMScheduler, 50), (DDIMScheduler, 20), (DDIMScheduler, 10),
                               (DPMSolverMultistepScheduler, 20), (DPMSolverMultistepScheduler, 10),
                               (UniPCMultistepScheduler, 20), (UniPCMultistepScheduler, 10)]:  # fmt: skip
    pipe.scheduler = scheduler_class.from_config(original)
    generator = torch.Generator().manual_seed(0)

    def scorer(batch, steps=steps, generator=generator):
        raw = [[data.item_ids[i] for i in h] for h in batch]
        out = pipe(raw, num_inference_steps=steps, guidance_scale=guidance, generator=generator, top_k=1,
                   readout="sample")  # fmt: skip
        return torch.nn.functional.normalize(out.latents, dim=-1) @ torch.nn.functional.normalize(latents, dim=-1).T

    started = time.perf_counter()
    result = evaluate_scorer(scorer, histories, targets, data.num_items, batch_size=64, progress=False)
    ms = 1000 * (time.perf_counter() - started) / len(targets)
    print(f"| {scheduler_class.__name__} | {steps} | {result.metrics['ndcg@10']:.4f} | {ms:.1f} |")
