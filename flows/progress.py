"""Monitoring: progress, table and Markdown artifacts, built from the stages' stamps.

The pipeline functions report progress through a plain ``progress(done, total)`` callback;
:class:`StageProgress` turns it into a Prefect progress artifact (one per stage run) and log
lines, throttled so a fast stage does not flood the API. The metric tables are read from the
stamps' reports, so a cached stage shows the same numbers as a fresh one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from storage import StageStamp

# Re-ID numbers shown in the table, in this order, when the stamp's report has them.
REID_COLUMNS = ("rank1", "rank5", "rank10", "mAP")
# Generator metrics shown in the table (the paper's three, then the pixel metrics).
GENERATOR_COLUMNS = ("fid", "lpips", "mask_lpips", "l1", "ssim", "psnr")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


class StageProgress:
    """A ``progress(done, total)`` callback that updates a Prefect progress artifact.

    Args:
        stage: stage name; the artifact key is ``augment-market-<stage>``.
        min_interval: seconds between artifact updates (the last update always goes through).
    """

    def __init__(self, stage: str, *, min_interval: float = 2.0) -> None:
        self.stage = stage
        self.min_interval = min_interval
        self._last_update = 0.0
        self._last_logged_decile = -1
        # Called from sync code, so the sync variant runs (its stub also admits a coroutine).
        self.artifact_id = cast(
            UUID,
            create_progress_artifact(
                0.0, key=artifact_key("augment-market", stage), description=f"{stage}: started"
            ),
        )

    def __call__(self, done: int, total: int) -> None:
        percent = 100.0 * done / total if total else 100.0
        now = time.monotonic()
        if done >= total or now - self._last_update >= self.min_interval:
            update_progress_artifact(
                self.artifact_id, percent, description=f"{self.stage}: {done}/{total}"
            )
            self._last_update = now
        decile = int(percent // 10)
        if decile > self._last_logged_decile:
            get_run_logger().info("%s: %d/%d (%.0f%%)", self.stage, done, total, percent)
            self._last_logged_decile = decile

    def finish(self) -> None:
        """Mark the artifact complete (stages that skip all their blocks never call back)."""
        update_progress_artifact(self.artifact_id, 100.0, description=f"{self.stage}: done")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def metric_rows(
    stamps: Mapping[str, StageStamp | None], columns: tuple[str, ...]
) -> list[dict[str, Any]]:
    """One table row per stamp: its name, then each column found in ``report["metrics"]``
    (or in the report itself), rounded to 4 decimals; missing values are left empty."""
    rows = []
    for name, stamp in stamps.items():
        if stamp is None:
            continue
        metrics = stamp.report.get("metrics", stamp.report)
        row: dict[str, Any] = {"stage": name}
        for column in columns:
            value = _number(metrics.get(column))
            row[column] = "" if value is None else round(value, 4)
        if "mode" in metrics:
            row["mode"] = str(metrics["mode"])
        rows.append(row)
    return rows


def publish_generator_table(stamp: StageStamp) -> None:
    """A table artifact with the evaluate stage's FID / LPIPS / pixel metrics."""
    create_table_artifact(
        metric_rows({"generator": stamp}, GENERATOR_COLUMNS),
        key="augment-market-generator-metrics",
        description="SAN generator on the test pairs (paper table 1 metrics)",
    )


def reid_rows(stamps: Mapping[str, StageStamp]) -> list[dict[str, Any]]:
    """One row per Re-ID stage and distance: rank-1/5/10 and mAP in percent."""
    rows = []
    for name, stamp in stamps.items():
        alpha = stamp.report.get("alpha")
        for metric, values in stamp.report.get("results", {}).items():
            row: dict[str, Any] = {
                "stage": name,
                "model": stamp.report.get("model", ""),
                "training set": "original" if alpha is None else f"augmented alpha={alpha}",
                "distance": metric,
            }
            for column in REID_COLUMNS:
                value = _number(values.get(column))
                row[column] = "" if value is None else round(value, 2)
            rows.append(row)
    return rows


def publish_reid_table(stamps: Mapping[str, StageStamp]) -> None:
    """A table artifact with rank-1/5/10 and mAP of every Re-ID stage (original, augmented)."""
    rows = reid_rows(stamps)
    if rows:
        create_table_artifact(
            rows,
            key="augment-market-reid-metrics",
            description="Re-ID baselines: original vs alpha-augmented training set (percent)",
        )


def publish_report(markdown: str) -> None:
    """The final report as a Markdown artifact."""
    create_markdown_artifact(
        markdown, key="augment-market-report", description="augment-market run report"
    )
