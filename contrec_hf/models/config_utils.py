"""Checks shared by the package's configuration classes."""

__all__ = ["reject_unknown_kwargs"]

from transformers import GenerationConfig

# Keys transformers itself hands to a config's constructor when loading one (PreTrainedConfig.__post_init__).
_TRANSFORMERS_KEYS = frozenset(
    {
        "transformers_version",
        "architectures",
        "auto_map",
        "name_or_path",
        "torch_dtype",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "num_labels",
        "per_layer_config",
        *GenerationConfig._get_default_generation_params(),
    }
)


def reject_unknown_kwargs(config, kwargs: dict) -> None:
    """Raise a clear error for keyword arguments that are not fields of ``config`` (typos, options of
    another model), and for a ``model_type`` that is not ``config``'s own (a foreign config.json)."""
    model_type = kwargs.get("model_type", type(config).model_type)
    if model_type != type(config).model_type:
        raise ValueError(
            f"{type(config).__name__} expects model_type {type(config).model_type!r}, got {model_type!r}: "
            "this config.json belongs to another model"
        )
    unknown = sorted(k for k in kwargs if k != "model_type" and k not in _TRANSFORMERS_KEYS and not k.startswith("_"))
    if unknown:
        known = sorted(type(config).__annotations__)
        raise ValueError(f"unknown option(s) {unknown} for {type(config).__name__}; its options are {known}")
