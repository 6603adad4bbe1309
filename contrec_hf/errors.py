"""Exception types raised by contrec_hf.

Every error the library raises on bad input derives from :class:`ContRecError`, so a caller can catch
them all at once, and also from the matching built-in type (``ValueError``, ``FileNotFoundError``),
so code written against the standard library keeps working.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContRecError",
    "DataError",
    "DatasetNotFoundError",
    "EvaluationError",
    "InputError",
]


class ContRecError(Exception):
    """Base class of every error contrec_hf raises on purpose."""


class DataError(ContRecError, ValueError):
    """A dataset file or table is malformed: missing columns, unparsable values, empty input."""


class DatasetNotFoundError(ContRecError, FileNotFoundError):
    """A dataset name is unknown, or its files are not where they were looked for."""


class EvaluationError(ContRecError, ValueError):
    """Scores or targets handed to the evaluation code are unusable (non-finite, wrong shape)."""


class InputError(ContRecError, ValueError):
    """An argument of a call is unusable: ``top_k`` out of range, zero diffusion steps, a negative guidance
    scale, an unknown scheduler or read-out, features of the wrong shape or with NaN/inf."""


class ConfigError(ContRecError, ValueError):
    """A configuration is invalid: a wrong type or value, an unknown option, or a ``model_type`` that
    belongs to another model."""


class CheckpointError(ContRecError, OSError):
    """A saved folder cannot be loaded: a file is missing, truncated or corrupt, or a pipeline component
    folder is absent. Derives from ``OSError`` as transformers' and diffusers' own loading errors do."""
