"""Shared fixtures: small stores with every upstream stage stamped."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

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


# 46 real Market-1501-v15.09.15 images under their original names (tests/data/README.md):
# all 24 *.jpg.jpg files (pid 1488 exists only as those), queries and gallery images of pid
# 0001, distractors, junk, and two training identities.
REAL_MARKET_SAMPLE = Path(__file__).parent / "data" / "market1501_sample"


@pytest.fixture
def real_market(tmp_path) -> Path:
    """The real sample as a Market-1501 folder, with the real set's non-image entries."""
    root = tmp_path / "Market-1501-v15.09.15"
    shutil.copytree(REAL_MARKET_SAMPLE, root)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0 not an image")
    (root / "gt_bbox").mkdir()
    (root / "gt_query").mkdir()
    return root


@pytest.fixture
def small_store(tmp_path) -> PersonStore:
    return build_store(tmp_path / "store")


@pytest.fixture(scope="session")
def store_builder() -> Callable[..., PersonStore]:
    """:func:`build_store` itself, for module-scoped fixtures that share one store."""
    return build_store


@pytest.fixture
def trained_generator(small_store, tmp_path) -> Callable[[int], Path]:
    """``trained_generator(test_pairs)``: samples ``small_store``'s pairs with that many test
    pairs and trains the tiny generator (no VGG-19) for 2 steps; returns its run folder."""
    from pipeline.pairs import PairsConfig, sample_pairs
    from pipeline.train_generator import train_generator
    from san_model.config import SANConfig

    def train(test_pairs: int) -> Path:
        sample_pairs(small_store, PairsConfig(test_pairs=test_pairs))
        config = SANConfig.tiny(use_perceptual=False)
        train_generator(small_store, tmp_path / "run", config=config, max_steps=2)
        return tmp_path / "run"

    return train


def store_state(store: PersonStore) -> dict[str, str]:
    """Digest of every array in the store (data, done flags with their settings, generated
    sets), every table and every stamp: equal before and after a call means the call changed
    nothing there."""
    state = {}
    for path, node in sorted(store.arrays().items()):
        values = np.asarray(node[...])
        if values.dtype == object:  # encoded elements: their bytes, not the pointers
            content = b"".join(len(v).to_bytes(8, "little") + bytes(v) for v in values)
        else:
            content = values.tobytes()
        digest = hashlib.sha256(content).hexdigest()
        state[path] = f"{digest} {dict(node.attrs)}"
    tables = store._path("tables")
    for file in sorted(store.fs.ls(tables, detail=False) if store.fs.exists(tables) else []):
        state[file] = hashlib.sha256(store.fs.cat(file)).hexdigest()
    for name, stamp in store.stamps().items():
        state[f"stamps/{name}"] = stamp.to_json()
    return state


@pytest.fixture
def snapshot() -> Callable[[PersonStore], dict[str, str]]:
    return store_state


def generate_without_model(store: PersonStore, alpha: int) -> None:
    """A ``generated/alpha<A>`` set (mirrored source images, no generator) and its
    synthesize stamp: alpha - 1 rows per training image, source-major."""
    train = np.flatnonzero((store.index["split"] == "train").to_numpy())
    sources = np.repeat(train, alpha - 1)
    targets = np.roll(sources, alpha - 1)
    columns = {
        "images": store.read("images", sources)[:, :, ::-1],
        "source_index": sources,
        "target_index": targets,
        "person_id": store.index["person_id"].to_numpy(np.int64)[sources],
    }
    group = f"generated/alpha{alpha}"
    store.create_generated(f"alpha{alpha}", len(sources))
    n_blocks = -(-len(sources) // store.block_size)
    config = {"alpha": alpha, "group": group}
    with store.stage("synthesize", config=config, n_blocks=n_blocks) as run:
        for block in run.pending_blocks():
            rows = store.block_slice(block, len(sources))
            for name, values in columns.items():
                run.write(f"{group}/{name}", block, np.ascontiguousarray(values[rows]))
            run.mark_done(block)
        run.finish(counts={"generated": len(sources), "alpha": alpha})


@pytest.fixture
def add_generated() -> Callable[[PersonStore, int], None]:
    return generate_without_model
