"""Exception types raised by contrec_hf.

Every error the library raises on bad input derives from :class:`ContRecError`, so a caller can catch
them all at once, and also from the matching built-in type (``ValueError``, ``FileNotFoundError``),
so code written against the standard library keeps working.
"""

from __future__ import annotations

__all__ = ["ContRecError", "DataError", "DatasetNotFoundError", "EvaluationError"]


class ContRecError(Exception):
    """Base class of every error contrec_hf raises on purpose."""


class DataError(ContRecError, ValueError):
    """A dataset file or table is malformed: missing columns, unparsable values, empty input."""


class DatasetNotFoundError(ContRecError, FileNotFoundError):
    """A dataset name is unknown, or its files are not where they were looked for."""


class EvaluationError(ContRecError, ValueError):
    """Scores or targets handed to the evaluation code are unusable (non-finite, wrong shape)."""
