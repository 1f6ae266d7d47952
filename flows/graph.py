"""The DAG: which stage reads which, and each stage task's settings from the parameters.

An arrow is "reads the stamp of"; ``<kind>`` is each Re-ID baseline, ide / siamese / bot,
``<set>`` each augmentation set of ``reid.sets`` and ``<k>`` each seed::

    ingest -> masks ---> pairs -> generator -> evaluate
          \\-> parsing -------------/    \\-> synthesize[_<set>] -> reid_<kind>_<set>_s<k> -> report
          \\----------------------------------------------> reid_<kind>_original_s<k> ---/

The group ``synthesize`` holds one node per set (``synthesize`` writes the generator's,
``synthesize_copies``... the controls from the same target-pose draw); ``reid_augmented`` one
node per (kind, augmentation set, seed).

:func:`build_nodes` is the one place where parameters become task arguments.
"""

from __future__ import annotations

import hashlib
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
        name: the stamp it writes (``reid_ide_copies_s0`` for a Re-ID group), the result key.
        task: the cached Prefect task.
        settings: its keyword arguments besides ``store_url`` and ``upstream``.
        inputs: groups whose stamps it reads.
        after: groups it starts after, without reading them.
        reads: of the nodes of ``inputs``, the ones it reads (None: every one), so that a
            control's Re-ID run does not wait for, or rerun with, the generator's set.
    """

    group: StageName
    name: str
    task: Task[..., StageStamp]
    settings: dict[str, Any]
    inputs: tuple[StageName, ...]
    after: tuple[StageName, ...] = field(default=())
    reads: tuple[str, ...] | None = None


def upstream_nodes(nodes: list[Node], node: Node) -> list[Node]:
    """The nodes whose stamps ``node`` reads: those of its input groups it reads."""
    return [
        other
        for other in nodes
        if other.group in node.inputs and (node.reads is None or other.name in node.reads)
    ]


def pairs_settings(params: AugmentMarketParams) -> dict[str, Any]:
    """The pairs task's arguments: the settings with list paths made absolute, plus the sha256
    of each list present (``lists_sha256``), so that an edited list misses the cache."""
    settings = params.pairs.model_dump()
    digests: dict[str, str | None] = {}
    for key in ("train_pairs_file", "test_pairs_file"):
        if settings[key] is not None:
            path = Path(settings[key]).resolve()
            settings[key] = str(path)
            # A missing list is the stage's error to report, with its own message.
            digests[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {**settings, "lists_sha256": digests}


def build_nodes(params: AugmentMarketParams, offline: Mapping[str, str]) -> list[Node]:
    """The DAG's tasks in topological order: the one place where parameters become arguments."""
    from pipeline.augmentation_sets import synthesis_stage_name
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
                "image_size": dataset.image_size,
                "with_val": dataset.with_val,
                "official": not dataset.synthetic,
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
        "pairs": (tasks.pairs_stage, pairs_settings(params)),
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
                "source": "generator",
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
    # The controls: the same target-pose draw made into images without the generator.
    for set_name in reid.sets:
        if set_name in ("original", "generator"):
            continue
        name = synthesis_stage_name(set_name)
        arguments = {**settings["synthesize"][1], "source": set_name, "fan_out": None}
        reads: tuple[StageName, ...] = ("ingest",)
        if set_name == "paint-by-parts":
            reads = ("ingest", "parsing")
        nodes.append(
            Node("synthesize", name, tasks.named(tasks.synthesize_stage, name), arguments, reads)
        )
    reid_common = {
        "run_dir": run_dir,
        "arch": reid.arch,
        "preset": reid.preset,
        "model": set_fields(reid.model),
        "train": set_fields(reid.train),
        "budget": reid.budget,
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
    for set_name in reid.sets:
        group: StageName = "reid_original" if set_name == "original" else "reid_augmented"
        for kind in reid.kinds:
            for seed in range(params.seed, params.seed + reid.seeds):
                name = reid_stage_name(
                    kind, set_name, seed, equal_epochs=reid.budget == "equal-epochs"
                )
                nodes.append(
                    Node(
                        group,
                        name,
                        tasks.named(tasks.reid_stage, name),
                        {
                            **reid_common,
                            "kind": kind,
                            "set_name": set_name,
                            "seed": seed,
                            # The original set has no alpha: changing it must not rerun it.
                            "alpha": None if set_name == "original" else params.alpha,
                        },
                        INPUTS[group],
                        AFTER.get(group, ()),
                        reads=("ingest", synthesis_stage_name(set_name))
                        if set_name != "original"
                        else None,
                    )
                )
    report = {"run_dir": run_dir, "offline": dict(offline)}
    nodes.append(Node("report", "report", tasks.report_stage, report, INPUTS["report"]))
    return nodes


def downstream(nodes: list[Node], name: str) -> list[str]:
    """Names of the nodes that read ``name``'s stamp, directly or through others, in order."""
    reached = {name}
    found = []
    for node in nodes:
        if node.name != name and any(o.name in reached for o in upstream_nodes(nodes, node)):
            reached.add(node.name)
            found.append(node.name)
    return found
