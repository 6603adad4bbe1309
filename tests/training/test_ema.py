import json

import pytest
import torch
from tiny import tiny_trainer

from contrec_hf.errors import ConfigError, ContRecError
from contrec_hf.models import ContRecForRecommendation
from contrec_hf.training import ParameterAverage, RecommenderTrainingArguments
from contrec_hf.training.checkpoint import load_training_tensors


def trained(trainer) -> dict[str, torch.Tensor]:
    model = trainer.accelerator.unwrap_model(trainer.model)
    return {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}


def test_the_average_follows_the_warmed_up_decay_and_skips_frozen_parameters():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.Linear(5, 2))
    model[1].bias.requires_grad_(False)
    average = ParameterAverage(model, decay=0.9)
    assert sorted(average.shadow) == ["0.bias", "0.weight", "1.weight"]
    expected = {k: v.clone() for k, v in average.shadow.items()}
    for step in range(40):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update(model, step)
        d = min(0.9, (1 + step) / (10 + step))
        params = dict(model.named_parameters())
        expected = {k: d * v + (1 - d) * params[k].detach() for k, v in expected.items()}
    assert average.decay_at(0) == pytest.approx(0.1) and average.decay_at(1000) == 0.9
    for name, value in expected.items():
        torch.testing.assert_close(average.shadow[name], value)


def test_applied_swaps_the_average_in_and_the_trained_weights_back_even_on_error():
    model = torch.nn.Linear(4, 3)
    average = ParameterAverage(model, decay=0.5)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = model.weight.detach().clone()
    average.update(model, step=50)
    with average.applied(model):
        torch.testing.assert_close(model.weight, before - 0.5)
    torch.testing.assert_close(model.weight, before)
    with pytest.raises(RuntimeError, match="inside"), average.applied(model):
        raise RuntimeError("inside")
    torch.testing.assert_close(model.weight, before)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5, True, "0.9"])
def test_a_decay_outside_zero_one_is_refused(decay, tmp_path):
    with pytest.raises(ConfigError, match="ema_decay must be a number in \\[0, 1\\)"):
        RecommenderTrainingArguments(output_dir=str(tmp_path), ema_decay=decay)
    with pytest.raises(ConfigError, match="ema_decay"):
        ParameterAverage(torch.nn.Linear(2, 2), decay=0.0)


def test_a_checkpoint_of_another_model_is_refused():
    average = ParameterAverage(torch.nn.Linear(2, 3), decay=0.9)
    with pytest.raises(ContRecError, match="names differ"):
        average.load_state_dict({"weight": torch.zeros(3, 2)})
    with pytest.raises(ContRecError, match="has shape"):
        average.load_state_dict({"weight": torch.zeros(2, 2), "bias": torch.zeros(3)})
    for other in (torch.nn.Bilinear(2, 2, 3), torch.nn.Sequential(torch.nn.Linear(2, 3))):
        with pytest.raises(ContRecError, match="another model"):
            average.update(other, step=0)


def test_the_trainer_validates_and_keeps_the_average_not_the_trained_weights(cyclic_dataset, tmp_path):
    trainer = tiny_trainer(cyclic_dataset, tmp_path / "run", ema_decay=0.9, eval_steps=6)  # one validation: step 6
    trainer.train(progress=False)
    assert trainer.state["best_step"] == 6
    best = ContRecForRecommendation.from_pretrained(tmp_path / "run" / "best")
    saved = dict(best.named_parameters())
    weights = trained(trainer)
    assert any(not torch.allclose(trainer.average.shadow[k], weights[k]) for k in weights)
    for name, value in trainer.average.shadow.items():
        torch.testing.assert_close(saved[name], value, msg=name)
    checkpoint = load_training_tensors(tmp_path / "run" / "checkpoints" / "last", "ema")
    assert checkpoint.keys() == trainer.average.shadow.keys()
    with trainer.averaged_weights():  # what validation scored
        assert trainer.evaluate("validation").metrics["ndcg@10"] == pytest.approx(trainer.state["best_ndcg"])
    for name, value in trained(trainer).items():  # the trained weights are back
        torch.testing.assert_close(value, weights[name])


def test_an_interrupted_run_resumes_its_average(cyclic_dataset, tmp_path):
    straight = tiny_trainer(cyclic_dataset, tmp_path / "straight", ema_decay=0.9)
    straight.train(progress=False)
    tiny_trainer(cyclic_dataset, tmp_path / "resumed", ema_decay=0.9).train(progress=False, stop_at_step=3)
    resumed = tiny_trainer(cyclic_dataset, tmp_path / "resumed", ema_decay=0.9)
    resumed.train(progress=False)
    assert resumed.state["step"] == 6
    for name, value in straight.average.shadow.items():
        torch.testing.assert_close(resumed.average.shadow[name], value, atol=1e-6, rtol=0, msg=name)
    assert resumed.state["best_ndcg"] == pytest.approx(straight.state["best_ndcg"])


def test_no_average_is_not_recorded_and_switching_it_on_mid_run_is_refused(cyclic_dataset, tmp_path):
    tiny_trainer(cyclic_dataset, tmp_path / "run").train(progress=False, stop_at_step=3)
    recorded = json.loads((tmp_path / "run" / "training_args.json").read_text())
    assert "ema_decay" not in recorded  # as folders from before the option recorded it: they stay resumable
    assert not (tmp_path / "run" / "checkpoints" / "last" / "ema.safetensors").exists()
    with pytest.raises(ConfigError, match=r"ema_decay: None recorded, 0.9 now"):
        tiny_trainer(cyclic_dataset, tmp_path / "run", ema_decay=0.9).train(progress=False)
