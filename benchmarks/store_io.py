"""The store before and after format 2, side by side in one run, against the JPEG folder.

On a Market-1501 folder (the real one with ``--source``, else a synthetic one of Market's
size): the JPEG folder decoded by PIL and by simplejpeg; format 1 (decoded pixels in 64-image
Blosc zstd-5 bitshuffle chunks, ingested as before: a decode-check pass, then a decode-and-
write pass) and format 2 (:mod:`storage.encoding`); both with the same label maps as masks and
parsing. Measures size, ingest, whole-set load (1 and 2 threads), random batches of 32,
exactness against PIL for every image, lossless codecs for generated images and label maps,
and the streaming pair sampler. Run: ``python -m benchmarks.store_io [--source DIR]``; writes
the "Storage" section of BENCHMARKS.md.

With ``--loads`` it measures only whole-set loads, in CPU time as well as wall time (the
machines are shared): a bare simplejpeg decode of the store's JPEG bytes into fresh arrays
against :meth:`storage.PersonStore.load_in_memory` on 1 and 2 threads, medians of
``--repeats`` interleaved rounds; it writes the "Storage: whole-set loads" section.
"""

from __future__ import annotations

import argparse
import io
import mmap
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import simplejpeg
import torch
from numcodecs import Blosc
from PIL import Image

from benchmarks.report import machine, write_section
from pipeline.datasets.market1501 import scan_market1501
from pipeline.ingest import decode_image, ingest
from pipeline.streaming import StreamingPairSampler
from pipeline.synthetic_dataset import generate_synthetic
from san_model.train import ModelBatch, PairSampler, SANTrainData
from storage import (
    PersonStore,
    create_store,
    decode_element,
    encode_labels,
    encode_rgb,
    open_store,
)

BATCH, BATCHES = 32, 100


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def legacy_ingest(paths: list[str], index: Any, url: str) -> None:
    """Format 1's ingest as it was: a PIL decode-check pass over every file, then per block a
    PIL decode pass and a write of the pixels (4 threads each, as before)."""

    def decode(path: str) -> np.ndarray:
        return decode_image(path, size=(128, 64), resize=False)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(decode, paths))
    store = create_store(url, index=index, height=128, width=64, format_version=1)
    for block in range(store.n_blocks):
        rows = store.block_slice(block)
        with ThreadPoolExecutor(4) as pool:
            store.write("images", block, np.stack(list(pool.map(decode, paths[rows]))))


def label_maps(work: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks and parsing drawn by the synthetic generator (ground truth shapes)."""
    generate_synthetic(work / "labels", ids=max(2, count // 20), images_per_id=20, seed=1)
    masks = sorted((work / "labels" / "annotations" / "masks").glob("*.png"))[:count]
    parsing = sorted((work / "labels" / "annotations" / "parsing").glob("*.png"))[:count]
    return (
        np.stack([np.asarray(Image.open(p)) for p in masks]).astype(np.uint8),
        np.stack([np.asarray(Image.open(p)) for p in parsing]).astype(np.uint8),
    )


def write_labels(store: PersonStore, masks: np.ndarray, parsing: np.ndarray) -> None:
    for block in range(store.n_blocks):
        rows = store.block_slice(block)
        cycle = np.arange(rows.start, rows.stop) % len(masks)
        store.write("masks", block, masks[cycle])
        store.write("parsing", block, parsing[cycle])


def random_rate(read: Callable[[np.ndarray], Any], n: int) -> float:
    rng = np.random.default_rng(0)
    batches = [np.sort(rng.choice(n, BATCH, replace=False)) for _ in range(BATCHES)]
    seconds, _ = timed(lambda: [read(rows) for rows in batches])
    return BATCHES * BATCH / seconds


def codec_rows(images: np.ndarray, masks: np.ndarray, parsing: np.ndarray) -> list[str]:
    """Lossless candidates for generated images (Market photos as the stand-in) and labels."""

    def pil(fmt: str, **options: Any) -> tuple[Callable[[np.ndarray], bytes], Callable]:
        def encode(a: np.ndarray) -> bytes:
            buffer = io.BytesIO()
            Image.fromarray(a).save(buffer, format=fmt, **options)
            return buffer.getvalue()

        return encode, lambda b, out: np.asarray(Image.open(io.BytesIO(b)))

    blosc = Blosc(cname="zstd", clevel=5, shuffle=Blosc.BITSHUFFLE)

    def blosc_codec() -> tuple[Callable[[np.ndarray], bytes], Callable]:
        return (
            lambda a: bytes(blosc.encode(np.ascontiguousarray(a))),
            lambda b, out: np.frombuffer(blosc.decode(b), np.uint8).reshape(out.shape),
        )

    candidates = {
        "images": (
            images,
            {
                "AMG1: gradient residual + zstd-3 (chosen)": (encode_rgb, decode_element),
                "PNG, zlib level 1": pil("PNG", compress_level=1),
                "PNG, zlib level 6": pil("PNG", compress_level=6),
                "WebP lossless, method 0": pil("WEBP", lossless=True, quality=0, method=0),
                "Blosc zstd-5 bitshuffle (format 1's codec, per image)": blosc_codec(),
            },
        ),
        "masks": (
            masks,
            {
                "AML1: zstd-9 (chosen)": (encode_labels, decode_element),
                "PNG, zlib level 1": pil("PNG", compress_level=1),
                "Blosc zstd-5 bitshuffle": blosc_codec(),
            },
        ),
        "parsing": (
            parsing,
            {
                "AML1: zstd-9 (chosen)": (encode_labels, decode_element),
                "PNG, zlib level 6": pil("PNG", compress_level=6),
                "Blosc zstd-5 bitshuffle": blosc_codec(),
            },
        ),
    }
    rows = []
    for kind, (data, codecs) in candidates.items():
        for name, (encode, decode) in codecs.items():
            seconds_e, encoded = timed(lambda f=encode, d=data: [f(a) for a in d])
            out = np.empty_like(data[0])
            seconds_d, decoded = timed(
                lambda f=decode, e=encoded, o=out: [np.array(f(b, o)) for b in e]
            )
            exact = all((a == b).all() for a, b in zip(data, decoded, strict=True))
            ratio = data.nbytes / sum(map(len, encoded))
            rows.append(
                f"| {kind} | {name} | {ratio:.2f} | {len(data) / seconds_e:,.0f} | "
                f"{len(data) / seconds_d:,.0f} | {'yes' if exact else 'NO'} |"
            )
    return rows


def loader_rows(store: PersonStore, encoded_bytes: int) -> list[str]:
    """Pairs/s of the streaming sampler (all encoded chunks cached / a cache of a tenth of
    them, as for a store larger than memory) against the in-memory PairSampler, and the
    float/one-hot conversion with 2 and 1 torch threads."""
    rng = np.random.default_rng(0)
    train = np.flatnonzero((store.index["split"] == "train").to_numpy())
    pairs = np.stack([rng.choice(train, 20_000), rng.choice(train, 20_000)], axis=1)
    cpu = torch.device("cpu")
    rows = []
    steps = 60

    def rate(sampler: Any) -> float:
        sampler.gather(sampler.next_pairs(), cpu)  # warm-up: first chunk reads
        seconds, _ = timed(
            lambda: [sampler.gather(sampler.next_pairs(), cpu) for _ in range(steps)]
        )
        return steps * BATCH / seconds

    for label, cache in (
        ("all encoded chunks cached", 1 << 32),
        (f"cache {encoded_bytes // 10 / 2**20:.0f} MiB, a tenth of the store", encoded_bytes // 10),
    ):
        for threads in (1, 2):
            sampler = StreamingPairSampler(
                store, pairs, batch_size=BATCH, seed=0, cache_bytes=cache, threads=threads
            )
            rows.append((f"streaming, {label}, {threads} decode thread(s)", rate(sampler)))
    rows_used, compact = np.unique(pairs, return_inverse=True)
    arrays = store.load_in_memory(rows=rows_used)
    memory = PairSampler(
        SANTrainData(
            images=arrays["images"],
            masks=arrays["masks"],
            parsing=arrays["parsing"],
            pairs=compact.reshape(pairs.shape),
        ),
        batch_size=BATCH,
        seed=0,
    )
    rows.append(("in memory (PairSampler), decoded arrays held", rate(memory)))
    batch = memory.gather(memory.next_pairs(), cpu)

    def convert() -> list[ModelBatch]:
        return [ModelBatch.from_pairs(batch, num_classes=20) for _ in range(steps)]

    previous = torch.get_num_threads()
    for threads in (2, 1):
        torch.set_num_threads(threads)
        # Steady state, as in training: the first conversions of a process page-fault their
        # 21 MB one-hot buffers in until the allocator keeps them (several times slower).
        convert()
        seconds = min(timed(convert)[0] for _ in range(3))
        rows.append(
            (f"float/one-hot conversion only, torch {threads} thread(s)", steps * BATCH / seconds)
        )
    torch.set_num_threads(previous)
    return [f"| {name} | {value:,.0f} |" for name, value in rows]


def cpu_and_wall(run: Callable[[], Any]) -> tuple[float, float]:
    """(CPU seconds of this process, every thread; wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    run()
    return time.process_time() - cpu, time.perf_counter() - wall


def load_rows(store: PersonStore, repeats: int) -> list[str]:
    """Whole-set image loads against a bare simplejpeg decode of the same bytes (held in
    memory) into fresh arrays, and the same decode into one buffer of each kind the load could
    use: medians of ``repeats`` interleaved rounds."""
    elements = store.read_encoded("images")
    shape = (len(elements), *store.item_shape("images"))

    def into(buffer: np.ndarray) -> None:
        for row, element in enumerate(elements):
            simplejpeg.decode_jpeg(element, colorspace="RGB", buffer=buffer[row])

    candidates: dict[str, Callable[[], Any]] = {
        "bare simplejpeg decode into fresh arrays": lambda: [
            simplejpeg.decode_jpeg(e, colorspace="RGB") for e in elements
        ],
        "decode into np.empty (numpy asks for huge pages)": lambda: into(np.empty(shape, np.uint8)),
        "decode into a plain mmap (4 KiB pages faulted one by one)": lambda: into(
            np.frombuffer(mmap.mmap(-1, int(np.prod(shape))), np.uint8).reshape(shape)
        ),
        "load_in_memory, 1 thread": lambda: store.load_in_memory(("images",), threads=1),
        "load_in_memory, 2 threads": lambda: store.load_in_memory(("images",), threads=2),
    }
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            runs[name].append(cpu_and_wall(run))
    cpu = {name: statistics.median(c for c, _ in values) for name, values in runs.items()}
    wall = {name: statistics.median(w for _, w in values) for name, values in runs.items()}
    bare, *_, one, two = candidates
    return [
        f"| {name} | {cpu[name]:.3f} s ({cpu[name] / cpu[bare]:.2f}x) | "
        f"{wall[name]:.3f} s ({wall[name] / wall[bare]:.2f}x) | "
        f"{min(c for c, _ in runs[name]):.3f}-{max(c for c, _ in runs[name]):.3f} s |"
        for name in candidates
    ] + [
        f"| load_in_memory, 2 threads against 1 | {cpu[two] / cpu[one]:.2f}x the CPU time | "
        f"{wall[one] / wall[two]:.2f}x faster | |"
    ]


def huge_pages() -> str:
    """The kernel's transparent huge page settings, e.g. ``enabled madvise, defrag madvise``."""
    settings = []
    for name in ("enabled", "defrag"):
        path = Path("/sys/kernel/mm/transparent_hugepage") / name
        text = path.read_text() if path.exists() else "[unknown]"
        settings.append(f"{name} {text[text.find('[') + 1 : text.find(']')]}")
    return ", ".join(settings)


def loads_section(work: Path, images: int, repeats: int) -> str:
    """The "Storage: whole-set loads" section: a synthetic Market-layout set of ``images``
    128x64 JPEGs ingested into a store under ``work``."""
    loads = [os.getloadavg()[0]]
    generate_synthetic(work / "data", ids=max(2, images // 20), images_per_id=20, seed=0)
    ingest(work / "data", str(work / "store"))
    store = open_store(str(work / "store"))
    rows = load_rows(store, repeats)
    loads.append(os.getloadavg()[0])
    return "\n".join(
        [
            f"Machine: {machine()}; load average {loads[0]:.1f} at the start, {loads[1]:.1f} "
            f"at the end (2 cores shared with other work: the CPU times are the figures to "
            f"compare, wall times move with the load). Transparent huge pages: {huge_pages()}. "
            f"{store.n_images:,} synthetic Market-1501-layout JPEGs, 128x64, stored verbatim; "
            "every image loaded into one array (load_in_memory's: ordinary 4 KiB pages, all "
            f"mapped at once before decoding); medians of {repeats} interleaved rounds. "
            f"`python -m benchmarks.store_io --loads --images {images}`.",
            "",
            "| load | CPU time (to bare) | wall time (to bare) | CPU time, min-max |",
            "|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, default=None, help="a Market-1501 folder")
    parser.add_argument("--images", type=int, default=32_668, help="synthetic set size")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--loads", action="store_true", help="whole-set loads only")
    parser.add_argument("--repeats", type=int, default=7, help="rounds of --loads")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="am-bench-"))
    if args.loads:
        section = loads_section(work, args.images, args.repeats)
        print(section)
        write_section("Storage: whole-set loads", section)
        if args.work is None:
            shutil.rmtree(work)
        return
    loads = [os.getloadavg()[0]]
    if args.source is None:
        generate_synthetic(work / "data", ids=max(2, args.images // 20), images_per_id=20, seed=0)
        source, what = work / "data", "synthetic Market-1501-layout JPEGs"
    else:
        source, what = args.source, f"real Market-1501 ({args.source.name})"
    candidates, _ = scan_market1501(source)
    paths = candidates["path"].tolist()
    n = len(paths)
    jpeg_bytes = sum(Path(p).stat().st_size for p in paths)
    files = [Path(p).read_bytes() for p in paths]  # warm the page cache for every reader

    pil_s, pil = timed(
        lambda: np.stack([decode_image(p, size=(128, 64), resize=False) for p in paths])
    )
    sj1_s, _ = timed(
        lambda: [simplejpeg.decode_jpeg(Path(p).read_bytes(), colorspace="RGB") for p in paths]
    )
    with ThreadPoolExecutor(2) as pool:
        sj2_s, _ = timed(
            lambda: list(
                pool.map(
                    lambda p: simplejpeg.decode_jpeg(Path(p).read_bytes(), colorspace="RGB"), paths
                )
            )
        )
    masks, parsing = label_maps(work, 1000)

    for name in ("v1", "v2"):
        shutil.rmtree(work / name, ignore_errors=True)
    v1_ingest_s, _ = timed(lambda: legacy_ingest(paths, candidates, str(work / "v1")))
    v2_ingest_s, stamp = timed(lambda: ingest(source, str(work / "v2")))
    assert stamp.counts["images"] == n
    v1, v2 = open_store(str(work / "v1"), mode="r+"), open_store(str(work / "v2"), mode="r+")
    size_v1, size_v2 = folder_bytes(work / "v1" / "images"), folder_bytes(work / "v2" / "images")
    write_labels(v1, masks, parsing)
    write_labels(v2, masks, parsing)
    labels_v1 = folder_bytes(work / "v1" / "masks") + folder_bytes(work / "v1" / "parsing")
    labels_v2 = folder_bytes(work / "v2" / "masks") + folder_bytes(work / "v2" / "parsing")

    load_v1_s, _ = timed(lambda: v1.load_in_memory(("images",)))
    load_v2_1_s, _ = timed(lambda: v2.load_in_memory(("images",), threads=1))
    load_v2_2_s, loaded = timed(lambda: v2.load_in_memory(("images",), threads=2))
    exact = bool((loaded["images"] == pil).all())
    del loaded
    all_v1_s, _ = timed(lambda: v1.load_in_memory())
    all_v2_s, _ = timed(lambda: v2.load_in_memory(threads=2))

    reader = v2.reader(("images",))
    reader.read(np.arange(n))  # every chunk read once: the cache is warm, as the page cache
    random = {
        "format 1: PersonStore.read": random_rate(lambda r: v1.read("images", r), n),
        "format 2: PersonStore.read (no cache: one chunk read per image)": random_rate(
            lambda r: v2.read("images", r), n
        ),
        "format 2: PersonStore.reader (encoded chunks cached)": random_rate(reader.read, n),
        "JPEG files, PIL": random_rate(
            lambda r: [decode_image(paths[i], size=(128, 64), resize=False) for i in r], n
        ),
        "JPEG files, simplejpeg": random_rate(
            lambda r: [
                simplejpeg.decode_jpeg(Path(paths[i]).read_bytes(), colorspace="RGB") for i in r
            ],
            n,
        ),
    }
    sample = pil[np.linspace(0, n - 1, 1000).astype(int)]
    del pil
    codecs = codec_rows(sample, masks, parsing)
    encoded = sum(folder_bytes(work / "v2" / a) for a in ("images", "masks", "parsing"))
    loaders = loader_rows(v2, encoded)
    loads.append(os.getloadavg()[0])
    del files

    mib = 2**20
    best_decoder = min(pil_s, sj1_s)
    rows = [
        ("JPEG folder (images only)", f"{jpeg_bytes / mib:,.1f} MiB", ""),
        (
            "store images, format 1 / format 2",
            f"{size_v1 / mib:,.1f} / {size_v2 / mib:,.1f} MiB",
            f"{size_v1 / jpeg_bytes:.2f}x / {size_v2 / jpeg_bytes:.2f}x the folder",
        ),
        (
            "store masks + parsing, format 1 / format 2",
            f"{labels_v1 / mib:,.1f} / {labels_v2 / mib:,.1f} MiB",
            f"{labels_v1 / labels_v2:.1f}x smaller",
        ),
        (
            "ingest, format 1 (decode check + decode + write) / format 2 (one decode)",
            f"{v1_ingest_s:.1f} / {v2_ingest_s:.1f} s",
            f"{v1_ingest_s / v2_ingest_s:.1f}x faster; {n / v2_ingest_s:,.0f} images/s",
        ),
        (
            "decode the JPEG folder: PIL / simplejpeg 1 thread / simplejpeg 2 threads",
            f"{pil_s:.2f} / {sj1_s:.2f} / {sj2_s:.2f} s",
            "",
        ),
        (
            "load all images: format 1 / format 2 1 thread / format 2 2 threads",
            f"{load_v1_s:.2f} / {load_v2_1_s:.2f} / {load_v2_2_s:.2f} s",
            f"format 2 is {best_decoder / load_v2_1_s:.2f}x (1 thread) and "
            f"{best_decoder / load_v2_2_s:.2f}x (2 threads) as fast as the fastest "
            f"single-thread decoder of the folder; {load_v1_s / load_v2_2_s:.1f}x format 1",
        ),
        (
            "load images + masks + parsing: format 1 / format 2 (2 threads)",
            f"{all_v1_s:.2f} / {all_v2_s:.2f} s",
            f"{all_v1_s / all_v2_s:.1f}x faster",
        ),
        (
            "decoded pixels equal PIL's, every image",
            "yes" if exact else "NO",
            f"{n:,} images",
        ),
    ]
    body = [
        f"Machine: {machine()}; load average {loads[0]:.1f} at the start, {loads[1]:.1f} at "
        f"the end (2 cores shared with other benchmarks: ratios within this run are the "
        f"figures to compare). {n:,} {what}, 128x64. Format 1: decoded pixels, 64-image "
        "chunks, Blosc zstd-5 bitshuffle; format 2: one element per image (JPEG verbatim, "
        "lossless otherwise), 64 per chunk. Masks and parsing: 1,000 synthetic ground-truth "
        "maps, cycled. `python -m benchmarks.store_io"
        + (f" --source {args.source}`." if args.source else "`."),
        "",
        "| measure | figure | ratio |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        f"Random batches of {BATCH} images ({BATCHES} batches, sorted rows, warm page cache):",
        "",
        "| reader | images/s |",
        "|---|---|",
        *[f"| {name} | {rate:,.0f} |" for name, rate in random.items()],
        "",
        "Lossless codecs, one image per element (1,000 Market images as the stand-in for "
        "generated ones; synthetic ground-truth label maps), one thread:",
        "",
        "| array | codec | ratio to raw | encode/s | decode/s | exact |",
        "|---|---|---|---|---|---|",
        *codecs,
        "",
        f"Generator training loader, batches of {BATCH} pairs from 20,000 random training "
        "pairs (uint8 batch on the CPU, as handed to the device):",
        "",
        "| loader | pairs/s |",
        "|---|---|",
        *loaders,
    ]
    text = "\n".join(body)
    print(text)
    write_section("Storage", text)
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
