"""Devices and mixed precision of the trainers (CPU only: bf16 autocast runs on the CPU), and the DDP probe for
parameters a step can leave without a gradient."""

import random

import pytest
import torch
from tiny import tiny_features, tiny_recommender

from contrec_hf.baselines import SASRecConfig, SASRecTrainer, SASRecTrainingArguments
from contrec_hf.errors import ConfigError
from contrec_hf.models import ContRecTokenizerConfig
from contrec_hf.training import (
    RecommenderTrainingArguments,
    TokenizerTrainingArguments,
    check_mixed_precision,
    end_processes,
    resolve_device,
    train_item_tokenizer,
    unused_parameters,
)
from contrec_hf.training.recommender import RecommenderTrainer

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")


def record_dtypes(module: torch.nn.Module) -> list[tuple[bool, torch.dtype]]:
    """(training?, output dtype) of every forward pass of ``module`` from now on."""
    seen: list[tuple[bool, torch.dtype]] = []
    module.register_forward_hook(lambda m, args, out: seen.append((m.training, out.dtype)))
    return seen


@no_cuda
def test_devices_and_precisions_are_checked_early():
    assert resolve_device("auto") == resolve_device(None) == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="'fp16' needs a CUDA GPU"):
        check_mixed_precision("fp16", "cpu")
    with pytest.raises(ConfigError, match="must be one of"):
        check_mixed_precision("fp8", "cpu")
    check_mixed_precision("bf16", "cpu")
    for make in (
        lambda: TokenizerTrainingArguments(mixed_precision="fp16"),
        lambda: SASRecTrainingArguments(mixed_precision="fp16"),
        lambda: RecommenderTrainingArguments(output_dir="unused", mixed_precision="fp16"),
    ):
        with pytest.raises(ConfigError, match="fp16"):
            make()
    with pytest.raises(ConfigError, match="CUDA_VISIBLE_DEVICES"):
        RecommenderTrainingArguments(output_dir="unused", device="cuda:1")


def test_the_tokenizer_trains_in_bf16_and_is_measured_in_fp32():
    features = torch.randn(101, 37, generator=torch.Generator().manual_seed(0))
    config = ContRecTokenizerConfig(input_dim=37, num_tokens=2, token_dim=8, encoder_hidden_sizes=[29])
    args = TokenizerTrainingArguments(max_epochs=2, batch_size=32, mixed_precision="bf16")
    seen = []

    def hook(module, inputs, out):  # every Linear of the σ-VAE: which dtype it computes in, training or not
        if isinstance(module, torch.nn.Linear):
            seen.append((module.training, out.dtype))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        result = train_item_tokenizer(features, config, args, progress=False)
    finally:
        handle.remove()
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in result.tokenizer.parameters())
    assert result.diagnostics["training_arguments"]["mixed_precision"] == "bf16"
    assert torch.isfinite(torch.tensor(result.diagnostics["heldout_mse"]))


def test_sasrec_trains_in_bf16_and_ranks_in_fp32(cyclic_dataset):
    config = SASRecConfig(num_items=cyclic_dataset.num_items, hidden_size=32, intermediate_size=37, max_length=7)
    args = SASRecTrainingArguments(max_epochs=2, patience=2, seed=0, mixed_precision="bf16")
    trainer = SASRecTrainer(cyclic_dataset, config, args)
    seen = record_dtypes(trainer.model.blocks[0].qkv)
    model = trainer.train(progress=False)
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert model.score([[0, 1]]).dtype == torch.float32
    assert all(torch.isfinite(torch.tensor(h["loss"])) for h in trainer.history)


@pytest.mark.parametrize(
    ("text_config", "fast_path_probability", "unused"),
    [
        ({}, 0.5, []),  # the tiny backbone ties its LM head to the input embeddings: nothing is ever unused
        ({"tie_word_embeddings": False}, 0.5, ["language_model.lm_head.weight"]),  # no LM loss on fast-path batches
        ({"tie_word_embeddings": False}, 0.0, []),  # every sample has a response: the LM head always learns
    ],
)
def test_the_ddp_probe_finds_parameters_a_step_leaves_unused(
    cyclic_dataset, tmp_path, text_config, fast_path_probability, unused
):
    features = tiny_features(cyclic_dataset)
    overrides = {"text_config": text_config, "fast_path_probability": fast_path_probability}
    model, text_tokenizer = tiny_recommender(cyclic_dataset, features, **overrides)
    args = RecommenderTrainingArguments(output_dir=str(tmp_path), batch_size=4, max_steps=1, device="cpu")
    trainer = RecommenderTrainer(model, text_tokenizer, cyclic_dataset, features, args)
    collator_state, python_state = trainer.collator._rng.getstate(), random.getstate()
    torch_state = torch.get_rng_state()
    batch = [trainer._sample(i) for i in range(3)]
    assert unused_parameters(trainer.accelerator.unwrap_model(trainer.model), trainer.collator, batch) == unused
    # The probe leaves no trace: random states, gradients and the training mode are as before.
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    assert trainer.collator._rng.getstate() == collator_state
    assert all(p.grad is None for p in trainer.model.parameters())
    assert trainer.accelerator.mixed_precision == "no" and trainer.accelerator.device.type == "cpu"


@pytest.mark.parametrize("failing", [False, True])
def test_every_command_leaves_the_process_group_it_joined(tmp_path, fixtures_dir, failing):
    """Under torchrun an open gloo group can abort a process at exit (SIGABRT after its work is done): a command,
    finished or failed, leaves the group; `end_processes` is a no-op without one."""
    from contrec_hf.cli import main

    end_processes()  # no group yet: nothing to do
    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        table = str(fixtures_dir / "table" / "interactions.csv")
        ok = ["data", "stats", "--dataset", "table", "--data-path", table]
        failed = ["recommend", "--pipeline", str(tmp_path)]  # neither --history nor --all-users: exit 2
        assert main(failed if failing else ok) == (2 if failing else 0)
        assert not torch.distributed.is_initialized()
    finally:
        end_processes()
