"""Stage-2 training step time: the full ContRec model vs the bare LM forward + backward on the same batch.

Reproduce:
    .venv/bin/python benchmarks/stage2_step_time.py --tokenizer runs/tokenizer-collaborative --batch-size 16

The bare LM step is what fine-tuning the LM alone on the same token ids costs: forward over the whole
sequence, cross-entropy on the response tokens, backward. The ContRec step adds the item tokenizer, the
projector splice, the condition, the denoiser (×4 noise draws) and the dispersive loss. Issue target: ≤ 1.3×.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from contrec_hf.data import load_sequential_dataset
from contrec_hf.data.prompts import ContRecCollator, PromptBuilder, sliding_window_samples
from contrec_hf.training import load_stage1, prepare_recommender


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="runs/tokenizer-collaborative")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()

    torch.manual_seed(0)
    data = load_sequential_dataset("ml-100k")
    item_tokenizer, features = load_stage1(args.tokenizer, data)
    model, text_tokenizer = prepare_recommender(data, item_tokenizer)
    model.train()
    builder = PromptBuilder(
        data.items["title"].tolist(), data.items["category"].tolist(), model.config.num_item_tokens
    )
    collator = ContRecCollator(text_tokenizer, builder, features.features, fast_path_probability=0.0)
    samples = sliding_window_samples(data.train_sequences(), 20)[::997][: args.batch_size]
    batch = collator([(data.sequences[u][max(0, e - 20) : e], t) for u, e, t in samples])
    batch.pop("targets")
    lm = model.language_model

    def full_step():
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()

    def bare_step():
        lm.zero_grad(set_to_none=True)
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100).backward()

    keep = (batch["labels"][:, 1:] != -100).any(0).nonzero().flatten()

    def bare_step_response_logits():  # the same logits saving ContRec uses
        lm.zero_grad(set_to_none=True)
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
        F.cross_entropy(logits.flatten(0, 1), batch["labels"][:, 1:][:, keep].flatten(), ignore_index=-100).backward()

    results = {}
    for _ in range(2):  # interleave to share the machine's noise
        results.setdefault("bare LM", []).extend(timed(bare_step, args.repeats))
        results.setdefault("bare LM, response logits", []).extend(timed(bare_step_response_logits, args.repeats))
        results.setdefault("ContRec", []).extend(timed(full_step, args.repeats))
    bare, full = statistics.median(results["bare LM"]), statistics.median(results["ContRec"])
    print(f"batch {args.batch_size} × {batch['input_ids'].shape[1]} tokens, torch threads {torch.get_num_threads()}")
    print("| step | median s | ratio |\n|---|---|---|")
    print(f"| bare LM forward+backward | {bare:.3f} | 1.00 |")
    short = statistics.median(results["bare LM, response logits"])
    print(f"| bare LM forward+backward, logits on response positions only | {short:.3f} | {short / bare:.2f} |")
    print(f"| ContRec forward+backward | {full:.3f} | {full / bare:.2f} (× {full / short:.2f} of the row above) |")


if __name__ == "__main__":
    main()
