"""A deterministic synthetic person Re-ID dataset in the exact Market-1501 folder layout.

``generate_synthetic`` writes ``bounding_box_train/``, ``bounding_box_test/`` and ``query/`` with
Market-1501 names (``{pid:04d}_c{cam}s{seq}_{frame:06d}_{box:02d}.jpg``; junk has pid ``-1``,
distractors pid ``0000``) plus ground truth for every image: ``annotations/masks/<stem>.png``
(uint8 L, values {0, 1}) and ``annotations/parsing/<stem>.png`` (uint8 L, LIP labels 0..19, see
``LIP_LABELS``), with ``mask == (parsing != 0)`` exactly. Train and test identities are
disjoint, query identities are test identities with gallery images from other cameras, and
distractors and junk live in ``bounding_box_test`` only, as in Market-1501. The people are drawn
by :mod:`pipeline.synthetic_dataset_people` and :mod:`pipeline.synthetic_dataset_scene`.

Every image is rendered from its own ``numpy.random.Generator`` keyed by (seed, identity, image
index), so output is byte-identical for a seed whatever the order or number of workers.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.synthetic_dataset_people import LIP_LABELS, sample_look
from pipeline.synthetic_dataset_scene import camera, render

__all__ = ["LIP_LABELS", "NUM_CAMERAS", "SyntheticSummary", "generate_synthetic"]

NUM_CAMERAS = 6  # Market-1501 cameras c1..c6
TRAIN_DIR, GALLERY_DIR, QUERY_DIR = "bounding_box_train", "bounding_box_test", "query"
MASK_DIR, PARSING_DIR = "annotations/masks", "annotations/parsing"
JUNK_PID, DISTRACTOR_PID = -1, 0
_THUMBS_DB = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)  # OLE2 header, as Windows writes
_FRAME_STEP = 150  # frames between consecutive shots of one identity (Market-like numbers)
# Independent RNG streams, so adding images of one kind never changes another kind's pixels.
_PLAN_STREAM, _LOOK_STREAM, _IMAGE_STREAM = 1, 2, 3


@dataclass(frozen=True)
class SyntheticSummary:
    """Counts of what ``generate_synthetic`` wrote under ``root``."""

    root: Path
    train_ids: int
    test_ids: int
    train_images: int  # bounding_box_train
    gallery_images: int  # bounding_box_test, distractors and junk included
    query_images: int
    distractors: int  # pid 0000, gallery only
    junk: int  # pid -1, gallery only

    @property
    def total_images(self) -> int:
        return self.train_images + self.gallery_images + self.query_images


@dataclass(frozen=True)
class _Shot:
    """One image to render: where it goes and which RNG streams it uses."""

    folder: str
    stem: str
    cam: int
    kind: str  # "person", "junk" or "distractor"
    look_key: tuple[int, ...]
    image_key: tuple[int, ...]


def market_name(pid: int, cam: int, seq: int, frame: int, box: int) -> str:
    """Market-1501 file stem, e.g. ``0002_c3s1_000451_01``; junk is ``-1_c1s1_000401_03``."""
    prefix = "-1" if pid == JUNK_PID else f"{pid:04d}"
    return f"{prefix}_c{cam}s{seq}_{frame:06d}_{box:02d}"


def _stem(rng: np.random.Generator, pid: int, cam: int, k: int) -> str:
    """Name of a pid's ``k``-th shot: random sequence and box, frame unique through ``k``."""
    frame = _FRAME_STEP * (k + 1) + int(rng.integers(0, _FRAME_STEP))
    return market_name(pid, cam, int(rng.integers(1, 7)), frame, int(rng.integers(0, 3)))


def _identity_shots(pid: int, *, seed: int, images: int, queries: int, test: bool) -> list[_Shot]:
    """An identity's images spread over 2..6 cameras; test ids send ``queries`` of them (one per
    camera, never from every camera) to ``query/`` so each query has cross-camera gallery."""
    rng = np.random.default_rng([seed, _PLAN_STREAM, pid])
    n_cams = int(rng.integers(2, min(NUM_CAMERAS, images) + 1))
    cams = rng.choice(np.arange(1, NUM_CAMERAS + 1), n_cams, replace=False)
    shot_cams = np.concatenate([cams, rng.choice(cams, images - n_cams)])
    rng.shuffle(shot_cams)
    query_at = {int(np.flatnonzero(shot_cams == c)[0]) for c in cams[: min(queries, n_cams - 1)]}
    shots = []
    for k, cam in enumerate(shot_cams):
        folder = (QUERY_DIR if k in query_at else GALLERY_DIR) if test else TRAIN_DIR
        stem = _stem(rng, pid, int(cam), k)
        shots.append(_Shot(folder, stem, int(cam), "person", (pid,), (pid, k)))
    return shots


def _extra_shots(kind: str, count: int, *, seed: int) -> list[_Shot]:
    """Junk (pid -1) or distractor (pid 0000) images for the gallery, each with a one-off look."""
    code, pid = (1, JUNK_PID) if kind == "junk" else (2, DISTRACTOR_PID)
    rng = np.random.default_rng([seed, _PLAN_STREAM, 0, code])
    shots = []
    for k in range(count):
        cam = int(rng.integers(1, NUM_CAMERAS + 1))
        stem = _stem(rng, pid, cam, k)
        shots.append(_Shot(GALLERY_DIR, stem, cam, kind, (0, code, k), (0, code, k)))
    return shots


def _write_shot(shot: _Shot, *, root: Path, seed: int, height: int, width: int) -> None:
    """Render one shot and write its JPEG, mask PNG and parsing PNG."""
    look = sample_look(np.random.default_rng([seed, _LOOK_STREAM, *shot.look_key]))
    rng = np.random.default_rng([seed, _IMAGE_STREAM, *shot.image_key])
    image, parsing = render(
        rng, look, camera(seed, shot.cam, height, width), height, width, shot.kind
    )
    quality = int(rng.integers(75, 96))  # Market-1501 JPEGs vary in compression
    Image.fromarray(image).save(root / shot.folder / f"{shot.stem}.jpg", quality=quality)
    Image.fromarray(parsing).save(root / PARSING_DIR / f"{shot.stem}.png")
    Image.fromarray((parsing != 0).astype(np.uint8)).save(root / MASK_DIR / f"{shot.stem}.png")


def generate_synthetic(
    out_dir: Path,
    *,
    ids: int = 24,
    images_per_id: int = 8,
    seed: int = 0,
    height: int = 128,
    width: int = 64,
    test_fraction: float = 0.5,
    distractors: int = 8,
    junk: int = 8,
    queries_per_id: int = 2,
    workers: int = 1,
) -> SyntheticSummary:
    """Write a synthetic Market-1501-layout dataset with ground-truth masks and LIP parsing.

    Args:
        out_dir: dataset root (created); plays the role of ``Market-1501-v15.09.15/``.
        ids: identities, numbered 1..ids; ``round(ids * test_fraction)`` of them (at least
            one, at most ids - 1) are test identities, the rest train identities.
        images_per_id: images per identity (queries included), at least 2.
        seed: everything is a pure function of the arguments and this seed.
        height, width: image size in pixels (Market-1501: 128x64).
        test_fraction: share of identities held out for the gallery and query.
        distractors: pid-0000 gallery images (background or body fragments).
        junk: pid-(-1) gallery images (badly cropped or tiny people).
        queries_per_id: query images per test identity (fewer when it has fewer cameras).
        workers: processes to render with; the output does not depend on it.

    Returns:
        The counts written. A ``Thumbs.db`` is also dropped into ``bounding_box_test``, as in
        the real release, so ingesters are exercised on non-image files.
    """
    if ids < 2 or images_per_id < 2 or not 0.0 < test_fraction < 1.0:
        raise ValueError("need ids >= 2, images_per_id >= 2 and 0 < test_fraction < 1")
    if min(distractors, junk, queries_per_id) < 0 or workers < 1:
        raise ValueError("distractors, junk and queries_per_id must be >= 0, workers >= 1")
    root = Path(out_dir)
    for folder in (TRAIN_DIR, GALLERY_DIR, QUERY_DIR, MASK_DIR, PARSING_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    n_test = min(max(round(ids * test_fraction), 1), ids - 1)
    split_rng = np.random.default_rng([seed, _PLAN_STREAM])
    test_ids = {int(pid) for pid in split_rng.choice(np.arange(1, ids + 1), n_test, replace=False)}
    shots = [
        shot
        for pid in range(1, ids + 1)
        for shot in _identity_shots(
            pid, seed=seed, images=images_per_id, queries=queries_per_id, test=pid in test_ids
        )
    ]
    shots += _extra_shots("distractor", distractors, seed=seed)
    shots += _extra_shots("junk", junk, seed=seed)
    assert len({shot.stem for shot in shots}) == len(shots), "Market names must be unique"
    write = partial(_write_shot, root=root, seed=seed, height=height, width=width)
    if workers == 1:
        for shot in shots:
            write(shot)
    else:
        with ProcessPoolExecutor(workers) as pool:
            try:
                list(pool.map(write, shots, chunksize=64))
            except BaseException:
                # Ctrl-C or a failed image: drop the queued images instead of waiting for all
                # of them as leaving the pool would (minutes for a large set).
                pool.shutdown(cancel_futures=True)
                raise
    (root / GALLERY_DIR / "Thumbs.db").write_bytes(_THUMBS_DB)
    count = {
        folder: sum(shot.folder == folder for shot in shots)
        for folder in (TRAIN_DIR, GALLERY_DIR, QUERY_DIR)
    }
    return SyntheticSummary(
        root=root,
        train_ids=ids - n_test,
        test_ids=n_test,
        train_images=count[TRAIN_DIR],
        gallery_images=count[GALLERY_DIR],
        query_images=count[QUERY_DIR],
        distractors=distractors,
        junk=junk,
    )
