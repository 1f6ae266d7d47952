"""The last bad inputs of the catalogue (issue 23), each through the real command line.

Every case checks the exit code (1 input or settings, 2 command line, 130 Ctrl-C), one
``error: ...`` line naming the file, store or setting, and that nothing was overwritten: the
store's digests (or, for a store that no longer opens, the bytes of its files) and any run
folder's checkpoint are unchanged.
"""

from __future__ import annotations

import errno
import hashlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import zarr

from foundation.errors import UserError
from pipeline.pairs import PairsConfig, sample_pairs
from tests.augment_market.commands import (
    EXIT_USER,
    cli,
    fails_cleanly,
    one_error_line,
    refused_parameters,
)

EXIT_USAGE, EXIT_INTERRUPTED = 2, 130
# Tiny Re-ID and generator runs: CPU, random init, a few steps.
REID_TINY = ("--arch", "resnet18", "--no-pretrained", "--epochs", 1, "--batch-size", 8)
GENERATOR_TINY = ("--preset", "tiny", "--no-perceptual", "--max-steps", 2)


def files_digest(folder: Path) -> dict[str, str]:
    """sha256 of every file under ``folder``, for stores that no longer open."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def refused_damaged(capsys, folder: Path, *args) -> str:
    before = files_digest(folder)
    code, _, err = cli(capsys, *args)
    assert code == EXIT_USER, err
    assert files_digest(folder) == before
    return one_error_line(err)


# -- 1. weights of another network ------------------------------------------------------------


@pytest.fixture
def wrong_network(tmp_path) -> Path:
    """A valid torch file of another network (a small ResNet-like state dict)."""
    path = tmp_path / "other_network.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 3, 3), "fc.weight": torch.zeros(10, 8)}, path)
    return path


@pytest.mark.parametrize(
    ("command", "network"),
    [
        (("segment", "masks"), "Mask R-CNN ResNet-50 FPN v2 (COCO)"),
        (("segment", "parsing"), "SCHP ResNet-101 (LIP)"),
    ],
)
def test_segmentation_weights_of_another_network(
    capsys, snapshot, small_store, wrong_network, command, network
):
    line = fails_cleanly(
        capsys, snapshot, small_store, *command, small_store.url, "--weights", wrong_network
    )
    assert line.startswith(f"weights file {wrong_network} is not a {network} file: ")
    assert "tensors missing" in line and "give the official file (" in line


def test_vgg_weights_of_another_network(capsys, snapshot, small_store, wrong_network, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    args = ("train", small_store.url, "--out", tmp_path / "run", "--preset", "tiny")
    line = fails_cleanly(capsys, snapshot, small_store, *args, "--weights", wrong_network)
    assert line.startswith(f"weights file {wrong_network} is not a VGG-19 (ImageNet) file")
    assert line.endswith("give the official file (vgg19-dcbfe2b4.pth)")
    assert not (tmp_path / "run").exists()


# -- 2. pair counts below one -----------------------------------------------------------------


@pytest.mark.parametrize(("option", "count"), [("--train-pairs", 0), ("--test-pairs", -3)])
def test_pair_counts_below_one_keep_the_finished_pairs(
    capsys, snapshot, small_store, option, count
):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    line = fails_cleanly(
        capsys, snapshot, small_store, "pairs", small_store.url, option, count, code=EXIT_USAGE
    )
    assert line.startswith(f"Invalid value for '{option}': ")
    assert "greater than or equal to 1" in line


def test_pairs_config_refuses_counts_below_one():
    with pytest.raises(UserError, match="train_pairs is 0; give at least 1"):
        PairsConfig(train_pairs=0)


# -- 3. Re-ID metrics that cannot be fitted ---------------------------------------------------


def test_an_unfittable_kissme_is_refused_before_training(capsys, snapshot, small_store, tmp_path):
    out = tmp_path / "reid"
    args = ("reid", "train", small_store.url, "--out", out, *REID_TINY)
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line.startswith(f"store {small_store.url}: KISSME cannot be fitted in 12 dimensions")
    assert "use --kissme-pca 11 or less, or leave it out (--metrics euclidean,xqda)" in line
    assert not out.exists()


def test_metrics_and_the_kissme_size_reach_the_stage(capsys, small_store, tmp_path, monkeypatch):
    seen = {}

    def train_reid_baseline(store, out, **options):
        seen.update(options)
        return type("Stamp", (), {"report": {"results": {}}})()

    monkeypatch.setattr("pipeline.reid_stage.train_reid_baseline", train_reid_baseline)
    args = ("reid", "train", small_store.url, "--out", tmp_path / "reid")
    code, _, err = cli(capsys, *args, "--metrics", "kissme,euclidean", "--kissme-pca", 9)
    assert code == 0, err
    assert seen["metrics"] == ["kissme", "euclidean"]
    assert seen["metric_options"] == {"kissme": {"pca_dim": 9}}


@pytest.mark.parametrize("metrics", ["euclid", "xqda,xqda", ","])
def test_unknown_metrics_are_a_command_line_error(capsys, small_store, tmp_path, metrics):
    args = ("reid", "train", small_store.url, "--out", tmp_path / "reid", "--metrics", metrics)
    code, _, err = cli(capsys, *args)
    assert code == EXIT_USAGE
    line = one_error_line(err)
    assert line.startswith("Invalid value for '--metrics': ") and "euclidean, xqda, kissme" in line


# -- 4. a damaged store -----------------------------------------------------------------------


def test_a_truncated_stamp_names_its_file(capsys, small_store):
    stamp = Path(small_store.root) / "stamps" / "masks.json"
    stamp.write_bytes(stamp.read_bytes()[:40])
    for command in ("info", "pairs"):
        line = refused_damaged(capsys, Path(small_store.root), command, small_store.url)
        assert line.startswith(f"stamp file {stamp} of store {small_store.url} does not read")
        assert line.endswith("delete it and rerun stage 'masks' (its finished blocks are kept)")


def test_an_index_shorter_than_the_images(capsys, small_store):
    group = zarr.open_group(small_store.root, mode="r+")
    person_id = group["person_id"][:]
    del group["person_id"]
    group.create_array("person_id", data=person_id[:20], chunks=(20,))
    line = refused_damaged(capsys, Path(small_store.root), "pairs", small_store.url)
    assert line.startswith(
        f"store {small_store.url} is damaged: its zarr.json says n_images 24 but person_id has "
        "20 rows"
    )


def test_an_edited_image_count(capsys, small_store):
    metadata = Path(small_store.root) / "zarr.json"
    document = json.loads(metadata.read_text())
    document["attributes"]["n_images"] = 30
    metadata.write_text(json.dumps(document))
    line = refused_damaged(capsys, Path(small_store.root), "info", small_store.url)
    assert line.startswith(f"store {small_store.url} is damaged: its zarr.json says n_images 30")


# -- 5. a run folder of other settings is never replaced unasked -----------------------------


def test_a_generator_run_of_other_settings_is_kept(capsys, snapshot, small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    run = tmp_path / "run"
    # The whole (tiny) schedule: a --max-steps short of it would add its own note line.
    whole = ("--preset", "tiny", "--no-perceptual", "--epochs")
    code, _, err = cli(capsys, "train", small_store.url, "--out", run, *whole, 2)
    assert code == 0, err
    checkpoint = run / "checkpoints" / "latest.pt"
    first = checkpoint.read_bytes()
    args = ("train", small_store.url, "--out", run, *whole, 3)
    line = fails_cleanly(capsys, snapshot, small_store, *args)
    assert line == (
        f"{checkpoint} is a generator checkpoint trained under other settings (epochs 2 -> 3); "
        "this run would replace it: give another run folder (--out), or add --overwrite to "
        "replace it"
    )
    assert checkpoint.read_bytes() == first
    code, _, err = cli(capsys, *args, "--overwrite")
    assert code == 0, err
    assert checkpoint.read_bytes() != first


def test_a_reid_run_of_another_alpha_is_kept(
    capsys, snapshot, small_store, add_generated, tmp_path
):
    add_generated(small_store, 2)
    out = tmp_path / "reid"
    args = ("reid", "train", small_store.url, "--out", out, *REID_TINY, "--metrics", "euclidean")
    code, _, err = cli(capsys, *args, "--alpha", 2)
    assert code == 0, err
    checkpoint = out / "reid_ide_generator_s0" / "checkpoint" / "last.pt"
    first = checkpoint.read_bytes()
    add_generated(small_store, 3)
    line = fails_cleanly(capsys, snapshot, small_store, *args, "--alpha", 3)
    assert line.startswith(f"{checkpoint} is a Re-ID checkpoint trained under other inputs")
    assert "another --set or --alpha" in line and line.endswith("add --overwrite to replace it")
    assert checkpoint.read_bytes() == first


# -- 6. Ctrl-C ----------------------------------------------------------------------------------


def test_ctrl_c_says_how_to_resume_with_debug(capsys, small_store, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.pairs.draw_pairs", interrupted)
    code, _, err = cli(capsys, "pairs", small_store.url, "--debug")
    assert code == EXIT_INTERRUPTED
    assert err.startswith("Traceback") and "KeyboardInterrupt" in err
    assert err.splitlines()[-1] == "error: interrupted; rerun the same command to resume"


def test_ctrl_c_of_the_installed_command(tmp_path):
    out = tmp_path / "synthetic"
    command = [sys.executable, "-m", "augment_market.cli", "synth", str(out), "--ids", "4000"]
    # As from a terminal: a suite started in the background by a shell without job control
    # inherits SIGINT ignored, and Python then never raises KeyboardInterrupt.
    process = subprocess.Popen(
        command,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not any(out.rglob("*.jpg")) and time.monotonic() < deadline:  # it is writing
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED
    assert err.splitlines()[-1] == "error: interrupted; rerun the same command to resume"
    assert "Traceback" not in err


# -- 7. generator settings that cannot build a generator --------------------------------------


def test_a_zero_generator_width_is_refused_by_the_parameters(capsys, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(
        f"dataset: {{source: {tmp_path / 'none'}, synthetic: true}}\n"
        f"store_url: {tmp_path / 'store'}\nrun_dir: {tmp_path / 'run'}\n"
        "generator: {preset: tiny, overrides: {ngf: 0}}\n"
    )
    code, _, err = cli(capsys, "run", "--config", params)
    assert code == EXIT_USER
    line = one_error_line(err)
    assert line.startswith(f"{params}: generator: ") and "ngf (0)" in line
    assert not (tmp_path / "store").exists()


# -- 8. a store of a newer format ---------------------------------------------------------------


def test_a_store_of_a_newer_format(capsys, small_store):
    metadata = Path(small_store.root) / "zarr.json"
    document = json.loads(metadata.read_text())
    document["attributes"]["format"] = "augment-market/3"
    metadata.write_text(json.dumps(document))
    line = refused_damaged(capsys, Path(small_store.root), "info", small_store.url)
    assert line.startswith(f"{small_store.url} is an augment-market store of format ")
    assert "augment-market/3, which augment-market" in line and "a newer one" in line


# -- 9. the line itself -------------------------------------------------------------------------


def test_an_error_after_a_progress_line_starts_its_own_line(capsys, small_store, monkeypatch):
    def compute_masks(store, *, progress, **options):
        progress(1, 6)
        raise UserError(f"masks failed on {store.url}")

    monkeypatch.setattr("pipeline.masks.compute_masks", compute_masks)
    code, _, err = cli(capsys, "segment", "masks", small_store.url)
    assert code == EXIT_USER
    assert err == f"masks: 1/6 blocks (17%)\nerror: masks failed on {small_store.url}\n"


def test_a_full_disk_during_export_says_how_to_rerun_it(capsys, small_store, tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("pipeline.export.export_market", full)
    code, _, err = cli(capsys, "export", small_store.url, tmp_path / "market")
    assert code == EXIT_USER
    line = one_error_line(err)
    assert line.startswith(f"no space left on the disk of store {small_store.url} or ")
    assert line.endswith("then rerun (add --overwrite to replace the partial export)")
    assert "resumes" not in line


def test_a_parameters_file_that_is_no_mapping_is_named_once(capsys, tmp_path):
    params = tmp_path / "params.yaml"
    line = refused_parameters(capsys, params, "- store_url\n- run_dir\n")
    assert line.startswith(f"{params}: expected a YAML mapping of parameters")
    assert line.count(str(params)) == 1


def test_wrong_weights_in_a_library_load_name_the_file(tmp_path, wrong_network):
    """Where the tensors load (not only in the stages' checks): the same error."""
    from foundation.weights import WrongNetworkError
    from pipeline.schp import SCHPConfig, build_schp

    with pytest.raises(WrongNetworkError, match=f"{wrong_network} is not a SCHP"):
        build_schp(config=SCHPConfig(), weights=wrong_network)
