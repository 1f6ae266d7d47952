"""What a run shows in the Prefect UI besides its graph: table and Markdown artifacts.

Table artifacts are read from the stamps, so a cached stage shows the same numbers as a fresh
one. Pictures travel inside the Markdown as ``data:`` URIs: Prefect's Markdown renderer shows
them (checked in Chromium against Prefect 3.8.8's UI, as it shows ``http://`` images), while a
path relative to the report file, fine for the file itself, renders as a broken image there
and a served file would need a second server reachable from every browser.
"""

from __future__ import annotations

import base64
import math
import mimetypes
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import ArtifactUpdate

from storage import StageStamp

# Re-ID numbers shown in the table, in this order, when the stamp's report has them.
REID_COLUMNS = ("rank1", "rank5", "rank10", "mAP")
# Generator metrics shown in the table (the paper's three, then the pixel metrics).
GENERATOR_COLUMNS = ("fid", "lpips", "mask_lpips", "l1", "ssim", "psnr")
# A picture larger than this stays a path in the artifact (the UI loads the whole artifact).
MAX_INLINE_BYTES = 4 << 20
# ``![alt](target)`` with a target that is not already a URL.
_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>(?![a-z][a-z0-9+.-]*:)[^)\s]+)\)")


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key (lowercase letters, digits and dashes only)."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-")


def data_uri(path: Path) -> str:
    """The file as a ``data:<mime>;base64,...`` URI."""
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"


def image_markdown(path: Path, alt: str) -> str:
    """``![alt](data:image/png;base64,...)``: a picture the Prefect UI shows."""
    return f"![{alt}]({data_uri(path)})"


def inline_images(markdown: str, base_dir: Path) -> str:
    """``markdown`` with each picture linked by a relative (or absolute) path embedded as a
    ``data:`` URI; links to missing or oversized files are left as they are."""

    def embed(match: re.Match[str]) -> str:
        path = base_dir / match["target"]
        if not path.is_file() or path.stat().st_size > MAX_INLINE_BYTES:
            return match[0]
        return image_markdown(path, match["alt"])

    return _IMAGE.sub(embed, markdown)


def update_markdown_artifact(artifact_id: UUID, markdown: str, *, description: str) -> None:
    """Replace a Markdown artifact's content in place (no new version under its key)."""
    with get_client(sync_client=True) as client:
        client.update_artifact(
            artifact_id=artifact_id,
            artifact=ArtifactUpdate(data=markdown, description=description),
        )


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


def reid_rows(stamps: Mapping[str, StageStamp]) -> list[dict[str, Any]]:
    """One row per Re-ID stage and distance: rank-1/5/10 and mAP in percent."""
    rows = []
    for name, stamp in stamps.items():
        alpha = stamp.report.get("alpha")
        set_name = stamp.report.get("set", "original" if alpha is None else "generator")
        for metric, values in stamp.report.get("results", {}).items():
            row: dict[str, Any] = {
                "stage": name,
                "model": stamp.report.get("model", ""),
                "training set": set_name if alpha is None else f"{set_name} alpha={alpha}",
                "seed": stamp.report.get("seed", ""),
                "distance": metric,
            }
            for column in REID_COLUMNS:
                value = _number(values.get(column))
                row[column] = "" if value is None else round(value, 2)
            rows.append(row)
    return rows


def publish_results(stamps: Mapping[str, StageStamp | None]) -> None:
    """The run's result artifacts: generator and Re-ID metric tables, and the report with its
    pictures (``augment-market-report``) when the report stage has a stamp."""
    if (evaluate := stamps.get("evaluate")) is not None:
        create_table_artifact(
            metric_rows({"generator": evaluate}, GENERATOR_COLUMNS),
            key="augment-market-generator-metrics",
            description="SAN generator on the test pairs (paper table 1 metrics)",
        )
    reid = {n: s for n, s in stamps.items() if n.startswith("reid_") and s is not None}
    if rows := reid_rows(reid):
        create_table_artifact(
            rows,
            key="augment-market-reid-metrics",
            description="Re-ID baselines per training set and seed (percent); verdicts with "
            "intervals in the report",
        )
    report = stamps.get("report")
    path = Path(str(report.report.get("path", ""))) if report is not None else None
    if path is not None and path.is_file():
        create_markdown_artifact(
            inline_images(path.read_text(), path.parent),
            key="augment-market-report",
            description=f"augment-market run report (`{path}`)",
        )
