"""Stage-2 training step time and peak memory: the full ContRec model vs the bare LM forward + backward.

Reproduce (after `make demo`):
    python benchmarks/stage2_step_time.py --tokenizer runs/demo/tokenizer --write-docs

The bare LM step is what fine-tuning the LM alone on the same token ids costs: forward over the whole sequence,
cross-entropy on the response tokens, backward. The ContRec step adds the item tokenizer, the projector splice,
the condition, the denoiser (`--draws` noise draws of each condition: at `<pref>` and at the dense next-item targets
of every `</item>`), the Dispersive Loss and the ranking loss. Its LM loss applies the output embeddings to the
labelled positions alone; the row "logits at the label columns" is the same step with the LM's logits at every
position that any row of the batch labels (ContRec's LM loss before 2026-12-02). Step times are medians over
`--repeats` steps, the kinds interleaved over two rounds. `--fast-path-probability 0.8` draws the batch as stage 2
does by default (about four rows in five without a response). `--mixed-precision bf16` adds the default ContRec
step with its forward pass under `torch.autocast` in bf16, as `contrec-hf run --mixed-precision bf16` trains stage 2
(on a 2-core Intel host with AMX it did not pay reliably: docs/benchmarks.md).
Peak memory: on CUDA, the allocator's peak during the steps; on the CPU, the peak resident set of a fresh process
that builds the model and runs the steps of one kind (so it includes the model and Python itself).
Issue target: ContRec ≤ 1.3× the bare LM's step time.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from _report import command_line, parse_device, provenance, write_section

from contrec_hf.data import load_sequential_dataset
from contrec_hf.data.prompts import ContRecCollator, PromptBuilder, sliding_window_samples
from contrec_hf.errors import ConfigError
from contrec_hf.models import ContRecConfig
from contrec_hf.training import load_stage1, prepare_recommender
from contrec_hf.training.devices import MIXED_PRECISIONS, autocast, check_mixed_precision

BARE_KINDS = ("bare LM", "bare LM, response logits")
COLUMNS = ", logits at the label columns"


def contrec_kind(draws: int) -> str:
    return f"ContRec, {draws} noise draw{'s' if draws > 1 else ''} per condition"


def build_steps(args):
    """The three step functions on one fixed training batch, and the batch's shape."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    data = load_sequential_dataset("ml-100k")
    item_tokenizer, features = load_stage1(args.tokenizer, data)
    model, text_tokenizer = prepare_recommender(data, item_tokenizer, args.backbone)
    model.to(device).train()
    items = data.items
    builder = PromptBuilder(items["title"].tolist(), items["category"].tolist(), model.config.num_item_tokens)
    fast = args.fast_path_probability
    collator = ContRecCollator(text_tokenizer, builder, features.features, fast_path_probability=fast)
    samples = sliding_window_samples(data.train_sequences(), 20)[::997][: args.batch_size]
    batch = collator([(data.sequences[u][max(0, e - 20) : e], t) for u, e, t in samples])
    batch = {k: v.to(device) for k, v in batch.items()}
    lm = model.language_model
    keep = (batch["labels"][:, 1:] != -100).any(0).nonzero().flatten()
    model(**batch)  # the first labelled batch checks that lm_head on the labelled rows gives the LM's own logits
    if not model._head_on_rows_ok:
        raise RuntimeError(f"backbone {args.backbone!r}: the LM loss does not take the head on the labelled rows")

    def contrec(draws: int, on_rows: bool = True, precision: str = "no"):  # `diffusion_batch_multiplier` draws
        def step():
            model.config.diffusion_batch_multiplier = draws  # the head reads the shared config at each forward
            model._head_on_rows_ok = on_rows  # False: the LM's logits at the batch's label columns
            model.zero_grad(set_to_none=True)
            with autocast(device, precision):  # the forward pass as stage 2 autocasts it; backward outside
                loss = model(**batch).loss
            loss.backward()

        return step

    def bare():
        lm.zero_grad(set_to_none=True)
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        F.cross_entropy(logits[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), ignore_index=-100).backward()

    def bare_response_logits():  # the LM's logits at the batch's label columns
        lm.zero_grad(set_to_none=True)
        logits = lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits
        F.cross_entropy(logits.flatten(0, 1), batch["labels"][:, 1:][:, keep].flatten(), ignore_index=-100).backward()

    steps = dict(zip(BARE_KINDS, (bare, bare_response_logits)))
    steps.update({contrec_kind(draws): contrec(draws) for draws in args.draws})
    steps[contrec_kind(1) + COLUMNS] = contrec(1, on_rows=False)
    if args.mixed_precision != "no":  # the default step (its noise draws) under autocast
        draws, precision = ContRecConfig().diffusion_batch_multiplier, args.mixed_precision
        steps[f"{contrec_kind(draws)}, {precision} autocast"] = contrec(draws, precision=precision)
    return steps, tuple(batch["input_ids"].shape), device


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - start)
    return out


def peak_memory_mb(args, kind: str, steps, device: torch.device) -> float:
    """Peak memory of `kind`'s steps: CUDA allocator peak, or a fresh process's peak RSS on the CPU."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        for _ in range(3):
            steps[kind]()
        return torch.cuda.max_memory_allocated(device) / 2**20
    child = [sys.executable, __file__, "--tokenizer", args.tokenizer, "--batch-size", str(args.batch_size),
             "--backbone", args.backbone, "--draws", *map(str, args.draws), "--memory-child", kind,
             "--fast-path-probability", str(args.fast_path_probability),
             "--mixed-precision", args.mixed_precision]  # fmt: skip
    done = subprocess.run(child, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", default="runs/demo/tokenizer")
    parser.add_argument("--backbone", default="tiny")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--draws", type=int, nargs="+", default=[1, 4],
                        help="noise draws per condition of the ContRec rows (diffusion_batch_multiplier)")  # fmt: skip
    parser.add_argument("--fast-path-probability", type=float, default=0.0,
                        help="the batch's share of rows without a response (stage 2: 0.8 by default)")  # fmt: skip
    parser.add_argument("--mixed-precision", default="no", choices=MIXED_PRECISIONS,
                        help="also time the default ContRec step with its forward under this autocast")  # fmt: skip
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    parse_device(parser, args.device)
    try:
        check_mixed_precision(args.mixed_precision, args.device)
    except ConfigError as error:  # e.g. fp16 on the CPU
        parser.error(str(error))
    if min(args.draws) < 1:
        parser.error("--draws takes positive integers")
    if not 0.0 <= args.fast_path_probability < 1.0:
        parser.error("--fast-path-probability takes a value in [0, 1): a batch needs rows with a response")

    steps, shape, device = build_steps(args)
    if args.memory_child:  # a fresh process: three steps of one kind, then report the peak RSS (KiB on Linux)
        for _ in range(3):
            steps[args.memory_child]()
        print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
        return

    results = {kind: [] for kind in steps}
    for _ in range(2):  # interleave to share the machine's noise
        for kind in steps:
            results[kind].extend(timed(steps[kind], args.repeats, device))
    memory = {kind: peak_memory_mb(args, kind, steps, device) for kind in steps}
    bare = statistics.median(results["bare LM"])
    where = "GPU allocator peak" if device.type == "cuda" else "peak RSS of a fresh process"
    rows = "response kept" if not args.fast_path_probability else f"fast-path probability {args.fast_path_probability}"
    lines = [
        f"Backbone `{args.backbone}`, batch {shape[0]} × {shape[1]} tokens (one fixed training batch, {rows}).",
        "",
        f"| step | median s | × bare LM | memory ({where}), MB |",
        "|---|---:|---:|---:|",
    ]
    for kind in steps:
        median = statistics.median(results[kind])
        lines.append(f"| {kind} forward + backward | {median:.3f} | {median / bare:.2f} | {memory[kind]:.0f} |")
    default = contrec_kind(ContRecConfig().diffusion_batch_multiplier)
    ratio = statistics.median(results[default]) / bare if default in results else float("nan")
    lines += [
        "",
        f"Goal (the default ContRec step, {default[9:]}, ≤ 1.3× the bare LM's): "
        f"**{'met' if ratio <= 1.3 else 'not met'}** ({ratio:.2f}×).",
        "",
        provenance(command_line("stage2_step_time.py"), device),
    ]
    body = "\n".join(lines)
    print(body)
    if args.write_docs:
        key = f"stage2_step_time_{args.backbone}" + ("" if not args.fast_path_probability else "_fast_path")
        write_section(key, body, f"Training step time and memory ({args.backbone}, {rows})")


if __name__ == "__main__":
    main()
