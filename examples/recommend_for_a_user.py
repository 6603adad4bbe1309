"""Load a saved (or pushed) ContRec pipeline in user code and recommend for one user.

Run:
    .venv/bin/python examples/recommend_for_a_user.py --pipeline runs/demo/pipeline --history 1,50,181
    .venv/bin/python examples/recommend_for_a_user.py --pipeline USER/ml100k-contrec-pipeline --history 1,50,181
"""

import argparse

import torch
from diffusers import DDIMScheduler

from contrec_hf import ContRecDiffusionPipeline

parser = argparse.ArgumentParser()
parser.add_argument("--pipeline", default="runs/demo/pipeline", help="a folder or a Hub id")
parser.add_argument("--history", default="1,50,181", help="raw item ids, oldest first")
parser.add_argument("--top-k", type=int, default=10)
args = parser.parse_args()

pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
history = args.history.split(",")
titles = dict(zip(pipe.catalog.config.item_ids, pipe.catalog.config.titles))
print("history:", "; ".join(titles[i] for i in history))

# Default read-out: the denoiser's x0 estimate (deterministic).
out = pipe([history], top_k=args.top_k)
print("\nx0 read-out:")
for rank, (item, score) in enumerate(zip(out.item_ids[0], out.scores[0].tolist()), 1):
    print(f"{rank:>3}. {titles[item]}  ({score:.3f})")

# The paper's read-out: one diffusion sample, here with DDIM in 20 steps.
pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
out = pipe([history], readout="sample", num_inference_steps=20, top_k=args.top_k, generator=torch.manual_seed(0))
print("\none DDIM-20 sample:", ", ".join(titles[i] for i in out.item_ids[0]))
