"""The bad-input catalog: every case raises a documented `contrec_hf.errors` type whose message names the problem,
before any expensive work; through the CLI, it prints one line (no traceback) and exits 2.

docs/errors.md lists the same cases. Expensive work is guarded: the pipeline's LM forward raises if reached.
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import DDIMScheduler, EulerAncestralDiscreteScheduler

from contrec_hf import ContRecConfig
from contrec_hf.baselines.sasrec import SASRec, SASRecConfig
from contrec_hf.cli import main
from contrec_hf.data import load_sequential_dataset
from contrec_hf.errors import (
    CheckpointError,
    ConfigError,
    ContRecError,
    DataError,
    DatasetNotFoundError,
    EvaluationError,
    InputError,
)
from contrec_hf.evaluation import evaluate_scorer
from contrec_hf.features.store import ItemFeatures
from contrec_hf.models import ContRecForRecommendation, ContRecTokenizer, ContRecTokenizerConfig
from contrec_hf.pipelines import ContRecCatalog, ContRecDiffusionPipeline
from contrec_hf.retrieval import latent_scores, top_k

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A saved tiny pipeline, tokenizer and recommender, and the in-memory pipeline with its LM guarded."""
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    root = tmp_path_factory.mktemp("saved")
    pipe = tiny_pipeline(make_cyclic_dataset(), num_train_timesteps=50)
    pipe.save_pretrained(root / "pipeline")
    pipe.recommender.item_tokenizer.save_pretrained(root / "tokenizer")

    def expensive(*args, **kwargs):
        raise AssertionError("expensive work started before the input was checked")

    pipe.encode_histories = pipe.generate_and_encode = expensive
    return {"root": root, "pipe": pipe}


def corrupt_copy(saved, tmp_path, what: str, file: str, how: str) -> Path:
    """A copy of a saved folder (`what`) with `file` removed, truncated, garbled or given a foreign model_type."""
    import shutil

    folder = tmp_path / what
    shutil.copytree(saved["root"] / what, folder)
    target = folder / file
    if how == "missing":
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    elif how == "truncated":
        target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
    elif how == "garbled":
        data = bytearray(target.read_bytes())
        data[0:16] = b"\xff" * 16
        target.write_bytes(bytes(data))
    elif how == "foreign":
        config = json.loads(target.read_text())
        config["model_type"] = "bert"
        target.write_text(json.dumps(config))
    return folder


def call(saved, histories=(("i1", "i2"),), **kwargs):
    defaults = {"num_inference_steps": 3, "top_k": 3, "generator": torch.Generator().manual_seed(0)}
    return saved["pipe"]([list(h) for h in histories], **{**defaults, **kwargs})


def tokenizer():
    return ContRecTokenizer(ContRecTokenizerConfig(input_dim=24, token_dim=16, encoder_hidden_sizes=[19]))


def swapped(saved, scheduler):
    pipe = saved["pipe"]
    original, pipe.scheduler = pipe.scheduler, scheduler.from_config(pipe.scheduler.config)
    try:
        call(saved)
    finally:
        pipe.scheduler = original


def wrong_prediction_type(saved):
    pipe = saved["pipe"]
    original = pipe.scheduler
    pipe.scheduler = DDIMScheduler.from_config(original.config, prediction_type="epsilon")
    try:
        call(saved)
    finally:
        pipe.scheduler = original


# (id, callable(saved, tmp_path), expected type, regex the message must match)
API_CASES = [
    # item ids and histories
    ("unknown-item-id", lambda s, t: call(s, [["i1", "zz"]]), DataError, r"unknown item id.*'zz'"),
    ("negative-item-id", lambda s, t: call(s, [[-1]]), DataError, r"unknown item id.*\[-1\]"),
    ("out-of-range-item-id", lambda s, t: call(s, [[99999]]), DataError, r"unknown item id.*\[99999\]"),
    ("non-integer-item-id", lambda s, t: call(s, [[1.5]]), DataError, r"unknown item id.*\[1.5\]"),
    ("none-item-id", lambda s, t: call(s, [[None]]), DataError, r"unknown item id.*\[None\]"),
    ("empty-history", lambda s, t: call(s, [["i1"], []]), DataError, r"histor.*\[1\] are empty"),
    ("no-histories", lambda s, t: call(s, []), DataError, r"no histories"),
    ("history-is-a-string", lambda s, t: s["pipe"]("i1,i2", top_k=3), DataError, r"list of item-id lists"),
    ("duplicated-catalog-ids", lambda s, t: ContRecCatalog(["a", "a"], ["x", "y"], ["c", "c"]), DataError,
     r"unique"),
    ("duplicated-feature-ids", lambda s, t: ItemFeatures(torch.zeros(2, 3), ["a", "a"], "text"), DataError,
     r"not unique"),
    # call arguments
    ("top-k-zero", lambda s, t: call(s, top_k=0), InputError, r"top_k .* got 0"),
    ("top-k-negative", lambda s, t: call(s, top_k=-2), InputError, r"top_k .* got -2"),
    ("top-k-above-catalog", lambda s, t: call(s, top_k=14), InputError, r"catalog size 13, got 14"),
    ("top-k-not-an-integer", lambda s, t: call(s, top_k=2.5), InputError, r"top_k must be an integer"),
    ("zero-steps", lambda s, t: call(s, num_inference_steps=0), InputError, r"num_inference_steps .* got 0"),
    ("negative-steps", lambda s, t: call(s, num_inference_steps=-5), InputError, r"num_inference_steps .* -5"),
    ("negative-guidance", lambda s, t: call(s, guidance_scale=-1.0), InputError, r"guidance_scale .* -1.0"),
    ("nan-guidance", lambda s, t: call(s, guidance_scale=math.nan), InputError, r"guidance_scale .* nan"),
    ("unknown-readout", lambda s, t: call(s, readout="median"), InputError, r"readout must be one of"),
    ("unknown-output-type", lambda s, t: call(s, output_type="pil"), InputError, r"output_type"),
    ("unsupported-scheduler", lambda s, t: swapped(s, EulerAncestralDiscreteScheduler), ConfigError,
     r"EulerAncestralDiscreteScheduler does not support prediction_type='sample'.* use one of"),
    ("scheduler-prediction-mismatch", lambda s, t: wrong_prediction_type(s), ConfigError,
     r"set to prediction_type='epsilon'.*trained to predict 'sample'"),
    # features
    ("nan-features", lambda s, t: tokenizer().encode(torch.full((2, 24), math.nan)), InputError, r"NaN or inf"),
    ("inf-features", lambda s, t: tokenizer().encode(torch.full((2, 24), math.inf)), InputError, r"NaN or inf"),
    ("wrong-dimension-features", lambda s, t: tokenizer().encode(torch.zeros(2, 23)), InputError,
     r"dimension 23.*input_dim=24"),
    ("one-dimensional-features", lambda s, t: tokenizer().encode(torch.zeros(24)), InputError, r"\[batch, 24\]"),
    ("nan-item-features", lambda s, t: ItemFeatures(torch.full((1, 3), math.nan), ["a"], "text"), DataError,
     r"non-finite"),
    ("latent-dimension-mismatch", lambda s, t: latent_scores(torch.zeros(2, 5), torch.zeros(9, 6)), InputError,
     r"5.*6|6.*5"),
    ("retrieval-top-k-zero", lambda s, t: top_k(torch.zeros(2, 9), 0), InputError, r"top_k .* got 0"),
    ("non-finite-scores", lambda s, t: evaluate_scorer(lambda h: torch.full((len(h), 13), math.nan), [[1], [2]],
                                                       [3, 4], 13, progress=False), EvaluationError, r"non-finite"),
    # configurations
    ("config-wrong-type", lambda s, t: ContRecConfig(max_history="20"), ConfigError, r"max_history.*expected int"),
    ("config-unknown-option", lambda s, t: ContRecConfig(max_histroy=20), ConfigError,
     r"unknown option\(s\) \['max_histroy'\]"),
    ("config-foreign-model-type", lambda s, t: ContRecConfig(model_type="bert"), ConfigError,
     r"expects model_type 'contrec', got 'bert'"),
    ("config-out-of-range", lambda s, t: ContRecConfig(condition_dropout=1.5), ConfigError, r"condition_dropout"),
    ("config-guidance-untrained-null", lambda s, t: ContRecConfig(condition_dropout=0.0, guidance_scale=3.0),
     ConfigError, r"guidance_scale=3 .*never trained with condition_dropout=0"),
    ("config-learned-temperature-below-bound",
     lambda s, t: ContRecConfig(ranking_temperature=0.005, ranking_temperature_learnable=True), ConfigError,
     r"ranking_temperature_learnable keeps τ ≥ 0.01"),
    ("config-encoder-backbone", lambda s, t: ContRecConfig(text_config={"model_type": "bert"}), ConfigError,
     r"decoder-only causal LM.*'bert'"),
    ("tokenizer-config-wrong-type", lambda s, t: ContRecTokenizerConfig(num_tokens=2.5), ConfigError,
     r"num_tokens"),
    ("sasrec-config-wrong-type", lambda s, t: SASRecConfig(num_items="9"), ConfigError, r"num_items must be a num"),
    # saved folders
    ("missing-folder", lambda s, t: ContRecTokenizer.from_pretrained(t / "nowhere"), CheckpointError,
     r"nowhere: the folder does not exist"),
    ("missing-safetensors", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "model.safetensors", "missing")), CheckpointError, r"model.safetensors"),
    ("truncated-safetensors", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "model.safetensors", "truncated")), CheckpointError, r"corrupt or truncated"),
    ("garbled-safetensors", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "model.safetensors", "garbled")), CheckpointError, r"corrupt or truncated"),
    ("missing-config-json", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "config.json", "missing")), CheckpointError, r"config.json is missing"),
    ("truncated-config-json", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "config.json", "truncated")), CheckpointError, r"config.json"),
    ("foreign-config-json", lambda s, t: ContRecTokenizer.from_pretrained(
        corrupt_copy(s, t, "tokenizer", "config.json", "foreign")), ConfigError, r"got 'bert'"),
    ("recommender-truncated-weights", lambda s, t: ContRecForRecommendation.from_pretrained(
        corrupt_copy(s, t, "pipeline", "recommender/model.safetensors", "truncated") / "recommender"),
     CheckpointError, r"corrupt or truncated"),
    ("pipeline-missing-component", lambda s, t: ContRecDiffusionPipeline.from_pretrained(
        corrupt_copy(s, t, "pipeline", "catalog", "missing")), CheckpointError,
     r"component folder\(s\) \['catalog'\]"),
    ("pipeline-missing-model-index", lambda s, t: ContRecDiffusionPipeline.from_pretrained(
        corrupt_copy(s, t, "pipeline", "model_index.json", "missing")), CheckpointError, r"no model_index.json"),
    ("pipeline-truncated-catalog", lambda s, t: ContRecDiffusionPipeline.from_pretrained(
        corrupt_copy(s, t, "pipeline", "catalog/diffusion_pytorch_model.safetensors", "truncated")),
     CheckpointError, r"corrupt or truncated"),
    ("sasrec-missing-weights", lambda s, t: SASRec.from_pretrained(t), CheckpointError, r"config.json is missing"),
    # dataset files
    ("table-missing-columns", lambda s, t: load_sequential_dataset(
        "table", _table_without(t, "timestamp")), DataError, r"timestamp"),
    ("unknown-dataset", lambda s, t: load_sequential_dataset("ml-99m"), DatasetNotFoundError, r"ml-99m"),
]  # fmt: skip


def _table_without(tmp_path: Path, column: str) -> Path:
    import pandas as pd

    frame = pd.read_csv(FIXTURES / "table" / "interactions.csv").drop(columns=[column])
    frame.to_csv(tmp_path / "interactions.csv", index=False)
    return tmp_path / "interactions.csv"


@pytest.mark.parametrize(("case", "action", "error", "pattern"), API_CASES, ids=[c[0] for c in API_CASES])
def test_api_case(saved, tmp_path, case, action, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        action(saved, tmp_path)
    assert isinstance(info.value, ContRecError), f"{case}: {type(info.value).__name__} is not a ContRecError"


def test_over_long_histories_keep_the_most_recent_items(saved):
    """Not an error, by design: a prompt holds the last `max_history` items (5 here), like SASRec's window."""
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    pipe = tiny_pipeline(make_cyclic_dataset(), num_train_timesteps=50)
    long = [f"i{i % 13}" for i in range(40)]
    a = pipe([long], top_k=3, exclude_history=False, readout="x0")
    b = pipe([long[-5:]], top_k=3, exclude_history=False, readout="x0")
    assert torch.equal(a.latents, b.latents)


# (id, argv after `contrec-hf`, regex of the one-line message); PIPE is replaced by the saved pipeline folder.
CLI_CASES = [
    ("recommend-unknown-item", ["recommend", "--pipeline", "PIPE", "--history", "i1,zz"], r"DataError: unknown item"),
    ("recommend-top-k-zero", ["recommend", "--pipeline", "PIPE", "--history", "i1", "--top-k", "0"],
     r"InputError: --top-k must be an integer ≥ 1"),
    ("recommend-top-k-above-catalog", ["recommend", "--pipeline", "PIPE", "--history", "i1", "--top-k", "99"],
     r"catalog size 13, got 99"),
    ("recommend-zero-steps", ["recommend", "--pipeline", "PIPE", "--history", "i1", "--steps", "0"],
     r"--steps must be an integer ≥ 1"),
    ("recommend-negative-guidance", ["recommend", "--pipeline", "PIPE", "--history", "i1", "--guidance-scale", "-2"],
     r"--guidance-scale must be ≥ 0"),
    ("recommend-empty-history", ["recommend", "--pipeline", "PIPE", "--history", " , "], r"give --history"),
    ("recommend-missing-pipeline", ["recommend", "--pipeline", "./nowhere", "--history", "i1"],
     r"CheckpointError: no saved model at ./nowhere"),
    ("recommend-broken-pipeline", ["recommend", "--pipeline", "BROKEN", "--history", "i1"],
     r"CheckpointError: .*component folder"),
    ("data-unknown-dataset", ["data", "stats", "--dataset", "ml-99m"], r"DatasetNotFoundError: .*ml-99m"),
    ("data-missing-columns", ["data", "stats", "--dataset", "table", "--data-path", "NOTIMESTAMP"], r"timestamp"),
    ("run-lora-on-tiny", ["run", "--output", "OUT", "--lora"], r"ConfigError: LoRA adapts a pretrained backbone"),
    ("run-negative-steps", ["run", "--output", "OUT", "--max-steps", "-3"], r"ConfigError: max_steps must be > 0"),
    ("run-missing-backbone", ["run", "--output", "OUT", "--backbone", "./no-such-lm"], r"no saved model at"),
    ("train-bad-dispersive-weight", ["train", "--tokenizer", "TOK", "--output", "OUT", "--dispersive-weight", "-1"],
     r"ConfigError: dispersive_loss_weight must be ≥ 0"),
    ("train-missing-tokenizer", ["train", "--tokenizer", "./nowhere", "--output", "OUT"],
     r"holds no trained tokenizer"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "argv", "pattern"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_case(saved, tmp_path, capsys, monkeypatch, case, argv, pattern):
    import re

    monkeypatch.chdir(tmp_path)
    broken = corrupt_copy(saved, tmp_path, "pipeline", "catalog", "missing") if "BROKEN" in argv else None
    no_timestamp = _table_without(tmp_path, "timestamp") if "NOTIMESTAMP" in argv else None
    swap = {"PIPE": str(saved["root"] / "pipeline"), "BROKEN": str(broken), "TOK": str(saved["root"] / "tokenizer"),
            "OUT": str(tmp_path / "out"), "NOTIMESTAMP": str(no_timestamp)}  # fmt: skip
    assert main([swap.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err.strip()  # loading progress bars may come first; the error is one last line
    assert "Traceback" not in err and err.count("contrec-hf: error: ") == 1, err
    last = err.splitlines()[-1]
    assert last.startswith("contrec-hf: error: ") and re.search(pattern, last), err
    assert not (tmp_path / "out").exists(), "the command started work before refusing its input"


def test_console_script_exits_2_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-m", "contrec_hf.cli", "data", "stats", "--dataset", "ml-99m"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr and "ml-99m" in done.stderr


def test_the_catalog_is_big_enough():
    assert len(API_CASES) + len(CLI_CASES) >= 30
