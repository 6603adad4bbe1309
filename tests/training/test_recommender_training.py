import json

import pytest
import torch
from tiny import tiny_trainer

from contrec_hf.errors import ConfigError
from contrec_hf.models import ContRecForRecommendation, ContRecTokenizer, ContRecTokenizerConfig
from contrec_hf.training import RecommenderTrainer, RecommenderTrainingArguments, prepare_recommender
from contrec_hf.training.checkpoint import load_training_state


def setup(data, tmp_path, name="run", **kwargs):
    return tiny_trainer(data, tmp_path / name, **kwargs)


def trainable_state(trainer):
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def test_training_writes_checkpoint_best_model_and_log(cyclic_dataset, tmp_path):
    trainer = setup(cyclic_dataset, tmp_path)
    state = trainer.train(progress=False)
    assert state["step"] == 6 and len(state["history"]) == 2
    out = tmp_path / "run"
    log = json.loads((out / "training_log.json").read_text())
    assert {"loss", "diffusion_loss", "val_ndcg@10"} <= set(log[-1])
    assert "ranking_temperature" not in log[-1]  # a fixed τ is the config's, not logged
    best = ContRecForRecommendation.from_pretrained(out / "best")
    assert best.config.item_token_id == trainer.model_config.item_token_id
    assert not list(out.rglob("*.bin")) and not list(out.rglob("*.pkl")) and not list(out.rglob("*.pt"))
    assert (out / "checkpoints" / "last" / "optimizer.safetensors").is_file()
    assert 0.0 <= trainer.evaluate("test").metrics["ndcg@10"] <= 1.0


def test_a_learned_ranking_temperature_trains_and_is_logged(cyclic_dataset, tmp_path):
    from tiny import tiny_features, tiny_recommender

    features = tiny_features(cyclic_dataset)
    model, text_tokenizer = tiny_recommender(cyclic_dataset, features, ranking_temperature_learnable=True)
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"), batch_size=8, max_steps=3, eval_steps=3,
                                        save_steps=3, warmup_steps=1)  # fmt: skip
    trainer = RecommenderTrainer(model, text_tokenizer, cyclic_dataset, features, args)
    trainer.train(progress=False)
    log = json.loads((tmp_path / "run" / "training_log.json").read_text())
    learned = trainer.accelerator.unwrap_model(trainer.model).diffusion_head.ranking_temperature.item()
    assert log[-1]["ranking_temperature"] == pytest.approx(learned) and learned != pytest.approx(0.07, abs=1e-7)


def test_interrupted_training_resumes_to_the_same_weights(cyclic_dataset, tmp_path):
    straight = setup(cyclic_dataset, tmp_path, "straight")
    straight.train(progress=False)
    interrupted = setup(cyclic_dataset, tmp_path, "resumed")
    interrupted.train(progress=False, stop_at_step=3)  # as if killed right after the step-3 checkpoint
    resumed = setup(cyclic_dataset, tmp_path, "resumed")  # a fresh process-like start
    assert resumed.maybe_resume() and resumed.state["step"] == 3
    resumed.train(progress=False)
    a, b = trainable_state(straight), trainable_state(resumed)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert straight.state["best_ndcg"] == pytest.approx(resumed.state["best_ndcg"])


def test_a_resume_with_another_schedule_is_refused_and_one_elsewhere_is_not(cyclic_dataset, tmp_path):
    setup(cyclic_dataset, tmp_path).train(progress=False, stop_at_step=3)
    recorded = json.loads((tmp_path / "run" / "training_args.json").read_text())
    assert recorded["max_steps"] == 6 and "output_dir" not in recorded
    longer = setup(cyclic_dataset, tmp_path, max_steps=9)  # its cosine schedule would jump at step 3
    with pytest.raises(ConfigError, match=r"other training arguments \(max_steps: 6 recorded, 9 now"):
        longer.train(progress=False)
    assert longer.state["step"] == 0  # refused before anything was loaded or trained
    assert json.loads((tmp_path / "run" / "training_args.json").read_text()) == recorded
    elsewhere = setup(cyclic_dataset, tmp_path, eval_batch_size=5)  # where it runs, not what it computes
    assert elsewhere.maybe_resume() and elsewhere.state["step"] == 3


def test_corrupt_checkpoint_is_reported(cyclic_dataset, tmp_path):
    trainer = setup(cyclic_dataset, tmp_path)
    trainer.train(progress=False, stop_at_step=3)
    ckpt = tmp_path / "run" / "checkpoints" / "last"
    (ckpt / "optimizer.safetensors").write_bytes(b"not a safetensors file")
    model = trainer.accelerator.unwrap_model(trainer.model)
    with pytest.raises(Exception, match="corrupt"):
        load_training_state(ckpt, model, trainer.optimizer, trainer.scheduler)


def test_bad_arguments(cyclic_dataset, tmp_path):
    with pytest.raises(ValueError, match="readout"):
        RecommenderTrainingArguments(output_dir=str(tmp_path), readout="median")
    with pytest.raises(ValueError, match="max_steps"):
        RecommenderTrainingArguments(output_dir=str(tmp_path), max_steps=0)
    trainer = setup(cyclic_dataset, tmp_path)
    with pytest.raises(ValueError, match="item_features has 3 rows"):
        RecommenderTrainer(
            trainer.accelerator.unwrap_model(trainer.model),
            trainer.text_tokenizer,
            cyclic_dataset,
            torch.randn(3, 24),
            trainer.args,
        )


def test_two_processes_train_like_one(tmp_path, fixtures_dir):
    """`torchrun --nproc_per_node 2` starts two gloo processes on a CPU machine; both walk the same data."""
    import os
    import shutil
    import subprocess
    import sys

    from contrec_hf.cli import main

    table = str(fixtures_dir / "table" / "interactions.csv")
    data_args = ["--dataset", "table", "--data-path", table]
    tok = tmp_path / "tok"
    assert main(["tokenizer", "train", *data_args, "--output", str(tok), "--max-epochs", "2", "--cf-dim", "8",
                 "--token-dim", "8", "--no-progress"]) == 0  # fmt: skip
    train = [*data_args, "--tokenizer", str(tok), "--max-steps", "4", "--eval-steps", "2", "--save-steps", "2",
             "--batch-size", "4", "--no-progress"]  # fmt: skip
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [torchrun, "--nproc_per_node", "2", "-m", "contrec_hf.cli", "train", *train]
    two = subprocess.run(
        [*command, "--output", str(tmp_path / "two")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert two.returncode == 0, two.stderr[-6000:]
    # The tiny backbone leaves no parameter unused, so DDP is not told to look for some (it warned every run), and
    # the summary is printed by rank 0 only.
    assert "find_unused_parameters" not in two.stderr, two.stderr[-3000:]
    assert two.stdout.count("best validation NDCG@10") == 1, two.stdout
    assert "× 2 process(es)" in two.stdout
    assert main(["train", *train, "--output", str(tmp_path / "one")]) == 0
    logs = [json.loads((tmp_path / run / "training_log.json").read_text()) for run in ("one", "two")]
    assert [r["step"] for r in logs[0]] == [r["step"] for r in logs[1]] == [2, 4]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for log in logs for r in log)
    assert ContRecForRecommendation.from_pretrained(tmp_path / "two" / "best") is not None


def test_lora_training_saves_a_loadable_merged_best_model(cyclic_dataset, tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    from contrec_hf.data.prompts import train_text_tokenizer

    text_tokenizer = train_text_tokenizer([f"Item {i}" for i in range(13)] * 3 + ["History Answer"], 200)
    config = LlamaConfig(vocab_size=len(text_tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    LlamaForCausalLM(config).save_pretrained(tmp_path / "lm")
    text_tokenizer.save_pretrained(tmp_path / "lm")
    features = torch.randn(cyclic_dataset.num_items, 24, generator=torch.Generator().manual_seed(1))
    tokenizer = ContRecTokenizer(ContRecTokenizerConfig(input_dim=24, token_dim=16, encoder_hidden_sizes=[19]))
    tokenizer.fit_normalization(features)
    model, text_tok = prepare_recommender(
        cyclic_dataset, tokenizer, str(tmp_path / "lm"), lora=True, lora_kwargs={"target_modules": ["q_proj"]}
    )
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=2, eval_steps=2,
                                        save_steps=2, warmup_steps=1)  # fmt: skip
    RecommenderTrainer(model, text_tok, cyclic_dataset, features, args).train(progress=False)
    best = tmp_path / "run" / "best"
    assert (best / "adapter" / "adapter_config.json").is_file()
    loaded = ContRecForRecommendation.from_pretrained(best)
    assert not any("lora" in name for name, _ in loaded.named_parameters())


def test_text_config_override_resizes_the_tiny_backbone(cyclic_dataset, tmp_path):
    from tiny import OVERRIDES, tiny_features, tiny_tokenizer

    from contrec_hf.errors import ConfigError

    torch.manual_seed(0)
    text = {"hidden_size": 48, "intermediate_size": 37, "num_hidden_layers": 3, "num_attention_heads": 4}
    overrides = {**OVERRIDES, "text_config": text}
    model, text_tok = prepare_recommender(cyclic_dataset, tiny_tokenizer(tiny_features(cyclic_dataset)),
                                          config_overrides=overrides)  # fmt: skip
    config = model.config.text_config
    assert (config.hidden_size, config.intermediate_size, config.num_hidden_layers) == (48, 37, 3)
    assert config.num_key_value_heads == 2 and config.vocab_size == len(text_tok)  # the rest stays tiny's
    assert model.get_input_embeddings().weight.shape[1] == 48
    model.save_pretrained(tmp_path / "resized")
    loaded = ContRecForRecommendation.from_pretrained(tmp_path / "resized")
    assert loaded.config.text_config.num_hidden_layers == 3 and loaded.get_input_embeddings().weight.shape[1] == 48
    for bad, message in [
        ({"vocab_size": 99}, "vocab_size"),
        ({"hidden_size": "wide"}, "hidden_size"),
    ]:
        with pytest.raises(ConfigError, match=message):
            prepare_recommender(cyclic_dataset, tiny_tokenizer(tiny_features(cyclic_dataset)),
                                config_overrides={"text_config": bad})  # fmt: skip
    with pytest.raises(ConfigError, match="pretrained backbone keeps its own config"):
        prepare_recommender(cyclic_dataset, tiny_tokenizer(tiny_features(cyclic_dataset)), "smollm2",
                            config_overrides={"text_config": {"hidden_size": 48}})  # fmt: skip


def test_residual_item_table_is_sized_and_marked_from_the_training_data(cyclic_dataset, tmp_path):
    """prepare_recommender sizes the per-item rows to the catalog and marks the items of the training sequences; a
    short training moves them, and the pipeline's catalog stores the table with them."""
    from tiny import tiny_features, tiny_recommender

    from contrec_hf.pipelines import ContRecDiffusionPipeline, build_pipeline

    features = tiny_features(cyclic_dataset)
    model, text_tokenizer = tiny_recommender(cyclic_dataset, features, item_table="residual")
    assert model.config.num_catalog_items == cyclic_dataset.num_items
    trained = {item for sequence in cyclic_dataset.train_sequences() for item in sequence}
    assert set(model.trained_items.nonzero().flatten().tolist()) == trained
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=3, eval_steps=3,
                                        save_steps=3, warmup_steps=1)  # fmt: skip
    RecommenderTrainer(model, text_tokenizer, cyclic_dataset, features, args).train(progress=False)
    assert model.item_residual.abs().sum() > 0
    pipeline = build_pipeline(model, text_tokenizer, cyclic_dataset, features)
    with torch.no_grad():
        torch.testing.assert_close(pipeline.catalog.latents, model.item_table(features.float()))
    pipeline.save_pretrained(tmp_path / "pipeline")
    back = ContRecDiffusionPipeline.from_pretrained(tmp_path / "pipeline")
    torch.testing.assert_close(back.catalog.latents, pipeline.catalog.latents)


def test_a_tied_table_is_scored_alike_by_the_trainer_and_the_main_job(cyclic_dataset, tmp_path):
    """item_table="tied" scores P(x̂₀) against P(z_j) (`[N, hidden]`): the trainer's validation and the main job's
    pipeline scorer rank in that space and agree."""
    from tiny import tiny_features, tiny_recommender

    from contrec_hf.main_job import contrec_metrics
    from contrec_hf.pipelines import build_pipeline

    features = tiny_features(cyclic_dataset)
    model, text_tokenizer = tiny_recommender(cyclic_dataset, features, item_table="tied")
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=3, eval_steps=3,
                                        save_steps=3, warmup_steps=1)  # fmt: skip
    trainer = RecommenderTrainer(model, text_tokenizer, cyclic_dataset, features, args)
    trainer.train(progress=False)
    pipeline = build_pipeline(model, text_tokenizer, cyclic_dataset, features)
    assert pipeline.catalog.latents.shape == (cyclic_dataset.num_items, model.config.text_config.hidden_size)
    ours = trainer.evaluate("validation").metrics
    theirs = contrec_metrics(pipeline, cyclic_dataset, "validation", full_path=False)
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name] == pytest.approx(theirs[name], abs=1e-6), name


def test_training_batches_carry_whole_histories_and_train_with_the_history_mask(cyclic_dataset, tmp_path):
    """The trainer hands the collator every item before the target (the prompt keeps the last `max_history`), so
    `ranking_mask_history` leaves out the whole history; with it a run trains, saves and loads."""
    from tiny import tiny_features, tiny_recommender

    features = tiny_features(cyclic_dataset)
    model, text_tokenizer = tiny_recommender(cyclic_dataset, features, max_history=3, ranking_mask_history=True)
    args = RecommenderTrainingArguments(output_dir=str(tmp_path / "run"), batch_size=4, max_steps=3, eval_steps=3,
                                        save_steps=3, warmup_steps=1)  # fmt: skip
    trainer = RecommenderTrainer(model, text_tokenizer, cyclic_dataset, features, args)
    batch = trainer._global_batch(0)
    user, end, target = trainer.samples[
        torch.randperm(len(trainer.samples), generator=torch.Generator().manual_seed(0))[0]
    ]
    assert batch[0] == (cyclic_dataset.sequences[user][:end], target)
    inputs = trainer.collator(batch)
    assert inputs["history_ids"][0, :end].tolist() == cyclic_dataset.sequences[user][:end]
    assert int((inputs["input_ids"][0] == model.config.item_end_token_id).sum()) == min(3, end)
    state = trainer.train(progress=False)
    assert state["step"] == 3 and all(torch.isfinite(torch.tensor(r["ranking_loss"])) for r in state["history"])
    assert ContRecForRecommendation.from_pretrained(tmp_path / "run" / "best").config.ranking_mask_history
