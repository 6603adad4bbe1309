"""Atomic saving and safe loading, shared by every object the library saves.

Saving writes into a hidden temporary sibling of the target folder (``.NAME.partial-PID-XXXX``) and swaps it in
only once every file is written, so a crash or a ``SIGKILL`` mid-save leaves either the previous version or
nothing at the target, never a folder that loads half-written. On Linux the swap of an existing folder is one
``renameat2(RENAME_EXCHANGE)`` call; elsewhere it is two renames (the old folder is moved aside first).

Overwriting keeps what the library does not own: files a user put into the folder (a README, notes) are carried
into the new version; the library's own files (weights, configs) are replaced. Partial folders left by a killed
process are removed by the next save into the same parent folder.

Loading is safetensors-only: :func:`load_guard` turns the errors transformers, diffusers and safetensors raise
on a missing, truncated or corrupt file into a :class:`~contrec_hf.errors.CheckpointError` naming the folder.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fnmatch
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from .errors import CheckpointError

__all__ = ["AtomicSaveMixin", "SafeLoadMixin", "atomic_directory", "load_guard", "local_folder", "own_aligned_memory"]

# Files the library writes and therefore replaces on overwrite; anything else in the old folder is carried over.
OWNED_PATTERNS = (
    "*.safetensors",
    "*.safetensors.index.json",
    "*.json",
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.parquet",
    "*.model",
    "*.txt",
    "*.jinja",
)
_PARTIAL = ".partial-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2``); False where the platform cannot."""
    if sys.platform != "linux":
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
        return False
    raise OSError(code, f"cannot swap {a} and {b}: {os.strerror(code)}")


def _carry_over(old: Path, new: Path) -> None:
    """Copy into ``new`` what ``old`` holds and ``new`` lacks, except the library's own files."""
    for entry in old.iterdir():
        twin = new / entry.name
        if entry.is_dir() and not entry.is_symlink():
            if twin.is_dir():
                _carry_over(entry, twin)
            elif not twin.exists() and _PARTIAL not in entry.name:
                shutil.copytree(entry, twin, symlinks=True)
        elif not twin.exists() and not any(fnmatch.fnmatch(entry.name, p) for p in OWNED_PATTERNS):
            shutil.copy2(entry, twin, follow_symlinks=False)


def _remove_stale_partials(target: Path) -> None:
    """Delete partial folders of ``target`` whose writing process is gone (killed mid-save)."""
    for stale in target.parent.glob(f".{target.name}{_PARTIAL}*"):
        pid = stale.name[len(f".{target.name}{_PARTIAL}") :].split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(stale, ignore_errors=True)
        except PermissionError:  # another user's live process
            continue


@contextlib.contextmanager
def atomic_directory(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to write into; on success it replaces ``target`` atomically.

    On any exception (or a kill) the target is untouched and the temporary folder is removed (or, after a kill,
    removed by the next save). Files in an existing ``target`` that the library does not own are carried over.

    Example:
        ```python
        >>> import tempfile, pathlib
        >>> from contrec_hf.saving import atomic_directory
        >>> root = pathlib.Path(tempfile.mkdtemp())
        >>> with atomic_directory(root / "model") as tmp:
        ...     _ = (tmp / "config.json").write_text("{}")
        >>> sorted(p.name for p in (root / "model").iterdir())
        ['config.json']
        ```
    """
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise CheckpointError(f"cannot save into {target}: it exists and is not a folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-", dir=target.parent))
    try:
        yield tmp
        if not target.exists():
            tmp.rename(target)
            return
        _carry_over(target, tmp)
        if not _exchange(tmp, target):
            aside = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-old-", dir=target.parent))
            aside.rmdir()
            target.rename(aside)
            tmp.rename(target)
            tmp = aside
        shutil.rmtree(tmp)  # now the previous version
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class AtomicSaveMixin:
    """Make ``save_pretrained`` of a transformers / diffusers class atomic (see :func:`atomic_directory`).

    Put it first among the bases. ``push_to_hub=True`` still names the repository after the target folder.
    """

    def save_pretrained(self, save_directory: str | os.PathLike, *args: Any, **kwargs: Any):
        if kwargs.get("push_to_hub"):
            kwargs.setdefault("repo_id", Path(save_directory).name)
        with atomic_directory(save_directory) as tmp:
            return super().save_pretrained(tmp, *args, **kwargs)


@contextlib.contextmanager
def load_guard(source: str | os.PathLike) -> Iterator[None]:
    """Re-raise loading failures (missing, truncated or corrupt files) as a ``CheckpointError`` naming ``source``."""
    try:
        yield
    except CheckpointError:
        raise
    except (SafetensorError, json.JSONDecodeError, UnicodeDecodeError, OSError) as err:
        chain, cause = [], err
        while cause is not None and len(chain) < 8:  # diffusers wraps safetensors' error in an OSError
            chain.append(cause)
            cause = cause.__cause__ or cause.__context__
        corrupt = [e for e in chain if isinstance(e, (SafetensorError, json.JSONDecodeError, UnicodeDecodeError))]
        if corrupt:
            where = "" if corrupt[0] is err else f" ({err})"
            raise CheckpointError(f"{source} holds a corrupt or truncated file{where}: {corrupt[0]}") from err
        raise CheckpointError(f"cannot load {source}: {err}") from err


class SafeLoadMixin:
    """``from_pretrained`` that loads safetensors only and reports broken folders as ``CheckpointError``."""

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *args: Any, **kwargs: Any):
        local = local_folder(pretrained_model_name_or_path, subfolder=kwargs.get("subfolder") or "")
        if local is not None and not (local / "config.json").is_file():
            raise CheckpointError(f"{local} is not a saved {cls.__name__}: config.json is missing")
        kwargs.setdefault("use_safetensors", True)
        if getattr(cls, "legacy_key_mapping", None):  # old parameter names → today's (regex → replacement)
            kwargs.setdefault("key_mapping", cls.legacy_key_mapping)
        with load_guard(pretrained_model_name_or_path):
            return own_aligned_memory(super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs))


def own_aligned_memory(module):
    """Give every CPU parameter and buffer of ``module`` that does not start on a 64-byte boundary its own copy
    (returns ``module``).

    Loaded weights may point into the memory-mapped safetensors file at any offset, and the BLAS kernels for a
    single row (GEMV) round differently by alignment: without the copy a reloaded model's outputs for a batch of
    one differ from the saved model's in the last bit. Freshly allocated tensors start on 64-byte boundaries.
    """
    for tensor in [*module.parameters(), *module.buffers()]:
        if tensor.device.type == "cpu" and tensor.data_ptr() % 64:
            tensor.data = tensor.data.clone()
    return module


def local_folder(name_or_path: str | os.PathLike, subfolder: str = "") -> Path | None:
    """The local folder ``name_or_path`` names, or ``None`` for a Hub repository id (``"user/name"``).

    Raises a ``CheckpointError`` for a local-looking path (absolute, relative with ``./``, more than one
    ``/``, or a ``Path``) that does not exist, instead of the Hub client's confusing repo-id message.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path / subfolder if subfolder else path
    text = str(name_or_path)
    hub_like = isinstance(name_or_path, str) and text.count("/") <= 1 and not text.startswith((".", "/", "~"))
    if hub_like and not path.exists():
        return None
    raise CheckpointError(f"no saved model at {text}: the folder does not exist")
