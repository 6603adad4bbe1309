"""The main job, run twice and once killed with SIGKILL in stage 2 and resumed: are the results the same bits?

Three runs of ``contrec-hf run --dataset ml-100k`` with one seed, on this machine, with torch's default thread
count: ``a`` and ``b`` straight through; ``c`` killed at a random moment of stage 2 (drawn from ``--kill-seed``,
between 10% and 90% of run a's stage-2 time), then started again with the same command, which resumes from its
last checkpoint. The script compares ``metrics.json`` (every figure of the main job's table, exactly) and the
SHA-256 of every weight file the runs saved (features, σ-VAE, recommender, pipeline, SASRec).

Reproduce (three main jobs, ~15 min each at the demo's 2,000 steps on 2 cores; `--run-a runs/demo` reuses a
finished `make demo` folder as run a, so only b and c run):
    .venv/bin/python benchmarks/reproducibility.py --run-a runs/demo --write-docs

Exit status 1 when any pair differs, so the script doubles as a slow end-to-end check.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from _report import ROOT, publish

SECTION, TITLE = "reproducibility", "Reproducibility: the main job twice, and killed and resumed"
CLI = Path(sys.executable).with_name("contrec-hf")


def job_command(output: Path, max_steps: int, seed: int, overwrite: bool) -> list[str]:
    command = [str(CLI), "run", "--dataset", "ml-100k", "--output", str(output), "--max-steps", str(max_steps)]
    return command + ["--seed", str(seed), "--no-progress"] + (["--overwrite"] if overwrite else [])


def run_job(output: Path, max_steps: int, seed: int, log: Path, overwrite: bool = True) -> float:
    """One main job to completion (its output in ``log``); returns its wall time."""
    started = time.perf_counter()
    with log.open("a") as handle:
        subprocess.run(job_command(output, max_steps, seed, overwrite), stdout=handle, stderr=subprocess.STDOUT,
                       check=True)  # fmt: skip
    return time.perf_counter() - started


def kill_in_stage2(output: Path, max_steps: int, seed: int, log: Path, delay: float) -> dict:
    """Start a fresh job, SIGKILL it ``delay`` seconds after its stage 2 began; returns what was on disk then."""
    stages = output / "stages.json"
    shutil.rmtree(output, ignore_errors=True)  # no stale stages.json for the wait below to read
    with log.open("a") as handle:
        child = subprocess.Popen(job_command(output, max_steps, seed, overwrite=True), stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            while not (stages.is_file() and "tokenizer" in json.loads(stages.read_text() or "{}")):
                if child.poll() is not None:
                    raise SystemExit(f"run c ended (exit {child.returncode}) before its stage 2; see {log}")
                time.sleep(0.2)
            time.sleep(delay)
            if child.poll() is not None:
                raise SystemExit(f"run c ended before the kill at {delay:.0f}s into stage 2; lower the delay")
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    state_file = output / "recommender-training" / "checkpoints" / "last" / "trainer_state.json"
    step = json.loads(state_file.read_text())["trainer"]["step"] if state_file.is_file() else 0
    return {"killed_after_s": delay, "last_checkpoint_step": step}


def fingerprints(run: Path) -> dict[str, str]:
    """SHA-256 of every ``.safetensors`` file of a run (checkpoints of the training loop excluded), by path."""
    out = {}
    for path in sorted(run.rglob("*.safetensors")):
        relative = path.relative_to(run).as_posix()
        if not relative.startswith("recommender-training/"):
            out[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def compare(runs: dict[str, Path]) -> list[tuple[str, bool, bool]]:
    """Rows ``(what, a == b, a == c)``: ``metrics.json`` first, then each weight file."""
    metrics = {k: json.loads((p / "metrics.json").read_text()) for k, p in runs.items()}
    rows = [("metrics.json", metrics["a"] == metrics["b"], metrics["a"] == metrics["c"])]
    prints = {k: fingerprints(p) for k, p in runs.items()}
    for name in sorted(set().union(*prints.values())):
        a = prints["a"].get(name)
        rows.append((name, a is not None and a == prints["b"].get(name), a is not None and a == prints["c"].get(name)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-steps", type=int, default=2000, help="stage-2 steps of each job (the demo's: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="the jobs' --seed")
    parser.add_argument("--kill-seed", type=int, default=0, help="draws the moment of the kill")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "reproducibility")
    parser.add_argument(
        "--run-a",
        type=Path,
        help="a finished `contrec-hf run --dataset ml-100k` folder (same --max-steps and --seed) to use as run a",
    )
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.max_steps < 8:
        parser.error("--max-steps must be at least 8 (stage 2 checkpoints every max_steps // 8 steps)")

    args.output.mkdir(parents=True, exist_ok=True)
    runs = {name: args.output / name for name in "abc"}
    log = args.output / "jobs.log"
    if args.run_a is not None:
        if not (args.run_a / "metrics.json").is_file():
            parser.error(f"--run-a {args.run_a} holds no finished main job (no metrics.json)")
        runs["a"] = args.run_a
    seconds = {"a": sum(json.loads((args.run_a / "stages.json").read_text()).values())} if args.run_a else {}
    seconds.update({name: run_job(runs[name], args.max_steps, args.seed, log) for name in "ab" if name not in seconds})
    print(f"runs a and b: {seconds['a']:.0f}s and {seconds['b']:.0f}s", flush=True)
    stage2 = json.loads((runs["a"] / "stages.json").read_text())["recommender"]
    delay = random.Random(args.kill_seed).uniform(0.1, 0.9) * stage2
    kill = kill_in_stage2(runs["c"], args.max_steps, args.seed, log, delay)
    print(f"run c killed {delay:.0f}s into stage 2 (last checkpoint: step {kill['last_checkpoint_step']})", flush=True)
    seconds["c"] = run_job(runs["c"], args.max_steps, args.seed, log, overwrite=False)
    resumed = "resumed from" in log.read_text().rsplit("[data]", 1)[-1]

    rows = compare(runs)
    test = json.loads((runs["a"] / "metrics.json").read_text())["test"]
    lines = [
        f"Three `contrec-hf run --dataset ml-100k --max-steps {args.max_steps} --seed {args.seed}` jobs: a and b "
        f"straight through; c killed with SIGKILL {delay:.0f}s into stage 2 (its last checkpoint at step "
        f"{kill['last_checkpoint_step']} of {args.max_steps}), then the same command again, which "
        f"{'resumed from that checkpoint' if resumed else 'did NOT resume'}.",
        "",
        "| what | a = b (bitwise) | a = killed + resumed c (bitwise) |",
        "|---|---|---|",
        *[f"| `{name}` | {'yes' if ab else '**no**'} | {'yes' if ac else '**no**'} |" for name, ab, ac in rows],
        "",
        f"Test NDCG@10 of run a: ContRec {test['contrec']['ndcg@10']:.4f}, full path "
        f"{test['contrec_full']['ndcg@10']:.4f}, SASRec {test['sasrec']['ndcg@10']:.4f}, Popularity "
        f"{test['pop']['ndcg@10']:.4f}. Wall time: a {seconds['a']:.0f}s, b {seconds['b']:.0f}s, c (resumed part) "
        f"{seconds['c']:.0f}s.",
    ]
    publish(lines, "reproducibility.py", SECTION, TITLE, args.write_docs)
    if not all(ab and ac for _, ab, ac in rows) or not resumed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
