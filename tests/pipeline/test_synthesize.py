"""Synthesis stage: target-pose draws, generated group, resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from foundation.weights import UnreadableWeightsError
from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.synthesize import draw_target_poses, synthesize
from pipeline.train_generator import MissingRunError, train_generator
from san_model.config import SANConfig
from storage import MissingInputError


def test_draw_target_poses_rules():
    person_ids = np.repeat(np.arange(1, 6), [3, 4, 2, 5, 6])
    targets = draw_target_poses(person_ids, 4, np.random.default_rng(0))
    assert targets.shape == (20, 3)
    assert (person_ids[targets] != person_ids[:, None]).all(), "other people's poses only"
    assert all(len(set(row)) == 3 for row in targets.tolist()), "no repeats within a row"
    again = draw_target_poses(person_ids, 4, np.random.default_rng(0))
    np.testing.assert_array_equal(targets, again)
    with pytest.raises(ValueError, match="at least 2"):
        draw_target_poses(person_ids, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="leaves only 14"):
        draw_target_poses(person_ids, 16, np.random.default_rng(0))


@pytest.fixture
def trained_run(small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=6))
    train_generator(
        small_store, tmp_path / "run", config=SANConfig.tiny(use_perceptual=False), max_steps=2
    )
    return tmp_path / "run"


def test_synthesize_writes_generated_group(small_store, trained_run):
    stamp = synthesize(small_store, trained_run, alpha=3, seed=1)
    train = np.flatnonzero((small_store.index["split"] == "train").to_numpy())
    assert stamp.counts == {"generated": 2 * len(train), "train_images": len(train), "alpha": 3}
    assert small_store.generated_runs() == {"alpha3": 2 * len(train)}
    source = small_store.read("generated/alpha3/source_index")
    target = small_store.read("generated/alpha3/target_index")
    pids = small_store.read("generated/alpha3/person_id")
    np.testing.assert_array_equal(source, np.repeat(train, 2))
    person_id = small_store.index["person_id"].to_numpy()
    np.testing.assert_array_equal(pids, person_id[source])
    assert (person_id[target] != pids).all() and np.isin(target, train).all()
    images = small_store.read("generated/alpha3/images")
    assert images.shape == (2 * len(train), 64, 32, 3) and images.std() > 0


def test_synthesize_resumes_missing_blocks(small_store, trained_run):
    synthesize(small_store, trained_run, alpha=2)
    before = small_store.read("generated/alpha2/images")
    small_store.group["done/synthesize"][1] = False
    small_store.group["generated/alpha2/images"][4:8] = np.array([b""] * 4, dtype=object)
    synthesize(small_store, trained_run, alpha=2)
    np.testing.assert_array_equal(small_store.read("generated/alpha2/images"), before)


def test_export_market_layout(small_store, trained_run, tmp_path):
    from pipeline.export import export_market
    from pipeline.ingest import parse_market_name, scan_market1501

    synthesize(small_store, trained_run, alpha=2)
    out = tmp_path / "exported"
    written = export_market(small_store, out, alpha=2)
    candidates, skipped = scan_market1501(out)
    assert skipped == [] and len(candidates) == written == small_store.n_images + 12
    train = candidates[candidates["split"] == "train"]
    generated = [n for n in train["filename"] if parse_market_name(n).sequence == 9]
    assert len(generated) == 12 and len(set(train["filename"])) == len(train)
    real_pids = set(small_store.index.loc[small_store.index["split"] == "train", "person_id"])
    assert {parse_market_name(n).person_id for n in generated} <= real_pids
    with pytest.raises(MissingInputError, match="alpha5"):
        export_market(small_store, tmp_path / "other", alpha=5)


def test_synthesis_fanned_out_over_processes_equals_one_process(small_store, trained_run):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from pipeline.fanout import FanOut

    serial = synthesize(small_store, trained_run, alpha=2)
    expected = small_store.read("generated/alpha2/images")
    small_store.clear_stamp("synthesize")
    small_store.group["done/synthesize"][:] = False
    images = small_store.group["generated/alpha2/images"]
    images[:] = np.array([b""] * images.shape[0], dtype=object)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as executor:
        fanned = synthesize(
            small_store, trained_run, alpha=2, fan_out=FanOut(executor, blocks_per_task=2)
        )
    np.testing.assert_array_equal(small_store.read("generated/alpha2/images"), expected)
    assert fanned.digest == serial.digest and fanned.report == {"block_tasks": 2}


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


def test_a_missing_or_unsafe_run_keeps_the_generated_set(
    small_store, trained_run, tmp_path, snapshot
):
    synthesize(small_store, trained_run, alpha=2)
    before = snapshot(small_store)
    with pytest.raises(MissingRunError, match="no trained generator in"):
        synthesize(small_store, tmp_path / "nowhere", alpha=2)
    unsafe = tmp_path / "unsafe" / "checkpoints" / "latest.pt"
    unsafe.parent.mkdir(parents=True)
    torch.save({"generator": _Exploit()}, unsafe)
    with pytest.raises(UnreadableWeightsError, match=f"generator checkpoint {unsafe} was refused"):
        synthesize(small_store, tmp_path / "unsafe", alpha=2)
    assert snapshot(small_store) == before
