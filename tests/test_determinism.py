"""Same seed and inputs → identical recommendations on CPU: for each scheduler, across a save/load and across
processes; and the library's loading paths never touch pickle."""

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from contrec_hf.pipelines import ContRecDiffusionPipeline

TESTS = Path(__file__).parent
PACKAGE = TESTS.parent / "contrec_hf"
SCHEDULERS = [
    DDPMScheduler,
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    UniPCMultistepScheduler,
    EulerDiscreteScheduler,
]
HISTORIES = [["i1", "i2", "i3"], ["i7"], ["i12", "i0", "i5", "i9"]]

# Loads the saved pipeline, runs every scheduler with the same seeds, prints the results as JSON.
CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from contrec_hf.pipelines import ContRecDiffusionPipeline
from test_determinism import recommend_all
print(json.dumps(recommend_all(ContRecDiffusionPipeline.from_pretrained(sys.argv[1]))))
"""


def recommend_all(pipe) -> dict:
    """``{scheduler: {readout and batch: (item_ids, scores, latents)}}`` with fixed generators, as plain lists.
    Batches: all of ``HISTORIES``, and one user with one history item (every matrix product then has one row)."""
    original, results = pipe.scheduler, {}
    for scheduler_class in SCHEDULERS:
        pipe.scheduler = scheduler_class.from_config(original.config)
        for readout in ("sample", "x0"):
            for histories in (HISTORIES, HISTORIES[1:2]):
                out = pipe(histories, num_inference_steps=7, top_k=4, readout=readout, guidance_scale=1.5,
                           generator=torch.Generator().manual_seed(11))  # fmt: skip
                results.setdefault(scheduler_class.__name__, {})[f"{readout}, {len(histories)} users"] = [
                    out.item_ids,
                    out.scores.tolist(),
                    out.latents.tolist(),
                ]
    pipe.scheduler = original
    return results


@pytest.fixture(scope="module")
def pipe():
    from conftest import make_cyclic_dataset
    from tiny import tiny_pipeline

    return tiny_pipeline(make_cyclic_dataset(), num_train_timesteps=50)


def test_identical_across_calls_save_load_and_processes(pipe, tmp_path):
    here = recommend_all(pipe)
    assert here == recommend_all(pipe)  # bitwise: the lists hold the exact float values
    samples = {tuple(map(tuple, here[name]["sample, 3 users"][0])) for name in here}
    ddpm = here["DDPMScheduler"]
    assert len(samples) > 1 or ddpm["sample, 3 users"][2] != ddpm["x0, 3 users"][2]
    pipe.save_pretrained(tmp_path / "pipe")
    assert recommend_all(ContRecDiffusionPipeline.from_pretrained(tmp_path / "pipe")) == here
    env = {**os.environ, "PYTHONHASHSEED": "123"}  # a different hash seed: set/dict order must not matter
    script = CHILD.format(tests=str(TESTS))
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "pipe")], env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here


def test_a_different_generator_changes_sampled_recommendations(pipe):
    def latents(seed):
        generator = torch.Generator().manual_seed(seed)
        return pipe(HISTORIES, num_inference_steps=7, top_k=3, readout="sample", generator=generator)

    assert not torch.equal(latents(1).latents, latents(2).latents)


def test_saved_folders_hold_no_pickle(pipe, tmp_path):
    from conftest import make_cyclic_dataset
    from tiny import tiny_trainer

    pipe.save_pretrained(tmp_path / "pipe")
    tiny_trainer(make_cyclic_dataset(), tmp_path / "train", max_steps=3).train(progress=False)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".safetensors" for p in files)
    pickled = [p for p in files if p.suffix in {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"}]
    assert not pickled, pickled
    for path in files:  # no pickle hiding under another name either
        assert not _holds_pickle(path), path


def _holds_pickle(path) -> bool:
    """A raw pickle stream (protocol 2+ starts with 0x80) or torch.save's zip (a ``data.pkl`` inside). A safetensors
    file starts with its header's length, whose first byte can be 0x80 too: it is parsed instead."""
    import zipfile

    from safetensors import safe_open

    if path.suffix == ".safetensors":
        with safe_open(path, framework="pt") as handle:  # raises on anything but a safetensors file
            handle.keys()
        return False
    if zipfile.is_zipfile(path):
        return any(name.endswith(".pkl") for name in zipfile.ZipFile(path).namelist())
    return path.read_bytes()[:1] == b"\x80"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


def test_library_source_never_unpickles():
    problems = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
                if any(n.split(".")[0] in {"pickle", "dill", "cloudpickle", "joblib"} for n in names):
                    problems.append(f"{path}:{node.lineno} imports a pickle module")
        for call, name in _calls(tree):
            keywords = {k.arg: ast.unparse(k.value) for k in call.keywords}
            if name.endswith("torch.load") and keywords.get("weights_only") != "True":
                problems.append(f"{path}:{call.lineno} torch.load without weights_only=True")
            if keywords.get("trust_remote_code") not in (None, "False"):
                problems.append(f"{path}:{call.lineno} passes trust_remote_code")
            if name.endswith("read_pickle") or (name.endswith("np.load") and keywords.get("allow_pickle") == "True"):
                problems.append(f"{path}:{call.lineno} {name} may unpickle")
    assert not problems, problems
