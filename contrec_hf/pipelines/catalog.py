"""The item catalog a saved pipeline recommends from: raw ids, text, features and latents of every item."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from ..errors import DataError
from ..saving import AtomicSaveMixin, SafeLoadMixin

__all__ = ["ContRecCatalog"]


class ContRecCatalog(AtomicSaveMixin, SafeLoadMixin, ModelMixin, ConfigMixin):
    """Every item's raw id, title, category, feature vector (for prompts) and item-table row (for retrieval).

    A diffusers component, so a pipeline folder carries its catalog (`catalog/config.json` holds ids and text,
    `catalog/diffusion_pytorch_model.safetensors` the tensors). Raw ids are strings; for numeric ids ``1`` and
    ``"1"`` are the same item.

    Args:
        item_ids (`list[str]`): raw id of each item, in index order.
        titles (`list[str]`) / categories (`list[str]`): item text, in index order.
        feature_dim (`int`) / latent_dim (`int`): sizes of the stored features and latents; `latents` holds the
            recommender's `item_table`, the frozen σ-VAE latents by default (`[num_items, hidden]` for a tied table).
    """

    @register_to_config
    def __init__(
        self,
        item_ids: Sequence[str] = (),
        titles: Sequence[str] = (),
        categories: Sequence[str] = (),
        feature_dim: int = 1,
        latent_dim: int = 1,
    ) -> None:
        super().__init__()
        n = len(item_ids)
        if len(titles) != n or len(categories) != n:
            raise DataError(f"catalog has {n} ids but {len(titles)} titles and {len(categories)} categories")
        if len(set(map(str, item_ids))) != n:
            raise DataError("catalog item ids must be unique")
        self.register_buffer("features", torch.zeros(n, feature_dim))
        self.register_buffer("latents", torch.zeros(n, latent_dim))
        self._index = {str(raw).strip(): i for i, raw in enumerate(item_ids)}

    @classmethod
    def build(
        cls,
        item_ids: Sequence[str],
        titles: Sequence[str],
        categories: Sequence[str],
        features: torch.Tensor,
        latents: torch.Tensor,
    ) -> ContRecCatalog:
        """A catalog holding ``features`` `[num_items, feature_dim]` and ``latents`` `[num_items, latent_dim]`."""
        if features.shape[0] != len(item_ids) or latents.shape[0] != len(item_ids):
            raise DataError(
                f"{len(item_ids)} item ids but features {tuple(features.shape)} and latents {tuple(latents.shape)}"
            )
        catalog = cls(
            item_ids=[str(i) for i in item_ids],
            titles=list(titles),
            categories=list(categories),
            feature_dim=features.shape[1],
            latent_dim=latents.shape[1],
        )
        catalog.features.copy_(features)
        catalog.latents.copy_(latents)
        return catalog

    @property
    def num_items(self) -> int:
        return len(self.config.item_ids)

    def index(self, raw_ids: Sequence[str | int]) -> list[int]:
        """Raw ids → item indices; unknown ids raise a :class:`DataError` naming them."""
        if not hasattr(self, "_index") or len(self._index) != self.num_items:
            self._index = {str(raw).strip(): i for i, raw in enumerate(self.config.item_ids)}
        unknown = [r for r in raw_ids if str(r).strip() not in self._index]
        if unknown:
            raise DataError(f"unknown item id(s) {unknown[:10]}: not in this pipeline's catalog")
        return [self._index[str(r).strip()] for r in raw_ids]
