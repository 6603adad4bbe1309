"""Most-popular baseline: every user gets the items ranked by their count in the training histories."""

from __future__ import annotations

import torch

from ..data.split import SequentialDataset

__all__ = ["PopularityRecommender"]


class PopularityRecommender:
    """Scores each item by how often it occurs in the training part of the split (no validation/test items).

    Example:
        ```python
        >>> from contrec_hf.data import load_sequential_dataset
        >>> from contrec_hf.baselines import PopularityRecommender
        >>> data = load_sequential_dataset("ml-100k")
        >>> pop = PopularityRecommender().fit(data)
        >>> pop.score([[0, 1]]).shape
        torch.Size([1, 1682])
        ```
    """

    def __init__(self) -> None:
        self.counts: torch.Tensor | None = None

    def fit(self, data: SequentialDataset) -> PopularityRecommender:
        self.counts = torch.as_tensor(data.item_counts(), dtype=torch.float32)  # [num_items]
        return self

    def score(self, histories: list[list[int]]) -> torch.Tensor:
        """Scores ``[len(histories), num_items]``: the same popularity row for every user."""
        if self.counts is None:
            raise RuntimeError("call fit(data) before score()")
        return self.counts.unsqueeze(0).repeat(len(histories), 1)

    __call__ = score
