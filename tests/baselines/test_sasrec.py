import pytest
import torch

from contrec_hf.baselines import SASRec, SASRecConfig, SASRecTrainer, SASRecTrainingArguments, run_baseline
from contrec_hf.errors import ConfigError, EvaluationError
from contrec_hf.evaluation import evaluate_scorer

TINY = {"hidden_size": 32, "num_layers": 2, "num_heads": 2, "intermediate_size": 37, "max_length": 7}


def train(data, seed=0, epochs=12, **kwargs):
    args = SASRecTrainingArguments(
        batch_size=4, learning_rate=5e-3, max_epochs=epochs, patience=50, seed=seed, **kwargs
    )
    trainer = SASRecTrainer(data, SASRecConfig(num_items=data.num_items, dropout=0.0, **TINY), args)
    trainer.train(progress=False)
    return trainer


def test_sasrec_learns_a_cyclic_walk(cyclic_dataset):
    trainer = train(cyclic_dataset)
    untrained = SASRec(SASRecConfig(num_items=cyclic_dataset.num_items, **TINY)).eval()
    histories, targets = cyclic_dataset.split("test")
    before = evaluate_scorer(untrained.score, histories, targets, cyclic_dataset.num_items, progress=False)
    after = trainer.evaluate("test")
    assert after.metrics["ndcg@5"] > 0.9 > before.metrics["ndcg@5"]


def test_same_seed_same_weights_different_seed_different(cyclic_dataset):
    a, b, c = train(cyclic_dataset, epochs=2), train(cyclic_dataset, epochs=2), train(cyclic_dataset, seed=1, epochs=2)
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    assert not torch.equal(a.model.item_embedding.weight, c.model.item_embedding.weight)


def test_random_windows_train(cyclic_dataset):
    trainer = train(cyclic_dataset, epochs=2, window="random")
    assert len(trainer.history) == 2


def test_eval_scores_finite_for_mixed_lengths_and_round_trip(cyclic_dataset, tmp_path):
    model = train(cyclic_dataset, epochs=1).model
    histories = [[1], [2, 3, 4], list(range(13)) * 2]  # longer than max_length: truncated to the last 7
    scores = model.score(histories)
    assert scores.shape == (3, cyclic_dataset.num_items) and torch.isfinite(scores).all()
    assert torch.allclose(model.score([histories[2][-7:]]), scores[2:3])
    model.save_pretrained(tmp_path / "sasrec")
    assert sorted(p.name for p in (tmp_path / "sasrec").iterdir()) == ["config.json", "model.safetensors"]
    reloaded = SASRec.from_pretrained(tmp_path / "sasrec")
    assert torch.equal(reloaded.score(histories), scores)
    with pytest.raises(EvaluationError, match="empty history"):
        model.score([[]])


def test_config_and_arguments_are_validated(cyclic_dataset):
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(num_items=5, hidden_size=30, num_heads=4)
    with pytest.raises(ValueError, match="dropout"):
        SASRecConfig(num_items=5, dropout=1.5)
    with pytest.raises(ValueError, match="window"):
        SASRecTrainingArguments(window="middle")
    with pytest.raises(ValueError, match="batch_size"):
        SASRecTrainingArguments(batch_size=0)
    with pytest.raises(ValueError, match="num_items"):
        SASRecTrainer(cyclic_dataset, SASRecConfig(num_items=3), SASRecTrainingArguments())


def test_run_baseline_writes_metrics(cyclic_dataset, tmp_path):
    result = run_baseline(
        "sasrec",
        cyclic_dataset,
        output_dir=tmp_path,
        model_kwargs=TINY,
        training_kwargs={"max_epochs": 2, "batch_size": 8},
        progress=False,
    )
    assert set(result["test"]) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}
    assert (tmp_path / "metrics.json").is_file() and (tmp_path / "model" / "model.safetensors").is_file()
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baseline("bpr", cyclic_dataset)


def test_device_is_validated():  # the rules themselves: tests/test_utils.py
    with pytest.raises(ConfigError, match="device must be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"):
        SASRecTrainingArguments(device="gpu")


def test_cpu_device_gives_the_default_run(cyclic_dataset):
    training = {"max_epochs": 2, "batch_size": 8}
    kwargs = {"model_kwargs": {**TINY, "dropout": 0.1}, "progress": False}  # dropout on: the RNG streams matter
    default = run_baseline("sasrec", cyclic_dataset, training_kwargs=training, **kwargs)
    cpu = run_baseline("sasrec", cyclic_dataset, training_kwargs={**training, "device": "cpu"}, **kwargs)
    assert default["config"]["training"]["device"] is None and cpu["config"]["training"]["device"] == "cpu"
    assert cpu["validation"] == default["validation"] and cpu["test"] == default["test"]
    a, b = train(cyclic_dataset, epochs=2), train(cyclic_dataset, epochs=2, device="cpu")
    assert a.device == b.device == torch.device("cpu")
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_trains_and_evaluates_on_cuda(cyclic_dataset, tmp_path):
    trainer = train(cyclic_dataset, epochs=3, device="cuda")
    assert trainer.model.item_embedding.weight.device.type == "cuda"
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)
    histories, _ = cyclic_dataset.split("test")
    assert trainer.model.score(histories).device.type == "cuda"
    result = run_baseline("sasrec", cyclic_dataset, output_dir=tmp_path, model_kwargs=TINY,
                          training_kwargs={"max_epochs": 2, "device": "cuda"}, progress=False)  # fmt: skip
    assert 0.0 <= result["test"]["ndcg@10"] <= 1.0
    reloaded = SASRec.from_pretrained(tmp_path / "model")  # saved from the GPU, loaded on the CPU
    assert torch.isfinite(reloaded.score(histories)).all()


def test_an_interrupted_training_resumes_to_the_same_model(cyclic_dataset, tmp_path):
    """Dropout and random windows on, so every RNG of the loop must come back; patience small enough to fire."""

    def trainer(folder=None, **kwargs):
        options = {
            "batch_size": 4,
            "learning_rate": 5e-3,
            "max_epochs": 8,
            "patience": 2,
            "window": "random",
            **kwargs,
        }
        args = SASRecTrainingArguments(output_dir=str(folder) if folder else None, **options)
        return SASRecTrainer(
            cyclic_dataset, SASRecConfig(num_items=cyclic_dataset.num_items, dropout=0.2, **TINY), args
        )

    straight = trainer()
    straight.train(progress=False)
    first = trainer(tmp_path / "run")
    first.train(progress=False, stop_at_epoch=2)
    assert len(first.history) == 2 and (tmp_path / "run" / "checkpoint" / "best.safetensors").is_file()
    resumed = trainer(tmp_path / "run")
    resumed.train(progress=False)
    state = resumed.model.state_dict()
    assert all(torch.equal(value, state[name]) for name, value in straight.model.state_dict().items())
    untimed = [[{k: v for k, v in row.items() if k != "seconds"} for row in t.history] for t in (straight, resumed)]
    assert untimed[0] == untimed[1] and len(untimed[0]) >= 3
    with pytest.raises(ConfigError, match="started with other options"):
        trainer(tmp_path / "run", learning_rate=1e-2).train(progress=False)


def test_run_baseline_resumes_sasrec_unless_told_to_start_over(cyclic_dataset, tmp_path):
    kwargs = {"model_kwargs": TINY, "progress": False, "output_dir": tmp_path}
    first = run_baseline("sasrec", cyclic_dataset, training_kwargs={"max_epochs": 2}, **kwargs)
    assert (tmp_path / "training" / "options.json").is_file()
    again = run_baseline("sasrec", cyclic_dataset, training_kwargs={"max_epochs": 2}, **kwargs)  # read back
    assert again["test"] == first["test"]
    with pytest.raises(ConfigError, match="started with other options"):
        run_baseline("sasrec", cyclic_dataset, training_kwargs={"max_epochs": 3}, **kwargs)
    fresh = run_baseline("sasrec", cyclic_dataset, training_kwargs={"max_epochs": 3}, resume=False, **kwargs)
    assert fresh["config"]["training"]["max_epochs"] == 3
