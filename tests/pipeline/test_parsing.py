"""SCHP preprocessing (letterbox warp, restore, flip test) and the parsing stage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from pipeline.parsing import (
    Letterbox,
    compute_parsing,
    parse_images,
    preprocess,
    restore_logits,
    unflip_logits,
    warp_in_matrices,
)
from pipeline.schp import SCHP_LIP, build_schp
from pipeline.segmentation import consistency_report, import_provided


@pytest.fixture(scope="module")
def schp():
    torch.manual_seed(0)
    return build_schp(pretrained=False)


def _grid(box: Letterbox, out_size, in_size, inverse: bool) -> torch.Tensor:
    """grid_sample grid (align_corners=True) for the letterbox or its inverse."""
    axes = []
    for axis in (0, 1):
        t = torch.arange(out_size[axis], dtype=torch.float64)
        if inverse:  # image pixel -> input pixel
            source = box.scale * (t - box.center[axis]) + box.target_center[axis]
        else:  # input pixel -> image pixel
            source = (t - box.target_center[axis]) / box.scale + box.center[axis]
        axes.append(source / (in_size[axis] - 1) * 2 - 1)
    gy, gx = torch.meshgrid(axes[0], axes[1], indexing="ij")
    return torch.stack([gx, gy], dim=-1)[None]


def test_letterbox_fits_long_side_and_centres():
    box = Letterbox.fit((128, 64), (473, 473))
    assert box.scale == pytest.approx(472 / 127)
    top = box.scale * (0 - box.center[0]) + box.target_center[0]
    bottom = box.scale * (127 - box.center[0]) + box.target_center[0]
    assert (top, bottom) == pytest.approx((0.0, 472.0))
    wide = Letterbox.fit((64, 128), (473, 473))  # the long side is the width
    assert wide.scale == pytest.approx(472 / 127)


@pytest.mark.parametrize("size", [(473, 473), (65, 65), (60, 90)])
def test_warp_in_equals_grid_sample_reference(size):
    images = torch.randint(0, 256, (2, 3, 128, 64)).double()
    rows, cols = warp_in_matrices((128, 64), size)
    ours = torch.einsum("iy,bcyx,jx->bcij", rows, images, cols)
    grid = _grid(Letterbox.fit((128, 64), size), size, (128, 64), inverse=False)
    reference = F.grid_sample(images, grid.expand(2, -1, -1, -1), align_corners=True)
    torch.testing.assert_close(ours, reference)


def test_restore_equals_upsample_then_warp_back():
    logits = torch.randn(2, 20, 119, 119, dtype=torch.float64)
    upsampled = F.interpolate(logits, size=(473, 473), mode="bilinear", align_corners=True)
    grid = _grid(Letterbox.fit((128, 64), (473, 473)), (128, 64), (473, 473), inverse=True)
    reference = F.grid_sample(upsampled, grid.expand(2, -1, -1, -1), align_corners=True)
    ours = restore_logits(logits, image_size=(128, 64), input_size=(473, 473))
    assert ours.shape == (2, 20, 128, 64) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), reference, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("image_size", [(128, 64), (96, 96), (50, 120)])
def test_label_map_round_trip(image_size):
    height, width = image_size
    yy, xx = np.mgrid[:height, :width]
    labels = ((yy // 9) * 3 + (xx // 7)) % 20  # blocks of every label, edges everywhere
    one_hot = F.one_hot(torch.from_numpy(labels), 20).permute(2, 0, 1)[None].double()
    rows, cols = warp_in_matrices(image_size, (473, 473))
    warped = torch.einsum("iy,bkyx,jx->bkij", rows, one_hot, cols)
    back = restore_logits(warped, image_size=image_size, input_size=(473, 473)).argmax(1)[0]
    assert back.shape == image_size
    assert (back.numpy() == labels).mean() > 0.999


def test_preprocess_is_bgr_normalised_with_black_border():
    red = np.zeros((1, 128, 64, 3), np.uint8)
    red[..., 0] = 255
    x = preprocess(torch.from_numpy(red), input_size=(65, 65))
    assert x.shape == (1, 3, 65, 65) and x.dtype == torch.float32
    mean, std = torch.tensor(SCHP_LIP.mean), torch.tensor(SCHP_LIP.std)
    torch.testing.assert_close(x[0, :, 32, 32], (torch.tensor([0.0, 0.0, 1.0]) - mean) / std)
    torch.testing.assert_close(x[0, :, 32, 0], -mean / std)  # letterbox bar: black


def test_unflip_swaps_left_right_and_mirrors():
    logits = torch.arange(20 * 3, dtype=torch.float32).reshape(1, 20, 1, 3)
    out = unflip_logits(logits, SCHP_LIP.flip_pairs)
    pairs = {14: 15, 15: 14, 16: 17, 17: 16, 18: 19, 19: 18}
    for channel in range(20):
        source = pairs.get(channel, channel)
        assert out[0, channel, 0].tolist() == logits[0, source, 0].flip(0).tolist()


def test_parse_images_shape_and_labels(schp):
    images = torch.randint(0, 256, (2, 128, 64, 3), dtype=torch.uint8)
    labels = parse_images(schp, images, input_size=(65, 65))
    assert labels.shape == (2, 128, 64) and labels.dtype == torch.uint8
    assert int(labels.max()) < 20


def test_flip_test_is_mirror_equivariant(schp):
    images = torch.randint(0, 256, (1, 64, 48, 3), dtype=torch.uint8)
    labels = parse_images(schp, images, input_size=(49, 49), flip=True)
    mirrored = parse_images(schp, images.flip(2), input_size=(49, 49), flip=True)
    # One-hot through unflip gives swap(mirror(labels)): the flip test treats both alike.
    expected = unflip_logits(F.one_hot(labels.long(), 20).permute(0, 3, 1, 2), SCHP_LIP.flip_pairs)
    assert (mirrored == expected.argmax(1)).float().mean() > 0.99


def test_compute_parsing_stage(small_store):
    calls = []
    stamp = compute_parsing(
        small_store,
        pretrained=False,
        input_size=33,
        batch_size=8,
        progress=lambda done, total: calls.append((done, total)),
    )
    parsing = small_store.read("parsing")
    assert parsing.shape == (small_store.n_images, 64, 32) and parsing.max() < 20
    assert stamp.counts["images"] == small_store.n_images
    assert stamp.config["weights"] == "random-init" and stamp.config["input_size"] == [33, 33]
    assert len(stamp.report["label_fraction"]) == 20
    assert calls[-1] == (small_store.n_blocks, small_store.n_blocks)


def test_import_provided_parsing_and_consistency(small_store, tmp_path):
    expected = small_store.read("parsing")
    folder = tmp_path / "annotations" / "parsing"
    folder.mkdir(parents=True)
    for name, labels in zip(small_store.index["filename"], expected, strict=True):
        image = Image.fromarray(labels).convert("P")  # palette, as SCHP writes
        image.save(folder / name.replace(".jpg", ".png"))
    small_store.write("parsing", 0, np.zeros_like(expected[:4]))
    stamp = import_provided(small_store, tmp_path / "annotations", kind="parsing")
    np.testing.assert_array_equal(small_store.read("parsing"), expected)
    assert stamp.config["source"] == "provided"
    report = consistency_report(small_store)
    assert report["mean_iou"] == pytest.approx(1.0) and report["iou_below_0.5"] == 0
    assert stamp.report["consistency"] == report, "the second segmentation stamp holds it"

    bad = expected[0].copy()
    bad[0, 0] = 20
    first = small_store.index["filename"][0].replace(".jpg", ".png")
    Image.fromarray(bad).save(folder / first)
    with pytest.raises(ValueError, match=f"{first}.*label 20"):
        import_provided(small_store, tmp_path / "annotations", kind="parsing")


def test_parsing_fanned_out_equals_parsing_in_one_process(small_store):
    from concurrent.futures import ThreadPoolExecutor

    from pipeline.fanout import FanOut

    serial = compute_parsing(small_store, pretrained=False, input_size=33, batch_size=8)
    expected = small_store.read("parsing")
    small_store.clear_stamp("parsing")
    small_store.group["done/parsing"][:] = False
    small_store.write("parsing", 0, np.zeros_like(expected[:4]))
    with ThreadPoolExecutor(2) as executor:
        fanned = compute_parsing(
            small_store,
            pretrained=False,
            input_size=33,
            batch_size=8,
            fan_out=FanOut(executor, blocks_per_task=2),
        )
    np.testing.assert_array_equal(small_store.read("parsing"), expected)
    assert fanned.digest == serial.digest and fanned.report["block_tasks"] == 3
