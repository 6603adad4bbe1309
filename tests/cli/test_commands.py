import json
import os
import subprocess
import sys

import pytest
import torch

from contrec_hf.cli import main

METRIC_KEYS = {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}


def test_data_stats_json(capsys):
    assert main(["data", "stats", "--dataset", "ml-100k", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["users"], stats["items"], stats["interactions"]) == (943, 1682, 100000)


def test_data_stats_table(capsys):
    assert main(["data", "stats"]) == 0
    out = capsys.readouterr().out
    assert "users              943" in out and "interactions       100,000" in out


def test_baseline_pop_writes_metrics_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "pop"
    assert main(["baseline", "--model", "pop", "--output", str(out), "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["validation"]) == METRIC_KEYS and set(metrics["test"]) == METRIC_KEYS
    assert "| pop |" in capsys.readouterr().out
    assert main(["baseline", "--model", "pop", "--output", str(out), "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["baseline", "--model", "pop", "--output", str(out), "--no-progress", "--overwrite"]) == 0


def test_baseline_sasrec_on_a_table(tmp_path, fixtures_dir, capsys):
    table = fixtures_dir / "table" / "interactions.csv"
    args = ["baseline", "--model", "pop", "sasrec", "--dataset", "table", "--data-path", str(table)]
    args += ["--output", str(tmp_path), "--max-epochs", "2", "--hidden-size", "16", "--no-progress"]
    assert main(args) == 0
    for model in ("pop", "sasrec"):
        assert set(json.loads((tmp_path / model / "metrics.json").read_text())["test"]) == METRIC_KEYS
    out = capsys.readouterr().out
    assert "| pop |" in out and "| sasrec |" in out


TIGER_TINY = ["--tiger-num-levels", "2", "--tiger-codebook-size", "2", "--tiger-latent-dim", "8",
              "--tiger-d-model", "16", "--tiger-d-kv", "4", "--tiger-d-ff", "24", "--tiger-num-layers", "1",
              "--tiger-rq-hidden-sizes", "19", "--tiger-max-epochs", "1", "--tiger-rq-max-epochs", "2"]  # fmt: skip


def test_baseline_tiger_on_a_table(tmp_path, fixtures_dir, capsys):
    """`--model tiger` trains the RQ-VAE on MiniLM title features and the T5, and saves both; its flags are its own
    (`--tiger-FIELD`), so they never change SASRec's."""
    table = fixtures_dir / "table" / "interactions.csv"
    args = ["baseline", "--model", "tiger", "--dataset", "table", "--data-path", str(table), "--output", str(tmp_path)]
    assert main([*args, *TIGER_TINY, "--no-progress"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["test"]) == METRIC_KEYS and metrics["config"]["architecture"]["codebook_size"] == 2
    assert (tmp_path / "model" / "generator" / "model.safetensors").is_file()
    assert (tmp_path / "model" / "item_tokenizer" / "model.safetensors").is_file()
    assert "| tiger |" in capsys.readouterr().out
    assert (tmp_path / "training" / "checkpoint" / "trainer_state.json").is_file()
    (tmp_path / "metrics.json").unlink()  # an unfinished run: a rerun without --overwrite resumes it
    assert main([*args, *TIGER_TINY, "--no-progress"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["test"] == metrics["test"]
    (tmp_path / "metrics.json").unlink()
    assert main([*args, *TIGER_TINY, "--tiger-learning-rate", "0.01", "--no-progress"]) == 2
    assert "started with other options" in capsys.readouterr().err
    assert main([*args, *TIGER_TINY, "--tiger-learning-rate", "0.01", "--overwrite", "--no-progress"]) == 0
    for flags, message in [(["--tiger-codebook-size", "64"], "exceeds the catalog's 6 items"),
                           (["--tiger-beam-size", "5"], "beam_size 5 is below 20")]:  # fmt: skip
        assert main([*args, *TIGER_TINY, *flags, "--overwrite", "--no-progress"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["data", "stats", "--dataset", "ml-42m"], "unknown dataset 'ml-42m'"),
        (["data", "stats", "--dataset", "ml-1m"], "pass the path"),
        (["data", "stats", "--dataset", "table", "--data-path", "/nonexistent.csv"], "nonexistent"),
    ],
)
def test_errors_exit_2_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["run", "train"])
def test_objective_flags_become_config_overrides(command, tmp_path, capsys):
    from contrec_hf.cli import build_parser
    from contrec_hf.cli.commands import config_overrides

    argv = [command, "--output", str(tmp_path / "out"), "--ranking-weight", "0.5", "--item-table", "tokens"]
    argv += ["--tokenizer", str(tmp_path / "tok")] if command == "train" else []
    assert config_overrides(build_parser().parse_args(argv)) == {"ranking_loss_weight": 0.5, "item_table": "tokens"}
    # A contradiction is refused before any data is loaded or anything trained.
    bad = [command, "--output", str(tmp_path / "run"), "--ranking-weight", "0", "--item-table", "tokens"]
    bad += ["--tokenizer", str(tmp_path / "tok")] if command == "train" else []
    assert main(bad) == 2
    assert "item_table='tokens' is learned through the ranking loss" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_console_entry_point_runs_as_a_process():
    proc = subprocess.run(
        [sys.executable, "-m", "contrec_hf.cli", "data", "stats", "--dataset", "nope"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "unknown dataset 'nope'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("kind", ["collaborative", "text", "hybrid"])
def test_tokenizer_train_on_a_table(kind, tmp_path, fixtures_dir, capsys):
    from contrec_hf.models import ContRecTokenizer

    table = fixtures_dir / "table" / "interactions.csv"
    out = tmp_path / "tok"
    argv = ["tokenizer", "train", "--dataset", "table", "--data-path", str(table), "--features", kind]
    argv += ["--output", str(out), "--max-epochs", "3", "--cf-dim", "8", "--token-dim", "8", "--no-progress"]
    assert main(argv) == 0
    diagnostics = json.loads((out / "diagnostics.json").read_text())
    assert {"heldout_mse", "effective_rank", "dead_fraction"} <= set(diagnostics)
    assert diagnostics["feature_kind"] == kind
    assert "heldout_mse" in capsys.readouterr().out
    tokenizer = ContRecTokenizer.from_pretrained(out)
    assert tokenizer.config.token_dim == 8
    assert (out / "features" / "features.safetensors").is_file()
    assert main(argv) == 2  # never replaces a trained tokenizer without --overwrite
    assert "--overwrite" in capsys.readouterr().err


def test_cli_end_to_end_tokenizer_train_pipeline_recommend(tmp_path, fixtures_dir, capsys):
    table = str(fixtures_dir / "table" / "interactions.csv")
    data = ["--dataset", "table", "--data-path", table]
    tok, run, pipe = tmp_path / "tok", tmp_path / "run", tmp_path / "pipe"
    assert main(["tokenizer", "train", *data, "--output", str(tok), "--max-epochs", "2", "--cf-dim", "8",
                 "--token-dim", "8", "--no-progress"]) == 0  # fmt: skip
    train = ["train", *data, "--tokenizer", str(tok), "--output", str(run), "--max-steps", "2", "--eval-steps", "2"]
    assert main([*train, "--save-steps", "2", "--batch-size", "4", "--dispersive-weight", "0", "--no-progress"]) == 0
    assert json.loads((run / "best" / "config.json").read_text())["dispersive_loss_weight"] == 0.0
    build = ["pipeline", "build", *data, "--recommender", str(run / "best"), "--tokenizer", str(tok)]
    assert main([*build, "--output", str(pipe)]) == 0
    assert main([*build, "--output", str(pipe)]) == 2  # never replaced without --overwrite
    capsys.readouterr()
    assert main(["recommend", "--pipeline", str(pipe), "--history", "B00TBL0002", "--top-k", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 2 and "B00TBL0002" not in {r["item_id"] for r in rows}


def test_main_job_runs_resumes_and_never_redoes_finished_stages(tmp_path, fixtures_dir, capsys):
    table = str(fixtures_dir / "table" / "interactions.csv")
    argv = ["run", "--dataset", "table", "--data-path", table, "--output", str(tmp_path), "--max-steps", "2"]
    argv += ["--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    # --device and --mixed-precision reach every training stage: the tokenizer and SASRec record theirs.
    sasrec = json.loads((tmp_path / "baselines" / "sasrec" / "metrics.json").read_text())["config"]["training"]
    tokenizer = json.loads((tmp_path / "tokenizer" / "diagnostics.json").read_text())["training_arguments"]
    for recorded in (sasrec, tokenizer):
        assert (recorded["device"], recorded["mixed_precision"]) == ("cpu", "no")
    assert set(metrics["test"]) == {"contrec", "contrec_full", "contrec_fused", "sasrec", "pop"}
    assert set(metrics["test"]["contrec"]) == METRIC_KEYS
    assert set(metrics["test"]["contrec_fused"]) == {*METRIC_KEYS, "text_weight"} and metrics["recipe"] == "contrec-hf"
    # λ_text is the one chosen on validation, the same in both splits
    assert metrics["test"]["contrec_fused"]["text_weight"] == metrics["validation"]["contrec_fused"]["text_weight"]
    for folder in ("tokenizer", "recommender", "pipeline"):
        assert (tmp_path / folder / ("model_index.json" if folder == "pipeline" else "config.json")).is_file()
    trained = json.loads((tmp_path / "recommender" / "config.json").read_text())
    assert (trained["dispersive_loss_weight"], trained["condition_dropout"]) == (1.0, 0.0)  # the recipe's overrides
    assert (tmp_path / "report.md").is_file() and (tmp_path / "schedulers.png").is_file()
    table = metrics["item_table"]  # the table the pipeline scores with, and whether it collapsed
    assert table["kind"] == "latent" and 1.0 <= table["effective_rank"] <= table["dim"] == 64  # the default d_z
    line = f"Item table `latent`: effective rank {table['effective_rank']:.1f} of 64"
    assert line in (tmp_path / "report.md").read_text()
    out = capsys.readouterr().out
    assert "| contrec |" in out and "stage times:" in out
    stages = json.loads((tmp_path / "stages.json").read_text())
    assert list(stages) == ["data", "tokenizer", "recommender", "pipeline", "evaluation", "baselines"]
    # A rerun skips every finished stage; an unfinished one (marker removed, as after a kill) runs again.
    before = (tmp_path / "tokenizer" / "model.safetensors").stat().st_mtime_ns
    stages.pop("evaluation")
    (tmp_path / "stages.json").write_text(json.dumps(stages))
    assert main(argv) == 0
    assert (tmp_path / "tokenizer" / "model.safetensors").stat().st_mtime_ns == before
    assert "[evaluation] done" in capsys.readouterr().out


def test_main_job_with_a_pretrained_backbone_and_lora(tmp_path, fixtures_dir):
    from transformers import LlamaConfig, LlamaForCausalLM

    from contrec_hf.data.prompts import train_text_tokenizer

    text_tokenizer = train_text_tokenizer(["Kite Flyer Puzzle Box Ring Toss Story Cubes History Answer"] * 3, 300)
    config = LlamaConfig(vocab_size=len(text_tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    text_tokenizer.save_pretrained(tmp_path / "lm")
    table = str(fixtures_dir / "table" / "interactions.csv")
    argv = ["run", "--dataset", "table", "--data-path", table, "--output", str(tmp_path / "run"), "--max-steps", "2"]
    argv += ["--backbone", str(tmp_path / "lm"), "--lora", "--item-table", "residual", "--no-progress"]
    assert main(argv) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(metrics["test"]["contrec"]) == METRIC_KEYS
    assert metrics["item_table"]["kind"] == "residual"  # a per-item table through a pretrained backbone too


def test_main_job_paper_recipe_runs_and_a_run_keeps_its_recipe(tmp_path, fixtures_dir, capsys):
    table = str(fixtures_dir / "table" / "interactions.csv")
    argv = ["run", "--dataset", "table", "--data-path", table, "--output", str(tmp_path), "--max-steps", "2",
            "--no-progress"]  # fmt: skip
    assert main([*argv, "--recipe", "paper"]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["recipe"] == "paper" and set(metrics["test"]["contrec"]) == METRIC_KEYS
    config = json.loads((tmp_path / "recommender" / "config.json").read_text())
    assert config["history_diffusion_weight"] == 0.0 and config["ranking_loss_weight"] == 0.0
    assert config["dispersive_loss_weight"] == 0.5
    assert config["diffusion_batch_multiplier"] == 4  # what the recipe's published runs drew; the library draws 1
    assert config["fast_path_probability"] == 0.5  # what the recipe's published runs dropped; the library drops 0.8
    assert "one DDPM-200 sample at guidance 3" in (tmp_path / "report.md").read_text()
    capsys.readouterr()
    assert main(argv) == 2  # the default recipe on a folder trained with the paper's: refused, nothing touched
    assert "was started with another recipe" in capsys.readouterr().err
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    job = json.loads((tmp_path / "job.json").read_text())
    assert (job["dataset"], job["max_steps"], job["seed"], job["backbone"]) == ("table", 2, 0, "tiny")
    assert job["learning_rate"] == 1e-3  # RecommenderTrainingArguments' default, recorded as the value it is
    assert "ema_decay" not in job  # no weight averaging: not recorded, as by the runs from before the option
    # Every stage is finished, so another seed or schedule would only relabel this run's results: refused too.
    refused = (("--seed", "1", "seed: 0 recorded, 1 now"), ("--max-steps", "3", "max_steps: 2"),
               ("--learning-rate", "0.002", "learning_rate: 0.001 recorded, 0.002 now"),
               ("--ema-decay", "0.9", "ema_decay: None recorded, 0.9 now"))  # fmt: skip
    for flag, value, named in refused:
        assert main([*argv, "--recipe", "paper", flag, value]) == 2
        err = capsys.readouterr().err
        assert "was started with other job options" in err and named in err and "Traceback" not in err
    assert json.loads((tmp_path / "job.json").read_text()) == job
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # An override that spells out a default is the same run: resumed (every stage finished, nothing retrained);
    # one that changes a value is refused by recipe.json, naming the field.
    recipe = json.loads((tmp_path / "recipe.json").read_text())
    assert main([*argv, "--recipe", "paper", "--ranking-mask-history", "--dispersive-loss-weight", "0.5"]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    assert json.loads((tmp_path / "recipe.json").read_text()) == recipe  # the record keeps what it was written with
    capsys.readouterr()
    assert main([*argv, "--recipe", "paper", "--no-ranking-mask-history"]) == 2
    err = capsys.readouterr().err
    assert "another recipe or other overrides" in err and "config_overrides" in err and "Traceback" not in err
    # A folder from before the recipe pinned a value it trained with (fast_path_probability 0.5, then the default)
    # and wrote another description: the same run, resumed, its record kept as written.
    old = {**recipe, "description": "an older wording", "config_overrides": dict(recipe["config_overrides"])}
    del old["config_overrides"]["fast_path_probability"]
    (tmp_path / "recipe.json").write_text(json.dumps(old))
    assert main([*argv, "--recipe", "paper"]) == 0
    assert json.loads((tmp_path / "recipe.json").read_text()) == old
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics
    # An override the folder's record lists and this call leaves out is refused as an override, not as a default.
    options = json.loads((tmp_path / "config_options.json").read_text())
    listed = {**recipe, "config_overrides": {**recipe["config_overrides"], "dispersive_temperature": 2.0}}
    (tmp_path / "recipe.json").write_text(json.dumps(listed))
    (tmp_path / "config_options.json").write_text(json.dumps({**options, "dispersive_temperature": 2.0}))
    capsys.readouterr()
    assert main([*argv, "--recipe", "paper"]) == 2
    err = capsys.readouterr().err
    assert "another recipe or other overrides" in err and "dispersive_temperature" in err
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    (tmp_path / "config_options.json").write_text(json.dumps(options))
    # A folder trained before a default changed (as if with ranking_mask_history=False by default) is not resumed
    # as today's: refused, naming the field, nothing touched.
    assert options["ranking_mask_history"] is True and options["ranking_loss_weight"] == 0.0  # defaults + recipe
    (tmp_path / "config_options.json").write_text(json.dumps({**options, "ranking_mask_history": False}))
    assert main([*argv, "--recipe", "paper"]) == 2
    err = capsys.readouterr().err
    assert "ranking_mask_history: False recorded, True now" in err and "other defaults" in err
    assert json.loads((tmp_path / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    "command",
    [
        ["run", "--output", "{tmp}/run"],
        ["train", "--tokenizer", "{tmp}/no-tokenizer", "--output", "{tmp}/train"],
        ["tokenizer", "train", "--output", "{tmp}/tok"],
        ["baseline", "--model", "sasrec", "--output", "{tmp}/baseline"],
    ],
)
def test_device_and_precision_are_refused_before_any_work(command, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in command] + ["--dataset", "ml-1m"]  # ml-1m without a path would fail
    assert main([*argv, "--device", "cpu", "--mixed-precision", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "mixed_precision='fp16' needs a CUDA GPU" in err and "Traceback" not in err
    if not torch.cuda.is_available():
        assert main([*argv, "--device", "cuda"]) == 2
        assert "device='cuda' but torch sees no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: not one of the choices
        main([*argv, "--device", "tpu"])
    assert "invalid choice: 'tpu'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing was written


@pytest.mark.parametrize("command", [["run"], ["train", "--tokenizer", "{tmp}/no-tokenizer"]])
def test_an_ema_decay_outside_zero_one_is_refused_before_any_work(command, tmp_path, capsys):
    argv = [a.format(tmp=tmp_path) for a in command] + ["--output", str(tmp_path / "out"), "--ema-decay", "1"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "ema_decay must be a number in [0, 1)" in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())


def test_train_in_bf16_on_the_cpu_through_accelerate(tmp_path, fixtures_dir):
    """accelerate fixes a process's precision at its first Accelerator: the bf16 run gets a process of its own."""
    table = str(fixtures_dir / "table" / "interactions.csv")
    data = ["--dataset", "table", "--data-path", table]
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", *data, "--output", str(tok), "--max-epochs", "2", "--cf-dim", "8",
                 "--token-dim", "8", "--no-progress", "--mixed-precision", "bf16"]) == 0  # fmt: skip
    assert json.loads((tok / "diagnostics.json").read_text())["training_arguments"]["mixed_precision"] == "bf16"
    train = ["train", *data, "--tokenizer", str(tok), "--output", str(tmp_path / "run"), "--max-steps", "2",
             "--eval-steps", "2", "--save-steps", "2", "--batch-size", "4", "--no-progress"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-m", "contrec_hf.cli", *train, "--device", "cpu", "--mixed-precision", "bf16"],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained on cpu × 1 process(es), mixed precision bf16" in proc.stdout
    log = json.loads((tmp_path / "run" / "training_log.json").read_text())
    assert log and all(torch.isfinite(torch.tensor(r["loss"])) for r in log)


@pytest.mark.parametrize("error", [RuntimeError("an injected bug"), ValueError("a plain ValueError")])
def test_a_bug_in_a_command_keeps_its_traceback(error, monkeypatch, fixtures_dir):
    """Only the library's own errors become one line and exit 2; anything else is a bug and propagates."""
    import contrec_hf.cli.commands as commands

    def broken(args):
        raise error

    monkeypatch.setattr(commands, "load_data", broken)
    table = str(fixtures_dir / "table" / "interactions.csv")
    with pytest.raises(type(error), match=str(error)):
        main(["data", "stats", "--dataset", "table", "--data-path", table])


def test_a_library_error_is_one_line_and_exit_2(monkeypatch, fixtures_dir, capsys):
    import contrec_hf.cli.commands as commands
    from contrec_hf.errors import InputError

    def refused(args):
        raise InputError("the problem,\nnamed")

    monkeypatch.setattr(commands, "load_data", refused)
    table = str(fixtures_dir / "table" / "interactions.csv")
    assert main(["data", "stats", "--dataset", "table", "--data-path", table]) == 2
    assert capsys.readouterr().err == "contrec-hf: error: InputError: the problem, named\n"
