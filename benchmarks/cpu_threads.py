"""Does training on one CPU thread change what the demo's generator learns? Paired seeds.

    python -m benchmarks.cpu_threads [--steps N] [--seeds 0 1] [--no-write]

CPU training runs on one intra-op thread (:mod:`foundation.cpu`, docs/cpu.md); before, it ran
on the process's two. The arithmetic is the same ops, but reductions split across threads sum
in another order, so weights differ in the last bits from the first step and the runs drift
apart. This trains the demo preset on the demo's synthetic set (100 identities x 8 images,
every ordered training pair, held-out pairs of unseen identities) with one and with two
threads for each seed, and compares the held-out pixel metrics: the thread count's effect
(one minus two threads, per seed) against the seed's (seed to seed, same thread count).
Writes the "CPU training threads: held-out metrics" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import foundation.cpu
from benchmarks.report import machine_and_load, publish
from benchmarks.san_learning import COLUMNS, build_synthetic_store
from pipeline.evaluate import evaluate_generator
from pipeline.train_generator import train_generator
from san_model.config import SANConfig
from storage import PersonStore

TITLE = "CPU training threads: held-out metrics"
THREADS = (1, 2)


def train_and_score(
    store: PersonStore, run_dir: Path, *, seed: int, threads: int, steps: int | None
) -> tuple[dict[str, Any], float]:
    """(held-out pixel metrics, training seconds) of the demo preset trained on ``threads``
    intra-op threads."""
    foundation.cpu.TRAINING_THREADS = threads
    config = SANConfig.demo(seed=seed)
    started = time.perf_counter()
    train_generator(store, run_dir, config=config, max_steps=steps, pretrained_vgg=False)
    seconds = time.perf_counter() - started
    return evaluate_generator(store, run_dir, offline=True).report["metrics"], seconds


def section(
    results: dict[tuple[int, int], tuple[dict[str, Any], float]],
    seeds: list[int],
    steps: int,
    load: list[float],
    test_pairs: int,
) -> list[str]:
    lines = [
        f"{machine_and_load(load)}. Demo preset (128x64, batch 8, {steps:,} steps), no "
        f"perceptual loss, the demo's synthetic set; {test_pairs} held-out pairs of unseen "
        "identities. The runs took turns, one at a time. `python -m benchmarks.cpu_threads`.",
        "",
        "| seed | threads | training minutes | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 3) + "|",
    ]
    for seed in seeds:
        for threads in THREADS:
            metrics, seconds = results[(seed, threads)]
            values = " | ".join(f"{metrics[name]:.4f}" for name in COLUMNS)
            lines.append(f"| {seed} | {threads} | {seconds / 60:.1f} | {values} |")
    lines += [
        "",
        "Differences: one thread minus two (same seed), and the seed's spread (last seed minus "
        "first, same thread count):",
        "",
        "| difference | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 1) + "|",
    ]
    for seed in seeds:
        row = [results[(seed, 1)][0][n] - results[(seed, 2)][0][n] for n in COLUMNS]
        lines.append(f"| threads, seed {seed} | " + " | ".join(f"{v:+.4f}" for v in row) + " |")
    for threads in THREADS:
        first, last = results[(seeds[0], threads)][0], results[(seeds[-1], threads)][0]
        row = [last[n] - first[n] for n in COLUMNS]
        lines.append(
            f"| seeds, {threads} thread(s) | " + " | ".join(f"{v:+.4f}" for v in row) + " |"
        )
    within = [
        name
        for name in COLUMNS
        if all(
            abs(results[(s, 1)][0][name] - results[(s, 2)][0][name])
            <= max(
                abs(results[(seeds[-1], t)][0][name] - results[(seeds[0], t)][0][name])
                for t in THREADS
            )
            for s in seeds
        )
    ]
    lines += [
        "",
        f"Metrics where every thread difference is within the larger seed spread: "
        f"{', '.join(within) or 'none'} (of {', '.join(COLUMNS)}). With {len(seeds)} seeds "
        "this is a rough check, not an interval.",
    ]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="default: the demo preset's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--test-pairs", type=int, default=128)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    steps = args.steps or SANConfig.demo().total_steps
    load = [os.getloadavg()[0]]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        store = build_synthetic_store(work, ids=100, images_per_id=8, test_pairs=args.test_pairs)
        for seed in args.seeds:
            for threads in THREADS:
                run_dir = work / f"run_s{seed}_t{threads}"
                results[(seed, threads)] = train_and_score(
                    store, run_dir, seed=seed, threads=threads, steps=args.steps
                )
                print(f"seed {seed}, {threads} thread(s): {results[(seed, threads)]}", flush=True)
    load.append(os.getloadavg()[0])
    lines = section(results, args.seeds, steps, load, args.test_pairs)
    publish(TITLE, lines, write=not args.no_write)


if __name__ == "__main__":
    main()
