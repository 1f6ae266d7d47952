"""Flow parameters: demo.yaml, the prefect.yaml deployments, validation, offline decisions."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from flows import offline as offline_module
from flows.config import STAGES, AugmentMarketParams, load_params
from flows.deploy import deployment_specs
from flows.offline import resolve_offline

PROJECT = Path(__file__).resolve().parents[2]


def test_demo_yaml_is_valid_and_small():
    params = load_params(PROJECT / "demo.yaml")
    assert params.dataset.synthetic and params.segmentation.masks_from == "provided"
    assert params.segmentation.annotations_dir == str(Path("demo_output/synthetic/annotations"))
    assert set(params.devices.model_dump().values()) == {"cpu"}
    assert params.generator.preset == "demo" and params.reid.arch == "resnet18"
    assert params.stages == list(STAGES)


def test_deployments_default_is_the_demo_and_market1501_the_paper():
    specs = {spec["name"]: spec for spec in deployment_specs(PROJECT / "prefect.yaml")}
    assert set(specs) == {"default", "market1501"}
    demo = yaml.safe_load((PROJECT / "demo.yaml").read_text())
    assert specs["default"]["parameters"]["params"] == demo
    paper = load_params(specs["market1501"]["parameters"]["params"])
    assert (paper.pairs.train_pairs, paper.pairs.test_pairs) == (243_200, 12_000)
    assert paper.generator.preset == "market1501" and paper.reid.arch == "resnet50"
    for spec in specs.values():
        assert spec["entrypoint"] == "flows/dag.py:augment_market"
        assert spec["work_pool"]["name"] == "augment-market"


def test_unknown_and_wrong_settings_are_rejected():
    base = {"dataset": {"source": "x"}, "store_url": "s", "run_dir": "r"}
    assert load_params(base).offline == "auto"
    with pytest.raises(ValidationError, match="typo"):
        load_params({**base, "typo": 1})
    with pytest.raises(ValidationError):
        load_params({**base, "stages": ["ingest", "nonsense"]})
    with pytest.raises(ValidationError):
        load_params({**base, "alpha": 1})


def test_parameter_schema_is_one_model_for_the_ui():
    from prefect.utilities.callables import parameter_schema

    from flows.dag import augment_market

    schema = parameter_schema(augment_market.fn).model_dump()
    assert list(schema["properties"]) == ["params"]
    assert "AugmentMarketParams" in schema["definitions"]


def test_every_form_field_has_a_description_and_no_bare_none_switch():
    from prefect.utilities.callables import parameter_schema

    from flows.dag import augment_market

    definitions = parameter_schema(augment_market.fn).model_dump()["definitions"]
    for model, definition in definitions.items():
        for name, prop in definition["properties"].items():
            where = f"{model}.{name}"
            description = prop.get("description", "")
            # Not the generated fallback; no "<...>" (the UI's Markdown eats it as a tag).
            assert description and f".{name}." not in description and "<" not in description
            if name not in definition.get("required", []) and "$ref" not in prop:
                assert "default" in description.lower() or "unset" in description.lower(), where
            nulls = [o for o in prop.get("anyOf", []) if o.get("type") == "null"]
            # A None side is offered only where None means something, and says what.
            assert all(o.get("title") not in (None, "none") for o in nulls), where
    pairs = definitions["PairsSettings"]["properties"]["train_pairs"]
    assert pairs["anyOf"][-1] == {"type": "null", "title": "every pair"}
    assert definitions["GeneratorOverrides"]["properties"]["ngf"]["type"] == "integer"
    assert (
        "(market1501: 64)" in definitions["GeneratorOverrides"]["properties"]["ngf"]["description"]
    )


def test_offline_auto_switches_only_stages_with_missing_weights(monkeypatch, tmp_path):
    params = AugmentMarketParams.model_validate(
        {"dataset": {"source": "x"}, "store_url": "s", "run_dir": "r", "reid": {"arch": "resnet18"}}
    )
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert set(resolve_offline(params)) == {"generator", "evaluate", "reid"}
    needed = offline_module.required_weights(params)
    for spec in needed["generator"] + needed["reid"]:
        (tmp_path / spec.file_name).write_bytes(b"")
    decisions = resolve_offline(params)
    assert set(decisions) == {"evaluate"}
    assert "inception" in decisions["evaluate"]
    assert resolve_offline(params.model_copy(update={"offline": False})) == {}
    assert set(resolve_offline(params.model_copy(update={"offline": True}))) == {
        "generator",
        "evaluate",
        "reid",
    }
    subset = params.model_copy(update={"stages": ["ingest", "generator"]})
    assert set(offline_module.required_weights(subset)) == {"generator"}


BASE = {"dataset": {"source": "x"}, "store_url": "s", "run_dir": "r"}


def test_a_typo_in_nested_settings_is_refused_naming_the_valid_key():
    with pytest.raises(ValidationError, match="'ngff' \\(did you mean 'ngf'\\?\\)"):
        load_params({**BASE, "generator": {"overrides": {"ngff": 8}}})
    with pytest.raises(ValidationError, match="did you mean 'backbone_lr_mult'"):
        load_params({**BASE, "reid": {"train": {"backbone_lr_mul": 1.0}}})
    with pytest.raises(ValidationError, match="did you mean 'pca_dim'"):
        load_params({**BASE, "reid": {"metric_options": {"kissme": {"pca_dims": 64}}}})
    with pytest.raises(ValidationError, match="image_size"):
        load_params({**BASE, "generator": {"overrides": {"image_size": "big"}}})


def test_overrides_keep_the_preset_where_unset_and_coerce_numbers():
    from pipeline.settings import set_fields

    params = load_params({**BASE, "reid": {"train": {"backbone_lr_mult": 1, "epochs": 3}}})
    assert set_fields(params.reid.train) == {"backbone_lr_mult": 1.0, "epochs": 3}
    assert isinstance(set_fields(params.reid.train)["backbone_lr_mult"], float)
    assert set_fields(params.generator.overrides) == {}


def test_a_json_round_trip_of_the_parameters_keeps_every_cache_key(tmp_path):
    """The UI's JSON editor rewrites 1.0 as 1 and sends every field back: nothing reruns."""
    import json

    from flows.caching import stage_key
    from flows.graph import build_nodes

    demo = yaml.safe_load((PROJECT / "demo.yaml").read_text())
    demo["reid"]["train"]["backbone_lr_mult"] = 1.0
    demo["dataset"]["source"] = str(tmp_path)
    params = load_params(demo)
    as_ui = json.loads(
        params.model_dump_json().replace('"backbone_lr_mult":1.0', '"backbone_lr_mult":1')
    )
    assert as_ui["reid"]["train"]["backbone_lr_mult"] == 1
    again = load_params(as_ui)

    def keys(p: AugmentMarketParams) -> dict[str, str]:
        return {
            node.name: stage_key(node.name, {"upstream": {}, **node.settings})
            for node in build_nodes(p, offline={})
        }

    assert keys(again) == keys(params)


def test_missing_weights_a_run_cannot_do_without(tmp_path):
    from flows.offline import missing_weights

    paths = {name: tmp_path / f"{name}.pth" for name in ("masks", "parsing", "reid")}
    params = load_params(
        {
            **BASE,
            "stages": ["masks", "parsing", "reid_original"],
            "segmentation": {
                "masks_weights": str(paths["masks"]),
                "parsing_weights": str(paths["parsing"]),
            },
            "reid": {"weights": str(paths["reid"])},
        }
    )
    # Masks and parsing from a model have no offline mode; Re-ID only with offline: false.
    assert missing_weights(params) == [
        "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth (for masks)",
        "exp-schp-201908261155-lip.pth (for parsing)",
    ]
    strict = params.model_copy(update={"offline": False})
    assert missing_weights(strict)[-1] == "resnet50-0676ba61.pth (for reid)"
    for path in paths.values():
        path.write_bytes(b"")
    assert missing_weights(strict) == []


def test_a_pairs_list_is_read_by_path_and_keyed_by_content(tmp_path, monkeypatch):
    from flows.caching import stage_key
    from flows.graph import build_nodes, pairs_settings

    monkeypatch.chdir(tmp_path)
    (tmp_path / "test.csv").write_text("from,to\na.jpg,b.jpg\n")
    params = load_params({**BASE, "pairs": {"test_pairs_file": "test.csv"}})
    settings = pairs_settings(params)["settings"]
    assert settings.test_pairs_file == str(tmp_path / "test.csv")
    assert settings.train_pairs_file is None and settings.test_from == "gallery"

    def pairs_key() -> str:
        node = next(n for n in build_nodes(params, offline={}) if n.name == "pairs")
        return stage_key("pairs", {"upstream": {}, **node.settings})

    key = pairs_key()
    (tmp_path / "test.csv").write_text("from,to\nb.jpg,a.jpg\n")  # same path, other pairs
    assert pairs_key() != key
    (tmp_path / "test.csv").unlink()  # the stage reports a missing list itself
    assert pairs_settings(params)["extra"]["lists_sha256"] == {"test_pairs_file": None}


def test_dataset_size_and_msmt17_val_reach_the_ingest_task(tmp_path):
    from flows.graph import build_nodes

    params = load_params(
        {
            **BASE,
            "dataset": {"source": str(tmp_path), "kind": "msmt17", "image_size": [384, 192]},
        }
    )
    ingest = next(n for n in build_nodes(params, offline={}) if n.name == "ingest").settings
    assert ingest["settings"].image_size == (384, 192) and ingest["settings"].with_val is False
    assert ingest["settings"].official is True
    with pytest.raises(ValidationError, match="image_size"):
        load_params({**BASE, "dataset": {"source": "x", "image_size": [256, 0]}})
    demo = load_params(PROJECT / "demo.yaml")
    # The synthetic demo set is not the official dataset: no counts compared, no paper row.
    assert (
        not next(n for n in build_nodes(demo, offline={}) if n.name == "ingest")
        .settings["settings"]
        .official
    )


def test_each_stage_gets_the_settings_model_its_registry_entry_declares():
    from pipeline.stage_registry import REGISTRY, settings_model

    params = load_params(PROJECT / "demo.yaml")
    for name, stage in REGISTRY.items():
        assert isinstance(params.stage_settings(name), settings_model(stage)), name
