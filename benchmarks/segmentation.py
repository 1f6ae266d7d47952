"""Segmentation throughput: Mask R-CNN person masks and SCHP parsing, images/s.

Image sizes 128x64 (Market-1501) and 256x256 (DeepFashion), batch sizes 1/16/64, fp32 and bf16
autocast (CUDA only). Times the whole per-batch call of the stages (preprocessing, network,
selection / warp back, copy to the host). Uses the official weights when found, random weights
otherwise (say which in the output: random Mask R-CNN weights rarely pass the 0.5 score, so its
mask head then runs on almost no detections). On the CPU only batch 1 runs: SCHP at 473x473
takes seconds per image there.

Run from the repository root: ``python -m benchmarks.segmentation [--device cuda] [--repeats 5]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from functools import partial

import numpy as np
import torch

from benchmarks.report import machine, write_section
from foundation.weights import MissingWeightsError
from pipeline.masks import MaskConfig, build_maskrcnn, segment_persons, torchvision_detector
from pipeline.parsing import parse_images
from pipeline.schp import build_schp

SIZES = ((128, 64), (256, 256))
BATCHES = (1, 16, 64)
CPU_BATCHES = (1,)  # SCHP at 473 takes ~10 s per image on a 2-core CPU


def _rate(call: Callable[[np.ndarray], object], images: np.ndarray, repeats: int) -> float:
    """Images per second of ``call`` on ``images`` after one warm-up call."""
    call(images)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        call(images)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return repeats * len(images) / (time.perf_counter() - started)


def _models(device: torch.device) -> tuple[Callable, Callable, str]:
    """Mask and parsing callables ``(images, amp) -> labels`` and a note on the weights used."""
    notes = []
    try:
        detector = build_maskrcnn()
        notes.append("Mask R-CNN COCO weights")
    except MissingWeightsError:
        detector = build_maskrcnn(pretrained=False)
        notes.append("Mask R-CNN random weights (no COCO file here)")
    detectors = {amp: torchvision_detector(detector.to(device), amp=amp) for amp in (False, True)}
    try:
        schp = build_schp().to(device)
        notes.append("SCHP LIP weights")
    except MissingWeightsError:
        schp = build_schp(pretrained=False).to(device)
        notes.append("SCHP random weights (no LIP file here)")

    def masks(images: np.ndarray, amp: bool) -> np.ndarray:
        return segment_persons(detectors[amp], images, device=device, config=MaskConfig())

    def parsing(images: np.ndarray, amp: bool) -> np.ndarray:
        batch = torch.from_numpy(images).to(device)
        return parse_images(schp, batch, amp=amp).cpu().numpy()

    return masks, parsing, "; ".join(notes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls (5 GPU, 1 CPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    repeats = args.repeats or (5 if cuda else 1)
    masks, parsing, weights_note = _models(device)
    rng = np.random.default_rng(0)
    rows = []
    for stage, call in (("masks (Mask R-CNN v2)", masks), ("parsing (SCHP, 473)", parsing)):
        for height, width in SIZES:
            for batch in BATCHES:
                images = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
                cells = []
                for amp in (False, True):
                    if amp and not cuda:
                        cells.append("not measured (no CUDA)")
                    elif not cuda and batch not in CPU_BATCHES:
                        cells.append("not measured (CPU)")
                    else:
                        rate = _rate(partial(call, amp=amp), images, repeats)
                        cells.append(f"{rate:,.1f}")
                    print(stage, f"{height}x{width}", batch, "bf16" if amp else "fp32", cells[-1])
                rows.append(f"| {stage} | {height}x{width} | {batch} | {cells[0]} | {cells[1]} |")
    body = "\n".join(
        [
            f"Machine: {machine()}; device `{device}`, {torch.get_num_threads()} threads. "
            f"{weights_note}. Images/s over {repeats} timed call(s) after a warm-up, random "
            "images; per call: preprocessing, network, selection or warp back, host copy.",
            "",
            "| stage | image | batch | fp32 images/s | bf16 autocast images/s |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "Run `python -m benchmarks.segmentation` on a CUDA machine for the GPU rows.",
        ]
    )
    write_section("Segmentation", body)


if __name__ == "__main__":
    main()
