"""Mask R-CNN person masks: selection rule, random-weight inference, stage, provided masks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from foundation.weights import MissingWeightsError
from pipeline.masks import (
    MASKRCNN_COCO,
    MaskConfig,
    build_detector,
    build_maskrcnn,
    compute_masks,
    detector_score_threshold,
    segment_persons,
    select_person,
)
from pipeline.segmentation import (
    ProvidedAnnotationError,
    consistency_report,
    import_provided,
)

SIZE = (6, 4)
# Small images and few proposals/detections: the v2 box head (4 convs per proposal) and mask
# head (4 convs per detection) dominate CPU time. Random weights score ~1/91 per class, so the
# threshold is 0 where masks are wanted.
FEW = {"min_size": 64, "max_size": 128, "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 8}
TINY = MaskConfig(**FEW, score_threshold=0.0, detections_per_image=2)


@pytest.mark.parametrize(
    ("labels", "scores", "expected"),
    [
        ([1, 1, 1], [0.6, 0.9, 0.7], 1),  # highest-scoring person
        ([3, 1, 1], [0.99, 0.55, 0.8], 2),  # other classes ignored, even when better
        ([1, 18], [0.49, 0.95], None),  # a person below 0.5 does not count
        ([1, 1], [0.5, 0.2], 0),  # 0.5 itself is enough
        ([], [], None),  # nothing detected
    ],
)
def test_select_person_rule(labels, scores, expected):
    masks = torch.zeros(len(labels), SIZE[0] * SIZE[1])
    masks[torch.arange(len(labels)), torch.arange(len(labels))] = 0.9  # detection i: pixel i
    detections = {
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "masks": masks.reshape(-1, *SIZE),
    }
    mask = select_person(detections, image_size=SIZE).flatten()
    chosen = torch.nonzero(mask).flatten().tolist()
    assert chosen == ([] if expected is None else [expected])


def test_select_person_binarises_at_half():
    soft = torch.linspace(0, 1, 24).reshape(1, *SIZE)
    detections = {"labels": torch.tensor([1]), "scores": torch.tensor([0.8]), "masks": soft}
    mask = select_person(detections, image_size=SIZE)
    assert mask.dtype == torch.uint8
    assert torch.equal(mask, (soft[0] >= 0.5).to(torch.uint8))
    empty = select_person({**detections, "labels": torch.tensor([2])}, image_size=SIZE)
    assert empty.shape == SIZE and not empty.any()


def test_random_maskrcnn_gives_binary_masks_of_input_size():
    torch.manual_seed(0)
    detector = build_detector(config=TINY, pretrained=False)
    images = np.random.default_rng(0).integers(0, 256, (2, 64, 32, 3), dtype=np.uint8)
    masks = segment_persons(detector, images, config=TINY)
    assert masks.shape == (2, 64, 32) and masks.dtype == np.uint8
    assert set(np.unique(masks)) <= {0, 1}


def test_detector_settings_reach_torchvision():
    model = build_maskrcnn(config=MaskConfig(), pretrained=False)
    assert model.transform.min_size == (256,) and model.transform.max_size == 512
    assert model.rpn._post_nms_top_n["testing"] == 100
    assert model.roi_heads.detections_per_img == 10


def test_detector_keeps_a_person_scoring_exactly_the_threshold():
    """torchvision keeps boxes with score > box_score_thresh; the rule is >= 0.5."""
    heads = build_maskrcnn(config=MaskConfig(), pretrained=False).roi_heads
    assert detector_score_threshold(0.5) < 0.5
    # Two proposals, only background and person (label 1) possible: person probability
    # 1 / (1 + 1) = 0.5 exactly, and 0.4999 (logit ln(0.4999 / 0.5001) against background 0).
    logits = torch.full((2, 91), -1e4)
    logits[:, 0] = 0.0
    logits[:, 1] = torch.tensor([0.0, np.log(0.4999 / 0.5001)])
    person = torch.softmax(logits, -1)[:, 1]
    assert person[0].item() == 0.5 and 0.49989 < person[1].item() < 0.5
    proposals = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])]
    boxes, scores, labels = heads.postprocess_detections(
        logits, torch.zeros(2, 91 * 4), proposals, [(64, 64)]
    )
    assert labels[0].tolist() == [1] and scores[0].tolist() == [0.5]
    torch.testing.assert_close(boxes[0], proposals[0][:1])
    detections = {"labels": labels[0], "scores": scores[0], "masks": torch.ones(1, *SIZE)}
    assert select_person(detections, image_size=SIZE).all()


def test_missing_weights_names_file_and_url(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert MASKRCNN_COCO.file_name == "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    with pytest.raises(MissingWeightsError) as error:
        build_maskrcnn(weights=tmp_path / "weights")
    message = str(error.value)
    assert MASKRCNN_COCO.file_name in message
    assert "https://download.pytorch.org/models/" + MASKRCNN_COCO.file_name in message


def test_compute_masks_stage_counts_empty_masks(small_store):
    # The default 0.5 threshold with random weights finds nobody: every mask is empty.
    config = MaskConfig(**FEW, detections_per_image=1)
    stamp = compute_masks(small_store, pretrained=False, config=config, batch_size=8)
    assert stamp.counts == {"images": small_store.n_images, "empty_masks": small_store.n_images}
    assert stamp.report["empty_masks"] == small_store.index["filename"].tolist()
    assert stamp.report["empty_masks_fraction"] == 1.0
    assert stamp.config["weights"] == "random-init" and stamp.config["rpn_post_nms_top_n"] == 8
    assert not small_store.read("masks").any()
    assert consistency_report(small_store)["empty_mask_fraction"] == 1.0


def test_import_provided_masks(small_store, tmp_path):
    expected = small_store.read("masks")
    folder = tmp_path / "annotations" / "masks"
    folder.mkdir(parents=True)
    for name, mask in zip(small_store.index["filename"], expected, strict=True):
        Image.fromarray(mask * 255).save(folder / name.replace(".jpg", ".png"))  # 0/255 masks
    small_store.write("masks", 0, np.zeros_like(expected[:4]))
    stamp = import_provided(small_store, tmp_path / "annotations", kind="masks")
    np.testing.assert_array_equal(small_store.read("masks"), expected)
    assert stamp.counts["empty_masks"] == 0

    missing = folder / small_store.index["filename"][5].replace(".jpg", ".png")
    missing.unlink()
    with pytest.raises(ProvidedAnnotationError, match=f"{missing.name} does not exist"):
        import_provided(small_store, tmp_path / "annotations", kind="masks")
