"""Binary person masks with Mask R-CNN (torchvision ``maskrcnn_resnet50_fpn_v2``, COCO).

The torchvision v2 model (box AP 47.4 / mask AP 41.8 on COCO val2017) is the default; a
detectron2 model-zoo Mask R-CNN is an optional backend, used only when ``detectron2`` is
importable. Both backends return detections in one format (:data:`Detections`) and share the
selection rule of :func:`select_person`: the highest-scoring person (COCO label 1) with score
``>= 0.5``, its soft mask binarised at 0.5; no such person gives an empty mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection import MaskRCNN_ResNet50_FPN_V2_Weights, maskrcnn_resnet50_fpn_v2

from foundation.weights import (
    WeightsFile,
    check_fits,
    load_into,
    load_state_dict,
    resolve_weights,
    sha256_of,
    state_dict_of,
)
from pipeline.fanout import FanOut
from pipeline.segmentation import (
    ImageModel,
    ModelBlocks,
    Progress,
    run_image_stage,
)
from storage import PersonStore, StageRun, StageStamp

_COCO_V1 = MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1
MASKRCNN_NETWORK = "Mask R-CNN ResNet-50 FPN v2 (COCO)"
# Name and URL taken from torchvision's enum; the name carries the sha256 prefix torch.hub checks.
MASKRCNN_COCO = WeightsFile(
    file_name=_COCO_V1.url.rsplit("/", 1)[-1],
    url=_COCO_V1.url,
    sha256_prefix=_COCO_V1.url.rsplit("-", 1)[-1].split(".")[0],
)
PERSON_LABEL = 1  # COCO category id of "person" in torchvision's label space

Backend = Literal["torchvision", "detectron2"]
# Per image: ``labels`` [N] int64 (1 = person), ``scores`` [N] float in [0, 1], ``masks``
# [N, H, W] float in [0, 1] (soft masks pasted at the input image's size).
Detections = Mapping[str, Tensor]
Detector = Callable[[Tensor], list[Detections]]


@dataclass(frozen=True)
class MaskConfig:
    """Detector and selection settings (recorded in the stage stamp)."""

    # COCO's 800/1333 would upscale a 128x64 crop 12x; 256 short side gives 512x256 for
    # Market-1501 (persons fill the crop) and keeps 256x256 DeepFashion images at native size.
    min_size: int = 256
    max_size: int = 512
    # One person per crop: a few hundred proposals and ten detections are plenty (defaults
    # 1000 / 1000 / 100 cost mask-head time for nothing).
    rpn_pre_nms_top_n: int = 300
    rpn_post_nms_top_n: int = 100
    detections_per_image: int = 10
    score_threshold: float = 0.5  # minimum person score (SPEC)
    mask_threshold: float = 0.5  # soft mask -> binary
    # detectron2 backend only: the model-zoo config (its best R50 FPN Mask R-CNN, 3x schedule).
    detectron2_model: str = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"


def detector_score_threshold(threshold: float) -> float:
    """The detector-side score cut that keeps every score ``>= threshold``.

    torchvision (``box_score_thresh``) and detectron2 (``SCORE_THRESH_TEST``) keep a box when
    ``score > thresh``, strictly, so a person scoring exactly 0.5 would be dropped before
    :func:`select_person` applies the ``>= 0.5`` rule. Their float32 scores (softmax runs in
    float32, under autocast too) are compared with the largest float32 below ``threshold``
    instead: a score equal to it passes, and :func:`select_person` still drops anything lower.
    """
    return float(np.nextafter(np.float32(threshold), np.float32(-np.inf)))


def select_person(
    detections: Detections, *, image_size: tuple[int, int], config: MaskConfig = MaskConfig()
) -> Tensor:
    """The mask of the highest-scoring person, or an empty mask.

    Args:
        detections: one image's detections (see :data:`Detections`); other labels are ignored.
        image_size: ``(H, W)`` of the image, the size of the empty mask.
        config: score and mask thresholds.

    Returns:
        ``[H, W]`` uint8 in ``{0, 1}`` on the detections' device; all zeros when no person
        scores ``>= config.score_threshold``.
    """
    scores = detections["scores"].float()
    person = (detections["labels"] == PERSON_LABEL) & (scores >= config.score_threshold)
    if not bool(person.any()):
        return torch.zeros(image_size, dtype=torch.uint8, device=scores.device)
    candidates = torch.nonzero(person).flatten()
    best = candidates[scores[candidates].argmax()]
    mask = detections["masks"][best].float().reshape(image_size)
    return (mask >= config.mask_threshold).to(torch.uint8)


def build_maskrcnn(
    *, config: MaskConfig = MaskConfig(), weights: str | Path | None = None, pretrained: bool = True
) -> torch.nn.Module:
    """torchvision Mask R-CNN v2 (91 COCO classes) in eval mode on the CPU.

    Args:
        config: resize and proposal settings.
        weights: an explicit ``.pth`` file or a folder holding
            ``maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth``; ``None`` searches the weights folder
            and torch's hub cache, then downloads from download.pytorch.org when online.
        pretrained: ``False`` gives random weights (tests, benchmarks).

    Raises:
        MissingWeightsError: no local file and no download; names the file and its URL.
        WrongNetworkError: the file holds another network's tensors.
    """
    model = _maskrcnn(config)
    if pretrained:
        path = resolve_weights(MASKRCNN_COCO, path=weights)
        load_into(
            model,
            load_state_dict(path),
            path=path,
            network=MASKRCNN_NETWORK,
            official=MASKRCNN_COCO.file_name,
        )
    return model.eval()


def _maskrcnn(config: MaskConfig) -> torch.nn.Module:
    """The network :func:`build_maskrcnn` loads its weights into, randomly initialised."""
    return maskrcnn_resnet50_fpn_v2(
        weights=None,
        weights_backbone=None,
        num_classes=len(_COCO_V1.meta["categories"]),
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_pre_nms_top_n_test=config.rpn_pre_nms_top_n,
        rpn_post_nms_top_n_test=config.rpn_post_nms_top_n,
        box_detections_per_img=config.detections_per_image,
        # Boxes below the person threshold can never be selected: skip their masks.
        box_score_thresh=detector_score_threshold(config.score_threshold),
    )


def check_maskrcnn_weights(path: Path, config: MaskConfig) -> None:
    """Check that ``path`` loads and holds :func:`build_maskrcnn`'s tensors, without reading
    them (the file is memory-mapped; the network is built on the meta device).

    Raises:
        UnreadableWeightsError: the file is truncated, unsafe or another network's.
    """
    with torch.device("meta"):
        expected = {name: tuple(v.shape) for name, v in _maskrcnn(config).state_dict().items()}
    check_fits(
        state_dict_of(path),
        expected,
        path=path,
        network=MASKRCNN_NETWORK,
        official=MASKRCNN_COCO.file_name,
    )


def torchvision_detector(model: torch.nn.Module, *, amp: bool | None = None) -> Detector:
    """Wrap a torchvision Mask R-CNN as a :data:`Detector`.

    The returned callable takes ``[B, H, W, 3]`` uint8 RGB on the model's device and runs the
    whole batch at once (torchvision resizes each image, then batches them). ``amp`` turns on
    bfloat16 autocast; default: on for CUDA.
    """

    @torch.no_grad()
    def detect(images: Tensor) -> list[Detections]:
        batch = list(images.permute(0, 3, 1, 2).float().div(255.0))
        use_amp = images.device.type == "cuda" if amp is None else amp
        with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=use_amp):
            outputs = model(batch)
        return [
            {"labels": o["labels"], "scores": o["scores"], "masks": o["masks"][:, 0]}
            for o in outputs
        ]

    return detect


def detectron2_detector(
    *, config: MaskConfig = MaskConfig(), weights: str | Path | None = None, device: str = "cpu"
) -> Detector:
    """A detectron2 model-zoo Mask R-CNN as a :data:`Detector` (needs ``detectron2``).

    ``weights`` is a local checkpoint; by default detectron2 fetches the model-zoo file itself.
    Its COCO classes are contiguous (person = 0); they are mapped to torchvision's person label
    (everything else to 0, which :func:`select_person` ignores).
    """
    from detectron2 import model_zoo
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import get_cfg
    from detectron2.data.transforms import ResizeShortestEdge
    from detectron2.modeling import build_model

    cfg = get_cfg()
    cfg.merge_from_file(model_zoo.get_config_file(config.detectron2_model))
    cfg.MODEL.DEVICE = device
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = detector_score_threshold(config.score_threshold)
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = config.rpn_pre_nms_top_n
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = config.rpn_post_nms_top_n
    cfg.TEST.DETECTIONS_PER_IMAGE = config.detections_per_image
    model = build_model(cfg).eval()
    checkpoint = str(weights) if weights else model_zoo.get_checkpoint_url(config.detectron2_model)
    DetectionCheckpointer(model).load(checkpoint)
    resize = ResizeShortestEdge(config.min_size, config.max_size)

    @torch.no_grad()
    def detect(images: Tensor) -> list[Detections]:
        height, width = images.shape[1:3]
        inputs = []
        for image in images.cpu().numpy()[..., ::-1]:  # RGB -> BGR (cfg.INPUT.FORMAT)
            resized = resize.get_transform(image).apply_image(np.ascontiguousarray(image))
            tensor = torch.as_tensor(resized.transpose(2, 0, 1).astype(np.float32))
            inputs.append({"image": tensor, "height": height, "width": width})
        detections: list[Detections] = []
        for output in model(inputs):
            instances = output["instances"]
            labels = torch.where(instances.pred_classes == 0, PERSON_LABEL, 0)
            detections.append(
                {
                    "labels": labels,
                    "scores": instances.scores,
                    "masks": instances.pred_masks.float(),
                }
            )
        return detections

    return detect


def build_detector(
    *,
    backend: Backend = "torchvision",
    config: MaskConfig = MaskConfig(),
    weights: str | Path | None = None,
    pretrained: bool = True,
    device: str | torch.device = "cpu",
    amp: bool | None = None,
) -> Detector:
    """The person detector for ``backend`` on ``device``.

    Raises:
        ImportError: ``backend="detectron2"`` without detectron2 installed.
        MissingWeightsError: torchvision weights missing (see :func:`build_maskrcnn`).
    """
    if backend == "detectron2":
        return detectron2_detector(config=config, weights=weights, device=str(device))
    model = build_maskrcnn(config=config, weights=weights, pretrained=pretrained)
    return torchvision_detector(model.to(device), amp=amp)


def segment_persons(
    detector: Detector,
    images: np.ndarray,
    *,
    device: str | torch.device = "cpu",
    config: MaskConfig = MaskConfig(),
) -> np.ndarray:
    """Person masks for a batch.

    Args:
        detector: from :func:`build_detector`.
        images: ``[B, H, W, 3]`` uint8 RGB.
        device: where the detector runs.
        config: selection thresholds.

    Returns:
        ``[B, H, W]`` uint8 in ``{0, 1}``; an image without a person gets all zeros.
    """
    batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    size = (int(images.shape[1]), int(images.shape[2]))
    masks = [select_person(d, image_size=size, config=config) for d in detector(batch)]
    if not masks:
        return np.zeros((0, *size), dtype=np.uint8)
    return torch.stack(masks).cpu().numpy()


def mask_model(
    *,
    backend: Backend,
    config: MaskConfig,
    weights: Path | None,
    pretrained: bool,
    device: torch.device,
) -> ImageModel:
    """The masks stage's model: ``[B, H, W, 3]`` uint8 RGB -> ``[B, H, W]`` uint8 in {0, 1}
    (built by :class:`pipeline.segmentation.ModelBlocks`, random weights from seed 0)."""
    detector = build_detector(
        backend=backend, config=config, weights=weights, pretrained=pretrained, device=device
    )
    return partial(segment_persons, detector, device=device, config=config)


def compute_masks(
    store: PersonStore,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 64,
    weights: str | Path | None = None,
    backend: Backend = "torchvision",
    config: MaskConfig = MaskConfig(),
    pretrained: bool = True,
    progress: Progress | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """The ``masks`` stage: a person mask for every image of ``store``.

    Args:
        store: opened ``r+``, with a finished ``ingest`` stage.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``...; bfloat16 autocast on CUDA.
        batch_size: images per detector call.
        weights: checkpoint file or folder (see :func:`build_maskrcnn`).
        backend: ``"torchvision"`` (default) or ``"detectron2"`` (when installed).
        config: detector and selection settings.
        pretrained: ``False`` runs random weights (tests only: the masks are meaningless).
        progress: called as ``progress(done_blocks, total_blocks)``.
        fan_out: run the blocks as tasks on its executor's workers (each builds the detector
            on ``device`` and reads ``weights`` from the same path).

    Returns:
        The stage stamp; ``counts["empty_masks"]`` images had no person, listed by file name
        in ``report["empty_masks"]``.
    Raises:
        MissingWeightsError, UnreadableWeightsError: the Mask R-CNN file is missing, truncated
            or unsafe; checked under the stage's lock before anything is written.
    """
    device = torch.device(device)

    def prepare(run: StageRun) -> ModelBlocks:
        # Under the stage's lock: a download, the hash and the load check may take a while.
        settings: dict[str, Any] = {**asdict(config), "backend": backend}
        if backend == "detectron2":
            path = Path(weights) if weights else None
            settings["weights"] = sha256_of(path) if path else config.detectron2_model
        else:
            del settings["detectron2_model"]
            path = resolve_weights(MASKRCNN_COCO, path=weights) if pretrained else None
            if path is not None:
                check_maskrcnn_weights(path, config)
            settings["weights"] = sha256_of(path) if path else "random-init"
        # bfloat16 changes the masks slightly: part of the output's identity.
        settings["precision"] = "bf16" if device.type == "cuda" else "fp32"
        run.configure(settings)
        build = partial(
            mask_model,
            backend=backend,
            config=config,
            weights=path,
            pretrained=pretrained,
            device=device,
        )
        return ModelBlocks("masks", build, batch_size)

    return run_image_stage(store, kind="masks", prepare=prepare, progress=progress, fan_out=fan_out)
