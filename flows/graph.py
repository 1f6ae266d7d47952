"""The DAG: which stage reads which, and each stage task's settings from the parameters.

An arrow is "reads the stamp of"; ``<kind>`` is each Re-ID baseline, ide / siamese / bot,
``<set>`` each augmentation set of ``reid.sets`` and ``<k>`` each seed::

    ingest -> masks ---> pairs -> generator -> evaluate
          \\-> parsing -------------/    \\-> synthesize[_<set>] -> reid_<kind>_<set>_s<k> -> report
          \\----------------------------------------------> reid_<kind>_original_s<k> ---/

The group ``synthesize`` holds one node per set (``synthesize`` writes the generator's,
``synthesize_copies``... the controls from the same target-pose draw); ``reid_augmented`` one
node per (kind, augmentation set, seed).

The edges come from the stage registry (:data:`pipeline.stage_registry.REGISTRY`);
:func:`build_nodes` is the one place where parameters become each stage's settings object.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import Task

from flows.caching import folder_fingerprint
from flows.config import AugmentMarketParams
from flows.dask_runner import fan_out_settings
from flows.tasks import TASKS, named
from pipeline.augmentation_sets import synthesis_stage_name
from pipeline.settings import ReportSettings
from pipeline.stage_registry import REGISTRY, StageName
from storage import StageStamp


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
    """The pairs task's arguments: the settings with list paths made absolute, and in
    ``extra`` the sha256 of each list present (``lists_sha256``), so that an edited list misses
    the cache."""
    settings = params.pairs
    paths: dict[str, str] = {}
    digests: dict[str, str | None] = {}
    for key in ("train_pairs_file", "test_pairs_file"):
        if (value := getattr(settings, key)) is not None:
            path = Path(value).resolve()
            paths[key] = str(path)
            # A missing list is the stage's error to report, with its own message.
            digests[key] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
    return {"settings": settings.model_copy(update=paths), "extra": {"lists_sha256": digests}}


def build_nodes(params: AugmentMarketParams, offline: Mapping[str, str]) -> list[Node]:
    """The DAG's tasks in topological order: the one place where parameters become each
    stage's settings object and task arguments."""
    devices, reid, dataset = params.devices, params.reid, params.dataset
    run_dir = str(Path(params.run_dir).resolve())
    fingerprint = folder_fingerprint(dataset.source) if "ingest" in params.stages else ""
    fan_out = fan_out_settings(params)
    synthesis = params.stage_settings("synthesize")
    settings: dict[StageName, dict[str, Any]] = {
        "ingest": {
            "settings": dataset.model_copy(update={"source": str(Path(dataset.source).resolve())}),
            "extra": {"source_fingerprint": fingerprint},
        },
        "masks": {"settings": params.stage_settings("masks")},
        "parsing": {"settings": params.stage_settings("parsing")},
        "pairs": pairs_settings(params),
        "generator": {"settings": params.generator, "extra": {"seed": params.seed}},
        "evaluate": {"settings": params.evaluate},
        "synthesize": {"settings": synthesis},
    }
    nodes: list[Node] = []

    def add(group: StageName, arguments: dict[str, Any], **more: Any) -> None:
        stage = REGISTRY[group]
        name = stage.stamp(arguments["settings"], arguments.get("extra"))
        if stage.device is not None:
            arguments["device"] = getattr(devices, stage.device)
        if stage.offline_mode is not None:
            arguments["offline"] = stage.offline_group in offline
        if stage.folder is not None:
            arguments["run_dir"] = run_dir
        if stage.fans_out and "fan_out" not in arguments:
            arguments["fan_out"] = fan_out
        task = TASKS[group] if name == group else named(TASKS[group], name)
        inputs = stage.inputs_of(arguments["settings"])
        nodes.append(Node(group, name, task, arguments, inputs, stage.after, **more))

    for first, arguments in settings.items():
        add(first, arguments)
    # The controls: the same target-pose draw made into images without the generator.
    for set_name in reid.sets:
        if set_name in ("original", "generator"):
            continue
        control = synthesis.model_copy(update={"source": set_name})
        add("synthesize", {"settings": control, "fan_out": None})
    for set_name in reid.sets:
        group: StageName = "reid_original" if set_name == "original" else "reid_augmented"
        for kind in reid.kinds:
            for seed in range(params.seed, params.seed + reid.seeds):
                # The original set has no alpha: changing it must not rerun it.
                alpha = None if set_name == "original" else params.alpha
                reads = None if alpha is None else ("ingest", synthesis_stage_name(set_name))
                add(
                    group,
                    {
                        "settings": reid.for_run(kind, set_name),
                        "extra": {"seed": seed, "alpha": alpha},
                    },
                    reads=reads,
                )
    add("report", {"settings": ReportSettings(offline=dict(offline))})
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
