"""The report's Markdown: its pictures are linked relative to the report's folder."""

from __future__ import annotations

import re
import shutil

from pipeline.report import picture_link, render_report
from storage import StageStamp


def stamp(stage: str, **counts: int) -> StageStamp:
    return StageStamp(stage, "hash", {}, {}, "0", dict(counts), {}, 0.0)


def test_report_links_training_samples_tensorboard_and_cmc(tmp_path):
    run = tmp_path / "run"
    samples = run / "generator" / "samples"
    samples.mkdir(parents=True)
    (run / "generator" / "tensorboard").mkdir()
    for step in (250, 500):
        (samples / f"step_{step:07d}.png").write_bytes(b"png")
    (run / "reid").mkdir()
    table = run / "reid" / "reid_results.md"
    table.write_text("# Re-ID: original vs augmented\n\n| model |\n|---|\n| ide |\n")
    (run / "reid" / "cmc.png").write_bytes(b"png")

    markdown = render_report(
        {"generator": stamp("generator", steps=500)},
        offline={},
        title="t",
        report_dir=run,
        reid_table=table,
        samples=samples,
    )
    links = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", markdown)
    assert links == [
        ("Training samples at step 500", "generator/samples/step_0000500.png"),
        ("CMC curves", "reid/cmc.png"),
    ]
    assert all((run / target).resolve().is_file() for _, target in links)
    assert "## Re-ID: original vs augmented" in markdown
    logs = run / "generator" / "tensorboard"
    assert "TensorBoard logs, `generator/tensorboard/` beside this report" in markdown
    assert f"`uv run tensorboard --logdir {logs.resolve()}`" in markdown


def test_a_picture_outside_the_run_folder_is_copied_in(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    inside = run / "generator" / "examples.png"
    inside.parent.mkdir()
    inside.write_bytes(b"inside")
    elsewhere = tmp_path / "evaluation" / "examples.png"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"another evaluate folder")
    assert picture_link(inside, run) == "generator/examples.png"
    assert picture_link(elsewhere, run) == "pictures/examples.png"
    assert (run / "pictures" / "examples.png").read_bytes() == b"another evaluate folder"
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)  # the copied folder still holds what its links name
    assert (moved / picture_link(elsewhere, run)).read_bytes() == b"another evaluate folder"


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
