"""Section 5 as a controlled experiment: Re-ID gain per augmentation set, paired over seeds.

:func:`run_comparison` trains every (model, set, seed) of a plan with
:func:`pipeline.reid_stage.train_reid_baseline` (a finished run with the same settings and
inputs is reused, not retrained), so that the runs differ in one thing at a time:

* the sets (:mod:`pipeline.synthesize`) share their (source image, target pose) assignments
  and differ only in how the new images are made; ``original`` is the real images alone;
* seed k gives every set the same initialisation, batch-order seed and metric-pair seed
  (paired seeds);
* ``equal-steps`` (default) gives every set the optimiser steps the recipe gives the original
  set (the schedule counts the original's steps per epoch), so a set alpha times larger sees
  each image about 1/alpha as often; ``equal-epochs`` is the paper's silent default, alpha
  times the steps for an alpha-augmented set.

:func:`pipeline.reid_summary.summarize` turns the rows into means with 95% intervals, paired
differences against ``original`` and ``copies`` and verdicts. :func:`write_comparison` writes
``comparison.json``, ``comparison.md`` and ``cmc.png`` (one panel per model, one colour per
set, one line style per distance).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from foundation.errors import SettingsError
from pipeline.augmentation_sets import BUILT_IN_SETS, ORIGINAL, check_set_name, finished_set_group
from pipeline.reid_stage import REFERENCE_ROWS, reid_stage_name, train_reid_baseline
from pipeline.reid_summary import CONTROL, NUMBERS, Interval, summarize
from reid.config import TrainConfig
from reid.train import steps_per_epoch
from storage import PersonStore, StageStamp

Budget = Literal["equal-steps", "equal-epochs"]
BUDGETS: tuple[Budget, ...] = ("equal-steps", "equal-epochs")
DEFAULT_SETS = (ORIGINAL, "copies", "paint-by-parts", "generator")
COMPARISON_JSON = "comparison.json"
COMPARISON_MD = "comparison.md"
CMC_FIGURE = "cmc.png"


def check_plan(
    store: PersonStore, sets: Sequence[str], *, alpha: int, seeds: int, intervals: bool = True
) -> None:
    """Everything :func:`run_comparison` can refuse before it trains anything.

    Raises:
        SettingsError: no sets, a repeated or malformed set name, fewer than 2 seeds where
            intervals are asked.
        MissingInputError: a set not synthesized at ``alpha`` (another alpha is named).
    """
    if not sets:
        raise SettingsError("--sets is empty; list at least two, e.g. original,copies,generator")
    repeated = sorted({name for name in sets if list(sets).count(name) > 1})
    if repeated:
        raise SettingsError(f"--sets names {repeated[0]!r} twice")
    if seeds < 1:
        raise SettingsError(f"--seeds must be at least 1, got {seeds}")
    if intervals and seeds < 2:
        raise SettingsError(
            f"--seeds {seeds} gives no interval (a 95% interval needs at least 2 paired seeds; "
            "3 or more recommended); pass --seeds 3, or --no-intervals for a single-seed look"
        )
    for name in sets:
        if name == ORIGINAL:
            continue
        check_set_name(name, "folder" if name not in BUILT_IN_SETS else name)
        finished_set_group(store, name, alpha, stage="reid compare")


def seeded(config: TrainConfig, seed: int) -> TrainConfig:
    """``config`` with seed ``seed``: the same initialisation and batch-order seed for every
    set of one comparison."""
    return dataclasses.replace(config, seed=seed)


def budgeted(config: TrainConfig, budget: Budget, original_images: int) -> TrainConfig:
    """``config`` whose schedule counts the original set's steps per epoch (equal-steps), or
    one pass over whatever set it trains on (equal-epochs)."""
    if budget not in BUDGETS:
        raise SettingsError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}")
    if budget == "equal-epochs":
        return dataclasses.replace(config, epoch_steps=None)
    return dataclasses.replace(config, epoch_steps=steps_per_epoch(config, original_images))


def original_images(store: PersonStore) -> int:
    """Real training images with a known identity: the original set's size."""
    index = store.index
    return int(((index["split"] == "train") & (index["person_id"] > 0)).sum())


def train_paired_run(
    store: PersonStore,
    out_dir: str | Path,
    *,
    config: TrainConfig,
    set_name: str,
    alpha: int | None,
    seed: int,
    budget: Budget = "equal-steps",
    metrics: Sequence[str] = ("euclidean", "xqda", "kissme"),
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    **options: Any,
) -> StageStamp | None:
    """One run of a comparison: ``config`` with seed ``seed`` (initialisation, batch order
    and the XQDA/KISSME pair draws), the budget applied to an augmentation set, the stage named
    by kind, set, seed and budget; a finished run with the same settings is reused.

    Args:
        options: passed on to :func:`pipeline.reid_stage.train_reid_baseline` (ap, device,
            weights, progress, ...).
    """
    config = seeded(config, seed)
    if set_name != ORIGINAL:  # the original's own schedule is the budget
        config = budgeted(config, budget, original_images(store))
    per_metric = {
        metric: {
            **dict((metric_options or {}).get(metric, {})),
            **({"seed": seed} if metric in ("xqda", "kissme") else {}),
        }
        for metric in metrics
    }
    return train_reid_baseline(
        store,
        out_dir,
        config=config,
        set_name=set_name,
        alpha=alpha,
        metrics=metrics,
        metric_options=per_metric,
        reuse=True,
        name=reid_stage_name(
            config.model.kind, set_name, seed, equal_epochs=budget == "equal-epochs"
        ),
        **options,
    )


def run_comparison(
    store: PersonStore,
    out_dir: str | Path,
    *,
    configs: Mapping[str, TrainConfig],
    sets: Sequence[str] = DEFAULT_SETS,
    alpha: int = 2,
    seeds: int | Sequence[int] = 3,
    budget: Budget = "equal-steps",
    intervals: bool = True,
    metrics: Sequence[str] = ("euclidean", "xqda", "kissme"),
    metric_options: Mapping[str, Mapping[str, Any]] | None = None,
    ap: Literal["standard", "trapezoid"] = "standard",
    device: str = "cpu",
    weights: str | Path | None = None,
    overwrite: bool = False,
    on_run: Callable[[str], None] | None = None,
) -> list[StageStamp]:
    """Train and evaluate every (model, set, seed) with :func:`train_paired_run`; results as
    their stage stamps.

    Args:
        configs: model kind -> its recipe (the seed and budget are set here).
        sets: ``original`` and augmentation set names, all at ``alpha``.
        seeds: seeds 0 .. seeds - 1 (or these seeds), paired across sets.
        budget: ``equal-steps`` or ``equal-epochs`` (module doc).
        intervals: refuse fewer than 2 seeds (no interval is possible from one).
        metric_options: per-metric options; XQDA's and KISSME's pair-draw seed is the run's.
        overwrite: retrain a run whose folder holds a checkpoint of other settings (else
            that run is refused, naming the folder).
        on_run: called with each stage name before it trains or is reused.
    Returns:
        One stamp per run, in (model, set, seed) order; each run's folder is
        ``out_dir/<stage name>``.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    check_plan(store, sets, alpha=alpha, seeds=len(seed_list), intervals=intervals)
    stamps = []
    for kind, config in configs.items():
        for set_name in sets:
            for seed in seed_list:
                if on_run is not None:
                    on_run(
                        reid_stage_name(kind, set_name, seed, equal_epochs=budget == "equal-epochs")
                    )
                stamp = train_paired_run(
                    store,
                    out_dir,
                    config=config,
                    set_name=set_name,
                    alpha=alpha,
                    seed=seed,
                    budget=budget,
                    metrics=metrics,
                    metric_options=metric_options,
                    ap=ap,
                    device=device,
                    weights=weights,
                    overwrite=overwrite,
                )
                assert stamp is not None  # a single process: rank 0
                stamps.append(stamp)
    return stamps


def comparison_rows(stamps: Sequence[StageStamp]) -> list[dict[str, Any]]:
    """One row per (run, distance): model, distance, set, seed, steps, images, rank-1/5/10
    and mAP in percent, the run's alpha and CMC curve."""
    rows = []
    for stamp in stamps:
        report = stamp.report
        for distance, numbers in report["results"].items():
            rows.append(
                {
                    "model": report.get("kind", report["model"].split()[0]),
                    "distance": distance,
                    "set": report.get("set", ORIGINAL if report["alpha"] is None else "generator"),
                    "seed": report.get("seed", stamp.config["train"]["seed"]),
                    "steps": stamp.counts["steps"],
                    "images": stamp.counts["train_images"],
                    **{key: numbers[key] for key in NUMBERS},
                    "alpha": report["alpha"],
                    "backbone": report["model"],
                    "ap": report["ap"],
                    "cmc": report["cmc"][distance],
                }
            )
    return rows


def _interval(values: Mapping[str, Any]) -> Interval:
    return Interval(**values)


def render_markdown(rows: Sequence[Mapping[str, Any]], *, title: str, note: str = "") -> str:
    """``comparison.md``: verdicts, the ``note`` (what was run), each set's mean with its
    interval, the paired differences, how they are computed and the reference rows for
    scale."""
    summary = summarize(rows)
    seeds = sorted({row["seed"] for row in rows})
    lines = [f"# {title}", "", "## Verdicts (against copies, mAP)", ""]
    for verdict in summary["verdicts"]:
        details = []
        for set_name, word in verdict["sets"].items():
            difference = next(
                d
                for d in summary["differences"]
                if (d["model"], d["distance"], d["set"], d["against"])
                == (verdict["model"], verdict["distance"], set_name, CONTROL)
            )
            details.append(
                f"{set_name}: **{word}** (mAP {_interval(difference['mAP']).text(True)}, "
                f"rank-1 {_interval(difference['rank1']).text(True)})"
            )
        lines.append(f"- {verdict['model']}, {verdict['distance']}: " + "; ".join(details))
    if not summary["verdicts"]:
        lines.append("- none: the comparison needs the copies set and another augmentation set")
    if note:
        lines += ["", note]
    lines += [
        "",
        "## Each set",
        "",
        "Mean over seeds [95% interval]; rank-k and mAP in percent.",
        "",
        "| model | distance | set | seeds | steps | images | rank-1 | rank-5 | rank-10 | mAP |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary["sets"]:
        lines.append(
            f"| {s['model']} | {s['distance']} | {s['set']} | {len(s['seeds'])} | {s['steps']} "
            f"| {s['images']} | " + " | ".join(_interval(s[key]).text() for key in NUMBERS) + " |"
        )
    lines += [
        "",
        "## Paired differences",
        "",
        "Set minus baseline, seed by seed, then mean [95% interval]; percentage points.",
        "",
        "| model | distance | set | against | rank-1 | rank-5 | rank-10 | mAP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for d in summary["differences"]:
        lines.append(
            f"| {d['model']} | {d['distance']} | {d['set']} | {d['against']} | "
            + " | ".join(_interval(d[key]).text(True) for key in NUMBERS)
            + " |"
        )
    aps = sorted({row["ap"] for row in rows})
    lines += [
        "",
        f"How: {len(seeds)} paired seed(s) ({', '.join(map(str, seeds))}); seed k gives every "
        "set the same initialisation, batch order and metric pairs. An interval is mean +- "
        "t(0.975, n-1) x sd / sqrt(n) over the n seeds (Student's t); one seed gives none. "
        "The verdict reads the mAP difference against copies: helps (interval above 0), hurts "
        "(below 0), or no measurable difference.",
        "",
        f"AP definition of these runs: {', '.join(aps)} (standard = non-interpolated, as "
        "torchreid; trapezoid = Market-1501's compute_AP.m). For scale only, the references on "
        "the real Market-1501 (ResNet-50, ImageNet, no augmentation), each with its own AP "
        "definition: "
        + "; ".join(f"{name} {r1:.2f} / {m:.2f}" for name, (r1, m) in REFERENCE_ROWS.items())
        + " (rank-1 / mAP); compare a reference's mAP with runs of its definition (`--ap "
        "trapezoid`, flow `reid.ap`).",
    ]
    return "\n".join(lines) + "\n"


def plot_cmc(rows: Sequence[Mapping[str, Any]], path: Path) -> None:
    """CMC curves averaged over seeds: one panel per model, one colour per set, one line style
    per distance, and a legend naming both."""
    models = list(dict.fromkeys(row["model"] for row in rows))
    sets = list(dict.fromkeys(row["set"] for row in rows))
    distances = list(dict.fromkeys(row["distance"] for row in rows))
    colours = {name: f"C{k % 10}" for k, name in enumerate(sets)}
    line_styles: tuple[Literal["-", "--", ":", "-."], ...] = ("-", "--", ":", "-.")
    styles = {name: line_styles[k % 4] for k, name in enumerate(distances)}
    figure = Figure(figsize=(4.2 * max(1, len(models)), 3.8))
    axes = figure.subplots(1, max(1, len(models)), squeeze=False)[0]
    for axis, model in zip(axes, models, strict=False):
        for set_name in sets:
            for distance in distances:
                curves = [
                    row["cmc"]
                    for row in rows
                    if (row["model"], row["set"], row["distance"]) == (model, set_name, distance)
                ]
                if not curves:
                    continue
                curve = np.mean(curves, axis=0)[:20]
                axis.plot(
                    np.arange(1, len(curve) + 1),
                    curve,
                    color=colours[set_name],
                    linestyle=styles[distance],
                    linewidth=1.4,
                )
        axis.set_title(model)
        axis.set_xlabel("rank")
        axis.set_xlim(1, 20)
        axis.set_xticks([1, 5, 10, 15, 20])
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("matching rate (%)")
    handles = [Line2D([], [], color=colours[s], label=s) for s in sets] + [
        Line2D([], [], color="0.3", linestyle=styles[d], label=d) for d in distances
    ]
    figure.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    figure.savefig(path, dpi=120)


def write_comparison(
    rows: Sequence[Mapping[str, Any]],
    out_dir: str | Path,
    *,
    title: str = "Re-ID: augmentation sets compared",
    note: str = "",
    settings: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``comparison.json`` (``{"rows": [...], "summary": ..., "settings": ...}``),
    ``comparison.md`` and ``cmc.png`` into ``out_dir``.

    Returns:
        The Markdown file.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "rows": [dict(row) for row in rows],
        "summary": summarize(rows),
        "settings": dict(settings or {}),
    }
    (out / COMPARISON_JSON).write_text(json.dumps(payload, indent=1))
    if rows:
        plot_cmc(rows, out / CMC_FIGURE)
    page = out / COMPARISON_MD
    page.write_text(render_markdown(rows, title=title, note=note))
    return page


def _canonical(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """Rows in reading order: model, then original, copies, flip, paint by parts, generator and
    folder sets by name, then the distances as the IDE baseline lists them, then the seed."""
    sets = (ORIGINAL, "copies", "flip", "paint-by-parts", "generator")
    distances = ("euclidean", "xqda", "kissme")
    set_name, distance = row["set"], row["distance"]
    return (
        row["model"],
        sets.index(set_name) if set_name in sets else len(sets),
        set_name,
        distances.index(distance) if distance in distances else len(distances),
        distance,
        row["seed"],
    )


def reid_stamps(store: PersonStore) -> list[StageStamp]:
    """Every finished Re-ID stage of the store, in name order."""
    return [
        stamp
        for name, stamp in sorted(store.stamps().items())
        if name.startswith("reid_") and "results" in stamp.report
    ]


def compare_store_runs(store: PersonStore, out_dir: str | Path) -> Path:
    """The comparison page of every finished Re-ID run of the store (``reid evaluate``, the
    report)."""
    rows = sorted(comparison_rows(reid_stamps(store)), key=_canonical)
    note = ""
    if len({row["seed"] for row in rows}) == 1:
        note = (
            "One seed: no interval is possible, so no verdict; a difference here may be noise. "
            "`augment-market reid compare STORE --seeds 3` (or the flow's `reid.seeds: 3`) "
            "gives intervals."
        )
    return write_comparison(rows, out_dir, note=note)
