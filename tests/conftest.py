"""Shared fixtures: small stores with every upstream stage stamped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from storage import PersonStore, create_store

torch.set_num_threads(1)  # CI has 2 cores; tests are tiny, threads only add overhead


def build_store(path, *, ids=(3, 3), per_id=4, height=64, width=32, seed=0) -> PersonStore:
    """A store of random-but-structured persons: ``ids`` = (train ids, test ids).

    Every image has a rectangle "person" whose parsing labels vary by row band, so masks and
    parsing agree; ingest, masks and parsing are stamped as finished.
    """
    rng = np.random.default_rng(seed)
    train_ids, test_ids = ids
    rows = []
    for pid in range(1, train_ids + test_ids + 1):
        for k in range(per_id):
            split = "train" if pid <= train_ids else ("query" if k == 0 else "gallery")
            rows.append((pid, k % 6 + 1, split, f"{pid:04d}_c{k % 6 + 1}s1_{k:06d}_01.jpg"))
    index = pd.DataFrame(rows, columns=["person_id", "camera", "split", "filename"])
    n = len(index)
    store = create_store(str(path), index=index, height=height, width=width, block_size=4)
    images = rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8)
    masks = np.zeros((n, height, width), np.uint8)
    parsing = np.zeros((n, height, width), np.uint8)
    for i in range(n):
        top, left = rng.integers(2, 8), rng.integers(2, 6)
        masks[i, top : height - 2, left : width - 4] = 1
        bands = np.array([2, 13, 5, 9, 18])[np.arange(height) * 5 // height]
        parsing[i] = masks[i] * bands[:, None]
        images[i][masks[i] == 1] = (pid_colour := (37 * index["person_id"][i]) % 256)
        images[i][masks[i] == 1, 1] = 255 - pid_colour
    arrays = {"images": images, "masks": masks, "parsing": parsing}
    stages = {"ingest": ["images"], "masks": ["masks"], "parsing": ["parsing"]}
    for stage, names in stages.items():
        with store.stage(stage, config={"fixture": seed}) as run:
            for block in run.pending_blocks():
                for name in names:
                    run.write(name, block, arrays[name][store.block_slice(block)])
                run.mark_done(block)
            run.finish(counts={"images": n})
    return store


@pytest.fixture
def small_store(tmp_path) -> PersonStore:
    return build_store(tmp_path / "store")
