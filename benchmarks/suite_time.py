"""How long `make test` takes here, and its slowest tests.

    python -m benchmarks.suite_time [--no-write]

Runs the whole suite once in a child process (its own ``PREFECT_HOME``, no pytest cache), as
``make test`` does, and makes the "Test suite" section of BENCHMARKS.md: wall time, the
pytest summary, the load average before and after (the machines are shared), and the slowest
ten setups and calls of ``--durations``.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import machine_and_load, publish

ROOT = Path(__file__).resolve().parent.parent
SLOWEST = 10


def run_suite() -> tuple[float, str]:
    """(wall seconds, pytest's output) of one full run."""
    with tempfile.TemporaryDirectory() as home:
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=10"],
            cwd=ROOT,
            env={**os.environ, "PREFECT_HOME": home},
            capture_output=True,
            text=True,
            check=False,
        )
        return time.perf_counter() - started, done.stdout + done.stderr


def section(seconds: float, output: str, load: list[float]) -> list[str]:
    """The section's lines from pytest's ``-q --durations`` output."""
    summary = next(
        (line.strip("= ") for line in reversed(output.splitlines()) if " in " in line), "?"
    )
    durations = re.findall(r"^([\d.]+)s (call|setup|teardown)\s+(\S+)$", output, re.MULTILINE)
    lines = [
        f"{machine_and_load(load)}. `python -m benchmarks.suite_time` (the whole suite, as "
        "`make test`, in one process; docs/testing.md).",
        "",
        "| run | figure |",
        "|---|---|",
        f"| wall time | {seconds / 60:.1f} min ({seconds:.0f} s) |",
        f"| pytest | {summary} |",
        "",
        f"Slowest {SLOWEST}:",
        "",
        "| seconds | phase | test |",
        "|---|---|---|",
    ]
    lines += [f"| {s} | {phase} | `{test}` |" for s, phase, test in durations[:SLOWEST]]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    load = [os.getloadavg()[0]]
    seconds, output = run_suite()
    load.append(os.getloadavg()[0])
    publish("Test suite", section(seconds, output, load), write=not args.no_write)


if __name__ == "__main__":
    main()
