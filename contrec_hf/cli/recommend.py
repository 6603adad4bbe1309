"""``contrec-hf recommend``: top-K items from a saved pipeline, for one history or for every user."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..errors import ContRecError, InputError
from ..utils import check_number
from .commands import load_data

__all__ = ["SCHEDULERS", "cmd_recommend"]

SCHEDULERS = {
    "ddpm": "DDPMScheduler",
    "ddim": "DDIMScheduler",
    "dpm-solver": "DPMSolverMultistepScheduler",
    "unipc": "UniPCMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
}


def _recommend_all_users(args: argparse.Namespace, pipe) -> int:
    """Score every user of a dataset in batches of ``--batch-size`` and write ``--output``.

    Under ``torchrun`` / ``accelerate launch`` accelerate splits the batches between the processes and gathers
    their rows on the main process, which writes the file. A batch is the same batch, seeded the same way, however
    many processes there are, so N processes write what one writes.
    """
    import pandas as pd
    import torch
    from accelerate.utils import gather_object
    from tqdm.auto import tqdm

    from ..training.devices import process_state

    data = load_data(args)
    state = process_state("cpu")  # the pipeline scores on the CPU
    starts = list(range(0, data.num_users, args.batch_size))
    rows = []
    with state.split_between_processes(starts) as mine:
        for start in tqdm(mine, desc="recommending", disable=not state.is_main_process):
            batch = range(start, min(start + args.batch_size, data.num_users))
            out = pipe(
                [[data.item_ids[i] for i in data.sequences[u]] for u in batch],
                num_inference_steps=args.steps,
                guidance_scale=args.guidance_scale,
                top_k=args.top_k,
                readout=args.readout,
                generator=torch.Generator().manual_seed(args.seed + start),
            )
            for u, items, scores in zip(batch, out.item_ids, out.scores.tolist()):
                rows += [(data.user_ids[u], r + 1, i, s) for r, (i, s) in enumerate(zip(items, scores))]
    rows = gather_object(rows)  # every process's rows, in process order, on every process
    if state.is_main_process:
        frame = pd.DataFrame(rows, columns=["user_id", "rank", "item_id", "score"])
        output = Path(args.output)
        frame.to_parquet(output.with_suffix(".tmp"), index=False)
        output.with_suffix(".tmp").replace(output)  # a reader never sees half a file
        users = frame["user_id"].nunique()
        print(f"recommendations for {users:,} users written to {output} ({state.num_processes} process(es))")
    state.wait_for_everyone()
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import diffusers
    import torch

    from ..pipelines import ContRecDiffusionPipeline

    history = [h.strip() for h in (args.history or "").split(",") if h.strip()]
    if args.all_users and not args.output:
        raise ContRecError("--all-users needs --output (a .parquet file)")
    if args.all_users and Path(args.output).exists() and not args.overwrite:
        raise ContRecError(f"{args.output} already exists; pass --overwrite to replace it, or pick --output")
    if not args.all_users and not history:
        raise ContRecError("give --history (comma-separated item ids, e.g. 1,50,181) or --all-users with --output")
    for name in ("top_k", "steps", "batch_size"):  # checked before the (possibly large) pipeline loads
        if getattr(args, name) is not None:
            check_number(f"--{name.replace('_', '-')}", getattr(args, name), 1, integer=True, error=InputError)
    if args.guidance_scale is not None:
        check_number("--guidance-scale", args.guidance_scale, 0.0, error=InputError)
    pipe = ContRecDiffusionPipeline.from_pretrained(args.pipeline)
    if args.scheduler:
        pipe.scheduler = getattr(diffusers, SCHEDULERS[args.scheduler]).from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    if args.all_users:
        return _recommend_all_users(args, pipe)
    out = pipe(
        [history],
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        top_k=args.top_k,
        readout=args.readout,
        generate_text=args.generate_text,
        text_weight=args.text_weight,
        generator=torch.Generator().manual_seed(args.seed),
    )
    titles = dict(zip(pipe.catalog.config.item_ids, pipe.catalog.config.titles))
    rows = [
        {"item_id": item, "title": titles[item], "score": float(score)}
        for item, score in zip(out.item_ids[0], out.scores[0])
    ]
    if args.json:
        print(json.dumps(rows))
        return 0
    if out.texts:
        print(f"reasoning: {out.texts[0]}")
    for rank, row in enumerate(rows, 1):
        print(f"{rank:>3}. {row['item_id']:<12} {row['score']:8.4f}  {row['title']}")
    return 0
