"""Smoke tests: every example runs end to end on tiny settings (a table fixture, a tiny LM, a few steps)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contrec_hf.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def table_run(tmp_path_factory, fixtures_dir):
    """A finished tiny main-job run on the table fixture, and the data arguments that go with it."""
    run = tmp_path_factory.mktemp("example-run")
    data = ["--dataset", "table", "--data-path", str(fixtures_dir / "table" / "interactions.csv"),
            "--items-path", str(fixtures_dir / "table" / "items.csv")]  # fmt: skip
    assert main(["run", *data, "--output", str(run), "--max-steps", "2", "--no-progress"]) == 0
    return run, data


def run_example(argv, env=None, launcher=None):
    command = [*(launcher or [sys.executable]), *map(str, argv)]
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=600, check=False, env={**os.environ, **(env or {})}
    )
    assert proc.returncode == 0, proc.stderr[-6000:]
    return proc.stdout


def test_recommend_for_a_user(table_run):
    run, _ = table_run
    out = run_example(
        [EXAMPLES / "recommend_for_a_user.py", "--pipeline", run / "pipeline", "--history", "B00TBL0002", "--top-k", 2]
    )
    assert "history: Kite Flyer" in out and "one DDIM-20 sample:" in out


def test_swap_schedulers(table_run):
    run, data = table_run
    out = run_example([EXAMPLES / "swap_schedulers.py", "--pipeline", run / "pipeline", *data, "--users", 3])
    assert "| DDIMScheduler | 20 |" in out and "| UniPCMultistepScheduler | 10 |" in out


def test_cold_start_text_features(table_run, tmp_path):
    _, data = table_run
    out = run_example(
        [EXAMPLES / "cold_start_text_features.py", *data, "--output", tmp_path / "cold", "--max-epochs", 2]
    )
    assert "continuous tokens of size" in out and "closest catalog items:" in out


def test_train_distributed_with_torchrun(table_run, tmp_path):
    run, data = table_run
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    out = run_example(
        [EXAMPLES / "train_distributed.py", *data, "--tokenizer", run / "tokenizer", "--output", tmp_path / "ddp",
         "--max-steps", 2, "--batch-size", 4],
        env={"OMP_NUM_THREADS": "1"},
        launcher=[torchrun, "--nproc_per_node", "2"],
    )  # fmt: skip
    assert "2 process(es): best validation NDCG@10" in out


def test_lora_fine_tuning_on_a_tiny_lm(table_run, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from contrec_hf.data.prompts import train_text_tokenizer

    run, data = table_run
    tokenizer = train_text_tokenizer(["Kite Flyer Puzzle Box Ring Toss Story Cubes History Answer"] * 3, 300)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    tokenizer.save_pretrained(tmp_path / "lm")
    out = run_example(
        [EXAMPLES / "lora_smollm2.py", *data, "--tokenizer", run / "tokenizer", "--backbone", tmp_path / "lm",
         "--output", tmp_path / "lora", "--steps", 2, "--target-modules", "q_proj,v_proj"]
    )  # fmt: skip
    assert "max |Δ condition| = 0.00e+00" in out


def test_push_to_hub(table_run, fake_hub):
    run, _ = table_run
    out = run_example(
        [EXAMPLES / "push_to_hub.py", "--run", run, "--repo-prefix", f"{fake_hub.user}/example", "--history",
         "B00TBL0002"],
        env={"HF_TOKEN": fake_hub.token},
    )  # fmt: skip
    assert "pushed pipeline" in out and "recommended from the Hub copy:" in out
