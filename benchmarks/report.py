"""Shared by the benchmark scripts: the machine line and section replacement in BENCHMARKS.md."""

from __future__ import annotations

import datetime
import os
import platform
from collections.abc import Sequence
from pathlib import Path

import torch

BENCHMARKS = Path(__file__).resolve().parent.parent / "BENCHMARKS.md"
HEADER = (
    "# Benchmarks\n\nWritten by the scripts in `benchmarks/`; each replaces its own "
    'section. Rows marked "not measured" need hardware the run did not have.\n'
)


def machine() -> str:
    """One line naming the machine the figures come from, and the date."""
    cpu = platform.processor() or platform.machine()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (
        f"{platform.node()} ({cpu}, {os.cpu_count()} cores, {gpu}), torch "
        f"{torch.__version__}, {datetime.date.today().isoformat()}"
    )


def machine_and_load(load: Sequence[float]) -> str:
    """The machine line with the 1-minute load average at the start and end of the run,
    ``load`` = [start, end] (the CI machines are shared: how busy the cores were)."""
    return (
        f"Machine: {machine()}; load average {load[0]:.1f} at the start, {load[1]:.1f} at the end"
    )


def publish(title: str, lines: Sequence[str], *, write: bool = True) -> None:
    """Print ``lines`` and, with ``write``, make them section ``## {title}`` of BENCHMARKS.md."""
    body = "\n".join(lines)
    print(body)
    if write:
        write_section(title, body)


def write_section(title: str, body: str) -> None:
    """Replace (or append) section ``## {title}`` of BENCHMARKS.md with ``body``."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else HEADER
    heading = f"## {title}\n"
    section = f"{heading}\n{body.strip()}\n"
    if heading in text:
        start = text.index(heading)
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end:] if end != -1 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text)
