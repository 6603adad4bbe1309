"""A stage-2 run killed with SIGKILL after a checkpoint resumes to the same result as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

TESTS = Path(__file__).parents[1]

# Trains the tiny recommender for 9 steps (checkpoint and validation every 3) in `out`. With `hang_at`, the process
# announces itself after the checkpoint of that step (`marker`) and hangs until the parent kills it.
CHILD = """
import sys, time
sys.path.insert(0, {tests!r})
from conftest import make_cyclic_dataset
from tiny import tiny_trainer
from contrec_hf.training import RecommenderTrainer

out, marker, hang_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
save = RecommenderTrainer.save_checkpoint

def save_then_maybe_hang(self):
    save(self)
    if self.state["step"] == hang_at:
        open(marker, "w").close()
        time.sleep(300)

RecommenderTrainer.save_checkpoint = save_then_maybe_hang
tiny_trainer(make_cyclic_dataset(), out, max_steps=9).train(progress=False)
"""


def run_child(out: Path, marker: Path, hang_at: int) -> subprocess.Popen:
    script = CHILD.format(tests=str(TESTS))
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-c", script, str(out), str(marker), str(hang_at)], env=env)


def finish(child: subprocess.Popen) -> None:
    assert child.wait(timeout=300) == 0


def test_sigkill_after_a_checkpoint_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    finish(run_child(straight, tmp_path / "unused", hang_at=-1))

    marker = tmp_path / "checkpoint-6-written"
    child = run_child(killed, marker, hang_at=6)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            assert child.poll() is None, "the run ended before its step-6 checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
    state = json.loads((killed / "checkpoints" / "last" / "trainer_state.json").read_text())
    assert state["trainer"]["step"] == 6
    assert [r["step"] for r in json.loads((killed / "training_log.json").read_text())] == [3, 6]

    finish(run_child(killed, tmp_path / "unused", hang_at=-1))  # the same command again: it resumes at step 6

    a = load_file(straight / "checkpoints" / "last" / "model.safetensors")
    b = load_file(killed / "checkpoints" / "last" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert (a[key] - b[key]).abs().max() <= 1e-6, key
    log_a = json.loads((straight / "training_log.json").read_text())
    log_b = json.loads((killed / "training_log.json").read_text())
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b] == [3, 6, 9]
    for ra, rb in zip(log_a, log_b):
        assert rb["val_ndcg@10"] == pytest.approx(ra["val_ndcg@10"], abs=1e-9)
        assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    best_a = load_file(straight / "best" / "model.safetensors")
    best_b = load_file(killed / "best" / "model.safetensors")
    assert all((best_a[k] - best_b[k]).abs().max() <= 1e-6 for k in best_a)
