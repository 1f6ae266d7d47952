"""Re-ID stage: train on the original / augmented store, fit metrics, compare runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from foundation.weights import MissingWeightsError
from pipeline.reid_compare import compare_store_runs
from pipeline.reid_stage import (
    split_features,
    train_reid_baseline,
    training_set,
)
from reid.checkpoint import IMAGENET_MEAN, IMAGENET_STD
from reid.config import TrainConfig
from reid.models import IDENet, ReIDModelConfig
from storage import MissingInputError
from tests.reid_recipes import STORE_INPUT, tiny_recipe

TINY = tiny_recipe()


def test_original_then_augmented(small_store, tmp_path, snapshot):
    seen = []
    original = train_reid_baseline(
        small_store,
        tmp_path,
        config=TINY,
        metric_options={"kissme": {"pca_dim": 8}},
        progress=lambda done, total: seen.append((done, total)),
    )
    assert original.counts["train_images"] == 12 and seen[-1][0] == seen[-1][1]
    for metric in ("euclidean", "xqda", "kissme"):
        row = original.report["results"][metric]
        assert 0 <= row["rank1"] <= row["rank5"] <= row["rank10"] <= 100
        assert 0 < row["mAP"] <= 100
    assert (tmp_path / "reid_ide_original_s0" / "results.json").is_file()
    with pytest.raises(MissingInputError, match="no set 'generator'; run .* --alpha 2"):
        training_set(small_store, "generator", 2)
    before = snapshot(small_store)
    with pytest.raises(MissingWeightsError, match="resnet18-f37072fd.pth.*--no-pretrained"):
        train_reid_baseline(
            small_store,
            tmp_path,
            config=dataclasses.replace(
                TINY, model=dataclasses.replace(TINY.model, pretrained=True)
            ),
            weights=tmp_path / "absent.pth",
        )
    assert snapshot(small_store) == before, "a failed rerun keeps the finished stage"
    _fake_generated(small_store)
    images, labels = training_set(small_store, "generator", 2)
    assert len(images) == 24 and np.array_equal(labels[12:], labels[:12])
    augmented = train_reid_baseline(
        small_store, tmp_path, config=TINY, set_name="generator", alpha=2, metrics=("euclidean",)
    )
    assert augmented.counts["train_images"] == 24
    assert augmented.counts["metric_train_images"] == 12  # metrics fit on real images only
    assert augmented.config["features"] == {"normalize": True, "flip": False}
    assert small_store.stamp("reid_ide_generator_s0").inputs["synthesize"]
    table = compare_store_runs(small_store, tmp_path / "report").read_text()
    assert (
        "| ide | euclidean | generator | 1 | " in table and "| ide | kissme | original |" in table
    )
    # Every reference row says its AP definition; the runs' definition is named too.
    assert "IDE ResNet-50 + Euclidean (reference, trapezoid AP) 75.62 / 50.68" in table
    assert "Bag of Tricks ResNet-50 (reference, standard AP) 94.10 / 85.70" in table
    assert "AP definition of these runs: standard" in table
    assert (tmp_path / "report" / "cmc.png").stat().st_size > 0


class _ChannelMeans(nn.Module):
    """A stand-in backbone: the per-channel mean of the normalised image, [B, 3]."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def test_split_features_are_real_images_l2_normalised(small_store):
    model = IDENet(
        backbone=_ChannelMeans(), feature_dim=3, num_classes=2, bottleneck_dim=None, dropout=0.0
    )
    features = split_features(small_store, model, size=(64, 32))
    images = small_store.load_in_memory(("images",))["images"]
    index = small_store.index
    for split, count in (("train", 12), ("query", 3), ("gallery", 9)):
        rows = np.flatnonzero((index["split"] == split).to_numpy())
        assert len(rows) == count
        # Independent computation: ImageNet-normalised channel means, then unit length.
        means = (images[rows].mean(axis=(1, 2)) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
        expected = means / np.linalg.norm(means, axis=1, keepdims=True)
        np.testing.assert_allclose(features[split]["features"].numpy(), expected, atol=1e-5)
        assert features[split]["pids"].tolist() == index["person_id"][rows].tolist()
        assert features[split]["cams"].tolist() == index["camera"][rows].tolist()
    raw = split_features(small_store, model, size=(64, 32), normalize=False)
    norms = torch.linalg.vector_norm(raw["train"]["features"], dim=1)
    assert not torch.allclose(norms, torch.ones_like(norms))


def _fake_generated(store):
    """A generated/alpha2 group and a synthesize stamp, without training a generator."""
    train = np.flatnonzero((store.index["split"] == "train").to_numpy())
    store.create_generated("alpha2", len(train))
    images = store.read("images", train)
    pids = store.index["person_id"].to_numpy(np.int64)[train]
    config = {"alpha": 2, "group": "generated/alpha2"}
    with store.stage("synthesize", config=config, n_blocks=store.n_blocks) as run:
        for block in range(-(-len(train) // store.block_size)):
            rows = store.block_slice(block, len(train))
            run.write("generated/alpha2/images", block, images[rows])
            run.write("generated/alpha2/person_id", block, pids[rows])
        for block in run.pending_blocks():
            run.mark_done(block)
        run.finish(counts={"generated": len(train)})


def test_bag_of_tricks_through_the_stage(small_store, tmp_path):
    config = TrainConfig.bot(
        model=ReIDModelConfig(kind="bot", arch="resnet18", pretrained=False, last_stride=1),
        **STORE_INPUT,
        batch_size=4,
        instances_per_id=2,
        epochs=2,
        warmup_epochs=1,
    )
    result = train_reid_baseline(small_store, tmp_path, config=config, metrics=("euclidean",))
    assert (tmp_path / "reid_bot_original_s0" / "results.json").is_file()
    assert result.report["model"].startswith("bot resnet18")
    assert small_store.stamp("reid_bot_original_s0").config["train"]["triplet_weight"] == 1.0
    row = result.report["results"]["euclidean"]
    assert 0 <= row["rank1"] <= row["rank10"] <= 100 and 0 < row["mAP"] <= 100
