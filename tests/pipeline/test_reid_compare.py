"""Re-ID comparison: intervals on known numbers, paired seeds, equal budgets, the pages."""

from __future__ import annotations

import json
import math

import pytest

from foundation.errors import SettingsError
from pipeline.reid_compare import (
    Interval,
    check_plan,
    comparison_rows,
    run_comparison,
    summarize,
    write_comparison,
)
from pipeline.synthesize import synthesize
from storage import MissingInputError
from tests.reid_recipes import tiny_recipe

TINY = tiny_recipe(batch_size=4)


def test_interval_is_student_t_over_seeds():
    interval = Interval.of([1.0, 2.0, 3.0])
    half = 4.302652729911275 * 1.0 / math.sqrt(3)  # t(0.975, 2) x sd / sqrt(n)
    assert interval.mean == 2.0 and interval.n == 3
    assert interval.low == pytest.approx(2.0 - half) and interval.high == pytest.approx(2.0 + half)
    single = Interval.of([5.0])
    assert (single.low, single.high) == (None, None)
    assert single.verdict() == "no interval (1 seed)"


def _row(model, distance, set_name, seed, mean_ap, rank1=None):
    return {
        "model": model,
        "distance": distance,
        "set": set_name,
        "seed": seed,
        "steps": 100,
        "images": 10,
        "rank1": mean_ap if rank1 is None else rank1,
        "rank5": 0.0,
        "rank10": 0.0,
        "mAP": mean_ap,
        "ap": "standard",
        "cmc": [mean_ap] * 20,
    }


def test_paired_differences_and_verdicts_on_known_numbers():
    # Seed effects shared by all sets (20, 30, 40) hide any difference unpaired; paired, the
    # generator is +2 +- 0 over copies, paint-by-parts -1, +1, 0 (no measurable difference),
    # flip -3, -2, -4 (hurts).
    rows = []
    for seed, base in enumerate((20.0, 30.0, 40.0)):
        rows += [
            _row("ide", "euclidean", "original", seed, base - 5),
            _row("ide", "euclidean", "copies", seed, base),
            _row("ide", "euclidean", "generator", seed, base + 2),
            _row("ide", "euclidean", "paint-by-parts", seed, base + (-1, 1, 0)[seed]),
            _row("ide", "euclidean", "flip", seed, base - (3, 2, 4)[seed]),
        ]
    summary = summarize(rows)
    difference = {
        (d["set"], d["against"]): d for d in summary["differences"] if d["model"] == "ide"
    }
    generator = difference[("generator", "copies")]["mAP"]
    assert generator["mean"] == pytest.approx(2.0)
    assert generator["low"] == pytest.approx(2.0) and generator["high"] == pytest.approx(2.0)
    assert difference[("generator", "original")]["mAP"]["mean"] == pytest.approx(7.0)
    assert difference[("copies", "original")]["mAP"]["mean"] == pytest.approx(5.0)
    unpaired = Interval.of([22.0, 32.0, 42.0])
    assert unpaired.low < 22 and unpaired.high > 40, "the seed effect dwarfs +2 unpaired"
    assert summary["verdicts"] == [
        {
            "model": "ide",
            "distance": "euclidean",
            "sets": {
                "generator": "helps",
                "paint-by-parts": "no measurable difference",
                "flip": "hurts",
            },
        }
    ]


def test_write_comparison_pages(tmp_path):
    rows = [
        _row(model, distance, set_name, seed, 10.0 + seed + k)
        for model in ("ide", "siamese")
        for distance in ("euclidean", "kissme")
        for k, set_name in enumerate(("original", "copies", "generator"))
        for seed in range(2)
    ]
    page = write_comparison(rows, tmp_path, note="a note")
    text = page.read_text()
    assert text.splitlines()[0] == "# Re-ID: augmentation sets compared"
    assert "- ide, euclidean: generator: **helps** (mAP +1.00 [1.00, 1.00]" in text
    assert "| siamese | kissme | generator | copies | +1.00 [1.00, 1.00] |" in text
    payload = json.loads((tmp_path / "comparison.json").read_text())
    assert len(payload["rows"]) == len(rows)
    assert {"model", "distance", "set", "seed", "steps", "images", "rank1", "mAP"} <= set(
        payload["rows"][0]
    )
    assert (tmp_path / "cmc.png").stat().st_size > 0


@pytest.fixture
def with_copies(small_store):
    synthesize(small_store, source="copies", alpha=2)
    return small_store


def test_refusals_before_training(with_copies, snapshot):
    before = snapshot(with_copies)
    with pytest.raises(SettingsError, match="--seeds 1 gives no interval"):
        check_plan(with_copies, ["original", "copies"], alpha=2, seeds=1)
    with pytest.raises(MissingInputError, match="no set 'patn'; run .*--source folder"):
        check_plan(with_copies, ["original", "patn"], alpha=2, seeds=2)
    with pytest.raises(MissingInputError, match="set 'copies' at alpha 2, not alpha 3"):
        check_plan(with_copies, ["original", "copies"], alpha=3, seeds=2)
    with pytest.raises(SettingsError, match="names 'copies' twice"):
        check_plan(with_copies, ["copies", "copies"], alpha=2, seeds=2)
    with pytest.raises(MissingInputError, match="no set 'generator'"):
        run_comparison(
            with_copies, "unused", configs={"ide": TINY}, sets=["original", "generator"], seeds=2
        )
    assert snapshot(with_copies) == before


def test_equal_steps_paired_seeds_and_reuse(with_copies, tmp_path):
    options = dict(configs={"ide": TINY}, sets=["original", "copies"], seeds=2)
    options.update(metrics=("euclidean",))
    stamps = run_comparison(with_copies, tmp_path, **options)
    rows = comparison_rows(stamps)
    assert [(r["set"], r["seed"]) for r in rows] == [
        ("original", 0),
        ("original", 1),
        ("copies", 0),
        ("copies", 1),
    ]
    assert {r["images"] for r in rows if r["set"] == "original"} == {12}
    assert {r["images"] for r in rows if r["set"] == "copies"} == {24}
    assert {r["steps"] for r in rows} == {3}, "equal steps: 12 images / batch 4, every set"
    for seed in (0, 1):
        trained = [s.config["train"] for s in stamps if s.report["seed"] == seed]
        assert trained[0]["seed"] == trained[1]["seed"] == seed
        assert trained[0]["epoch_steps"] is None and trained[1]["epoch_steps"] == 3
    again = run_comparison(with_copies, tmp_path, **options)
    assert [s.finished_at for s in again] == [s.finished_at for s in stamps], "reused"
    epochs = run_comparison(with_copies, tmp_path, **{**options, "budget": "equal-epochs"})
    steps = {s.report["set"]: s.counts["steps"] for s in epochs if s.report["seed"] == 0}
    assert steps == {"original": 3, "copies": 6}, "equal epochs: twice the steps on 2x images"
