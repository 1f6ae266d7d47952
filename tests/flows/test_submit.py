"""``augment-market submit --set``: dotted assignments merged into stored parameters.

The server path (a deployment's stored parameters, run_deployment, a worker) is in
tests/flows/test_deploy.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flows.submit import (
    SubmitError,
    apply_assignments,
    check_server,
    deployment_name,
    merged_params,
    parse_assignment,
    run_name,
    run_tags,
)

DEMO = yaml.safe_load((Path(__file__).resolve().parents[2] / "demo.yaml").read_text())


def test_assignments_merge_nested_keys_and_keep_the_rest():
    merged = merged_params(
        DEMO,
        ["alpha=3", "generator.max_steps=20", "params.reid.kinds=[ide]", "pairs.test_pairs=null"],
    )
    assert merged["alpha"] == 3 and merged["generator"] == {"preset": "demo", "max_steps": 20}
    assert merged["reid"]["kinds"] == ["ide"] and merged["reid"]["arch"] == "resnet18"
    assert merged["pairs"] == {**DEMO["pairs"], "test_pairs": None}
    assert {
        k: v for k, v in merged.items() if k not in ("alpha", "generator", "reid", "pairs")
    } == {k: v for k, v in DEMO.items() if k not in ("alpha", "generator", "reid", "pairs")}
    assert DEMO["alpha"] == 2, "the stored parameters are not modified"


def test_missing_levels_are_created_and_values_are_yaml():
    merged = apply_assignments({}, ["generator.overrides.betas=[0.5, 0.9]", "devices.reid=cuda:1"])
    assert merged == {
        "generator": {"overrides": {"betas": [0.5, 0.9]}},
        "devices": {"reid": "cuda:1"},
    }
    assert parse_assignment("dataset.source=") == (["dataset", "source"], "")


@pytest.mark.parametrize("bad", ["alpha", "=3", "generator..preset=demo", "alpha=[1"])
def test_malformed_assignments_are_refused(bad):
    with pytest.raises(SubmitError):
        apply_assignments(DEMO, [bad])


def test_setting_inside_a_value_is_refused():
    with pytest.raises(SubmitError, match="alpha is 2, not a group"):
        apply_assignments(DEMO, ["alpha.x=1"])


def test_the_merged_parameters_are_validated_by_the_flow_model():
    with pytest.raises(SubmitError, match="did you mean 'alpha'"):
        merged_params(DEMO, ["alhpa=3"])
    with pytest.raises(SubmitError, match="generator: .*did you mean 'max_steps'"):
        merged_params(DEMO, ["generator.max_step=20"])
    with pytest.raises(SubmitError, match="alpha: Input should be greater than or equal to 2"):
        merged_params(DEMO, ["alpha=1"])


def test_names_and_a_missing_server():
    assert deployment_name("default") == "augment-market/default"
    assert deployment_name("augment-market/market1501") == "augment-market/market1501"
    with pytest.raises(SubmitError, match="make server-start"):
        check_server("http://127.0.0.1:9/api")


def test_runs_are_named_and_tagged_by_what_changed():
    sets = ["alpha=3", "params.generator.max_steps=20"]
    assert run_name("augment-market/default", sets) == (
        "default alpha=3 params.generator.max_steps=20"
    )
    assert run_name("market1501", []) == "market1501"
    assert len(run_name("default", ["dataset.source=" + "x" * 300])) == 100
    assert run_tags(sets) == ["set:alpha", "set:generator.max_steps"]


def test_the_command_line_prints_one_line_for_a_bad_assignment(capsys):
    from augment_market.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["submit", "default", "--set", "generator.max_steps"])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err == (
        "error: --set 'generator.max_steps': expected KEY=VALUE, e.g. generator.max_steps=20\n"
    )


def test_a_server_lost_while_waiting_is_one_clear_error(monkeypatch):
    import contextlib
    from types import SimpleNamespace

    import httpx
    import prefect.client.orchestration
    import prefect.deployments

    import flows.submit

    client = SimpleNamespace(read_deployment_by_name=lambda name: SimpleNamespace(parameters={}))

    def lost(*args, **kwargs):
        raise httpx.ConnectError("All connection attempts failed")

    monkeypatch.setattr(flows.submit, "check_server", lambda url: None)
    monkeypatch.setattr(
        prefect.client.orchestration, "get_client", lambda **kw: contextlib.nullcontext(client)
    )
    monkeypatch.setattr(prefect.deployments, "run_deployment", lost)
    monkeypatch.setattr(flows.submit, "merged_params", lambda stored, assignments: {})
    with pytest.raises(SubmitError, match="lost the Prefect server at .*restart the server"):
        flows.submit.submit("default", [], wait=None)
