"""Which stages run in their declared offline mode, and why (never silently).

``offline: true`` puts every stage that has an offline mode into it; ``false`` keeps them all
on pretrained weights (a missing file is then the stage's error); ``"auto"`` looks for each
weight file on disk, without downloading, and switches only the stages whose files are absent.

Declared offline modes:

* generator: perceptual loss off (no ImageNet VGG-19; eq. 7 without the gamma term);
* evaluate: pixel metrics (L1, SSIM, PSNR) instead of FID / LPIPS / mask-LPIPS;
* Re-ID: a randomly initialised backbone instead of ImageNet ResNet-50.

Masks and parsing from a model have no offline mode (random detectors give meaningless
labels): their missing weights stay an error naming the file; use provided PNGs instead.
"""

from __future__ import annotations

from flows.config import AugmentMarketParams, set_fields
from foundation.weights import MissingWeightsError, WeightsFile, resolve_weights

OFFLINE_MODES = {
    "generator": "perceptual loss off (ImageNet VGG-19 weights unavailable)",
    "evaluate": "pixel metrics L1/SSIM/PSNR instead of FID/LPIPS/mask-LPIPS "
    "(Inception/AlexNet weights unavailable)",
    "reid": "randomly initialised Re-ID backbone (ImageNet weights unavailable)",
}


def required_weights(params: AugmentMarketParams) -> dict[str, list[WeightsFile]]:
    """The pretrained files each stage group with an offline mode needs under ``params``
    (only groups with a stage in ``params.stages``)."""
    needed: dict[str, list[WeightsFile]] = {}
    if "generator" in params.stages:
        from san_model.checkpoint import VGG19_WEIGHTS
        from san_model.config import SANConfig

        preset = getattr(SANConfig, params.generator.preset)()
        perceptual = set_fields(params.generator.overrides).get(
            "use_perceptual", preset.use_perceptual
        )
        needed["generator"] = [VGG19_WEIGHTS] if perceptual else []
    if "evaluate" in params.stages:
        from san_model.fid_inception import FID_INCEPTION_SPECS
        from san_model.metrics import ALEXNET_WEIGHTS

        needed["evaluate"] = [
            FID_INCEPTION_SPECS[params.evaluate.fid_variant].weights,
            ALEXNET_WEIGHTS,
        ]
    if {"reid_original", "reid_augmented"} & set(params.stages):
        from reid.checkpoint import IMAGENET_WEIGHTS

        needed["reid"] = [IMAGENET_WEIGHTS[params.reid.arch]]
    return needed


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
