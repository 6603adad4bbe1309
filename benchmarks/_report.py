"""Shared by the benchmark scripts: where they ran, and writing their section of docs/benchmarks.md.

Each script owns one section of the page, delimited by ``<!-- NAME:begin -->`` … ``<!-- NAME:end -->``;
:func:`write_section` replaces what lies between the markers, or appends the section under a ``## Title`` if the
page lacks it. :func:`provenance` is the closing line of every section: command, date and machine.
"""

from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from pathlib import Path

import torch

from contrec_hf.errors import ConfigError
from contrec_hf.utils import check_device

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "benchmarks.md"
IMAGES = ROOT / "docs" / "img"

__all__ = [
    "DOCS",
    "IMAGES",
    "ROOT",
    "command_line",
    "cpu_name",
    "device_name",
    "machine",
    "parse_device",
    "provenance",
    "publish",
    "write_section",
]


def cpu_name() -> str:
    """The CPU model as the OS reports it (``/proc/cpuinfo`` on Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def parse_device(parser, value: str) -> torch.device:
    """``--device`` as a ``torch.device``; ``parser.error`` (exit 2, one line) for a non-device or an absent GPU."""
    try:
        check_device(value)
    except ConfigError as error:
        parser.error(f"--device: {error}")
    return torch.device(value)


def device_name(device: str | torch.device = "cpu") -> str:
    """``"GPU <name>"`` for a CUDA device torch can see, else ``"CPU <model>"``."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"GPU {torch.cuda.get_device_name(index)}"
    return f"CPU {cpu_name()}"


def machine(device: str | torch.device = "cpu") -> str:
    """One line naming the hardware and software, e.g. ``"x86_64 Linux, CPU AMD EPYC (2 cores), 2 torch threads,
    torch 2.13.0+cpu, Python 3.11.7"``; with a CUDA device, the GPU's name first."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts = [
        f"{platform.machine()} {platform.system()}",
        f"CPU {cpu_name()} ({cores} cores)",
        f"{torch.get_num_threads()} torch threads",
        f"torch {torch.__version__}",
        f"Python {platform.python_version()}",
    ]
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        parts.insert(0, f"{device_name(device)} (CUDA {torch.version.cuda})")
    return ", ".join(parts)


def provenance(command: str, device: str | torch.device = "cpu") -> str:
    """``"Command: `…` — run <date> on <machine>."``, the last line of a docs section."""
    return f"Command: `{command}` — run {datetime.date.today()} on {machine(device)}."


def command_line(script: str, args: list[str] | None = None) -> str:
    """``python benchmarks/<script> <args>``: the command as typed (``sys.argv`` by default)."""
    args = sys.argv[1:] if args is None else args
    return shlex.join(["python", f"benchmarks/{script}", *args])


def write_section(name: str, body: str, title: str, docs: Path = DOCS) -> Path:
    """Put ``body`` between ``<!-- name:begin -->`` and ``<!-- name:end -->`` in ``docs``.

    The rest of the page is kept as it is. If the markers are absent, the section is appended as
    ``## title`` followed by the markers; if only one of them is present the page is left alone and
    ``ValueError`` is raised.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    text = docs.read_text() if docs.exists() else "# Benchmarks\n"
    if (begin in text) != (end in text):
        raise ValueError(f"{docs} has only one of the markers {begin} … {end}; fix the page by hand")
    if begin not in text:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    docs.write_text(head + begin + "\n" + body.strip("\n") + "\n" + end + rest.split(end, 1)[1])
    return docs


def publish(lines: list[str], script: str, name: str, title: str, write_docs: bool) -> str:
    """Close a table's ``lines`` with the :func:`provenance` line of ``script``, print it, and with ``write_docs``
    put it in section ``name`` of the docs page (:func:`write_section`). Returns the body."""
    body = "\n".join([*lines, "", provenance(command_line(script))])
    print(body)
    if write_docs:
        write_section(name, body, title)
    return body
