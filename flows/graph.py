"""The DAG: which stage reads which, and each stage task's settings from the parameters.

An arrow is "reads the stamp of"; ``<kind>`` is each Re-ID baseline, ide / siamese / bot::

    ingest -> masks ---> pairs -> generator -> evaluate
          \\-> parsing -------------/      \\-> synthesize -> reid_<kind>_augmented -> report
          \\--------------------------------------------> reid_<kind>_original ---/

:func:`build_nodes` is the one place where parameters become task arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task

from flows import tasks
from flows.caching import folder_fingerprint
from flows.config import STAGES, AugmentMarketParams, StageName, set_fields
from flows.dask_runner import fan_out_settings
from storage import StageStamp

# Stages that read each stage's stamp: the edges of the DAG, and the digests in its cache key.
INPUTS: dict[StageName, tuple[StageName, ...]] = {
    "ingest": (),
    "masks": ("ingest",),
    "parsing": ("ingest",),
    "pairs": ("ingest", "masks"),
    "generator": ("pairs", "masks", "parsing"),
    "evaluate": ("generator", "pairs"),
    "synthesize": ("generator", "masks", "parsing"),
    "reid_original": ("ingest",),
    "reid_augmented": ("ingest", "synthesize"),
    "report": STAGES[:-1],
}
# Order without data: reid_original reads only ingest, but starting it after synthesis keeps
# the GPU for the generator and lets the original and augmented trainings run side by side.
AFTER: dict[StageName, tuple[StageName, ...]] = {"reid_original": ("synthesize",)}


@dataclass(frozen=True)
class Node:
    """One task of the DAG.

    Attributes:
        group: the stage name users list in ``stages`` / ``refresh`` (``reid_original``...).
        name: the stamp it writes (``reid_ide_original`` for a Re-ID group), the result key.
        task: the cached Prefect task.
        settings: its keyword arguments besides ``store_url`` and ``upstream``.
        inputs: groups whose stamps it reads (every node of each).
        after: groups it starts after, without reading them.
    """

    group: StageName
    name: str
    task: Task[..., StageStamp]
    settings: dict[str, Any]
    inputs: tuple[StageName, ...]
    after: tuple[StageName, ...] = field(default=())


def build_nodes(params: AugmentMarketParams, offline: Mapping[str, str]) -> list[Node]:
    """The DAG's tasks in topological order: the one place where parameters become arguments."""
    from pipeline.reid_stage import reid_stage_name

    seg, devices, gen, reid = params.segmentation, params.devices, params.generator, params.reid
    dataset = params.dataset
    run_dir = str(Path(params.run_dir).resolve())
    fingerprint = folder_fingerprint(dataset.source) if "ingest" in params.stages else ""
    fan_out = fan_out_settings(params)
    segmentation = {
        "annotations_dir": seg.annotations_dir,
        "device": devices.segmentation,
        "fan_out": fan_out,
    }
    settings: dict[StageName, tuple[Task[..., StageStamp], dict[str, Any]]] = {
        "ingest": (
            tasks.ingest_stage,
            {
                "source": str(Path(dataset.source).resolve()),
                "kind": dataset.kind,
                "block_size": dataset.block_size,
                "overwrite": dataset.overwrite,
                "source_fingerprint": fingerprint,
            },
        ),
        "masks": (
            tasks.named(tasks.segmentation_stage, "masks"),
            {
                **segmentation,
                "kind": "masks",
                "source": seg.masks_from,
                "batch_size": seg.masks_batch_size,
                "weights": seg.masks_weights,
                "flip": False,
            },
        ),
        "parsing": (
            tasks.named(tasks.segmentation_stage, "parsing"),
            {
                **segmentation,
                "kind": "parsing",
                "source": seg.parsing_from,
                "batch_size": seg.parsing_batch_size,
                "weights": seg.parsing_weights,
                "flip": seg.parsing_flip,
            },
        ),
        "pairs": (tasks.pairs_stage, params.pairs.model_dump()),
        "generator": (
            tasks.generator_stage,
            {
                "run_dir": run_dir,
                "preset": gen.preset,
                "overrides": set_fields(gen.overrides),
                "seed": params.seed,
                "max_steps": gen.max_steps,
                "resume": gen.resume,
                "device": devices.generator,
                "offline": "generator" in offline,
            },
        ),
        "evaluate": (
            tasks.evaluate_stage,
            {
                "run_dir": run_dir,
                "fid_variant": params.evaluate.fid_variant,
                "batch_size": params.evaluate.batch_size,
                "device": devices.evaluate,
                "offline": "evaluate" in offline,
            },
        ),
        "synthesize": (
            tasks.synthesize_stage,
            {
                "run_dir": run_dir,
                "alpha": params.alpha,
                "seed": params.synthesis_seed,
                "batch_size": params.synthesis_batch_size,
                "device": devices.synthesize,
                "fan_out": fan_out,
            },
        ),
    }
    nodes = [
        Node(group, group, task_, arguments, INPUTS[group])
        for group, (task_, arguments) in settings.items()
    ]
    reid_common = {
        "run_dir": run_dir,
        "arch": reid.arch,
        "preset": reid.preset,
        "model": set_fields(reid.model),
        "train": set_fields(reid.train),
        "seed": params.seed,
        "metrics": list(reid.metrics),
        "metric_options": reid.metric_options.model_dump(),
        "ap": reid.ap,
        "normalize_features": reid.normalize_features,
        "flip_features": reid.flip_features,
        "max_steps": reid.max_steps,
        "weights": reid.weights,
        "device": devices.reid,
        "offline": "reid" in offline,
    }
    reid_sets: tuple[tuple[StageName, int | None], ...] = (
        ("reid_original", None),
        ("reid_augmented", params.alpha),
    )
    for group, alpha in reid_sets:
        for kind in reid.kinds:
            name = reid_stage_name(kind, alpha)
            nodes.append(
                Node(
                    group,
                    name,
                    tasks.named(tasks.reid_stage, name),
                    {**reid_common, "kind": kind, "alpha": alpha},
                    INPUTS[group],
                    AFTER.get(group, ()),
                )
            )
    report = {"run_dir": run_dir, "offline": dict(offline)}
    nodes.append(Node("report", "report", tasks.report_stage, report, INPUTS["report"]))
    return nodes


def downstream(nodes: list[Node], name: str) -> list[str]:
    """Names of the nodes that read ``name``'s stamp, directly or through others, in order."""
    groups = {node.name: node.group for node in nodes}
    reached = {groups[name]}
    found = []
    for node in nodes:
        if node.name != name and reached & set(node.inputs):
            reached.add(node.group)
            found.append(node.name)
    return found
