import pytest
import torch

from contrec_hf.evaluation import compute_metrics, evaluate_module_path, mask_history, target_ranks

evaluate = pytest.importorskip("evaluate")


def test_evaluate_module_loads_offline_and_matches_library():
    metric = evaluate.load(evaluate_module_path())
    torch.manual_seed(0)
    scores = torch.randn(6, 11)
    targets = torch.tensor([0, 3, 5, 7, 9, 10])
    histories = [[1, 2], [0], [], [3, 4, 6], [10], [2]]
    got = metric.compute(predictions=scores.tolist(), references=targets.tolist(), histories=histories, ks=[1, 5])
    expected = compute_metrics(target_ranks(mask_history(scores.clone(), histories), targets), (1, 5))
    assert got == pytest.approx(expected)
