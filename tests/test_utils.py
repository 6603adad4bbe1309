import pytest
import torch

from contrec_hf.errors import ConfigError
from contrec_hf.utils import check_device, gather_rows


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
