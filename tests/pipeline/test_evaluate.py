"""Evaluation stage: offline pixel metrics, and the FID/LPIPS path with random networks."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluate import evaluate_generator, results_markdown
from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.train_generator import train_generator
from san_model.config import SANConfig


@pytest.fixture
def trained_run(small_store, tmp_path):
    sample_pairs(small_store, PairsConfig(test_pairs=4))
    train_generator(
        small_store, tmp_path / "run", config=SANConfig.tiny(use_perceptual=False), max_steps=2
    )
    return tmp_path / "run"


def test_offline_evaluation_reports_pixel_metrics_only(small_store, trained_run):
    stamp = evaluate_generator(small_store, trained_run, offline=True)
    metrics = stamp.report["metrics"]
    assert "fid" not in metrics and "lpips" not in metrics
    assert metrics["mode"].startswith("offline (declared)")
    assert 0 < metrics["l1"] <= 2 and -1 <= metrics["ssim"] <= 1
    assert metrics["copy_source_l1"] > 0
    out = trained_run / "evaluation"
    assert json.loads((out / "results.json").read_text())["test_pairs"] == 4
    assert "offline (declared)" in (out / "results.md").read_text()
    assert (out / "examples.png").stat().st_size > 0


def test_paper_metrics_with_random_networks(small_store, trained_run):
    stamp = evaluate_generator(small_store, trained_run, pretrained=False, batch_size=4)
    metrics = stamp.report["metrics"]
    assert metrics["fid"] >= 0 and metrics["fid_variant"] == "torchvision"
    assert metrics["lpips"] > 0 and metrics["mask_lpips"] > 0
    assert small_store.stamp("fid_real_torchvision").counts["images"] == 12
    table = results_markdown(metrics)
    assert "SAN (paper) | 14.142" in table and "| this run |" in table
    assert "random Inception/AlexNet" in table


def test_cached_fid_statistics_are_keyed_by_the_inception_weights(small_store):
    from pipeline.evaluate import real_statistics
    from san_model.metrics import build_fid_extractor

    extractor = build_fid_extractor(variant="torchvision", pretrained=False)

    def statistics(weights: str):
        return real_statistics(
            small_store, extractor=extractor, weights=weights, device="cpu", batch_size=12
        )

    statistics("sha-of-file-a")
    first = small_store.stamp("fid_real_torchvision")
    statistics("sha-of-file-a")  # cached: the stamp is not rewritten
    assert small_store.stamp("fid_real_torchvision").finished_at == first.finished_at
    statistics("sha-of-file-b")  # another weight file: computed again, keyed by it
    second = small_store.stamp("fid_real_torchvision")
    assert second.config["weights"] == "sha-of-file-b" and second.finished_at > first.finished_at
