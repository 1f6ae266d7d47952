"""Synthesis stage: alpha-augment the training split with a trained generator (paper section 5).

Every training image is the source of ``alpha - 1`` generated images, each in the pose (mask +
parsing) of another person's training image; the generated image keeps the source's identity.
Results go to the store's ``generated/alpha<A>`` group, source-major (row ``i * (alpha - 1) + j``
is the j-th image of the i-th training image), in resumable blocks that may fan out over
workers (:mod:`pipeline.fanout`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from foundation.errors import SettingsError
from foundation.weights import sha256_of
from pipeline.fanout import FanOut, run_blocks
from pipeline.train_generator import generator_checkpoint
from san_model.checkpoint import load_generator
from san_model.generator import generate
from storage import PersonStore, StageRun, StageStamp
from storage.store import generated_run_name


def draw_target_poses(person_ids: np.ndarray, alpha: int, rng: np.random.Generator) -> np.ndarray:
    """For each image, ``alpha - 1`` distinct other images of other identities.

    Args:
        person_ids: int [M] identity of each training image.
        alpha: augmentation factor (>= 2).
    Returns:
        int64 [M, alpha - 1] positions into ``person_ids``; never the image itself, never its
        identity, no repeats within a row. Deterministic for ``rng``'s seed.
    Raises:
        SettingsError: alpha < 2, or too few other-identity images for ``alpha - 1`` draws.
    """
    if alpha < 2:
        raise SettingsError(
            f"alpha must be at least 2 (alpha - 1 generated per image), got {alpha}"
        )
    count = len(person_ids)
    draws = alpha - 1
    fewest_others = count - np.bincount(person_ids).max()
    if fewest_others < draws:
        raise SettingsError(
            f"alpha {alpha} needs {draws} poses of other identities per image; "
            f"the largest identity leaves only {fewest_others}"
        )
    targets = rng.integers(0, count, (count, draws))
    while True:  # redraw the clashes (same identity, or a repeat in the row) until none remain
        same_id = person_ids[targets] == person_ids[:, None]
        repeated = np.zeros_like(same_id)
        for j in range(1, draws):  # alpha is small: a column loop is clearer than a sort
            repeated[:, j] = (targets[:, :j] == targets[:, j : j + 1]).any(axis=1)
        clash = same_id | repeated
        if not clash.any():
            return targets.astype(np.int64)
        targets[clash] = rng.integers(0, count, int(clash.sum()))


def synthesis_plan(index: pd.DataFrame, alpha: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Source and target store rows of every generated image, source-major.

    Args:
        index: the store's index (training rows with a known identity are the sources).
    Returns:
        ``(sources, targets)``, int64 [M * (alpha - 1)] each: generated row ``r`` draws the
        person of row ``sources[r]`` in the pose of row ``targets[r]``. Deterministic for
        ``seed`` (the fan-out workers recompute it instead of receiving it).
    """
    known = index["person_id"].to_numpy() > 0
    train_rows = np.flatnonzero((index["split"] == "train").to_numpy() & known)
    person_ids = index["person_id"].to_numpy(np.int64)[train_rows]
    targets = train_rows[draw_target_poses(person_ids, alpha, np.random.default_rng(seed))]
    return np.repeat(train_rows, alpha - 1), targets.reshape(-1)


@dataclass(frozen=True)
class SynthesisBlocks:
    """Block writer of ``generated/alpha<A>`` (picklable: fan-out ready); loads the generator
    and the store's images, masks and parsing once per call."""

    checkpoint: Path
    alpha: int
    seed: int
    device: str
    batch_size: int

    def __call__(self, run: StageRun, blocks: list[int]) -> None:
        store = run.store
        sources, targets = synthesis_plan(store.index, self.alpha, self.seed)
        person_ids = store.index["person_id"].to_numpy(np.int64)
        generator, _ = load_generator(self.checkpoint, device=self.device)
        arrays = store.load_in_memory(("images", "masks", "parsing"))
        group = f"generated/{generated_run_name(self.alpha)}"
        for block in blocks:
            rows = store.block_slice(block, len(sources))
            source, target = sources[rows], targets[rows]
            images = np.concatenate(
                [
                    generate(
                        generator,
                        *(
                            torch.from_numpy(a)
                            for a in (
                                arrays["images"][source[i : i + self.batch_size]],
                                arrays["masks"][source[i : i + self.batch_size]],
                                arrays["parsing"][source[i : i + self.batch_size]],
                                arrays["masks"][target[i : i + self.batch_size]],
                                arrays["parsing"][target[i : i + self.batch_size]],
                            )
                        ),
                    ).numpy()
                    for i in range(0, len(source), self.batch_size)
                ]
            )
            run.write(f"{group}/images", block, images)
            run.write(f"{group}/source_index", block, source)
            run.write(f"{group}/target_index", block, target)
            run.write(f"{group}/person_id", block, person_ids[source])
            run.mark_done(block)


def synthesize(
    store: PersonStore,
    run_dir: str | Path,
    *,
    alpha: int = 2,
    seed: int = 0,
    device: str = "cpu",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """Generate the alpha-augmented training set into ``generated/alpha<A>``.

    Args:
        run_dir: a trained generator's run folder (or checkpoint file).
        alpha: augmentation factor; each training image gets ``alpha - 1`` generated ones.
        seed: target-pose draw seed.
        batch_size: images per generator call (results do not depend on it: eval mode).
        fan_out: run the blocks as tasks on its executor's workers (each loads the checkpoint
            and the store's arrays once per task).

    Raises:
        SettingsError: an alpha the training identities cannot supply.
        MissingRunError, UnreadableWeightsError: no readable generator checkpoint in
            ``run_dir``; checked under the lock, before anything is written.
    """
    sources, _ = synthesis_plan(store.index, alpha, seed)
    run_name = generated_run_name(alpha)
    with store.stage(
        "synthesize",
        inputs=["generator", "masks", "parsing"],
        n_blocks=-(-len(sources) // store.block_size),
        on_block=progress,
    ) as run:
        checkpoint = generator_checkpoint(run_dir)
        config = {
            "alpha": alpha,
            "seed": seed,
            "generator_checkpoint_sha256": sha256_of(checkpoint),
            "group": f"generated/{run_name}",
        }
        run.configure(config)
        store.create_generated(run_name, len(sources), attributes=config)
        writer = SynthesisBlocks(checkpoint.resolve(), alpha, seed, device, batch_size)
        tasks = run_blocks(run, writer, run.pending_blocks(), fan_out)
        return run.finish(
            counts={
                "generated": len(sources),
                "train_images": len(sources) // (alpha - 1),
                "alpha": alpha,
            },
            report={"block_tasks": tasks} if tasks else {},
        )
