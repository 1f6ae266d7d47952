"""Fan-out of a block stage: same output as in one process, progress, failures, resume."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

from pipeline.fanout import BlockWriter, FanOut, run_blocks
from pipeline.segmentation import Prepare, ProvidedBlocks, run_image_stage
from storage import StageRun

MASK_CONFIG = {"source": "test"}


def ready(writer: BlockWriter) -> Prepare:
    """A stage preparation that checks nothing: MASK_CONFIG and ``writer``."""

    def prepare(run: StageRun) -> BlockWriter:
        run.configure(MASK_CONFIG)
        return writer

    return prepare


def constant_masks(run: StageRun, blocks: list[int]) -> None:
    """A picklable writer: block ``b`` is filled with ``b % 2``."""
    for block in blocks:
        rows = run.store.block_slice(block)
        shape = (rows.stop - rows.start, run.store.height, run.store.width)
        run.write("masks", block, np.full(shape, block % 2, np.uint8))
        run.mark_done(block)


class FailOn:
    """A writer that fails on one block and writes the others."""

    def __init__(self, block: int) -> None:
        self.block = block

    def __call__(self, run: StageRun, blocks: list[int]) -> None:
        if self.block in blocks:
            raise ValueError(f"bad input in block {self.block}")
        constant_masks(run, blocks)


def test_fan_out_writes_every_block_and_reports_progress(small_store):
    small_store.write("masks", 0, np.full((4, 64, 32), 1, np.uint8))  # overwritten below
    progress = []
    with ThreadPoolExecutor(2) as executor:
        stamp = run_image_stage(
            small_store,
            kind="masks",
            prepare=ready(constant_masks),
            progress=lambda *p: progress.append(p),
            fan_out=FanOut(executor, blocks_per_task=2),
        )
    masks = small_store.read("masks")
    for block in range(small_store.n_blocks):
        assert (masks[small_store.block_slice(block)] == block % 2).all()
    assert stamp.report["block_tasks"] == -(-small_store.n_blocks // 2)
    assert sorted(done for done, _ in progress)[-1] == small_store.n_blocks
    assert {total for _, total in progress} == {small_store.n_blocks}


def test_failed_task_fails_the_stage_after_the_others_and_a_rerun_resumes(small_store):
    with ThreadPoolExecutor(2) as executor:
        with pytest.raises(ValueError, match="bad input in block 3"):
            run_image_stage(
                small_store,
                kind="masks",
                prepare=ready(FailOn(3)),
                fan_out=FanOut(executor, blocks_per_task=1),
            )
    assert small_store.stamp("masks") is None
    with small_store.stage("masks", config=MASK_CONFIG) as run:
        assert run.pending_blocks() == [3], "every other task ran to the end and stays done"
        written = []

        def record(run: StageRun, blocks: list[int]) -> None:
            written.extend(blocks)
            constant_masks(run, blocks)

        assert run_blocks(run, record, run.pending_blocks()) == 0
        assert written == [3]
        run.finish(counts={})


def test_provided_import_fans_out_over_worker_processes(small_store, tmp_path):
    from PIL import Image

    expected = small_store.read("masks")
    folder = tmp_path / "annotations" / "masks"
    folder.mkdir(parents=True)
    for name, mask in zip(small_store.index["filename"], expected, strict=True):
        Image.fromarray(mask * 255).save(folder / name.replace(".jpg", ".png"))
    small_store.write("masks", 0, np.zeros_like(expected[:4]))
    context = multiprocessing.get_context("spawn")  # nothing inherited: workers reopen the store
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        stamp = run_image_stage(
            small_store,
            kind="masks",
            prepare=ready(ProvidedBlocks("masks", folder)),
            fan_out=FanOut(executor, blocks_per_task=3),
        )
    np.testing.assert_array_equal(small_store.read("masks"), expected)
    assert stamp.report["block_tasks"] == -(-small_store.n_blocks // 3)


def test_blocks_per_task_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        FanOut(ThreadPoolExecutor(1), blocks_per_task=0)


def test_fan_out_on_an_fsspec_store(small_store):
    from storage import create_store

    url = "memory://augment-market-fanout/store"
    store = create_store(
        url, index=small_store.index, height=64, width=32, block_size=4, overwrite=True
    )
    with store.stage("ingest", config={}, n_blocks=0) as run:
        run.finish(counts={})
    with ThreadPoolExecutor(2) as executor:
        stamp = run_image_stage(
            store,
            kind="masks",
            prepare=ready(constant_masks),
            fan_out=FanOut(executor, blocks_per_task=2),
        )
    assert stamp.report["block_tasks"] == -(-store.n_blocks // 2)
    assert store.read("masks")[store.block_slice(1)].min() == 1, "workers reopened it by URL"
