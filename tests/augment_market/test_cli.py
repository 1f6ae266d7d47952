"""The command line's error boundary, run on the catalogue of bad inputs of issue 13.

Every case runs the real command in-process on a tiny store and checks: the exit code, one
line on stderr naming the file and the problem, no traceback, and (where a store is involved)
the store's array digests, tables and stamps unchanged. Two cases run the installed entry
point as a subprocess.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.pairs import PairsConfig, sample_pairs
from storage import PersonStore
from tests.annotations import write_pngs
from tests.augment_market.commands import (
    EXIT_USER,
    cli,
    fails_cleanly,
    one_error_line,
    refused_parameters,
)

EXIT_USAGE, EXIT_BUG = 2, 70


class _Exploit:
    def __reduce__(self):
        return (os.system, ("echo owned",))


# -- 1. a failed rerun never loses a finished stage -----------------------------------------


def test_pairs_more_than_the_identities_supply(capsys, snapshot, small_store):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    line = fails_cleanly(
        capsys, snapshot, small_store, "pairs", small_store.url, "--train-pairs", 100_000
    )
    assert "training pairs: asked for 100000 pairs" in line and "supply only 36" in line


def test_pairs_from_published_lists(capsys, snapshot, small_store, tmp_path):
    names = small_store.index["filename"]
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    train.write_text(f"from,to\n{names[1]},{names[0]}\n")
    test.write_text(f"from,to\n{names[13]},{names[14]}\n{names[13]},{names[14]}\n")
    code, out, err = cli(
        capsys, "pairs", small_store.url, "--train-pairs-file", train, "--test-pairs-file", test
    )
    assert code == 0, err
    pairs = small_store.read_table("pairs_test")[["source", "target"]].to_numpy()
    assert pairs.tolist() == [[13, 14], [13, 14]]
    assert "'test_pairs': 2" in out
    # A list naming a training identity: one line, the finished stage untouched.
    test.write_text(f"from,to\n{names[13]},{names[14]}\n{names[2]},{names[3]}\n")
    line = fails_cleanly(
        capsys, snapshot, small_store, "pairs", small_store.url, "--test-pairs-file", test
    )
    assert line.startswith(f"{test}, line 3: test pair {names[2]} -> {names[3]}: identity 1 is")


def test_provided_mask_of_the_wrong_size(capsys, snapshot, small_store, tmp_path):
    paths = write_pngs(small_store, tmp_path / "annotations" / "masks", "masks")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(paths[-1])
    args = ("segment", "masks", small_store.url, "--provided", tmp_path / "annotations")
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"provided masks: {paths[-1]} is (10, 10) (WxH), image is (32, 64)")


def test_provided_parsing_with_label_25(capsys, snapshot, small_store, tmp_path):
    paths = write_pngs(small_store, tmp_path / "annotations" / "parsing", "parsing")
    labels = np.asarray(Image.open(paths[0])).copy()
    labels[3, 3] = 25
    Image.fromarray(labels).save(paths[0])
    args = ("segment", "parsing", small_store.url, "--provided", tmp_path / "annotations")
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"provided parsing: {paths[0]} has label 25; LIP labels are 0..19")


@pytest.mark.parametrize(
    ("content", "problem"), [("truncated", "cannot be read"), ("pickled", "was refused")]
)
def test_mask_weights_truncated_or_malicious(
    capsys, snapshot, small_store, tmp_path, content, problem
):
    weights = tmp_path / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    torch.save(
        {"backbone.weight": _Exploit() if content == "pickled" else torch.zeros(9000)}, weights
    )
    if content == "truncated":
        weights.write_bytes(weights.read_bytes()[:1000])
    args = ("segment", "masks", small_store.url, "--weights", weights)
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"weights file {weights} {problem}")


def test_missing_weights_file(capsys, snapshot, small_store, tmp_path):
    weights = tmp_path / "absent.pth"
    args = ("segment", "parsing", small_store.url, "--weights", weights)
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"weights file {weights} does not exist")
    assert "exp-schp-201908261155-lip.pth" in line


@pytest.mark.parametrize(
    "command",
    [("pairs",), ("segment", "masks")],
    ids=["pairs", "masks before its weights are even looked at"],
)
def test_a_busy_stage_is_refused_at_once(capsys, snapshot, small_store, tmp_path, command):
    stage = command[-1]
    lock = os.path.join(small_store.root, "locks", f"{stage}.lock")
    os.makedirs(os.path.dirname(lock), exist_ok=True)
    with open(lock, "w") as handle:  # held by a live process: this one
        json.dump({"host": socket.gethostname(), "pid": os.getpid(), "time": 0}, handle)
    absent = tmp_path / "absent.pth"
    args = (*command, small_store.url, *(("--weights", absent) if stage == "masks" else ()))
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"stage '{stage}' is already running on this store")
    assert lock in line and "wait for it to finish" in line


def test_reid_checkpoint_intervals_are_settable(capsys, small_store, tmp_path, monkeypatch):
    seen = []

    def train_reid_baseline(store, out, *, config, **options):
        seen.append(config)
        return types.SimpleNamespace(report={"results": {}})

    monkeypatch.setattr("pipeline.reid_stage.train_reid_baseline", train_reid_baseline)
    args = ["reid", "train", small_store.url, "--out", tmp_path / "reid"]
    code, _, err = cli(capsys, *args, "--checkpoint-every", 7, "--checkpoint-minutes", 2.5)
    assert code == 0, err
    assert (seen[0].checkpoint_every, seen[0].checkpoint_minutes) == (7, 2.5)


def test_too_few_reid_images_for_a_step(capsys, snapshot, small_store, tmp_path):
    args = ("reid", "train", small_store.url, "--out", tmp_path / "reid", "--batch-size", 16)
    line = fails_cleanly(capsys, snapshot, small_store, *args, "--no-pretrained")
    assert line == (
        "12 training images cannot fill one step of 16 (ide, batch 16); lower the batch size"
    )


# -- 3. one error boundary: known errors name the file and say what to do --------------------


def test_a_missing_input_stage_says_which_command_runs_it(capsys, snapshot, small_store, tmp_path):
    args = ("train", small_store.url, "--out", tmp_path / "run", "--preset", "tiny")
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line == (
        f"stage 'generator' needs stage 'pairs' finished first on {small_store.url}: "
        "run `augment-market pairs STORE`"
    )


def test_a_missing_run_says_no_generator_is_there(capsys, snapshot, small_store, tmp_path):
    small_store_with_generator_stamp(small_store)
    args = ("synthesize", small_store.url, "--run", tmp_path / "nowhere")
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"no trained generator in {tmp_path / 'nowhere'}")


def small_store_with_generator_stamp(store: PersonStore) -> None:
    with store.stage("generator", config={"fixture": True}, n_blocks=0) as run:
        run.finish(counts={})


def test_a_store_path_that_is_a_regular_file(capsys, tmp_path):
    path = tmp_path / "market.zarr"
    path.write_text("a file")
    for args in (("info", path), ("pairs", path)):
        code, _, err = cli(capsys, *args)
        assert code == EXIT_USER
        assert one_error_line(err) == (
            f"{path} is a regular file, not a store folder; give a folder path (a new one to "
            "create a store)"
        )


def test_a_folder_that_is_not_a_dataset(capsys, tmp_path):
    (tmp_path / "photos").mkdir()
    code, _, err = cli(
        capsys, "ingest", "market1501", tmp_path / "photos", "--store", tmp_path / "s"
    )
    assert code == EXIT_USER
    assert one_error_line(err).startswith(
        f"{tmp_path / 'photos'} is not a Market-1501 folder: missing bounding_box_train"
    )


def test_names_out_of_range_say_which_field(capsys, tmp_path):
    source = tmp_path / "Market"
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        (source / folder).mkdir(parents=True)
    image = Image.fromarray(np.full((128, 64, 3), 90, np.uint8))
    for name in ("0001_c1s1_000001_00.jpg", "0002_c2s1_000001_00.jpg"):
        image.save(source / "bounding_box_train" / name)
    image.save(source / "query" / "0001_c9s1_000002_00.jpg")
    image.save(source / "query" / "99999_c1s1_000002_00.jpg")
    code, out, err = cli(capsys, "ingest", "market1501", source, "--store", tmp_path / "s")
    assert code == 0, err
    skipped = sorted(line for line in out.splitlines() if "skipped:" in line)
    assert skipped == [
        "  skipped: 0001_c9s1_000002_00.jpg: camera 9 is out of range (Market-1501 cameras "
        "are 1-6)",
        "  skipped: 99999_c1s1_000002_00.jpg: person id 99999 is out of range (four digits "
        "0000-9999, or -1 for junk)",
    ]


def test_fewer_training_pairs_than_the_batch(capsys, snapshot, small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(train_pairs=3, test_pairs=None))
    args = ("train", small_store.url, "--out", tmp_path / "run", "--preset", "tiny")
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith("only 3 training pairs for batches of 4")
    assert not (tmp_path / "run").exists()


def test_missing_vgg_weights_say_how_to_train_without(capsys, snapshot, small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    vgg = tmp_path / "vgg19-dcbfe2b4.pth"
    args = ("train", small_store.url, "--out", tmp_path / "run", "--preset", "tiny")
    line = fails_cleanly(capsys, snapshot, small_store, *args, "--weights", vgg)
    assert line.startswith(f"weights file {vgg} does not exist")
    assert line.endswith(
        "Or train without the perceptual loss (eq. 6): --no-perceptual (use_perceptual=False)"
    )


def test_parameters_that_do_not_validate_name_the_file(capsys, tmp_path):
    params = tmp_path / "bad.yaml"
    line = refused_parameters(capsys, params, "store_url: s\nno_such_setting: 1\n")
    assert line.startswith(f"{params}: ") and "no_such_setting" in line


def test_disk_full_names_the_store(capsys, small_store, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PersonStore, "write_table", full)
    code, _, err = cli(capsys, "pairs", small_store.url, "--test-pairs", 4)
    assert code == EXIT_USER
    assert one_error_line(err).startswith(
        f"no space left on the disk of store {small_store.url} (No space left on device)"
    )


def test_a_mistyped_option_is_one_line(capsys, small_store):
    code, _, err = cli(capsys, "pairs", small_store.url, "--train-pairz", 3)
    assert code == EXIT_USAGE
    assert one_error_line(err) == (
        "No such option: --train-pairz (Possible options: --test-pairs, --train-pairs, "
        "--train-pairs-file) (see `augment-market pairs --help`)"
    )


def test_an_unexpected_error_is_one_line_and_says_how_to_see_more(capsys, small_store, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("pipeline.pairs.draw_pairs", bug)
    code, _, err = cli(capsys, "pairs", small_store.url)
    assert code == EXIT_BUG
    assert one_error_line(err) == (
        "unexpected ZeroDivisionError: division by zero (a bug: rerun with --debug for the "
        "traceback and report it)"
    )


@pytest.mark.parametrize("how", ["flag after the command", "environment"])
def test_debug_shows_the_traceback(capsys, tmp_path, monkeypatch, how):
    args = ["info", tmp_path / "nowhere"]
    if how == "environment":
        monkeypatch.setenv("AUGMENT_MARKET_DEBUG", "1")
    else:
        args.append("--debug")
    code, _, err = cli(capsys, *args)
    assert code == EXIT_USER
    assert err.startswith("Traceback (most recent call last):")
    assert err.strip().splitlines()[-1] == (
        f"error: no augment-market store at {tmp_path / 'nowhere'} (missing zarr.json); "
        "create one with `augment-market ingest`"
    )


# -- 2. exports never mix ------------------------------------------------------------------


def test_a_second_export_into_the_same_folder(
    capsys, snapshot, small_store, add_generated, tmp_path
):
    add_generated(small_store, 3)
    out = tmp_path / "market"
    code, stdout, _ = cli(capsys, "export", small_store.url, out, "--alpha", 3)
    assert code == 0 and "wrote 48 images" in stdout
    first = sorted(p for p in out.rglob("*") if p.is_file())
    line = fails_cleanly(capsys, snapshot, small_store, "export", small_store.url, out)
    assert line.startswith(f"{out} is not empty ({len(first)} files)") and "--overwrite" in line
    assert sorted(p for p in out.rglob("*") if p.is_file()) == first
    code, stdout, _ = cli(capsys, "export", small_store.url, out, "--overwrite")
    assert code == 0 and "wrote 24 images" in stdout
    assert not (out / "generated.csv").exists()
    assert len(list((out / "bounding_box_train").iterdir())) == 12


# -- the installed entry point -------------------------------------------------------------


def test_the_entry_point_prints_one_line_and_the_traceback_on_request(tmp_path):
    command = [sys.executable, "-m", "augment_market.cli", "info", str(tmp_path / "nowhere")]
    plain = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert plain.returncode == EXIT_USER and plain.stdout == ""
    assert plain.stderr.strip().splitlines() == [
        f"error: no augment-market store at {tmp_path / 'nowhere'} (missing zarr.json); "
        "create one with `augment-market ingest`"
    ]
    debug = subprocess.run([*command, "--debug"], capture_output=True, text=True, timeout=120)
    assert debug.returncode == EXIT_USER and "Traceback" in debug.stderr


def test_migrate_copies_a_format_1_store(capsys, tmp_path):
    import shutil
    from pathlib import Path

    from storage import open_store

    data = Path(__file__).parents[1] / "data"
    shutil.copytree(data / "store_v1", tmp_path / "v1")
    code, out, err = cli(capsys, "migrate", tmp_path / "v1", tmp_path / "v2")
    assert code == 0, err
    assert "4 image arrays encoded" in out and "is unchanged" in out
    store = open_store(str(tmp_path / "v2"))
    assert store.format == "augment-market/2"
    np.testing.assert_array_equal(
        store.read("masks"), np.load(data / "store_v1_expected.npz")["masks"]
    )
    code, _, err = cli(capsys, "migrate", tmp_path / "v2", tmp_path / "v3")
    assert code == EXIT_USER and "already in the current format" in one_error_line(err)
