"""The whole DAG against the session's server: caching, reruns, subsets, artifacts, report,
a failed stage."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows.config import load_params
from flows.dag import StageFailed, augment_market, run_from_config
from pipeline.stage_registry import STAGE_NAMES
from storage import open_store

# The stamps of a run: the stages up to synthesis under their own names (in the registry's
# order), the copies set synthesis also writes, one Re-ID run per (model, set, seed), the report.
ALL = [
    *STAGE_NAMES[: STAGE_NAMES.index("reid_original")],
    "synthesize_copies",
    "reid_ide_original_s0",
    "reid_ide_copies_s0",
    "reid_ide_generator_s0",
    "report",
]


def statuses(summary: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {stage: str(entry["status"]) for stage, entry in summary.items()}


def ran(summary: dict[str, dict[str, Any]]) -> set[str]:
    return {stage for stage, status in statuses(summary).items() if status == "ran"}


def run_with_id(params: dict[str, Any]) -> tuple[Any, UUID]:
    """The flow's final state (its result, or the error it raised) and the flow run's id."""
    state = augment_market(load_params(params), return_state=True)
    return state, state.state_details.flow_run_id


def artifacts_of(flow_run_id: UUID) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    flow_run = ArtifactFilterFlowRunId(any_=[flow_run_id])
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=flow_run))


@pytest.fixture(scope="module")
def first_run(
    prefect_server: str, tiny_params: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any], dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("dag")
    params = tiny_params(root)
    summary = run_from_config(params)
    FIRST_STAMPS.update(open_store(str(root / "store")).stamps())
    return root, params, summary


# The stamps right after the first run, before other tests rerun stages.
FIRST_STAMPS: dict[str, Any] = {}


def test_first_run_runs_every_stage_and_reports(first_run):
    root, _, summary = first_run
    assert list(summary) == ALL
    assert ran(summary) == set(ALL)
    stamps = open_store(str(root / "store")).stamps()
    assert {name: stamps[name].digest for name in ALL} == {
        name: summary[name]["digest"] for name in ALL
    }
    report = (root / "run" / "report.md").read_text()
    # Offline declarations come first, never silently.
    head = report.split("## Stages")[0]
    assert "Offline mode" in head
    for group in ("generator", "evaluate", "reid"):
        assert f"**{group}**" in head
    assert "pixel metrics" in report and "reid_ide_generator_s0" in report
    # The Re-ID section opens with the verdicts; one seed gives no interval and says so.
    reid = report.split("## Re-ID: augmentation sets compared")[1]
    assert reid.lstrip().startswith("### Verdicts (against copies, mAP)")
    assert "generator: **no interval (1 seed)**" in reid


def test_artifacts_are_published(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = [
        "augment-market-generator",
        "augment-market-generator-metrics",
        "augment-market-reid-metrics",
        "augment-market-report",
    ]
    with get_client(sync_client=True) as client:
        found = {
            artifact.key: artifact
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )
        }
    assert set(found) == set(keys)
    assert found["augment-market-generator"].type == "progress"
    assert found["augment-market-generator"].data == 100.0
    assert "Offline mode" in str(found["augment-market-report"].data)
    assert "euclidean" in str(found["augment-market-reid-metrics"].data)


def test_report_artifact_shows_its_pictures(first_run):
    """Prefect's UI shows data: URIs, not paths relative to the report file."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    keys = ["augment-market-report", "augment-market-generator-samples"]
    with get_client(sync_client=True) as client:
        found = {
            artifact.key: str(artifact.data)
            for artifact in client.read_artifacts(
                artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
            )
        }
    report = found["augment-market-report"]
    for alt in ("Held-out test pairs", "Training samples at step 2", "CMC curves"):
        assert f"![{alt}](data:image/png;base64,iVBORw0KGgo" in report, alt
    assert "](generator/" not in report and "](reid/" not in report
    assert "![training samples at step 2](data:image/png;base64," in found[keys[1]]


def test_rerun_without_changes_skips_every_stage(first_run):
    _, params, summary = first_run
    state, flow_run_id = run_with_id(params)
    again = state.result()
    assert set(statuses(again).values()) == {"cached"}
    assert again == {stage: {**entry, "status": "cached"} for stage, entry in summary.items()}
    cards = {
        artifact.key: artifact.description
        for artifact in artifacts_of(flow_run_id)
        if artifact.type == "progress"
    }
    assert cards["augment-market-masks"].endswith(f"cached, digest `{summary['masks']['digest']}`")
    assert len(cards) == len(summary)


def test_deleted_stamp_reruns_that_stage(first_run):
    root, params, summary = first_run
    open_store(str(root / "store"), mode="r+").clear_stamp("masks")
    again = run_from_config(params)
    # The masks rerun reproduces the same digest, so its dependants' keys still match.
    assert ran(again) == {"masks"}
    assert again["masks"]["digest"] == summary["masks"]["digest"]


def test_deleted_output_of_a_dependant_is_recomputed(first_run):
    root, params, _ = first_run
    shutil.rmtree(root / "run" / "reid")
    open_store(str(root / "store"), mode="r+").clear_stamp("reid_ide_original_s0")
    assert ran(run_from_config(params)) == {"reid_ide_original_s0"}
    assert (root / "run" / "reid" / "reid_ide_original_s0" / "results.json").is_file()


def test_alpha_change_reruns_synthesis_augmented_reid_and_report(first_run):
    _, params, _ = first_run
    augmented = {
        "synthesize",
        "synthesize_copies",
        "reid_ide_copies_s0",
        "reid_ide_generator_s0",
        "report",
    }
    changed = run_from_config({**params, "alpha": 3})
    assert ran(changed) == augmented
    # Back to alpha 2: its old cache records point at outputs the store no longer holds
    # (the synthesize stamp is alpha 3's), so they are stale and the stages run again.
    back = run_from_config(params)
    assert ran(back) == augmented
    # Alpha 2's numbers, not those of the alpha-3 network its checkpoint folder last held.
    root = Path(params["store_url"])
    stamp = open_store(str(root)).stamp("reid_ide_generator_s0")
    first = FIRST_STAMPS["reid_ide_generator_s0"]
    assert stamp.report["alpha"] == 2 and stamp.report["resumed_at_step"] is None
    assert stamp.counts == first.counts
    assert stamp.report["results"] == first.report["results"]


def test_refresh_and_subset(first_run):
    _, params, summary = first_run
    refreshed = run_from_config({**params, "refresh": ["pairs"]})
    assert ran(refreshed) == {"pairs"}
    subset = run_from_config({**params, "stages": ["evaluate", "report"]})
    assert statuses(subset)["evaluate"] == "cached"
    assert {statuses(subset)[s] for s in ALL if s not in ("evaluate", "report")} == {"stored"}
    assert subset["generator"]["digest"] == summary["generator"]["digest"]


def test_seed_change_reruns_pairs_and_what_depends_on_them(first_run):
    _, params, _ = first_run
    changed = run_from_config({**params, "pairs": {**params["pairs"], "seed": 1}})
    assert ran(changed) == {
        "pairs",
        "generator",
        "evaluate",
        "synthesize",
        "reid_ide_generator_s0",
        "report",
    }


def test_a_failed_stage_leaves_out_only_what_reads_it(first_run):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    _, params, _ = first_run
    generator = params["generator"]
    wrong_size = {**generator, "overrides": {**generator["overrides"], "image_size": [64, 64]}}
    state, flow_run_id = run_with_id({**params, "generator": wrong_size})
    assert state.is_failed()
    left_out = "evaluate, synthesize, reid_ide_generator_s0, report"
    with pytest.raises(StageFailed, match=f"'generator' failed \\(\\w+: .*so {left_out} did"):
        state.result()
    APILogWorker.drain_all(timeout=30)
    with get_client(sync_client=True) as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    errors = [log.message for log in logs if log.level >= 40]
    assert len(errors) == 2, errors  # the generator task's own error, and the flow's line
    assert errors[-1].endswith(f"; not run because of it: {left_out}")
    assert not any("upstream task run" in log.message for log in logs)


def test_a_run_without_weights_it_needs_ends_before_any_stage(
    prefect_server, tmp_path, tiny_params
):
    params = tiny_params(
        tmp_path,
        stages=["masks"],
        segmentation={"masks_from": "model", "masks_weights": str(tmp_path / "absent.pth")},
    )
    state, flow_run_id = run_with_id(params)
    assert state.is_failed()
    assert "missing pretrained weights: maskrcnn_resnet50_fpn_v2_coco" in state.message
    assert "make weights" in state.message
    assert artifacts_of(flow_run_id) == [] and not (tmp_path / "store").exists()
