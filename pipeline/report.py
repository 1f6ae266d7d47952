"""Report stage: one Markdown page gathering every finished stage's stamp and results.

The page opens with the run's offline declarations (which stages ran without pretrained weights
and what they did instead), so numbers from an offline run are never mistaken for paper-protocol
numbers. Then: the generator evaluation (the examples picture beside the paint-by-parts
baseline, the pixel metrics with both baselines), the last training sample grid and where the
TensorBoard logs are, the Re-ID comparison opening with its verdicts, with the CMC curves
(:func:`pipeline.reid_compare.compare_store_runs`), and the stages with their digests.

Every picture is this run's and lies inside the report's folder (copied there when a stage
wrote it elsewhere), linked relatively, so the run folder shows its report in any Markdown
viewer wherever it is copied; the flow embeds the same files when it publishes the report in
the UI.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from pipeline.evaluate import results_markdown
from pipeline.reid_compare import compare_store_runs
from storage import PersonStore, StageStamp

# Stages in the order the report lists them; Re-ID stages (``reid_<kind>_<set>``) follow.
PIPELINE_ORDER = ("ingest", "masks", "parsing", "pairs", "generator", "evaluate", "synthesize")


def _offline_section(offline: Mapping[str, str]) -> list[str]:
    if not offline:
        return ["Offline mode: none (every stage used its pretrained weights).", ""]
    lines = [
        "> **Offline mode.** These stages ran in their declared offline mode; their numbers",
        "> are not comparable with the paper's:",
        ">",
    ]
    lines += [f"> - **{group}**: {reason}" for group, reason in sorted(offline.items())]
    return [*lines, ""]


def _counts_section(stamp: StageStamp | None) -> list[str]:
    """The ingest's differences from the dataset's official counts, as a warning box."""
    differences = [] if stamp is None else stamp.report.get("count_differences", [])
    if not differences:
        return []
    lines = ["> **Dataset counts differ from the official ones:**", ">"]
    return [*lines, *(f"> - {line}" for line in differences), ""]


def _stages_section(stamps: Mapping[str, StageStamp]) -> list[str]:
    lines = ["## Stages", "", "| stage | digest | counts | finished (UTC) |", "|---|---|---|---|"]
    for name, stamp in stamps.items():
        counts = ", ".join(f"{k}={v}" for k, v in stamp.counts.items())
        when = dt.datetime.fromtimestamp(stamp.finished_at, dt.UTC).strftime("%Y-%m-%d %H:%M")
        lines.append(f"| {name} | `{stamp.digest}` | {counts} | {when} |")
    return [*lines, ""]


def picture_link(picture: Path, report_dir: Path) -> str:
    """The link to ``picture`` from a page in ``report_dir``, always inside ``report_dir``: a
    picture elsewhere is copied into ``report_dir/pictures/`` first, so the run folder holds
    everything its report shows and can be moved or copied whole."""
    picture, report_dir = picture.resolve(), report_dir.resolve()
    if not picture.is_relative_to(report_dir):
        copy = report_dir / "pictures" / picture.name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(picture, copy)
        picture = copy
    return picture.relative_to(report_dir).as_posix()


def _evaluation_section(stamp: StageStamp | None, report_dir: Path) -> list[str]:
    if stamp is None:
        return []
    examples = Path(str(stamp.report.get("examples", "")))
    link = picture_link(examples, report_dir) if examples.is_file() else None
    return [results_markdown(stamp.report["metrics"], examples=link, level=2), ""]


def _training_section(
    stamp: StageStamp | None, samples: Path | None, report_dir: Path
) -> list[str]:
    if stamp is None or samples is None:
        return []
    lines = ["## Generator training", ""]
    grids = sorted(samples.glob("step_*.png"))
    if grids:
        step = int(grids[-1].stem.removeprefix("step_"))
        lines += [
            f"![Training samples at step {step}]({picture_link(grids[-1], report_dir)})",
            "",
            f"The last training sample grid (step {step} of {stamp.counts.get('steps', step)}), "
            "rows of a training batch: source | target pose | generated | ground truth; every "
            f"grid is in `{os.path.relpath(samples, report_dir)}/`.",
            "",
        ]
    logs = samples.parent / "tensorboard"
    if logs.is_dir():
        lines += [
            "Losses, learning rate, speed and every sample grid over the steps are in the "
            f"TensorBoard logs, `{os.path.relpath(logs, report_dir)}/` beside this report; "
            f"open them with `uv run tensorboard --logdir {logs.resolve()}` and "
            "http://localhost:6006.",
            "",
        ]
    return lines if len(lines) > 2 else []


def _reid_section(reid_table: Path | None, report_dir: Path) -> list[str]:
    if reid_table is None or not reid_table.is_file():
        return []
    body = reid_table.read_text().splitlines()
    lines = [f"#{line}" if line.startswith("#") else line for line in body]
    cmc = reid_table.parent / "cmc.png"
    if cmc.is_file():
        lines += [
            "",
            f"![CMC curves]({os.path.relpath(cmc, report_dir)})",
            "",
            "CMC curves, mean over seeds: one panel per model, one colour per training set, "
            "one line style per distance.",
        ]
    return [*lines, ""]


def _consistency_section(stamps: Mapping[str, StageStamp]) -> list[str]:
    found = [s.report["consistency"] for s in stamps.values() if "consistency" in s.report]
    if not found:
        return []
    c = found[-1]
    return [
        "## Masks and parsing agreement",
        "",
        f"Empty masks {c['empty_mask_fraction']:.2%}, empty parsings "
        f"{c['empty_parsing_fraction']:.2%}, mean IoU of mask and non-background parsing "
        f"{c['mean_iou']:.3f}, {c['iou_below_0.5']} images below 0.5.",
        "",
    ]


def render_report(
    stamps: Mapping[str, StageStamp],
    *,
    offline: Mapping[str, str],
    title: str,
    report_dir: Path,
    reid_table: Path | None = None,
    samples: Path | None = None,
) -> str:
    """The report's Markdown for ``stamps`` (stage -> stamp, pipeline order), the offline
    declarations (stage group -> reason), the Re-ID comparison page when there is one and the
    generator's training sample grids folder (``samples``, beside its ``tensorboard/``).
    Pictures are linked relative to ``report_dir``, the folder the page is written to, and
    copied into it when they lie elsewhere (:func:`picture_link`); missing ones are left
    out."""
    lines = [
        f"# {title}",
        "",
        *_offline_section(offline),
        *_counts_section(stamps.get("ingest")),
        *_evaluation_section(stamps.get("evaluate"), report_dir),
        *_training_section(stamps.get("generator"), samples, report_dir),
        *_reid_section(reid_table, report_dir),
        *_consistency_section(stamps),
        *_stages_section(stamps),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_report(
    store: PersonStore,
    run_dir: str | Path,
    *,
    offline: Mapping[str, str] | None = None,
    title: str = "augment-market report",
) -> StageStamp:
    """Write ``<run_dir>/report.md`` from the store's stamps and stamp the ``report`` stage.

    Args:
        store: opened ``r+``; every stage that has finished on it is reported.
        run_dir: where ``report.md`` goes (the run's folder); the generator's sample grids are
            read from ``<run_dir>/generator/samples``.
        offline: stage group -> why it ran in its declared offline mode (shown at the top).
        title: the page's heading.
    Returns:
        The ``report`` stamp; ``report["path"]`` is the Markdown file.
    """
    offline = dict(offline or {})
    found = {name: stamp for name, stamp in store.stamps().items() if name != "report"}
    order = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    stamps = dict(sorted(found.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))
    path = Path(run_dir) / "report.md"
    config = {"run_dir": str(Path(run_dir).resolve()), "offline": offline, "title": title}
    with store.stage("report", config=config, inputs=list(stamps), n_blocks=1) as run:
        run.begin()  # the report goes to the run folder, outside the store
        path.parent.mkdir(parents=True, exist_ok=True)
        reid_table = None
        if any(name.startswith("reid_") for name in stamps):
            reid_table = compare_store_runs(store, Path(run_dir) / "reid")
        path.write_text(
            render_report(
                stamps,
                offline=offline,
                title=title,
                report_dir=path.parent,
                reid_table=reid_table,
                samples=Path(run_dir) / "generator" / "samples",
            )
        )
        run.mark_done(0)
        return run.finish(
            counts={"stages": len(stamps)}, report={"path": str(path), "offline": offline}
        )
