import json

import pytest
import torch

from contrec_hf.errors import ConfigError
from contrec_hf.utils import check_device, check_recorded, gather_rows


@pytest.mark.parametrize("device", [None, "cpu"])
def test_check_device_accepts(device):
    check_device(device)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "meta", "", 0])
def test_check_device_refuses_what_is_not_a_cpu_or_cuda_device(device):
    with pytest.raises(ConfigError, match="device"):
        check_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_device_needs_a_gpu():
    with pytest.raises(ConfigError, match=r"device='cuda' but torch sees no CUDA device"):
        check_device("cuda")
    with pytest.raises(ConfigError, match=r"device='cuda:1' but torch sees no CUDA device"):
        check_device("cuda:1")


def test_gather_rows_equals_indexing_and_its_gradient_is_reproducible_on_two_threads():
    # At this size indexing's backward (index_put_ with accumulate) sums repeated rows in a varying order on 2 threads.
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generator = torch.Generator().manual_seed(0)
        table = torch.randn(1682, 64, generator=generator)
        index = torch.randint(1682, (2048, 3), generator=generator)
        upstream = torch.randn(2048, 3, 64, generator=generator)

        def gradient() -> torch.Tensor:
            leaf = table.clone().requires_grad_(True)
            (gather_rows(leaf, index) * upstream).sum().backward()
            return leaf.grad

        assert torch.equal(gather_rows(table, index), table[index])
        first = gradient()
        expected = torch.zeros_like(table).index_put_((index,), upstream, accumulate=True)
        assert torch.allclose(first, expected, atol=1e-5)
        assert all(torch.equal(first, gradient()) for _ in range(10))
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("k", 0, 1), {"integer": True}, "k must be an integer ≥ 1, got 0"),
        (("k", 2.5, 1), {"integer": True}, "k must be an integer ≥ 1, got float 2.5"),
        (("rate", 0.0, 0.0), {"low_open": True}, "rate must be > 0.0, got 0.0"),
        (("p", 1.0, 0.0, 1.0), {"high_open": True}, r"p must be in \[0.0, 1.0\), got 1.0"),
        (("w", "9", 0.0), {}, "w must be a number ≥ 0.0, got str '9'"),
        (("flag", True, 0), {}, "flag must be a number ≥ 0, got bool True"),
        (("top_k", 99, 1, 13), {"integer": True, "wanted": "an integer between 1 and 13"},
         "top_k must be an integer between 1 and 13, got 99"),
    ],
)  # fmt: skip
def test_check_number_names_the_option_and_what_it_must_be(args, kwargs, message):
    from contrec_hf.errors import ConfigError
    from contrec_hf.utils import check_number

    with pytest.raises(ConfigError, match=f"^{message}$"):
        check_number(*args, **kwargs)


def test_check_number_returns_valid_values_and_raises_the_error_asked_for():
    import numpy as np

    from contrec_hf.errors import InputError
    from contrec_hf.utils import check_number

    assert check_number("k", np.int64(3), 1, 3, integer=True) == 3
    assert check_number("p", 0.0, 0.0, 1.0, high_open=True) == 0.0
    with pytest.raises(InputError):
        check_number("k", -1, 0, integer=True, error=InputError)


def test_check_recorded_compares_normalised_options_and_keeps_the_file(tmp_path):
    path = tmp_path / "recipe.json"

    def without_b(options):  # e.g. drop what only spells out a default
        return {k: v for k, v in options.items() if k != "b"}

    check_recorded(path, {"a": 1}, "other options", "use another folder", normalise=without_b)
    check_recorded(path, {"a": 1, "b": 2}, "other options", "use another folder", normalise=without_b)
    assert json.loads(path.read_text()) == {"a": 1}  # equal after normalising: accepted, the record untouched
    with pytest.raises(ConfigError, match=r"other options \(a: 1 recorded, 3 now; recipe.json\); use another folder"):
        check_recorded(path, {"a": 3, "b": 2}, "other options", "use another folder", normalise=without_b)
    with pytest.raises(ConfigError, match="b: None recorded, 2 now"):  # without normalise every field counts
        check_recorded(path, {"a": 1, "b": 2}, "other options", "use another folder")
    assert json.loads(path.read_text()) == {"a": 1}
