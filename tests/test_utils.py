import pytest
import torch

from contrec_hf.errors import ConfigError
from contrec_hf.utils import check_device


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
