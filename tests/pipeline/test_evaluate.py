"""Evaluation stage: offline pixel metrics, and the FID/LPIPS path with random networks."""

from __future__ import annotations

import json

import pytest

from pipeline.evaluate import evaluate_generator, paper_comparison, results_markdown


@pytest.fixture
def trained_run(trained_generator):
    return trained_generator(test_pairs=4)


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
    assert metrics["dataset"] == "market1501"
    assert metrics["test_pairs_source"] == "drawn (seed 0, from the gallery)"
    table = results_markdown(metrics)
    assert table.startswith("# Generator evaluation on Market-1501 (4 test pairs)")
    assert "| SAN (paper table 1) | 14.142 | 0.2632 | 0.1282 |" in table.splitlines()
    assert f"| this run | {metrics['fid']:.3f} | {metrics['lpips']:.4f} |" in table
    assert "DeepFashion" not in table and "random Inception/AlexNet" in table


def test_each_dataset_is_compared_with_its_own_row_of_table_1():
    run = {"fid": 9.5, "lpips": 0.25, "mask_lpips": 0.12}
    deepfashion = "\n".join(paper_comparison("deepfashion", {"this run": run}))
    assert "| method | DeepFashion FID | DeepFashion LPIPS | mask-LPIPS (not in the paper's" in (
        deepfashion
    )
    assert "| SAN (paper table 1) | 8.732 | 0.2078 | |" in deepfashion.splitlines()
    assert "| this run | 9.500 | 0.2500 | 0.1200 |" in deepfashion.splitlines()
    assert "Market" not in deepfashion and "14.142" not in deepfashion
    duke = "\n".join(paper_comparison("dukemtmc_reid", {"this run": run}))
    assert duke.startswith("The paper's table 1 has no results on DukeMTMC-reID")
    assert "(paper table 1)" not in duke and "| this run | 9.500 | 0.2500 | 0.1200 |" in duke
    page_results = {
        **run,
        "dataset": "deepfashion",
        "test_pairs": 8570,
        "mode": "paper protocol",
        "fid_variant": "torchvision",
        "fid_real_images": 48674,
        "test_pairs_source": "published list fasion-resize-pairs-test.csv (sha256 0123456789ab)",
        **{
            f"{p}{m}": 0.5
            for p in ("", "copy_source_", "paint_by_parts_")
            for m in ("l1", "masked_l1", "ssim", "psnr", "part_colour")
        },
    }
    page = results_markdown(page_results)
    assert page.startswith("# Generator evaluation on DeepFashion (8570 test pairs)")
    custom = results_markdown({**page_results, "dataset": "custom"})
    assert custom.startswith("# Generator evaluation on a custom dataset (8570 test pairs)")
    assert "has no results on a custom dataset" in custom and "(paper table 1)" not in custom
    assert "Test pairs: published list fasion-resize-pairs-test.csv" in page


def test_cached_fid_statistics_are_keyed_by_the_inception_weights(small_store):
    from pipeline.scoring import real_statistics
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
