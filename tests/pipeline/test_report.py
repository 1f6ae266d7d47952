"""The report's Markdown: its pictures are linked relative to the report's folder."""

from __future__ import annotations

import re

from pipeline.report import render_report
from storage import StageStamp


def stamp(stage: str, **counts: int) -> StageStamp:
    return StageStamp(stage, "hash", {}, {}, "0", dict(counts), {}, 0.0)


def test_report_links_training_samples_cmc_and_figures(tmp_path):
    run = tmp_path / "run"
    samples = run / "generator" / "samples"
    samples.mkdir(parents=True)
    for step in (250, 500):
        (samples / f"step_{step:07d}.png").write_bytes(b"png")
    (run / "reid").mkdir()
    table = run / "reid" / "reid_results.md"
    table.write_text("# Re-ID: original vs augmented\n\n| model |\n|---|\n| ide |\n")
    (run / "reid" / "cmc.png").write_bytes(b"png")
    ablation = tmp_path / "docs" / "ablation.png"
    ablation.parent.mkdir()
    ablation.write_bytes(b"png")

    markdown = render_report(
        {"generator": stamp("generator", steps=500)},
        offline={},
        title="t",
        report_dir=run,
        reid_table=table,
        samples=samples,
        figures={"Ablations": ablation, "Absent": tmp_path / "missing.png"},
    )
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", markdown)
    assert links == [
        ("Training samples at step 500", "generator/samples/step_0000500.png"),
        ("CMC curves", "reid/cmc.png"),
        ("Ablations", "../docs/ablation.png"),
    ]
    assert all((run / target).resolve().is_file() for _, target in links)
    assert "## Re-ID: original vs augmented" in markdown


def test_report_without_pictures_has_no_image_links(tmp_path):
    markdown = render_report(
        {"ingest": stamp("ingest", images=4)},
        offline={},
        title="t",
        report_dir=tmp_path,
        samples=tmp_path / "none",
    )
    assert "![" not in markdown


def test_report_shows_the_ingests_differences_from_the_official_counts(tmp_path):
    differ = "Market-1501 train: 12 images, the official count is 12,936 (a partial copy?)"
    ingest = StageStamp("ingest", "h", {}, {}, "0", {}, {"count_differences": [differ]}, 0.0)
    markdown = render_report({"ingest": ingest}, offline={}, title="t", report_dir=tmp_path)
    assert f"> - {differ}" in markdown.splitlines()
    complete = StageStamp("ingest", "h", {}, {}, "0", {}, {"count_differences": []}, 0.0)
    markdown = render_report({"ingest": complete}, offline={}, title="t", report_dir=tmp_path)
    assert "official" not in markdown
