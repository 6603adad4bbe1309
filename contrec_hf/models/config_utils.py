"""Checks shared by the package's configuration classes."""

__all__ = ["raise_config_errors", "reject_unknown_kwargs"]

import dataclasses
import functools

from huggingface_hub.errors import StrictDataclassError
from transformers import GenerationConfig

from ..errors import ConfigError

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
        raise ConfigError(
            f"{type(config).__name__} expects model_type {type(config).model_type!r}, got {model_type!r}: "
            "this config.json belongs to another model"
        )
    unknown = sorted(k for k in kwargs if k != "model_type" and k not in _TRANSFORMERS_KEYS and not k.startswith("_"))
    if unknown:
        known = sorted(type(config).__annotations__)
        raise ConfigError(f"unknown option(s) {unknown} for {type(config).__name__}; its options are {known}")


def raise_config_errors(cls):
    """Class decorator (outermost, above ``@strict``): a field of the wrong type raises a
    :class:`~contrec_hf.errors.ConfigError` naming the field, like every other invalid option.

    An integer given to a ``float`` field is taken as that float (``ranking_loss_weight=4`` is 4.0), as Python's
    own arithmetic would; ``@strict`` alone refuses it.
    """
    strict_init = cls.__init__
    floats = {f.name for f in dataclasses.fields(cls) if f.type in (float, float | None)}

    @functools.wraps(strict_init)
    def __init__(self, *args, **kwargs):
        for name in floats.intersection(kwargs):
            if isinstance(kwargs[name], int) and not isinstance(kwargs[name], bool):
                kwargs[name] = float(kwargs[name])
        try:
            strict_init(self, *args, **kwargs)
        except StrictDataclassError as err:
            raise ConfigError(f"invalid {cls.__name__}: {err}") from err

    cls.__init__ = __init__
    return cls
