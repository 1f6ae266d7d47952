"""pipeline/synthetic_dataset*.py: Market-1501 layout, determinism and ground-truth parsing."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.synthetic_dataset import LIP_LABELS, SyntheticSummary, generate_synthetic
from pipeline.synthetic_dataset_people import Canvas, Pose, draw_person, sample_look

# Written independently of the generator: the pattern Market-1501 loaders use.
MARKET_RE = re.compile(r"^(-1|\d{4})_c(\d)s(\d)_(\d{6})_(\d{2})\.jpg$")
FOLDERS = ("bounding_box_train", "bounding_box_test", "query")
TINY = dict(ids=6, images_per_id=4, distractors=2, junk=2)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> SyntheticSummary:
    return generate_synthetic(tmp_path_factory.mktemp("tiny"), seed=0, **TINY)


def _images(root: Path) -> dict[str, list[tuple[int, int, Path]]]:
    """folder -> [(pid, camera, path)] for every JPEG, asserting the Market-1501 name."""
    out: dict[str, list[tuple[int, int, Path]]] = {}
    for folder in FOLDERS:
        out[folder] = []
        for path in sorted((root / folder).glob("*.jpg")):
            match = MARKET_RE.match(path.name)
            assert match, path.name
            out[folder].append((int(match[1]), int(match[2]), path))
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_lip_labels_match_spec() -> None:
    assert len(LIP_LABELS) == 20
    assert LIP_LABELS[0] == "background" and LIP_LABELS[13] == "face"
    assert LIP_LABELS[14:] == (
        "left-arm",
        "right-arm",
        "left-leg",
        "right-leg",
        "left-shoe",
        "right-shoe",
    )


def test_names_cameras_and_counts(tiny: SyntheticSummary) -> None:
    images = _images(tiny.root)
    for folder in FOLDERS:
        names = {p.name for p in (tiny.root / folder).iterdir()} - {"Thumbs.db"}
        assert all(MARKET_RE.match(name) for name in names), folder
        assert all(1 <= cam <= 6 for _, cam, _ in images[folder])
    assert (tiny.root / "bounding_box_test" / "Thumbs.db").is_file()
    assert len(images["bounding_box_train"]) == tiny.train_images > 0
    assert len(images["bounding_box_test"]) == tiny.gallery_images > 0
    assert len(images["query"]) == tiny.query_images > 0
    assert tiny.total_images == 6 * 4 + 2 + 2
    assert (tiny.train_ids, tiny.test_ids) == (3, 3)


def test_split_follows_market_protocol(tiny: SyntheticSummary) -> None:
    images = _images(tiny.root)
    train = {pid for pid, _, _ in images["bounding_box_train"]}
    gallery = defaultdict(set)
    for pid, cam, _ in images["bounding_box_test"]:
        gallery[pid].add(cam)
    assert -1 not in train and 0 not in train and not any(p <= 0 for p, _, _ in images["query"])
    assert len(gallery[-1]) > 0 and len(gallery[0]) > 0  # junk and distractors: gallery only
    test_ids = set(gallery) - {-1, 0}
    assert train.isdisjoint(test_ids) and len(train) == tiny.train_ids
    for pid, cam, path in images["query"]:
        assert pid in test_ids
        assert gallery[pid] - {cam}, f"{path.name} has no cross-camera gallery match"


def test_deterministic_for_a_seed(tiny: SyntheticSummary, tmp_path: Path) -> None:
    again = generate_synthetic(tmp_path / "same", seed=0, **TINY)
    assert again == SyntheticSummary(**{**vars(tiny), "root": again.root})
    assert _tree(again.root) == _tree(tiny.root)
    other = generate_synthetic(tmp_path / "other", seed=1, **TINY)
    ours, theirs = (
        {b for n, b in _tree(r).items() if n.endswith(".jpg")} for r in (tiny.root, other.root)
    )
    assert ours.isdisjoint(theirs)


def test_workers_do_not_change_output(tmp_path: Path) -> None:
    small = dict(ids=2, images_per_id=3, distractors=1, junk=1)
    one = generate_synthetic(tmp_path / "one", seed=3, **small)
    two = generate_synthetic(tmp_path / "two", seed=3, workers=2, **small)
    assert _tree(one.root) == _tree(two.root)


def test_annotations_are_exact(tiny: SyntheticSummary) -> None:
    jpgs = [p for folder in _images(tiny.root).values() for _, _, p in folder]
    masks = sorted((tiny.root / "annotations/masks").glob("*.png"))
    assert {p.stem for p in jpgs} == {p.stem for p in masks}
    for path in jpgs:
        image = Image.open(path)
        mask = Image.open(tiny.root / "annotations/masks" / f"{path.stem}.png")
        parsing = Image.open(tiny.root / "annotations/parsing" / f"{path.stem}.png")
        assert image.mode == "RGB" and mask.mode == "L" and parsing.mode == "L"
        assert image.size == mask.size == parsing.size == (64, 128)
        m, s = np.asarray(mask), np.asarray(parsing)
        assert set(np.unique(m)) <= {0, 1} and s.max() < len(LIP_LABELS)
        np.testing.assert_array_equal(m == 1, s != 0)


def test_identities_vary_across_images(tiny: SyntheticSummary) -> None:
    by_pid: dict[int, list[tuple[int, Path]]] = defaultdict(list)
    for folder in _images(tiny.root).values():
        for pid, cam, path in folder:
            if pid > 0:
                by_pid[pid].append((cam, path))
    assert len(by_pid) == 6
    for shots in by_pid.values():
        assert len({cam for cam, _ in shots}) >= 2
        parsings = [
            np.asarray(Image.open(p.parent.parent / "annotations/parsing" / f"{p.stem}.png"))
            for _, p in shots
        ]
        assert len({s.tobytes() for s in parsings}) == len(parsings)
        assert all(s.any() for s in parsings)


def test_left_and_right_limbs_are_labelled(tiny: SyntheticSummary) -> None:
    both = defaultdict(list)
    for folder in ("bounding_box_train", "query"):
        for path in (tiny.root / folder).glob("*.jpg"):
            labels = set(
                np.unique(
                    np.asarray(Image.open(tiny.root / "annotations/parsing" / f"{path.stem}.png"))
                )
            )
            for pair in ((14, 15), (18, 19)):
                both[pair].append(set(pair) <= labels)
    assert all(np.mean(flags) >= 0.7 for flags in both.values()), {
        k: np.mean(v) for k, v in both.items()
    }


@pytest.mark.parametrize(("view", "left_on_image_right"), [("front", True), ("back", False)])
def test_left_right_flip_with_view(view: str, left_on_image_right: bool) -> None:
    # Facing the camera, the person's left limbs appear on the image's right.
    look = replace(sample_look(np.random.default_rng(5)), outfit="shirt_shorts")  # bare legs
    canvas = Canvas(128, 64)
    draw_person(canvas, look, Pose(view, 1, 0.3, cx=32.0, foot_y=124.0, size=110.0))
    for left, right in ((14, 15), (16, 17), (18, 19)):
        left_x = np.nonzero(canvas.label == left)[1].mean()
        right_x = np.nonzero(canvas.label == right)[1].mean()
        assert (left_x > right_x) == left_on_image_right, (left, right)


def test_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate_synthetic(tmp_path, ids=1)
    with pytest.raises(ValueError):
        generate_synthetic(tmp_path, test_fraction=1.0)
