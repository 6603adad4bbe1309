"""The pickle-free training checkpoint: weights, optimizer, RNGs, named torch generators and extra tensor groups."""

import json

import pytest
import torch

from contrec_hf.errors import ContRecError
from contrec_hf.training.checkpoint import load_training_state, load_training_tensors, save_training_state


def loop(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model(torch.randn(7, 5)).square().mean().backward()
    optimizer.step()
    return model, optimizer


def test_a_loop_without_scheduler_round_trips_generators_and_tensor_groups(tmp_path):
    model, optimizer = loop()
    order = torch.Generator().manual_seed(3)
    torch.randperm(10, generator=order)  # moved on from its seed
    best = {"weight": model.weight.detach() * 2}
    save_training_state(tmp_path / "ckpt", model, optimizer, None, {"epoch": 4}, generators={"order": order},
                        tensors={"best": best})  # fmt: skip
    expected_order, expected_global = torch.randperm(10, generator=order), torch.rand(3)
    assert not list((tmp_path / "ckpt").glob("*.pt")) and not list((tmp_path / "ckpt").glob("*.pkl"))

    other, other_optimizer = loop(seed=1)
    restored = torch.Generator().manual_seed(99)
    state = load_training_state(tmp_path / "ckpt", other, other_optimizer, None, generators={"order": restored})
    assert state == {"epoch": 4} and torch.equal(other.weight, model.weight)
    assert torch.equal(torch.randperm(10, generator=restored), expected_order)
    assert torch.equal(torch.rand(3), expected_global)
    assert torch.equal(load_training_tensors(tmp_path / "ckpt", "best")["weight"], best["weight"])
    moments = other_optimizer.state_dict()["state"][0]["exp_avg"]
    assert torch.equal(moments, optimizer.state_dict()["state"][0]["exp_avg"])


def test_a_checkpoint_of_another_loop_or_a_missing_group_is_refused(tmp_path):
    model, optimizer = loop()
    save_training_state(tmp_path / "ckpt", model, optimizer, None, {"epoch": 1})
    other, other_optimizer = loop(seed=1)
    before = other.weight.detach().clone()
    with pytest.raises(ContRecError, match="another training loop"):
        load_training_state(tmp_path / "ckpt", other, other_optimizer, None, generators={"order": torch.Generator()})
    scheduler = torch.optim.lr_scheduler.LambdaLR(other_optimizer, lambda step: 1.0)
    with pytest.raises(ContRecError, match="another training loop"):
        load_training_state(tmp_path / "ckpt", other, other_optimizer, scheduler)
    assert torch.equal(other.weight, before) and not torch.equal(before, model.weight)  # refused before restoring
    with pytest.raises(ContRecError, match=r"missing best\.safetensors"):
        load_training_tensors(tmp_path / "ckpt", "best")
    (tmp_path / "ckpt" / "trainer_state.json").write_text(json.dumps({"broken": True})[:-3])
    with pytest.raises(ContRecError, match="corrupt"):
        load_training_state(tmp_path / "ckpt", model, optimizer, None)
