"""The main job, run twice and once killed with SIGKILL in stage 2 and resumed: are the results the same bits?

Three runs of ``contrec-hf run --dataset ml-100k`` with one seed, on this machine, with torch's default thread
count: ``a`` and ``b`` straight through; ``c`` killed at a random moment of stage 2 (after a checkpoint drawn from
``--kill-seed`` and a further random 0–3 s), then started again with the same command, which resumes from its
last checkpoint. The script compares ``metrics.json`` (every figure of the main job's table, exactly) and the
SHA-256 of every weight file the runs saved (features, σ-VAE, recommender, pipeline, SASRec).

Reproduce (three main jobs, ~25 min each at the demo's 2,000 steps on 2 cores; `--run-a runs/demo` reuses a
`make demo` folder as run a, so only b and c run; `--parallel` runs them side by side, best with one thread each):
    .venv/bin/python benchmarks/reproducibility.py --run-a runs/demo --write-docs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/reproducibility.py --max-steps 200 --parallel --write-docs

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

from contrec_hf.main_job import MAIN_JOB_MAX_STEPS

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


def start_job(output: Path, max_steps: int, seed: int, log: Path) -> subprocess.Popen:
    """Start one fresh main job in the background (its output in ``log``)."""
    with log.open("a") as handle:
        return subprocess.Popen(job_command(output, max_steps, seed, overwrite=True), stdout=handle,
                                stderr=subprocess.STDOUT)  # fmt: skip


def wait_for_stage(output: Path, stage: str, job: subprocess.Popen | None) -> float:
    """Wait until the job in ``output`` has finished ``stage``; returns that stage's seconds."""
    stages = output / "stages.json"
    while not (stages.is_file() and stage in json.loads(stages.read_text() or "{}")):
        if job is not None and job.poll() is not None:
            raise SystemExit(f"the job in {output} ended (exit {job.returncode}) before its {stage} stage")
        time.sleep(1)
    return json.loads(stages.read_text())[stage]


def kill_in_stage2(output: Path, max_steps: int, seed: int, log: Path, kill_seed: int, steps: list[int]) -> dict:
    """Start a fresh job and SIGKILL it at a random point of its stage 2: after the checkpoint of a step drawn from
    ``kill_seed`` among ``steps`` (the checkpoints the same job wrote in run a, its last one excluded: early stopping
    may end stage 2 before max_steps) and a further random 0–3 s. Refuses to report a kill that did not land in
    stage 2. Returns the checkpoint step and the extra delay."""
    rng = random.Random(kill_seed)
    target, extra = rng.choice(steps[:-1] or steps), rng.uniform(0.0, 3.0)
    stages, state_file = output / "stages.json", output / "recommender-training" / "checkpoints" / "last"
    state_file = state_file / "trainer_state.json"
    shutil.rmtree(output, ignore_errors=True)  # no stale files for the waits below to read
    with log.open("a") as handle:
        child = subprocess.Popen(job_command(output, max_steps, seed, overwrite=True), stdout=handle,
                                 stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            while not (state_file.is_file() and json.loads(state_file.read_text())["trainer"]["step"] >= target):
                if child.poll() is not None:
                    raise SystemExit(f"run c ended (exit {child.returncode}) before its step-{target} checkpoint")
                time.sleep(0.05)
            time.sleep(extra)
            in_stage2 = child.poll() is None and "recommender" not in json.loads(stages.read_text())
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
    if not in_stage2:
        raise SystemExit("the kill came after stage 2 had finished; rerun with another --kill-seed")
    step = json.loads(state_file.read_text())["trainer"]["step"]
    return {"extra_s": extra, "last_checkpoint_step": step}


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
    parser.add_argument("--max-steps", type=int, default=MAIN_JOB_MAX_STEPS,
                        help=f"stage-2 steps of each job (the demo's: {MAIN_JOB_MAX_STEPS})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="the jobs' --seed")
    parser.add_argument("--kill-seed", type=int, default=0, help="draws the moment of the kill")
    parser.add_argument("--output", type=Path, default=ROOT / "runs" / "reproducibility")
    parser.add_argument(
        "--run-a",
        type=Path,
        help="reuse this `contrec-hf run --dataset ml-100k` folder (same --max-steps and --seed) as run a; it may "
        "still be running, past its stage 2",
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="run b and c alongside a (with OMP_NUM_THREADS=1 on a 2-core machine, so that no core is oversubscribed)",
    )
    parser.add_argument("--run-b", type=Path, help="reuse this finished folder as run b (same options)")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if args.max_steps < 8:
        parser.error("--max-steps must be at least 8 (stage 2 checkpoints every max_steps // 8 steps)")

    args.output.mkdir(parents=True, exist_ok=True)
    runs = {name: args.output / name for name in "abc"}
    logs = {name: args.output / f"{name}.log" for name in "abc"}
    started, jobs = time.perf_counter(), {}
    if args.run_a is not None:
        runs["a"] = args.run_a
    else:
        jobs["a"] = start_job(runs["a"], args.max_steps, args.seed, logs["a"])
        if not args.parallel:
            jobs["a"].wait()
    if args.run_b is not None:
        runs["b"] = args.run_b
    elif args.parallel:
        jobs["b"] = start_job(runs["b"], args.max_steps, args.seed, logs["b"])
    else:
        run_job(runs["b"], args.max_steps, args.seed, logs["b"])
    wait_for_stage(runs["a"], "recommender", jobs.get("a"))
    log_a = json.loads((runs["a"] / "recommender-training" / "training_log.json").read_text())
    kill = kill_in_stage2(runs["c"], args.max_steps, args.seed, logs["c"], args.kill_seed, [r["step"] for r in log_a])
    print(f"run c killed {kill['extra_s']:.1f}s after its step-{kill['last_checkpoint_step']} checkpoint", flush=True)
    run_job(runs["c"], args.max_steps, args.seed, logs["c"], overwrite=False)
    resumed = "resumed from" in logs["c"].read_text().rsplit("[data]", 1)[-1]
    for name in "ab":
        if name in jobs and jobs[name].wait() != 0:
            raise SystemExit(f"run {name} failed; see {logs[name]}")
    while not all((runs[n] / "metrics.json").is_file() for n in "ab"):  # reused runs may still be finishing
        time.sleep(1)
    minutes = (time.perf_counter() - started) / 60

    rows = compare(runs)
    test = json.loads((runs["a"] / "metrics.json").read_text())["test"]
    lines = [
        f"Three `contrec-hf run --dataset ml-100k --max-steps {args.max_steps} --seed {args.seed}` jobs: a and b "
        f"straight through; c killed with SIGKILL in stage 2, {kill['extra_s']:.1f}s after its step-"
        f"{kill['last_checkpoint_step']} checkpoint (of {args.max_steps} steps), then the same command again, which "
        f"{'resumed from that checkpoint' if resumed else 'did NOT resume'}.",
        "",
        "| what | a = b (bitwise) | a = killed + resumed c (bitwise) |",
        "|---|---|---|",
        *[f"| `{name}` | {'yes' if ab else '**no**'} | {'yes' if ac else '**no**'} |" for name, ab, ac in rows],
        "",
        f"Test NDCG@10 of run a: ContRec {test['contrec']['ndcg@10']:.4f}, full path "
        f"{test['contrec_full']['ndcg@10']:.4f}, SASRec {test['sasrec']['ndcg@10']:.4f}, Popularity "
        f"{test['pop']['ndcg@10']:.4f}. {'Runs side by side, ' if args.parallel else ''}{minutes:.0f} min in all.",
    ]
    publish(lines, "reproducibility.py", SECTION, TITLE, args.write_docs)
    if not all(ab and ac for _, ab, ac in rows) or not resumed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
