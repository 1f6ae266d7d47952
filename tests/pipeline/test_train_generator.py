"""Generator stage: store -> in-memory data -> SAN training, stamped and resumable."""

from __future__ import annotations

import numpy as np
import pytest

from foundation.runs import RunFolderInUseError
from foundation.weights import MissingWeightsError
from pipeline.pairs import NotEnoughPairsError, PairsConfig, sample_pairs
from pipeline.train_generator import (
    MissingRunError,
    generator_checkpoint,
    load_training_data,
    train_generator,
)
from san_model.checkpoint import load_checkpoint
from san_model.config import SANConfig


def test_training_data_is_compacted(small_store):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    data = load_training_data(small_store)
    table = small_store.read_table("pairs_train")
    assert data.images.shape[0] == len(np.unique(table[["source", "target"]]))
    images = small_store.load_in_memory(("images",))["images"]
    first = table.iloc[0]
    np.testing.assert_array_equal(data.images[data.pairs[0, 0]], images[first["source"]])
    np.testing.assert_array_equal(data.images[data.pairs[0, 1]], images[first["target"]])


def test_train_generator_stage(small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    config = SANConfig.tiny(use_perceptual=False)
    seen = []
    stamp = train_generator(
        small_store,
        tmp_path / "run",
        config=config,
        max_steps=6,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert stamp.counts["steps"] == 6 and seen[-1] == (6, 6) and len(seen) == 6
    assert stamp.report["perceptual_loss"].startswith("off")
    assert load_checkpoint(tmp_path / "run")["step"] == 6
    assert small_store.stamp("generator") == stamp
    again = train_generator(small_store, tmp_path / "run", config=config, max_steps=6)
    assert again.digest == stamp.digest, "a finished run resumes to the same result"


def test_image_size_mismatch_is_refused(small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    with pytest.raises(ValueError, match="differs from the store"):
        train_generator(small_store, tmp_path / "run", config=SANConfig.market1501())


def test_a_checkpoint_trained_on_other_inputs_is_never_resumed(small_store, tmp_path):
    """Pairs of seed 0, then of seed 1: the second run must not continue the first's weights;
    it is refused unless asked to replace them, then equals a run that started on seed 1's
    pairs; a longer schedule on the same inputs still continues."""
    config = SANConfig.tiny(use_perceptual=False)
    sample_pairs(small_store, PairsConfig(test_pairs=None, seed=0))
    train_generator(small_store, tmp_path / "run", config=config, max_steps=2)
    checkpoint = tmp_path / "run" / "checkpoints" / "latest.pt"
    first = checkpoint.read_bytes()
    sample_pairs(small_store, PairsConfig(test_pairs=None, seed=1))
    with pytest.raises(RunFolderInUseError, match="other inputs .*--overwrite"):
        train_generator(small_store, tmp_path / "run", config=config, max_steps=4)
    assert checkpoint.read_bytes() == first
    switched = train_generator(
        small_store, tmp_path / "run", config=config, max_steps=4, overwrite=True
    )
    assert switched.report["resumed_at_step"] is None
    train_generator(small_store, tmp_path / "fresh", config=config, max_steps=4)
    a, b = load_checkpoint(tmp_path / "run"), load_checkpoint(tmp_path / "fresh")
    assert all(np.array_equal(a["generator"][k], b["generator"][k]) for k in a["generator"])
    longer = train_generator(small_store, tmp_path / "run", config=config, max_steps=6)
    assert longer.report["resumed_at_step"] == 4


def test_fewer_pairs_than_a_batch_are_refused_before_the_run_folder(small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(train_pairs=3, test_pairs=None))
    with pytest.raises(NotEnoughPairsError, match="only 3 training pairs for batches of 4"):
        train_generator(small_store, tmp_path / "run", config=SANConfig.tiny(use_perceptual=False))
    assert not (tmp_path / "run").exists()


def test_a_failed_rerun_keeps_the_trained_generator(small_store, tmp_path, snapshot):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    train_generator(
        small_store, tmp_path / "run", config=SANConfig.tiny(use_perceptual=False), max_steps=2
    )
    checkpoint = (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes()
    before = snapshot(small_store)
    with pytest.raises(MissingWeightsError, match="--no-perceptual") as raised:
        train_generator(
            small_store,
            tmp_path / "run",
            config=SANConfig.tiny(),
            vgg_weights=tmp_path / "vgg19-dcbfe2b4.pth",
        )
    assert "vgg19-dcbfe2b4.pth does not exist" in str(raised.value)
    assert snapshot(small_store) == before
    assert (tmp_path / "run" / "checkpoints" / "latest.pt").read_bytes() == checkpoint


def test_a_missing_run_says_no_generator_is_there(tmp_path):
    with pytest.raises(MissingRunError, match="no trained generator in .*nowhere"):
        generator_checkpoint(tmp_path / "nowhere")
