"""Time ``make demo`` cold and cached, and Prefect's overhead per task.

Writes the "## Demo and Prefect" section of BENCHMARKS.md (replacing only that section):

* cold: ``demo_output/`` removed and a fresh ``PREFECT_HOME`` (no cache records), then the demo;
* cached: the same command again, nothing changed (every stage a cache hit);
* Prefect overhead: a flow of N no-op tasks against one temporary server, per task, plain and
  with :class:`flows.caching.StageCachePolicy` (which opens the store and reads a record).

Usage: ``python benchmarks/demo.py [--command "make demo"] [--tasks 50] [--skip-demo]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SECTION = "## Demo and Prefect"


def time_command(command: str, environment: dict[str, str]) -> float:
    """Wall-clock seconds of a shell command run in the project folder (it must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, shell=True, cwd=PROJECT, env=environment, check=True)
    return time.perf_counter() - start


def stamped_store(folder: str) -> str:
    """A two-image store with an ``ingest`` stamp: what the cache policy checks against."""
    import pandas as pd

    from storage import create_store

    index = pd.DataFrame(
        {
            "person_id": [1, 1],
            "camera": [1, 2],
            "split": ["train"] * 2,
            "filename": ["a.jpg", "b.jpg"],
        }
    )
    store = create_store(f"{folder}/store", index=index, height=4, width=4, block_size=2)
    with store.stage("ingest", config={}, n_blocks=1) as run:
        run.mark_done(0)
        run.finish(counts={"images": 2})
    return store.url


def task_overhead(n_tasks: int, store_url: str) -> dict[str, float]:
    """Seconds per task of a flow of ``n_tasks`` no-op tasks: plain, and cached by stage."""
    from prefect import flow, task

    from flows.caching import StageCachePolicy
    from storage import StageStamp, open_store

    @task
    def plain(i: int) -> int:
        return i

    @task(cache_policy=StageCachePolicy(stage="ingest"), persist_result=True)
    def staged(store_url: str, upstream: dict[str, object], i: int) -> StageStamp | None:
        return open_store(store_url).stamp("ingest")

    @flow
    def many(kind: str) -> float:
        start = time.perf_counter()
        for i in range(n_tasks):
            if kind == "plain":
                plain(i)
            else:
                staged(store_url, {}, i)
        return (time.perf_counter() - start) / n_tasks

    many("plain")  # starts the temporary server and warms imports
    return {
        kind: many("plain" if kind == "plain" else "staged")
        for kind in ("plain", "staged", "staged-cached")
    }


def write_section(lines: list[str]) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    path = PROJECT / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    body = "\n".join([SECTION, "", *lines]).rstrip() + "\n"
    start = text.find(SECTION)
    if start < 0:
        text = text.rstrip() + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("" if end < 0 else "\n" + text[end + 1 :])
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--command", default="make demo")
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--skip-demo", action="store_true", help="only the task overhead")
    args = parser.parse_args()
    home = tempfile.mkdtemp(prefix="bench-prefect-")
    os.environ.update(PREFECT_HOME=home, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    lines = [
        f"Machine: {platform.node()}, {os.cpu_count()} CPUs, {platform.platform()}, "
        f"Python {platform.python_version()}. Date: {dt.date.today().isoformat()}.",
        "",
    ]
    if not args.skip_demo:
        shutil.rmtree(PROJECT / "demo_output", ignore_errors=True)
        environment = dict(os.environ)
        load = os.getloadavg()[0]
        cold = time_command(args.command, environment)
        cached = time_command(args.command, environment)
        lines += [
            f"`{args.command}` (demo.yaml, CPU; load average {load:.1f} at the start, "
            f"{os.getloadavg()[0]:.1f} at the end):",
            "",
            "| run | seconds |",
            "|---|---|",
            f"| cold (no store, no cache records) | {cold:.0f} |",
            f"| cached (nothing changed: every stage a cache hit) | {cached:.0f} |",
            "",
        ]
    overhead = task_overhead(args.tasks, stamped_store(home))
    lines += [
        f"Prefect overhead per task ({args.tasks} no-op tasks run one after another inside "
        "a flow; flow start-up excluded; temporary server in this process):",
        "",
        "| task | ms per task |",
        "|---|---|",
        f"| plain task | {1000 * overhead['plain']:.1f} |",
        f"| StageCachePolicy, first run (key, store lookup, record write) | "
        f"{1000 * overhead['staged']:.1f} |",
        f"| StageCachePolicy, cache hit | {1000 * overhead['staged-cached']:.1f} |",
        "",
        "A Python process that runs a flow without a server first starts a temporary one "
        "(10-17 s here); against a running server that cost is gone.",
    ]
    write_section(lines)
    print("\n".join(lines))
    sys.exit(0)


if __name__ == "__main__":
    main()
