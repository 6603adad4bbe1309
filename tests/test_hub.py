"""Push a finished run to a fake Hub on 127.0.0.1 and load every component back through the normal Hub path."""

import json

import torch
from huggingface_hub import ModelCard

from contrec_hf.cli import main
from contrec_hf.models import ContRecForRecommendation, ContRecTokenizer
from contrec_hf.pipelines import ContRecDiffusionPipeline


def test_push_run_and_reload_each_component(tmp_path, fixtures_dir, fake_hub, capsys):
    table = str(fixtures_dir / "table" / "interactions.csv")
    run = tmp_path / "run"
    argv = ["run", "--dataset", "table", "--data-path", table, "--output", str(run), "--max-steps", "2"]
    assert main([*argv, "--no-progress"]) == 0
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


def test_push_refuses_an_unfinished_run(tmp_path, capsys):
    assert main(["push", "--run", str(tmp_path), "--repo-prefix", "me/x"]) == 2
    assert "run `contrec-hf run` first" in capsys.readouterr().err


def test_recommend_all_users_sharded_across_two_processes(tmp_path, fixtures_dir):
    import os
    import shutil
    import subprocess
    import sys

    import pandas as pd

    table = str(fixtures_dir / "table" / "interactions.csv")
    run = tmp_path / "run"
    data = ["--dataset", "table", "--data-path", table]
    assert main(["run", *data, "--output", str(run), "--max-steps", "2", "--no-progress"]) == 0
    args = ["recommend", "--pipeline", str(run / "pipeline"), *data, "--all-users", "--top-k", "1"]
    assert main([*args, "--output", str(tmp_path / "one.parquet")]) == 0
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    two = subprocess.run(
        [torchrun, "--nproc_per_node", "2", "-m", "contrec_hf.cli", *args, "--output", str(tmp_path / "two.parquet")],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600, check=False,
    )  # fmt: skip
    assert two.returncode == 0, two.stderr[-2000:]
    one, both = pd.read_parquet(tmp_path / "one.parquet"), pd.read_parquet(tmp_path / "two.parquet")
    assert list(one.columns) == ["user_id", "rank", "item_id", "score"]
    assert one["user_id"].nunique() == both["user_id"].nunique() == len(one)
    pd.testing.assert_frame_equal(
        one[["user_id", "rank"]].reset_index(drop=True), both[["user_id", "rank"]].reset_index(drop=True)
    )
    assert not list(tmp_path.glob("*.part*"))
    assert main(["recommend", "--pipeline", str(run / "pipeline"), "--all-users"]) == 2
