"""Synthesis stage: alpha-augment the training split from one of several sources (section 5).

Every training image is the source of ``alpha - 1`` new images, each in the pose (mask +
parsing) of another person's training image; a new image keeps the source's identity. Which
(source, target pose) pairs are drawn depends on the store, ``alpha`` and ``seed`` only
(:func:`synthesis_plan`), so every source below makes images of the SAME assignments and two
sets differ only in how an image is made:

* ``generator``: the trained SAN generator (the paper's augmentation);
* ``copies``: the source image unchanged (more images of the same people, no new pose);
* ``flip``: the source image mirrored;
* ``paint-by-parts``: the target's parts filled with the source's mean part colours
  (:func:`san_model.baselines.paint_by_parts`: the right colours in the right places, no
  texture);
* ``folder``: another method's outputs for the assignments :func:`write_pairs` lists, read as
  evaluate-folder reads them (PATN ``_vis`` panels, GFLA ``a_2_b``, ``a___b``).

A set lives in ``generated/<group>`` (:func:`set_group`: ``alpha<A>`` for the generator, as
before, ``<set>-alpha<A>`` for the others) with ``source_index``, ``target_index`` and
``person_id``, source-major (row ``i * (alpha - 1) + j`` is the j-th image of the i-th training
image), written in resumable blocks by its own stage (:func:`synthesis_stage_name`), whose stamp
records the source. The generator's blocks may fan out over workers (:mod:`pipeline.fanout`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from foundation.errors import SettingsError
from foundation.weights import sha256_of
from pipeline.augmentation_sets import (
    check_set_name,
    set_group,
    synthesis_plan,
    synthesis_stage_name,
)
from pipeline.evaluate_folder import FolderError, match_files, read_generated
from pipeline.fanout import FanOut, run_blocks
from pipeline.train_generator import generator_checkpoint
from san_model.baselines import paint_by_parts
from san_model.checkpoint import load_generator
from san_model.generator import generate
from storage import PersonStore, StageRun, StageStamp

Source = Literal["generator", "copies", "flip", "paint-by-parts", "folder"]
SOURCES: tuple[Source, ...] = ("generator", "copies", "flip", "paint-by-parts", "folder")
# What each source reads besides the store's images.
SOURCE_INPUTS: dict[str, list[str]] = {
    "generator": ["generator", "masks", "parsing"],
    "copies": ["ingest"],
    "flip": ["ingest"],
    "paint-by-parts": ["ingest", "parsing"],
    "folder": ["ingest"],
}


# Makes the images of one block: (arrays, source rows, target rows, set rows) -> uint8 [n, H, W, 3].
ImageMaker = Callable[[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GeneratorImages:
    """The SAN generator's images (eval mode: independent of ``batch_size``)."""

    checkpoint: Path
    device: str
    batch_size: int
    arrays: tuple[str, ...] = ("images", "masks", "parsing")

    def build(self) -> ImageMaker:
        generator, _ = load_generator(self.checkpoint, device=self.device)

        def make(arrays, source, target, _rows):  # type: ignore[no-untyped-def]
            out = []
            for i in range(0, len(source), self.batch_size):
                s, t = source[i : i + self.batch_size], target[i : i + self.batch_size]
                out.append(
                    generate(
                        generator,
                        *(
                            torch.from_numpy(a)
                            for a in (
                                arrays["images"][s],
                                arrays["masks"][s],
                                arrays["parsing"][s],
                                arrays["masks"][t],
                                arrays["parsing"][t],
                            )
                        ),
                    ).numpy()
                )
            return np.concatenate(out)

        return make


@dataclass(frozen=True)
class CopyImages:
    """The source image itself, or mirrored (``flip``)."""

    flip: bool
    arrays: tuple[str, ...] = ("images",)

    def build(self) -> ImageMaker:
        def make(arrays, source, _target, _rows):  # type: ignore[no-untyped-def]
            images = arrays["images"][source]
            return np.ascontiguousarray(images[:, :, ::-1]) if self.flip else images

        return make


@dataclass(frozen=True)
class PaintedImages:
    """The target's parts painted with the source's mean part colours."""

    arrays: tuple[str, ...] = ("images", "parsing")

    def build(self) -> ImageMaker:
        def make(arrays, source, target, _rows):  # type: ignore[no-untyped-def]
            image = torch.from_numpy(arrays["images"][source]).permute(0, 3, 1, 2).float()
            painted = paint_by_parts(
                image / 127.5 - 1.0,
                torch.from_numpy(arrays["parsing"][source]),
                torch.from_numpy(arrays["parsing"][target]),
            )
            pixels = ((painted + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
            return pixels.permute(0, 2, 3, 1).numpy()

        return make


@dataclass(frozen=True)
class FolderImages:
    """Another method's files, one per set row (``files[r]``; ``panels[r]``: a ``_vis`` strip
    whose ``panel``-th image is the generated one)."""

    files: tuple[Path, ...]
    panels: tuple[bool, ...]
    panel: int
    height: int
    width: int
    arrays: tuple[str, ...] = ()

    def build(self) -> ImageMaker:
        def make(_arrays, _source, _target, rows):  # type: ignore[no-untyped-def]
            return np.stack(
                [
                    read_generated(
                        self.files[r],
                        height=self.height,
                        width=self.width,
                        panel=self.panels[r],
                        index=self.panel,
                    )
                    for r in rows
                ]
            )

        return make


@dataclass(frozen=True)
class SynthesisBlocks:
    """Block writer of one set (picklable: fan-out ready); builds its image maker and loads
    the store arrays it needs once per call."""

    images: GeneratorImages | CopyImages | PaintedImages | FolderImages
    group: str
    alpha: int
    seed: int

    def __call__(self, run: StageRun, blocks: list[int]) -> None:
        store = run.store
        sources, targets = synthesis_plan(store.index, self.alpha, self.seed)
        person_ids = store.index["person_id"].to_numpy(np.int64)
        make = self.images.build()
        arrays = store.load_in_memory(self.images.arrays) if self.images.arrays else {}
        for block in blocks:
            rows = store.block_slice(block, len(sources))
            source, target = sources[rows], targets[rows]
            positions = np.arange(len(sources))[rows]
            run.write(f"{self.group}/images", block, make(arrays, source, target, positions))
            run.write(f"{self.group}/source_index", block, source)
            run.write(f"{self.group}/target_index", block, target)
            run.write(f"{self.group}/person_id", block, person_ids[source])
            run.mark_done(block)


def _folder_images(
    store: PersonStore, folder: Path, sources: np.ndarray, targets: np.ndarray, panel: int
) -> tuple[FolderImages, str]:
    """Match ``folder`` to every planned pair and check each file before anything is written.

    Returns:
        The image maker and the sha256 of the matched files' bytes in set order.
    Raises:
        FolderError: a planned pair without a file (the first ones named), or a file that is
            unreadable or of the wrong size.
    """
    match = match_files(
        store, folder, np.stack([sources, targets], axis=1), "not a pair of the synthesis plan"
    )
    if match.missing:
        names = store.index["filename"].to_numpy()
        first = ", ".join(f"{names[sources[k]]} -> {names[targets[k]]}" for k in match.missing[:3])
        raise FolderError(
            f"{folder}: {len(match.missing)} of {len(sources)} listed pairs have no image "
            f"(first: {first}); run the method on the list of `synthesize --write-pairs` with "
            "the same --alpha and --seed"
        )
    order = np.argsort(match.rows)
    files = tuple(match.files[k] for k in order)
    panels = tuple(match.panels[k] for k in order)
    digest = hashlib.sha256()
    for path, is_panel in zip(files, panels, strict=True):  # every file checked up front
        read_generated(path, height=store.height, width=store.width, panel=is_panel, index=panel)
        digest.update(path.read_bytes())
    return FolderImages(files, panels, panel, store.height, store.width), digest.hexdigest()


def synthesize(
    store: PersonStore,
    run_dir: str | Path | None = None,
    *,
    source: Source = "generator",
    name: str | None = None,
    folder: str | Path | None = None,
    panel: int = -1,
    alpha: int = 2,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """Write one augmentation set into ``generated/<group>`` (:func:`set_group`).

    Args:
        run_dir: a trained generator's run folder (or checkpoint file); ``source="generator"``.
        source: how each planned (source image, target pose) becomes an image (module doc).
        name: the set's name (default: the source's; a folder set needs its own, default the
            folder's name).
        folder: the other method's output folder; ``source="folder"``.
        panel: which panel of a ``_vis`` strip is the generated image (-1: the last).
        alpha: augmentation factor; each training image gets ``alpha - 1`` new ones.
        seed: target-pose draw seed (the same for every source gives the same assignments).
        batch_size: images per generator call (results do not depend on it: eval mode).
        fan_out: run the generator's blocks as tasks on its executor's workers.

    Raises:
        SettingsError: an unknown source, a bad set name, a missing run/folder argument, or an
            alpha the training identities cannot supply.
        FolderError: a folder without an image for some planned pair (nothing is written).
        MissingRunError, UnreadableWeightsError: no readable generator checkpoint in
            ``run_dir``; checked under the lock, before anything is written.
    """
    if source not in SOURCES:
        raise SettingsError(f"unknown source {source!r}; choose one of {', '.join(SOURCES)}")
    if (source == "generator") != (run_dir is not None):
        raise SettingsError(
            "--run (a trained generator) goes with --source generator and only with it"
        )
    if (source == "folder") != (folder is not None):
        raise SettingsError("--folder (another method's outputs) goes with --source folder")
    set_name = name or (Path(folder).name.lower() if folder is not None else source)
    check_set_name(set_name, source)
    sources, targets = synthesis_plan(store.index, alpha, seed)
    group = set_group(set_name, alpha)
    stage = synthesis_stage_name(set_name)
    with store.stage(
        stage,
        inputs=SOURCE_INPUTS[source],
        n_blocks=-(-len(sources) // store.block_size),
        on_block=progress,
    ) as run:
        config: dict[str, Any] = {
            "source": source,
            "set": set_name,
            "alpha": alpha,
            "seed": seed,
            "group": group,
        }
        images: GeneratorImages | CopyImages | PaintedImages | FolderImages
        if source == "generator":
            assert run_dir is not None
            checkpoint = generator_checkpoint(run_dir)
            config["generator_checkpoint_sha256"] = sha256_of(checkpoint)
            images = GeneratorImages(checkpoint.resolve(), device, batch_size)
        elif source == "folder":
            assert folder is not None
            images, config["folder_sha256"] = _folder_images(
                store, Path(folder), sources, targets, panel
            )
            config["folder"] = str(Path(folder).resolve())
        elif source == "paint-by-parts":
            images = PaintedImages()
        else:
            images = CopyImages(flip=source == "flip")
        run.configure(config)
        store.create_generated(group.removeprefix("generated/"), len(sources), attributes=config)
        writer = SynthesisBlocks(images, group, alpha, seed)
        tasks = run_blocks(
            run, writer, run.pending_blocks(), fan_out if source == "generator" else None
        )
        return run.finish(
            counts={
                "generated": len(sources),
                "train_images": len(sources) // (alpha - 1),
                "alpha": alpha,
            },
            report={"block_tasks": tasks} if tasks else {},
        )
