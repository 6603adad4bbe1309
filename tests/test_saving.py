"""Atomic saving: a save that fails or is killed midway never leaves a folder that loads half-written."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from contrec_hf import saving
from contrec_hf.errors import CheckpointError
from contrec_hf.saving import atomic_directory

TESTS = Path(__file__).parent

# Saves object `kind` built with `seed` into `target`, but every safetensors file is written half, then the process
# announces itself (`marker`) and hangs: the parent kills it there, in the middle of the save.
CHILD = """
import sys, time
import safetensors.torch

target, marker, kind, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
real_save = safetensors.torch.save_file

def half_then_hang(tensors, filename, metadata=None):
    real_save(tensors, filename, metadata=metadata)
    data = open(filename, "rb").read()
    open(filename, "wb").write(data[: len(data) // 2])
    open(marker, "w").close()
    time.sleep(300)

safetensors.torch.save_file = half_then_hang  # before transformers / diffusers / contrec_hf import it
sys.path.insert(0, {tests!r})
from test_saving import build
build(kind, seed).save_pretrained(target)
"""


def build(kind: str, seed: int):
    """A tiny saveable object of each kind, different for different seeds."""
    from conftest import make_cyclic_dataset
    from tiny import tiny_features, tiny_pipeline, tiny_tokenizer

    from contrec_hf.baselines.sasrec import SASRec, SASRecConfig
    from contrec_hf.features.store import ItemFeatures

    data = make_cyclic_dataset()
    torch.manual_seed(seed)
    if kind == "tokenizer":
        return tiny_tokenizer(tiny_features(data, seed))
    if kind == "pipeline":
        return tiny_pipeline(data, seed)
    if kind == "sasrec":
        return SASRec(SASRecConfig(num_items=data.num_items, hidden_size=16, num_heads=2, max_length=7))
    features = ItemFeatures(tiny_features(data, seed), item_ids=data.item_ids, kind="text")
    features.save_pretrained = features.save  # one name for the test
    return features


def load(kind: str, folder: Path):
    from contrec_hf.baselines.sasrec import SASRec
    from contrec_hf.features.store import ItemFeatures
    from contrec_hf.models import ContRecTokenizer
    from contrec_hf.pipelines import ContRecDiffusionPipeline

    loader = {"tokenizer": ContRecTokenizer.from_pretrained, "pipeline": ContRecDiffusionPipeline.from_pretrained,
              "sasrec": SASRec.from_pretrained, "features": ItemFeatures.load}[kind]  # fmt: skip
    return loader(folder)


def fingerprint(obj) -> torch.Tensor:
    """All floating-point tensors of a loaded object, flattened into one vector."""
    if hasattr(obj, "features") and not isinstance(obj, torch.nn.Module) and not hasattr(obj, "catalog"):
        return obj.features.flatten()
    modules = [obj.recommender, obj.catalog] if hasattr(obj, "catalog") else [obj]
    return torch.cat([t.detach().flatten().float() for m in modules for t in m.state_dict().values()])


@pytest.mark.parametrize("kind", ["tokenizer", "pipeline", "sasrec", "features"])
def test_killed_mid_save_keeps_the_previous_version(kind, tmp_path):
    target = tmp_path / "saved"
    build(kind, seed=0).save_pretrained(target)
    (target / "NOTES.md").write_text("the user's own file")
    before = fingerprint(load(kind, target))
    marker = tmp_path / "in-the-middle"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    script = CHILD.format(tests=str(TESTS))
    child = subprocess.Popen([sys.executable, "-c", script, str(target), str(marker), kind, "1"], env=env)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert child.poll() is None, "the child process ended before reaching the save"
            assert time.monotonic() < deadline, "the child never reached the save"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    # The target still holds the complete previous version; the half-written files sit in a hidden partial folder.
    assert torch.equal(fingerprint(load(kind, target)), before)
    assert (target / "NOTES.md").read_text() == "the user's own file"
    partials = [p for p in tmp_path.iterdir() if p.name.startswith(".saved.partial-")]
    assert partials, "the kill should have left a partial folder behind"
    # The next save (a live process) replaces the target and removes the dead process's partial folder.
    build(kind, seed=1).save_pretrained(target)
    assert not torch.equal(fingerprint(load(kind, target)), before)
    assert (target / "NOTES.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != marker.name) == ["saved"]


def test_atomic_directory_writes_swaps_and_carries_user_files(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("1")
        (tmp / "model.safetensors").write_text("old weights")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("a")
    (target / "README.md").write_text("card")
    (target / "sub" / "extra.md").write_text("mine")
    (target / "model-00001-of-00002.safetensors").write_text("stale shard")
    with atomic_directory(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".model.partial-")
        (tmp / "config.json").write_text("2")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "config.json").write_text("b")
    assert (target / "config.json").read_text() == "2" and (target / "sub" / "config.json").read_text() == "b"
    assert (target / "README.md").read_text() == "card" and (target / "sub" / "extra.md").read_text() == "mine"
    assert not (target / "model.safetensors").exists()  # the library's own files are replaced, not merged
    assert not (target / "model-00001-of-00002.safetensors").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_failed_save_leaves_the_target_untouched(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("good")
    with pytest.raises(RuntimeError, match="disk on fire"), atomic_directory(target) as tmp:
        (tmp / "config.json").write_text("half")
        raise RuntimeError("disk on fire")
    assert (target / "config.json").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_swap_without_renameat2(tmp_path, monkeypatch):
    monkeypatch.setattr(saving, "_exchange", lambda a, b: False)  # e.g. macOS, Windows
    target = tmp_path / "model"
    for version in ("1", "2"):
        with atomic_directory(target) as tmp:
            (tmp / "config.json").write_text(version)
    assert (target / "config.json").read_text() == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_saving_over_a_file_is_refused(tmp_path):
    (tmp_path / "model").write_text("not a folder")
    with pytest.raises(CheckpointError, match="not a folder"), atomic_directory(tmp_path / "model"):
        pass
    assert (tmp_path / "model").read_text() == "not a folder"


def test_partials_of_live_processes_are_kept(tmp_path):
    live = tmp_path / f".model.partial-{os.getppid()}-abc"  # the parent process is alive
    live.mkdir()
    with atomic_directory(tmp_path / "model") as tmp:
        (tmp / "config.json").write_text("{}")
    assert live.is_dir()


def test_own_aligned_memory_copies_only_misaligned_tensors():
    from contrec_hf.saving import own_aligned_memory

    module = torch.nn.Linear(3, 5)
    storage = torch.arange(40, dtype=torch.float32)
    module.weight.data = storage[1:16].view(5, 3)  # 4 bytes past an aligned start, like a weight in an mmapped file
    module.register_buffer("steps", torch.zeros(7))
    aligned = {name: t.data_ptr() for name, t in [("bias", module.bias), ("steps", module.steps)]}
    assert module.weight.data_ptr() % 64 != 0
    assert own_aligned_memory(module) is module
    assert module.weight.data_ptr() % 64 == 0 and torch.equal(module.weight, storage[1:16].view(5, 3))
    assert module.weight.data_ptr() != storage[1:].data_ptr()  # its own copy
    assert {"bias": module.bias.data_ptr(), "steps": module.steps.data_ptr()} == aligned  # untouched
