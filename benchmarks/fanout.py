"""Synthesis fanned out over a local Dask cluster against the same work in one process.

Builds a synthetic Market-layout store (provided masks and parsing), a paper-size SAN generator
checkpoint with random weights (synthesis costs the same whatever the weights), and times the
synthesis stage three ways: in this process; on ``--workers`` Dask process workers with
``--blocks-per-task`` blocks per task; and the same with one block per task (the per-task
overhead: each task reopens the store, loads the generator and the store's arrays). Dask
workers run torch with one thread each (Dask sets ``OMP_NUM_THREADS=1`` in its workers); the
in-process run uses every core.

Run from the repository root: ``python -m benchmarks.fanout [--device cuda] [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import machine, write_section
from pipeline.augmentation_sets import synthesis_plan
from pipeline.fanout import FanOut
from pipeline.ingest import ingest
from pipeline.segmentation import import_provided
from pipeline.synthesize import synthesize
from pipeline.synthetic_dataset import generate_synthetic
from san_model.checkpoint import load_generator, save_checkpoint
from san_model.config import SANConfig
from san_model.generator import build_generator
from storage import PersonStore, open_store


def build_store(folder: Path, *, ids: int, block_size: int) -> PersonStore:
    """A synthetic store with ingest, masks and parsing finished."""
    source = folder / "synthetic"
    generate_synthetic(source, ids=ids, images_per_id=8, seed=0)
    ingest(source, str(folder / "store"), block_size=block_size)
    store = open_store(str(folder / "store"), mode="r+")
    for kind in ("masks", "parsing"):
        import_provided(store, source / "annotations", kind=kind)  # type: ignore[arg-type]
    return store


def random_checkpoint(store: PersonStore, folder: Path) -> Path:
    """A paper-size generator checkpoint (random weights) in the trainer's format, with a
    ``generator`` stamp that says so (synthesis requires one)."""
    config = SANConfig.market1501()
    generator = build_generator(config=config)
    state = {"generator": generator.state_dict(), "config": config.to_dict()}
    path = save_checkpoint(state, folder / "generator.pt")
    with store.stage("generator", config={"benchmark": "random weights"}, n_blocks=0) as run:
        run.finish(counts={})
    return path


def timed(
    store: PersonStore, checkpoint: Path, seed: int, **options: object
) -> tuple[float, int, int]:
    """Seconds, generated images and tasks of one synthesis run (a new seed: a fresh stage)."""
    started = time.perf_counter()
    stamp = synthesize(store, checkpoint, alpha=2, seed=seed, **options)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    return seconds, stamp.counts["generated"], int(stamp.report.get("block_tasks", 0))


def task_setup(store: PersonStore, checkpoint: Path, device: str) -> float:
    """Seconds of what every synthesis task does before its first block (reopen the store,
    plan, load the generator, decode the store's images, masks and parsing), in this process."""
    started = time.perf_counter()
    reopened = open_store(store.url)
    synthesis_plan(reopened.index, 2, 0)
    load_generator(checkpoint, device=device)
    reopened.load_in_memory(("images", "masks", "parsing"))
    return time.perf_counter() - started


def import_pipeline() -> None:
    """Worker warm-up: import torch and the pipeline before the clock starts."""
    import pipeline.synthesize  # noqa: F401


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--blocks-per-task", type=int, default=2)
    parser.add_argument("--ids", type=int, default=24, help="synthetic identities")
    parser.add_argument("--block-size", type=int, default=16)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = build_store(folder, ids=args.ids, block_size=args.block_size)
        checkpoint = random_checkpoint(store, folder)
        common = {"device": args.device, "batch_size": args.block_size}
        load_before = os.getloadavg()[0]
        setup = task_setup(store, checkpoint, args.device)
        serial, images, _ = timed(store, checkpoint, 0, **common)
        with (
            LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            client.run(import_pipeline)
            executor = client.get_executor()
            fanned = timed(
                store, checkpoint, 1, fan_out=FanOut(executor, args.blocks_per_task), **common
            )
            per_block = timed(store, checkpoint, 2, fan_out=FanOut(executor, 1), **common)
        load_after = os.getloadavg()[0]
    rows = [
        ("in this process", serial, 0),
        (f"{args.workers} Dask workers, {args.blocks_per_task} blocks/task", *fanned[::2]),
        (f"{args.workers} Dask workers, 1 block/task", *per_block[::2]),
    ]
    table = "\n".join(
        f"| {name} | {seconds:.1f} | {images / seconds:.1f} | {tasks or '-'} |"
        for name, seconds, tasks in rows
    )
    body = (
        f"Machine: {machine()}; device {args.device}; load average {load_before:.1f} before, "
        f"{load_after:.1f} after.\n"
        f"Synthesis of {images} images (alpha 2, paper-size generator, random weights, "
        f"{args.block_size}-image blocks), `python -m benchmarks.fanout`.\n\n"
        "| run | seconds | images/s | tasks |\n|---|---|---|---|\n"
        f"{table}\n\n"
        "Each task reopens the store, loads the generator and decodes the store's arrays "
        f"({setup:.1f} s in all, measured in this process before the runs). On a CPU "
        "machine one process already uses every core: one-thread workers do no more work "
        "per second, and fan-out adds that per-task cost and the idle time of the last "
        "tasks. It pays with several GPUs or machines, one worker each. "
        "GPU figures (one worker per GPU): not measured, no GPU lent to this task."
    )
    print(body)
    write_section("Block fan-out over Dask (synthesis)", body)


if __name__ == "__main__":
    main()
