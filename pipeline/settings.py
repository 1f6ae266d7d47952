"""Each stage's settings: pydantic models, validated and typed, each field described.

One settings object per stage travels from the YAML file (through
:class:`flows.config.AugmentMarketParams`, which composes these) or from the command line
(:mod:`augment_market.commands`) to the stage's run adapter in :mod:`pipeline.stage_registry`.
Every default is stated here once: the flow's form shows it, the CLI's options read it.

The form: every field has a one-line description; its default is appended
(:func:`_form_schema`). An optional field whose default is None is drawn as its type alone (the
UI's "Omit value" leaves it unset) instead of a type-or-None switch whose None side shows only
'Property is type "None"'; where None has a meaning of its own the switch stays, its None side
titled with that meaning.

Light: pydantic only (the CLI's light commands import this module); the settings of the two
trained models, which wrap ``san_model``'s and ``reid``'s (torch-free) config dataclasses, are
in :mod:`pipeline.model_settings`.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    create_model,
    field_validator,
    model_validator,
)

from foundation.fields import field_descriptions
from pipeline.datasets import dataset_names, get_dataset

if TYPE_CHECKING:
    from pipeline.pairs import PairsConfig


def _show(value: Any) -> str:
    """A default as the form's description shows it: ``64``, ``cuda``, ``[ide, siamese]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return json.dumps(value)


def _form_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Shape a settings model's JSON schema for Prefect's parameter form (see module doc).

    A field's ``json_schema_extra={"null_means": "..."}`` keeps its type-or-None switch, the
    None side titled with that meaning, whatever its default.
    """
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields[name]
        null_means = prop.pop("null_means", None)
        options = prop.get("anyOf", [])
        typed = [option for option in options if option != {"type": "null"}]
        if len(typed) < len(options):
            if field.default is None and null_means is None:
                del prop["anyOf"]
                prop.pop("default", None)
                prop.update(typed[0] if len(typed) == 1 else {"anyOf": typed})
            else:
                prop["anyOf"] = [*typed, {"type": "null", "title": null_means or "none"}]
        description = str(prop.get("description", ""))
        if field.default is None and null_means is not None:
            prop["description"] = f"{description} Default: {null_means}."
        elif "default" in prop and "default" not in description.lower():
            if not isinstance(prop["default"], dict):
                prop["description"] = f"{description} Default: {_show(prop['default'])}."
        elif field.default is None and "default" not in description.lower():
            if "unset" not in description.lower():
                prop["description"] = f"{description} Default: unset."


class Settings(BaseModel):
    """Unknown keys are typos (``ngff`` for ``ngf``): refused, naming the closest valid key."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_form_schema)

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            unknown = [key for key in values if key not in cls.model_fields]
            if unknown:
                valid = sorted(cls.model_fields)
                named = []
                for key in unknown:
                    close = difflib.get_close_matches(str(key), valid, n=1)
                    named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                raise ValueError(
                    f"unknown setting {', '.join(named)}; valid settings: {', '.join(valid)}"
                )
        return values


def field_of(model: type[BaseModel], name: str) -> Any:
    """``model``'s field ``name`` (default, bounds, description), for another model that holds
    the same setting, so that it is stated once."""
    return model.model_fields[name]


def overrides_model(name: str, config: type, *, preset: str, exclude: tuple[str, ...] = ()) -> Any:
    """A settings model with every field of the frozen dataclass ``config`` optional.

    A field left unset (None) keeps the preset's value. Values are validated and coerced to the
    field's type (``1`` -> ``1.0`` for a float), so equal settings hash equally whatever the UI
    or a YAML file wrote. Generated from the dataclass so the two never drift apart; the
    descriptions are the dataclass's (:func:`foundation.fields.described`) and the value of
    ``preset`` (the dataclass defaults).
    """
    hints = typing.get_type_hints(config)
    comments = field_descriptions(config)
    defaults = {f.name: getattr(config(), f.name) for f in dataclasses.fields(config)}
    fields = {
        f.name: (
            hints[f.name] | None,
            Field(
                default=None,
                description=f"{comments.get(f.name, f'{config.__name__}.{f.name}.')} "
                f"Unset: the preset's value ({preset}: {_show(defaults[f.name])}).",
            ),
        )
        for f in dataclasses.fields(config)
        if f.name not in exclude
    }
    return create_model(name, __base__=Settings, __doc__=config.__doc__, **fields)  # type: ignore[call-overload]


def set_fields(overrides: BaseModel) -> dict[str, Any]:
    """The fields an overrides model sets, as their dataclass's types (tuples stay tuples: the
    model validated them as such)."""
    return overrides.model_dump(exclude_none=True)


class DatasetSettings(Settings):
    """Where the images come from and how they are stored."""

    source: str = Field(
        description="Dataset folder in the layout of `kind` (docs/datasets.md); relative "
        "paths start at the worker's project folder."
    )
    kind: str = Field(
        default="market1501",
        description="Dataset and folder layout of `source` (docs/datasets.md); every kind but "
        "market1501 is stretched to the store's size. cuhk03_*: CUHK03-NP's detected or "
        "labeled boxes.",
        json_schema_extra={"enum": list(dataset_names())},
    )
    synthetic: bool = Field(
        default=False,
        description="Write the synthetic Market-1501-layout dataset to `source` first "
        "(demo and tests; ground-truth masks and parsing land in `source/annotations`).",
    )
    synthetic_ids: int = Field(default=24, ge=2, description="Synthetic dataset: identities.")
    synthetic_images_per_id: int = Field(
        default=8, ge=2, description="Synthetic dataset: images per identity."
    )
    block_size: int = Field(
        default=64, ge=1, description="Images per Zarr chunk and per stage block."
    )
    overwrite: bool = Field(default=False, description="Replace a store built from other images.")
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None,
        description="Store size [height, width] (default: market1501 128x64, deepfashion "
        "256x256, the others 256x128; docs/datasets.md).",
    )
    with_val: bool = Field(
        default=False,
        description="msmt17: train on list_train + list_val (32,621 images) instead of "
        "list_train (30,248), the toolkits' default.",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        """A kind of the dataset registry (:data:`pipeline.datasets.DATASETS`)."""
        return get_dataset(kind).name

    @property
    def official(self) -> bool:
        """Whether ``source`` is the published dataset (its counts are compared with the
        official ones); the synthetic set is not."""
        return not self.synthetic


class SegmentationSettings(Settings):
    """Masks (Mask R-CNN) and parsing (SCHP), or PNGs provided with the dataset."""

    masks_from: Literal["model", "provided"] = Field(
        default="model",
        description="Person masks: `model` (Mask R-CNN, needs its weights) or `provided` PNGs.",
    )
    parsing_from: Literal["model", "provided"] = Field(
        default="model",
        description="LIP parsing: `model` (SCHP, needs its weights) or `provided` PNGs.",
    )
    annotations_dir: str | None = Field(
        default=None,
        description="Folder with masks/*.png and parsing/*.png named like the images "
        "(needed when either source is `provided`; default: `source/annotations`).",
    )
    masks_batch_size: int = Field(default=64, ge=1, description="Mask R-CNN images per batch.")
    parsing_batch_size: int = Field(default=32, ge=1, description="SCHP images per batch.")
    parsing_flip: bool = Field(default=False, description="SCHP flip test-time augmentation.")
    masks_weights: str | None = Field(
        default=None,
        description="Mask R-CNN checkpoint file or folder (default: the weights folders).",
    )
    parsing_weights: str | None = Field(
        default=None,
        description="SCHP LIP checkpoint file or folder (default: the weights folders).",
    )

    def for_stage(self, kind: Literal["masks", "parsing"]) -> SegmentSettings:
        """The settings of the masks or the parsing stage alone."""
        return SegmentSettings(
            kind=kind,
            source=getattr(self, f"{kind}_from"),
            annotations_dir=self.annotations_dir,
            batch_size=getattr(self, f"{kind}_batch_size"),
            weights=getattr(self, f"{kind}_weights"),
            flip=self.parsing_flip if kind == "parsing" else False,
        )


class SegmentSettings(Settings):
    """One segmentation stage's settings (the masks' or the parsing's)."""

    kind: Literal["masks", "parsing"] = Field(description="Which stage: masks or parsing.")
    source: Literal["model", "provided"] = Field(
        default="model", description="`model` (Mask R-CNN or SCHP) or `provided` PNGs."
    )
    annotations_dir: str | None = Field(
        default=None, description="Folder of the provided PNGs (`<kind>/<stem>.png`)."
    )
    batch_size: int = Field(default=32, ge=1, description="Images per forward pass.")
    weights: str | None = Field(
        default=None, description="Checkpoint file or folder (default: the weights folders)."
    )
    flip: bool = Field(default=False, description="Parsing: flip test-time augmentation.")


class PairsSettings(Settings):
    """Same-identity (source, target) pairs, train and test identities disjoint."""

    train_pairs: int | None = Field(
        default=None,
        ge=1,
        description="Training pairs drawn (paper, Market-1501: 243,200; the market1501 "
        "deployment sets it); none: every ordered same-identity pair, for any dataset.",
        json_schema_extra={"null_means": "every pair"},
    )
    test_pairs: int | None = Field(
        default=12_000,
        ge=1,
        description="Test pairs drawn (paper: 12,000); none: every ordered pair.",
        json_schema_extra={"null_means": "every pair"},
    )
    seed: int = Field(default=0, description="Seed of the pair draw.")
    skip_empty_masks: bool = Field(
        default=True, description="Leave out images whose person mask is empty (drawn pairs)."
    )
    train_pairs_file: str | None = Field(
        default=None,
        description="PATN/GFLA from,to list of training pairs, used as given instead of a draw "
        "(docs/pairs.md).",
    )
    test_pairs_file: str | None = Field(
        default=None,
        description="PATN/GFLA from,to list of test pairs, e.g. market-pairs-test.csv, used as "
        "given instead of a draw (docs/pairs.md).",
    )
    test_from: Literal["gallery", "gallery+query"] = Field(
        default="gallery",
        description="Splits of drawn test pairs: gallery only (bounding_box_test, as "
        "PATN/GFLA) or gallery and query.",
    )

    def config(self) -> PairsConfig:
        """These settings as :func:`pipeline.pairs.sample_pairs` takes them."""
        from pipeline.pairs import PairsConfig

        return PairsConfig(**self.model_dump())


class EvaluateSettings(Settings):
    """FID / LPIPS / mask-LPIPS of the generator on the test pairs."""

    fid_variant: Literal["torchvision", "tf-fid"] = Field(
        default="torchvision",
        description="torchvision Inception (GFLA protocol, the paper's table) or TF-FID.",
    )
    batch_size: int = Field(default=64, ge=1, description="Test pairs per batch.")


class SynthesisSettings(Settings):
    """One augmentation set made from the target-pose draw of (alpha, seed)."""

    source: Literal["generator", "copies", "flip", "paint-by-parts"] = Field(
        default="generator",
        description="How each (source image, target pose) becomes an image: the generator, "
        "the source copied, mirrored, or painted by parts.",
    )
    alpha: int = Field(
        default=2, ge=2, description="Augmentation factor: alpha - 1 new images per image."
    )
    seed: int = Field(default=0, description="Seed of the target-pose draw.")
    batch_size: int = Field(default=64, ge=1, description="Images generated per batch.")


class ReportSettings(Settings):
    """The report's settings: what ran offline, and why."""

    offline: dict[str, str] = Field(
        default_factory=dict, description="Stage group -> why it ran in its offline mode."
    )
