"""Dataset loaders register themselves: a new module in `contrec_hf.data` is a new `--dataset` name."""

import subprocess
import sys
import textwrap

import pytest

import contrec_hf.data
from contrec_hf.data import LOADERS, load_interactions, needs_path, register_loader
from contrec_hf.errors import DatasetNotFoundError


def test_every_shipped_loader_is_registered_with_its_path_rule():
    assert set(LOADERS) == {"ml-100k", "ml-1m", "amazon-2014", "amazon-2023", "table"}
    assert [name for name in sorted(LOADERS) if not needs_path(name)] == ["ml-100k"]  # from its signature
    with pytest.raises(DatasetNotFoundError, match="pass the path"):
        load_interactions("ml-1m")


def test_a_name_is_registered_once():
    with pytest.raises(ValueError, match="two loaders are registered as dataset 'table'"):
        register_loader("table")(lambda path: None)
    assert LOADERS["table"].__name__ == "load_table"


def test_a_loader_in_a_new_module_needs_no_other_file(tmp_path):
    """A copy of the package with one more module: its loader is known after `import contrec_hf.data`, and
    nothing else was edited."""
    package = tmp_path / "contrec_hf"
    subprocess.run(["cp", "-r", str(contrec_hf.data.__path__[0] + "/.."), str(package)], check=True)
    (package / "data" / "tiny_walk.py").write_text(
        textwrap.dedent("""
        import pandas as pd
        from .interactions import build_interactions, register_loader

        @register_loader("tiny-walk")
        def load_tiny_walk(path=None):
            rows = [(f"u{u}", f"i{(u + t) % 5}", t, 1.0) for u in range(4) for t in range(6)]
            frame = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp", "rating"])
            return build_interactions(frame, name="tiny-walk")
    """)
    )
    code = "from contrec_hf.data import load_sequential_dataset as load; print(load('tiny-walk').num_items)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "5"
