"""evaluate-folder: another method's outputs in PATN/GFLA naming, scored as the evaluate stage."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline.evaluate import evaluate_generator, generate_pairs
from pipeline.evaluate_folder import (
    FolderError,
    add_to_comparison,
    evaluate_folder,
    match_folder,
    read_generated,
)
from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.train_generator import train_generator
from san_model.checkpoint import load_generator
from san_model.config import SANConfig
from storage import open_store


@pytest.fixture(scope="module")
def generated(tmp_path_factory, store_builder):
    """The store, its evaluate-stage metrics, and the generator's test images by pair (one
    training and one evaluation for the module: Inception at 299x299 is slow on a CPU)."""
    tmp_path = tmp_path_factory.mktemp("folder")
    small_store = store_builder(tmp_path / "store")
    sample_pairs(small_store, PairsConfig(test_pairs=6))
    run = tmp_path / "run"
    config = SANConfig.tiny(use_perceptual=False)
    train_generator(small_store, run, config=config, max_steps=2)
    stage = evaluate_generator(small_store, run, pretrained=False, batch_size=4)
    generator, _ = load_generator(run)
    arrays = small_store.load_in_memory(("images", "masks", "parsing"))
    pairs = small_store.read_table("pairs_test")[["source", "target"]].to_numpy(np.int64)
    source, target = pairs.T
    images = generate_pairs(generator, arrays, source, target)
    names = small_store.index["filename"].to_numpy()
    return small_store, stage.report["metrics"], images, names[source], names[target], arrays


def _write(folder, convention, images, sources, targets, arrays=None, pairs=None):
    folder.mkdir()
    for k, (image, source, target) in enumerate(zip(images, sources, targets, strict=True)):
        if convention == "patn":  # source | source pose | target | target pose | generated
            s, t = pairs[k]
            pose = np.repeat(arrays["parsing"][t][..., None] * 12, 3, axis=2).astype(np.uint8)
            strip = [arrays["images"][s], pose, arrays["images"][t], pose, image]
            Image.fromarray(np.concatenate(strip, axis=1)).save(
                folder / f"{source}___{target}_vis.png"
            )
        elif convention == "gfla":
            Image.fromarray(image).save(folder / f"{source[:-4]}_2_{target[:-4]}.png")
        else:
            Image.fromarray(image).save(folder / f"{source[:-4]}___{target[:-4]}.png")


@pytest.mark.parametrize("convention", ["patn", "gfla", "plain"])
def test_folder_scores_equal_the_evaluate_stage(generated, tmp_path, convention):
    store, stage, images, sources, targets, arrays = generated
    pairs = store.read_table("pairs_test")[["source", "target"]].to_numpy(np.int64)
    folder = tmp_path / convention
    _write(folder, convention, images, sources, targets, arrays, pairs)
    (folder / "notes.txt").write_text("ignored: not an image")
    Image.fromarray(images[0]).save(folder / "0099_c1s1_000000_01___0001_c1s1_000000_01.png")
    results = evaluate_folder(
        store, folder, name=convention, pretrained=False, fid_variants=("torchvision",)
    )
    assert results["matched"] == len(pairs) and results["missing_pairs"] == 0
    assert list(results["unmatched"].values()) == ["source not in the store"]
    for key in ("l1", "masked_l1", "ssim", "psnr", "part_colour", "lpips", "mask_lpips", "fid"):
        assert results[key] == pytest.approx(stage[key], rel=1e-6), key
    page = add_to_comparison(results, tmp_path / "comparison")
    text = page.read_text()
    assert "## Market-1501" in text and "| SAN (paper table 1) | 14.142 |" in text
    assert f"| {convention} | {stage['fid']:.3f} | {stage['lpips']:.4f} |" in text
    assert results["dataset"] == "market1501"
    assert json.loads((tmp_path / "comparison" / "comparison.json").read_text())[convention]


def test_missing_pairs_and_bad_files_are_reported(generated, tmp_path):
    store, _, images, sources, targets, _ = generated
    folder = tmp_path / "partial"
    _write(folder, "gfla", images[:2], sources[:2], targets[:2])
    match = match_folder(store, folder)
    assert len(match.files) == 2 and len(match.missing) == len(sources) - 2
    Image.fromarray(images[0][:10]).save(folder / f"{sources[2][:-4]}_2_{targets[2][:-4]}.png")
    with pytest.raises(FolderError, match="pixels; the store's images are 32x64"):
        evaluate_folder(store, folder, name="x", offline=True)
    with pytest.raises(FolderError, match="no such folder"):
        evaluate_folder(store, tmp_path / "absent", name="x", offline=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "a.png").write_bytes(b"")
    with pytest.raises(FolderError, match="none of its 1 images names a pair"):
        evaluate_folder(store, empty, name="x", offline=True)


def test_command_line_scores_a_folder_and_names_unmatched_files(generated, tmp_path, capsys):
    from augment_market.cli import main

    store, _, images, sources, targets, _ = generated
    folder = tmp_path / "method"
    _write(folder, "gfla", images, sources, targets)
    Image.fromarray(images[0]).save(folder / "stray.png")
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "evaluate-folder",
                str(folder),
                "--store",
                store.url,
                "--offline",
                "--out",
                str(tmp_path / "table"),
            ]
        )
    assert exit_info.value.code in (0, None)
    out = capsys.readouterr().out
    assert f"{len(images)} images matched, 1 files named no pair, 0 test pairs had no file" in out
    assert "unmatched stray.png: name is neither" in out
    assert "| method | n/a | n/a | n/a |" in out  # offline: no FID / LPIPS
    assert "| method | n/a | n/a | 6 | drawn (seed 0, from the gallery) |" in out


def test_patn_deepfashion_panels_176_wide_are_stretched_to_the_store(tmp_path, store_builder):
    """PATN's DeepFashion strips are 5 panels of 176x256; on a 256x256 store the generated one
    is stretched back, so PATN's image of the target scores close to the target itself."""
    store = store_builder(tmp_path / "store", ids=(2, 2), per_id=4, height=256, width=256)
    sample_pairs(store, PairsConfig(test_pairs=None))
    pairs = store.read_table("pairs_test")[["source", "target"]].to_numpy(np.int64)
    images, names = store.read("images"), store.index["filename"].to_numpy()
    folder = tmp_path / "patn"
    folder.mkdir()
    for s, t in pairs:
        narrow = [
            np.asarray(Image.fromarray(images[r]).resize((176, 256))) for r in (s, s, t, t, t)
        ]
        strip = np.concatenate(narrow, axis=1)  # source | pose | target | pose | generated
        Image.fromarray(strip).save(folder / f"{names[s]}___{names[t]}_vis.png")
    results = evaluate_folder(store, folder, name="PATN", offline=True)
    assert results["matched"] == len(pairs) and results["missing_pairs"] == 0
    # Random-noise images lose detail through 176 columns, yet stay far closer than the source.
    assert results["l1"] < 0.5 * results["copy_source_l1"]
    strip = Image.open(next(folder.iterdir()))
    last = np.asarray(strip)[:, 4 * 176 :]
    expected = np.asarray(Image.fromarray(last).resize((256, 256), Image.Resampling.BICUBIC))
    got = read_generated(next(folder.iterdir()), height=256, width=256, panel=True, index=-1)
    np.testing.assert_array_equal(got, expected)
    (folder / "odd.png").unlink(missing_ok=True)
    Image.fromarray(last[:, :170]).save(folder / "odd.png")
    with pytest.raises(FolderError, match=r"170x256 pixels; .* must be 256x256 or 176x256"):
        read_generated(folder / "odd.png", height=256, width=256, panel=False, index=-1)


def test_a_pair_listed_twice_is_scored_twice_from_its_one_file(generated, tmp_path):
    store, _, images, sources, targets, _ = generated
    shutil.copytree(store.url, tmp_path / "store")  # the module's store keeps its pairs
    copied = open_store(str(tmp_path / "store"), mode="r+")
    listed = tmp_path / "test.csv"
    lines = [(sources[0], targets[0]), (sources[1], targets[1]), (sources[0], targets[0])]
    listed.write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in lines))
    sample_pairs(copied, PairsConfig(test_pairs_file=str(listed)))
    folder = tmp_path / "gfla"
    _write(folder, "gfla", images[:2], sources[:2], targets[:2])
    match = match_folder(copied, folder)
    assert match.missing == [] and sorted(match.rows.tolist()) == [0, 1, 2]
    first = folder / f"{sources[0][:-4]}_2_{targets[0][:-4]}.png"
    assert [row for row, file in zip(match.rows, match.files, strict=True) if file == first] == [
        0,
        2,
    ]
    results = evaluate_folder(copied, folder, name="x", offline=True)
    assert results["matched"] == 3 and results["missing_pairs"] == 0
