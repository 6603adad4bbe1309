"""Stage 2's prompt lengths in tokens at several history lengths L (ContRec's `max_history`), on ML-100K.

Reproduce (after `make demo`):
    python benchmarks/prompt_lengths.py --tokenizer runs/demo/tokenizer --write-docs

Per L: the mean, median and longest prompt (the prompt and `<pref>`, no response) of every `--stride`-th training
sample, the same with the response, and the width a batch is padded to (the most tokens of any of its rows), over
`--batches` random batches of 16 drawn as stage 2 draws them (half the rows without a response). A stage-2 step's
LM cost grows with that width. No timing: token counts only, the same on every machine.
"""

from __future__ import annotations

import argparse
import random
import statistics
from pathlib import Path

from _report import publish

from contrec_hf.data import load_sequential_dataset
from contrec_hf.data.prompts import ContRecCollator, PromptBuilder, sliding_window_samples
from contrec_hf.training import load_stage1, prepare_recommender


def lengths(collator, data, max_history: int, stride: int, batches: int, seed: int) -> dict[str, float]:
    """The table's numbers at one history length ``max_history``."""
    samples = sliding_window_samples(data.train_sequences(), max_history)

    def pair(sample):
        user, end, target = sample
        return data.sequences[user][max(0, end - max_history) : end], target

    every = [pair(sample) for sample in samples[::stride]]
    prompts = [len(collator.encode(history, target, False)["input_ids"]) for history, target in every]
    answered = [len(collator.encode(history, target, True)["input_ids"]) for history, target in every]
    rng = random.Random(seed)
    widths = [collator([pair(s) for s in rng.sample(samples, 16)])["input_ids"].shape[1] for _ in range(batches)]
    return {"samples": len(every), "mean": statistics.mean(prompts), "median": statistics.median(prompts),
            "max": max(prompts), "answered": statistics.mean(answered), "width": statistics.mean(widths)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", type=Path, required=True, help="a stage-1 folder (e.g. runs/demo/tokenizer)")
    parser.add_argument("--histories", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--stride", type=int, default=37, help="every stride-th training sample is counted")
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if min(args.histories) < 1 or args.stride < 1 or args.batches < 1:
        parser.error("--histories, --stride and --batches must be positive")
    data = load_sequential_dataset("ml-100k")
    item_tokenizer, features = load_stage1(args.tokenizer, data)
    model, text_tokenizer = prepare_recommender(data, item_tokenizer, "tiny")
    config, items = model.config, data.items
    lines = [
        "| history items (L) | prompt tokens: mean | median | longest | with the response: mean "
        "| padded batch of 16: mean width | × the first row's width |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    first = None
    for max_history in args.histories:
        builder = PromptBuilder(items["title"].tolist(), items["category"].tolist(), config.num_item_tokens,
                                max_history=max_history, max_title_length=config.max_title_length)  # fmt: skip
        collator = ContRecCollator(text_tokenizer, builder, features.features, fast_path_probability=0.5)
        row = lengths(collator, data, max_history, args.stride, args.batches, args.seed)
        first = first or row["width"]
        lines.append(f"| {max_history} | {row['mean']:.1f} | {row['median']:.0f} | {row['max']} | "
                     f"{row['answered']:.1f} | {row['width']:.1f} | {row['width'] / first:.2f}× |")  # fmt: skip
    lines += [
        "",
        f"ML-100K, the main job's tiny backbone and its text tokenizer; every {args.stride}th training sample "
        f"({row['samples']} per row), and {args.batches} random batches of 16 with half the rows without a "
        "response (stage 2's fast-path dropout until 2026-12-06; 80% since). The last column is against the first "
        "row's L.",
    ]
    publish(lines, "prompt_lengths.py", "prompt_lengths", "Stage-2 prompt lengths", args.write_docs)


if __name__ == "__main__":
    main()
