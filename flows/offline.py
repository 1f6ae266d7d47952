"""Which stages run in their declared offline mode, and why (never silently).

``offline: true`` puts every stage that has an offline mode into it; ``false`` keeps them all
on pretrained weights (a missing file is then the stage's error); ``"auto"`` looks for each
weight file on disk, without downloading, and switches only the stages whose files are absent.

Declared offline modes (each stage's ``offline_mode`` and ``weights`` in the stage registry,
:data:`pipeline.stage_registry.REGISTRY`):

* generator: perceptual loss off (no ImageNet VGG-19; eq. 7 without the gamma term);
* evaluate: pixel metrics (L1, SSIM, PSNR) instead of FID / LPIPS / mask-LPIPS;
* Re-ID: a randomly initialised backbone instead of ImageNet ResNet-50.

Masks and parsing from a model have no offline mode (random detectors give meaningless
labels): their missing weights stay an error naming the file; use provided PNGs instead.

Before any stage runs, :func:`missing_weights` lists the files the run cannot do without
(masks and parsing from a model always; every stage's with ``offline: false``), downloading
what can be downloaded; the flow refuses to start while one is missing, rather than fail hours
later. :func:`every_weights_file` is the README's weights table, which
``scripts/download_weights.py`` fetches.
"""

from __future__ import annotations

from flows.config import AugmentMarketParams
from foundation.weights import MissingWeightsError, WeightsFile, resolve_weights
from pipeline.stage_registry import REGISTRY

# Stage group -> its declared offline mode (both Re-ID stages are the group ``reid``).
OFFLINE_MODES = {
    stage.offline_group: stage.offline_mode
    for stage in REGISTRY.values()
    if stage.offline_mode is not None
}


def required_weights(params: AugmentMarketParams) -> dict[str, list[WeightsFile]]:
    """The pretrained files each stage group with an offline mode needs under ``params``
    (only groups with a stage in ``params.stages``)."""
    return {
        stage.offline_group: stage.weights(params.stage_settings(stage.name))
        for stage in REGISTRY.values()
        if stage.weights is not None and stage.offline_mode is not None
        if stage.name in params.stages
    }


def every_weights_file() -> list[WeightsFile]:
    """Every pretrained file a stage can use (the README's weights table), each once."""
    from pipeline.masks import MASKRCNN_COCO
    from pipeline.schp import SCHP_LIP
    from reid.checkpoint import IMAGENET_WEIGHTS
    from san_model.checkpoint import VGG19_WEIGHTS
    from san_model.fid_inception import FID_INCEPTION_SPECS
    from san_model.metrics import ALEXNET_WEIGHTS

    files = [
        MASKRCNN_COCO,
        SCHP_LIP.file,
        VGG19_WEIGHTS,
        *(spec.weights for spec in FID_INCEPTION_SPECS.values()),
        ALEXNET_WEIGHTS,
        *IMAGENET_WEIGHTS.values(),
    ]
    return list({spec.file_name: spec for spec in files}.values())


def missing_weights(params: AugmentMarketParams) -> list[str]:
    """The files this run cannot do without and cannot find or download, as ``"file (for
    stage)"``: those of stages without an offline mode (masks and parsing from a model), and
    with ``offline: false`` every stage's. An explicit path in the settings (``masks_weights``,
    ``reid.weights``...) is the only place looked at for its file."""
    needed: dict[tuple[str, str], tuple[WeightsFile, str | None]] = {}
    for stage in REGISTRY.values():
        if stage.weights is None or stage.name not in params.stages:
            continue
        if stage.offline_mode is not None and params.offline is not False:
            continue
        settings = params.stage_settings(stage.name)
        path = None if stage.weights_path is None else stage.weights_path(settings)
        for spec in stage.weights(settings):
            needed[stage.offline_group, spec.file_name] = (spec, path)
    missing = []
    for (group, _), (spec, path) in needed.items():
        try:
            resolve_weights(spec, path=path, download=True)
        except MissingWeightsError:
            missing.append(f"{spec.file_name} (for {group})")
    return missing


def _missing(files: list[WeightsFile]) -> list[str]:
    missing = []
    for spec in files:
        try:
            resolve_weights(spec, download=False)
        except MissingWeightsError:
            missing.append(spec.file_name)
    return missing


def resolve_offline(params: AugmentMarketParams) -> dict[str, str]:
    """Stage group -> reason, for every group that runs in its declared offline mode.

    Groups: ``generator``, ``evaluate``, ``reid`` (both Re-ID stages). An empty dict means
    every stage uses its pretrained weights.
    """
    if params.offline is False:
        return {}
    if params.offline is True:
        return {
            group: f"{mode}; offline: true in the run's settings"
            for group, mode in OFFLINE_MODES.items()
        }
    decisions = {}
    for group, files in required_weights(params).items():
        missing = _missing(files)
        if missing:
            decisions[group] = f"{OFFLINE_MODES[group]}; missing {', '.join(missing)}"
    return decisions
