"""Smoke tests: the examples run end to end on tiny settings."""

import subprocess
import sys
from pathlib import Path

from contrec_hf.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_recommend_for_a_user_example(tmp_path, fixtures_dir):
    table = str(fixtures_dir / "table" / "interactions.csv")
    run = tmp_path / "run"
    items = str(fixtures_dir / "table" / "items.csv")
    assert main(["run", "--dataset", "table", "--data-path", table, "--items-path", items, "--output", str(run),
                 "--max-steps", "2", "--no-progress"]) == 0  # fmt: skip
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "recommend_for_a_user.py"), "--pipeline", str(run / "pipeline"),
         "--history", "B00TBL0002", "--top-k", "2"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "history: Kite Flyer" in proc.stdout and "one DDIM-20 sample:" in proc.stdout
