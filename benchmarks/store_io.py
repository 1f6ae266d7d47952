"""Store figures at Market-1501 size: ingest rate, size on disk, load-into-memory, random reads.

Builds a synthetic dataset with Market-1501's image count (32,668 by default), ingests it and
measures. Run: ``python -m benchmarks.store_io [--images 32668] [--work DIR]``.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.report import machine, write_section
from pipeline.ingest import ingest
from pipeline.synthetic import generate_synthetic
from storage import open_store


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=32_668)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="am-bench-"))
    images_per_id = 20
    ids = max(2, args.images // images_per_id)
    started = time.perf_counter()
    generate_synthetic(work / "data", ids=ids, images_per_id=images_per_id, seed=0)
    synth_seconds = time.perf_counter() - started
    shutil.rmtree(work / "store", ignore_errors=True)
    started = time.perf_counter()
    stamp = ingest(work / "data", str(work / "store"))
    ingest_seconds = time.perf_counter() - started
    n = stamp.counts["images"]
    jpeg_bytes = folder_bytes(work / "data") - folder_bytes(work / "data" / "annotations")
    store_bytes = folder_bytes(work / "store")
    store = open_store(str(work / "store"))
    started = time.perf_counter()
    arrays = store.load_in_memory()
    load_seconds = time.perf_counter() - started
    decoded = sum(a.nbytes for a in arrays.values())
    rng = np.random.default_rng(0)
    batches = 50
    started = time.perf_counter()
    for _ in range(batches):
        store.read("images", np.sort(rng.choice(n, 32, replace=False)))
    random_rate = batches * 32 / (time.perf_counter() - started)
    rows = [
        ("synthetic dataset generation", f"{n / synth_seconds:,.0f} images/s"),
        (
            "ingest (decode check + decode + write)",
            f"{n / ingest_seconds:,.0f} images/s ({ingest_seconds:.1f} s for {n:,})",
        ),
        (
            "store size (images only) vs JPEG folder",
            f"{store_bytes / 2**20:,.0f} MiB vs {jpeg_bytes / 2**20:,.0f} MiB",
        ),
        (
            "load images+masks+parsing into memory",
            f"{load_seconds:.2f} s ({decoded / 2**30:.2f} GiB decoded)",
        ),
        ("random batches of 32 images", f"{random_rate:,.0f} images/s"),
    ]
    body = "\n".join(
        [
            f"Machine: {machine()}. {n:,} synthetic 128x64 images, 64 per chunk, "
            "Blosc zstd-5 bitshuffle.",
            "",
            "| measure | figure |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows],
        ]
    )
    print(body)
    write_section("Storage", body)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
