"""Store-facing code shared by the ``masks`` and ``parsing`` stages.

* :func:`run_image_stage`: take the stage's lock, let the stage check what it needs and choose
  its settings, then write the store's pending blocks with a block writer, here or fanned out
  over workers (:mod:`pipeline.fanout`), marking each done (so an interrupted run resumes),
  and stamp the stage. Writers: :class:`ModelBlocks` (a batched per-image model) and
  :class:`ProvidedBlocks` (existing mask/parsing PNGs, :func:`import_provided`, every file
  checked before the first block is written).
* :func:`summarise` and :func:`consistency_report`: counts and agreement checks read back from
  the store, so a resumed run reports on every image, not only the blocks it computed.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from foundation.errors import UserError
from pipeline.fanout import BlockWriter, FanOut, run_blocks
from storage import NUM_PARSING_LABELS, PersonStore, StageRun, StageStamp

Kind = Literal["masks", "parsing"]
Progress = Callable[[int, int], None]
# Runs under the stage's lock before anything is written: checks what the stage needs (weights
# loadable, provided files well formed), calls ``run.configure(settings)``, returns the writer.
Prepare = Callable[[StageRun], BlockWriter]
# A batched per-image model: [B, H, W, 3] uint8 RGB -> [B, H, W] uint8 labels.
ImageModel = Callable[[np.ndarray], np.ndarray]
_SEEDED_INIT = threading.Lock()
# Problems listed by name in a provided-folder error; the rest are counted.
_NAMED_PROBLEMS = 3


class ProvidedAnnotationError(UserError, ValueError):
    """A provided mask or parsing PNG is missing, unreadable, of the wrong size or label."""


@contextmanager
def seeded_init(seed: int = 0) -> Iterator[None]:
    """Draw the random weights of models built inside from ``seed``, so every fan-out worker
    (process or thread) builds the same random model; torch's global generator is restored
    after, and a lock keeps threads from drawing from it at the same time."""
    import torch  # here: importing provided files (ingest --annotations) needs no torch

    with _SEEDED_INIT, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


@dataclass(frozen=True)
class ModelBlocks:
    """Block writer that labels images with a batched model (picklable: fan-out ready).

    Attributes:
        kind: the array written, ``masks`` or ``parsing``.
        build_model: picklable factory of the :data:`ImageModel`, called once per call of the
            writer (in the process that runs it), e.g. a ``functools.partial`` of a module-level
            builder. It runs under :func:`seeded_init`: random weights (tests) are drawn from
            seed 0, so every process that builds the model (fan-out workers) gets the same one.
        batch_size: images per model call; a call may span several store blocks.
    """

    kind: Kind
    build_model: Callable[[], ImageModel]
    batch_size: int

    def __call__(self, run: StageRun, blocks: list[int]) -> None:
        store = run.store
        with seeded_init():
            model = self.build_model()
        per_call = max(1, self.batch_size // store.block_size)
        for start in range(0, len(blocks), per_call):
            group = blocks[start : start + per_call]
            slices = [store.block_slice(block) for block in group]
            images = np.concatenate([store.read("images", rows) for rows in slices])
            labels = np.concatenate(
                [
                    model(images[i : i + self.batch_size])
                    for i in range(0, len(images), self.batch_size)
                ]
            )
            offset = 0
            for block, rows in zip(group, slices, strict=True):
                count = rows.stop - rows.start
                run.write(self.kind, block, labels[offset : offset + count])
                run.mark_done(block)
                offset += count


def run_image_stage(
    store: PersonStore,
    *,
    kind: Kind,
    prepare: Prepare,
    progress: Progress | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """Write array ``kind`` for every image block not yet done under the stage's settings.

    Args:
        prepare: called with the run once the lock is held (see :data:`Prepare`); whatever
            it raises leaves the stage's earlier output and stamp untouched.
        fan_out: run the blocks as tasks on its executor instead of in this process.

    Raises:
        StageBusyError: another run of this stage holds the store's lock.
        MissingInputError: the store has no finished ``ingest`` stage.
    """
    with store.stage(kind, inputs=["ingest"], on_block=progress) as run:
        writer = prepare(run)
        tasks = run_blocks(run, writer, run.pending_blocks(), fan_out)
        counts, report = summarise(store, kind)
        report = {**report, **_consistency_if_ready(store, kind)}
        if tasks:
            report["block_tasks"] = tasks
        return run.finish(counts=counts, report=report)


def summarise(store: PersonStore, kind: Kind) -> tuple[dict[str, int], dict[str, Any]]:
    """Counts and report for a written ``masks`` or ``parsing`` array.

    An "empty" image has no foreground pixel (mask all 0, or parsing all background). Masks:
    ``counts = {"images", "empty_masks"}``, report with the empty fraction and the file names of
    the empty masks. Parsing: ``counts = {"images", "empty_parsings"}``, report with the empty
    file names and the fraction of pixels per label.
    """
    filenames = store.index["filename"]
    empty: list[str] = []
    histogram = np.zeros(NUM_PARSING_LABELS, dtype=np.int64)
    for block in range(store.n_blocks):
        rows = store.block_slice(block)
        labels = store.read(kind, rows)
        flat = labels.reshape(len(labels), -1)
        empty += filenames.iloc[rows].to_numpy()[~flat.any(axis=1)].tolist()
        if kind == "parsing":
            histogram += np.bincount(flat.ravel(), minlength=NUM_PARSING_LABELS)
    name = "empty_masks" if kind == "masks" else "empty_parsings"
    counts = {"images": store.n_images, name: len(empty)}
    report: dict[str, Any] = {
        f"{name}_fraction": len(empty) / max(store.n_images, 1),
        name: empty,
    }
    if kind == "parsing":
        report["label_fraction"] = (histogram / max(histogram.sum(), 1)).round(6).tolist()
    return counts, report


def _read_png(path: Path, *, kind: Kind, size: tuple[int, int]) -> np.ndarray:
    """One provided PNG as uint8 labels [H, W] (masks {0, 1}, parsing 0..19).

    Raises:
        ProvidedAnnotationError: missing, unreadable, not single-channel, of another size than
            the image, or (parsing) with a label above 19; the message names the file.
    """
    if not path.is_file():
        raise ProvidedAnnotationError(f"provided {kind}: {path} does not exist")
    try:
        with Image.open(path) as image:
            mode = image.mode
            labels = np.asarray(image).astype(np.int64)
    except (OSError, SyntaxError, ValueError) as error:
        raise ProvidedAnnotationError(
            f"provided {kind}: {path} is not a readable PNG ({error})"
        ) from None
    if mode not in ("L", "P", "1", "I", "I;16"):
        raise ProvidedAnnotationError(
            f"provided {kind}: {path} has mode {mode}; expected a single-channel "
            "label PNG (grey or palette)"
        )
    if labels.shape != size:
        raise ProvidedAnnotationError(
            f"provided {kind}: {path} is {labels.shape[::-1]} (WxH), image is {size[::-1]}"
        )
    if kind == "masks":
        # Accept {0, 1} and {0, 255} masks alike; anything grey is thresholded at mid-range.
        return (labels >= (128 if labels.max() > 1 else 1)).astype(np.uint8)
    if labels.min() < 0 or labels.max() >= NUM_PARSING_LABELS:
        raise ProvidedAnnotationError(
            f"provided parsing: {path} has label {int(labels.max())}; LIP labels are "
            f"0..{NUM_PARSING_LABELS - 1}"
        )
    return labels.astype(np.uint8)


def check_provided(paths: list[Path], *, kind: Kind, size: tuple[int, int]) -> None:
    """Read every PNG of ``paths`` as :func:`_read_png` will, before a block is written.

    Raises:
        ProvidedAnnotationError: one line: the first problem, then how many files have one
            and the names of the next few.
    """
    problems: list[str] = []
    bad_files: list[str] = []
    for path in paths:
        try:
            _read_png(path, kind=kind, size=size)
        except ProvidedAnnotationError as error:
            problems.append(str(error))
            bad_files.append(path.name)
    if not problems:
        return
    message = problems[0]
    if len(problems) > 1:
        named = ", ".join(bad_files[1 : 1 + _NAMED_PROBLEMS])
        more = "..." if len(problems) > 1 + _NAMED_PROBLEMS else ""
        message += f" ({len(problems)} of {len(paths)} files have problems; also {named}{more})"
    raise ProvidedAnnotationError(f"{message}; nothing was written, fix the folder and rerun")


def _fingerprint(paths: list[Path]) -> str:
    """Hash of the files' names, sizes and modification times: edited PNGs rerun the import."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat() if path.is_file() else None
        digest.update(f"{path.name}:{stat and stat.st_size}:{stat and stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class ProvidedBlocks:
    """Block writer that reads ``<folder>/<stem>.png`` for each image (see
    :func:`import_provided`)."""

    kind: Kind
    folder: Path

    def __call__(self, run: StageRun, blocks: list[int]) -> None:
        store = run.store
        size = (store.height, store.width)
        filenames = store.index["filename"].to_numpy()
        for block in blocks:
            labels = [
                _read_png(self.folder / f"{Path(name).stem}.png", kind=self.kind, size=size)
                for name in filenames[store.block_slice(block)]
            ]
            run.write(self.kind, block, np.stack(labels))
            run.mark_done(block)


def import_provided(
    store: PersonStore,
    annotations_dir: str | Path,
    *,
    kind: Kind,
    progress: Progress | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """Fill ``masks`` or ``parsing`` from PNG files instead of running a model.

    Reads ``<annotations_dir>/<kind>/<stem>.png`` for every image, where ``<stem>`` is the
    image's file name without extension (``0001_c1s1_001051_00.jpg`` ->
    ``masks/0001_c1s1_001051_00.png``). Masks may be 0/1 or 0/255; parsing PNGs hold LIP label
    indices 0..19 (grey or palette, as the official SCHP extractor writes them). Every file the
    pending blocks need is checked first: a bad folder writes nothing.

    Raises:
        ProvidedAnnotationError: a PNG is missing, has the wrong size, is not single-channel,
            or has a label > 19 (the message names it and counts the others).
    """
    folder = Path(annotations_dir).expanduser().resolve() / kind
    filenames = store.index["filename"].to_numpy()
    paths = [folder / f"{Path(name).stem}.png" for name in filenames]

    def prepare(run: StageRun) -> BlockWriter:
        if not folder.is_dir():
            raise ProvidedAnnotationError(
                f"provided {kind}: folder {folder} does not exist; expected one PNG per image "
                f"there, {kind}/<image name without extension>.png"
            )
        run.configure({"source": "provided", "folder": str(folder), "files": _fingerprint(paths)})
        pending = [
            path for block in run.pending_blocks() for path in paths[store.block_slice(block)]
        ]
        check_provided(pending, kind=kind, size=(store.height, store.width))
        return ProvidedBlocks(kind, folder)

    return run_image_stage(store, kind=kind, prepare=prepare, progress=progress, fan_out=fan_out)


def consistency_report(
    store: PersonStore, *, worst: int = 20, require_stamps: bool = True
) -> dict[str, Any]:
    """How well the person masks and the parsing agree (both stages must have finished;
    ``require_stamps=False`` when called from inside the second one, before its stamp).

    The parsing foreground (label > 0) and the Mask R-CNN mask come from independent models;
    a low IoU flags an image where one of them failed (e.g. two people, or a missed person).

    Returns:
        ``images``; ``empty_mask_fraction``; ``empty_parsing_fraction``; ``mean_iou`` over the
        images where the mask or the parsing has foreground (IoU of two empty maps counts as 1
        and is left out); ``iou_below_0.5`` (how many images); ``worst`` (file name and IoU of
        the ``worst`` lowest).
    """
    for stage in ("masks", "parsing") if require_stamps else ():
        if store.stamp(stage) is None:
            raise RuntimeError(f"consistency report needs the '{stage}' stage on {store.url}")
    filenames = store.index["filename"]
    ious: list[np.ndarray] = []
    empty_masks = empty_parsings = 0
    for block in range(store.n_blocks):
        rows = store.block_slice(block)
        mask = store.read("masks", rows).reshape(rows.stop - rows.start, -1) > 0
        body = store.read("parsing", rows).reshape(rows.stop - rows.start, -1) > 0
        empty_masks += int((~mask.any(axis=1)).sum())
        empty_parsings += int((~body.any(axis=1)).sum())
        union = (mask | body).sum(axis=1)
        intersection = (mask & body).sum(axis=1)
        ious.append(np.where(union > 0, intersection / np.maximum(union, 1), np.nan))
    iou = np.concatenate(ious) if ious else np.zeros(0)
    scored = np.flatnonzero(~np.isnan(iou))
    order = scored[np.argsort(iou[scored], kind="stable")][:worst]
    n = max(store.n_images, 1)
    return {
        "images": store.n_images,
        "empty_mask_fraction": empty_masks / n,
        "empty_parsing_fraction": empty_parsings / n,
        "mean_iou": float(iou[scored].mean()) if scored.size else float("nan"),
        "iou_below_0.5": int((iou[scored] < 0.5).sum()),
        "worst": [{"filename": str(filenames.iloc[i]), "iou": float(iou[i])} for i in order],
    }


def _consistency_if_ready(store: PersonStore, kind: Kind) -> dict[str, Any]:
    """``{"consistency": ...}`` when the other segmentation stage has finished, so the stamp
    of whichever of masks/parsing finishes second holds the consistency report."""
    other = "parsing" if kind == "masks" else "masks"
    if store.stamp(other) is None:
        return {}
    return {"consistency": consistency_report(store, require_stamps=False)}
