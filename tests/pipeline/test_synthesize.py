"""Synthesis stage: target-pose draws, generated group, resume."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from foundation.weights import UnreadableWeightsError
from pipeline.augmentation_sets import draw_target_poses
from pipeline.synthesize import synthesize
from pipeline.train_generator import MissingRunError
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
def trained_run(trained_generator):
    return trained_generator(test_pairs=6)


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
    from pipeline.datasets.market1501 import parse_market_name, scan_market1501
    from pipeline.export import export_market

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
    with pytest.raises(MissingInputError, match="at alpha 2, not alpha 5.*--run RUN --alpha 5"):
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


def test_every_source_uses_the_same_assignments(small_store, trained_run):
    synthesize(small_store, trained_run, alpha=3, seed=1)
    for source in ("copies", "flip", "paint-by-parts"):
        stamp = synthesize(small_store, source=source, alpha=3, seed=1)
        assert stamp.stage == f"synthesize_{source}" and stamp.config["source"] == source
    groups = ["alpha3", "copies-alpha3", "flip-alpha3", "paint-by-parts-alpha3"]
    assert set(small_store.generated_runs()) == set(groups)
    for column in ("source_index", "target_index", "person_id"):
        first = small_store.read(f"generated/alpha3/{column}")
        for group in groups[1:]:
            np.testing.assert_array_equal(small_store.read(f"generated/{group}/{column}"), first)
    sources = small_store.read("generated/copies-alpha3/source_index")
    real = small_store.read("images", sources)
    np.testing.assert_array_equal(small_store.read("generated/copies-alpha3/images"), real)
    np.testing.assert_array_equal(
        small_store.read("generated/flip-alpha3/images"), real[:, :, ::-1]
    )
    painted = small_store.read("generated/paint-by-parts-alpha3/images")
    targets = small_store.read("generated/alpha3/target_index")
    person = small_store.read("parsing", targets) > 0
    # The fixture paints each person in one colour: painted parts carry the source's colour,
    # the background stays the source image's.
    np.testing.assert_array_equal(painted[~person], real[~person])
    assert np.abs(painted[person].astype(int) - real[person].astype(int)).mean() < 60


def _method_outputs(store, pairs_file, folder, *, skip=()):
    """A PATN-style folder: ``{from}___{to}_vis.png`` strips [source | target | generated],
    the generated panel a colour that encodes the pair's line in the list."""
    import pandas as pd
    from PIL import Image

    folder.mkdir()
    names = store.index["filename"].tolist()
    images = store.read("images")
    expected = []
    for k, (a, b) in enumerate(pd.read_csv(pairs_file)[["from", "to"]].itertuples(index=False)):
        made = np.full((store.height, store.width, 3), (k * 7) % 256, np.uint8)
        expected.append(made)
        if k in skip:
            continue
        strip = np.concatenate([images[names.index(a)], images[names.index(b)], made], axis=1)
        Image.fromarray(strip).save(folder / f"{a}___{b}_vis.png")
    return np.stack(expected)


def test_folder_source_reads_another_methods_outputs_for_the_listed_pairs(
    small_store, tmp_path, snapshot
):
    from pipeline.augmentation_sets import write_pairs
    from pipeline.evaluate_folder import FolderError

    pairs_file = tmp_path / "pairs.csv"
    count = write_pairs(small_store, pairs_file, alpha=3, seed=2)
    import pandas as pd

    listed = pd.read_csv(pairs_file)
    assert list(listed.columns) == ["from", "to"] and len(listed) == count == 24
    names = small_store.index["filename"].to_numpy()
    synthesize(small_store, source="copies", alpha=3, seed=2)
    np.testing.assert_array_equal(
        listed["from"], names[small_store.read("generated/copies-alpha3/source_index")]
    )
    np.testing.assert_array_equal(
        listed["to"], names[small_store.read("generated/copies-alpha3/target_index")]
    )
    incomplete = tmp_path / "incomplete"
    _method_outputs(small_store, pairs_file, incomplete, skip=(5, 9))
    before = snapshot(small_store)
    with pytest.raises(FolderError, match=r"2 of 24 listed pairs have no image \(first: "):
        synthesize(small_store, source="folder", folder=incomplete, name="patn", alpha=3, seed=2)
    assert snapshot(small_store) == before, "a refused folder writes nothing"
    complete = tmp_path / "PATN"
    expected = _method_outputs(small_store, pairs_file, complete)
    stamp = synthesize(small_store, source="folder", folder=complete, alpha=3, seed=2)
    assert stamp.stage == "synthesize_patn" and stamp.config["source"] == "folder"
    np.testing.assert_array_equal(small_store.read("generated/patn-alpha3/images"), expected)
    with pytest.raises(ValueError, match="belongs to --source copies"):
        synthesize(small_store, source="folder", folder=complete, name="copies", alpha=3)


def test_a_set_of_another_alpha_is_named(small_store):
    from pipeline.augmentation_sets import finished_set_group

    synthesize(small_store, source="flip", alpha=3)
    assert finished_set_group(small_store, "flip", 3, stage="x") == "generated/flip-alpha3"
    with pytest.raises(MissingInputError, match="set 'flip' at alpha 3, not alpha 2; pass"):
        finished_set_group(small_store, "flip", 2, stage="x")
    with pytest.raises(MissingInputError, match="no set 'copies'; run .*--source copies"):
        finished_set_group(small_store, "copies", 2, stage="x")
