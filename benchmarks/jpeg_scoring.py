"""What saving generated images as JPEG instead of PNG does to their scores.

``python -m benchmarks.jpeg_scoring --store /data/market.zarr`` on a store with test pairs (a
real Market-1501 store: the real images' JPEG statistics matter). ``evaluate-folder`` scores
the pixels it decodes: a PNG holds the method's output exactly, a JPEG adds its compression
error. Three stand-ins for a method's output are scored against the target, as the evaluate
stage does: the target itself (a perfect method; but Market-1501's targets are JPEGs, so
re-saving them at their own quality is almost lossless), the target blurred (Gaussian, radius
1: a good method whose pixels are not on the target's JPEG grid) and the source image ("copy
the source", a method with realistic errors), each as PNG and as JPEG at PIL's default quality
75 and at 90 and 95 (4:2:0 chroma subsampling, PIL's default).
Pixel metrics only (L1, SSIM, PSNR, computed as the evaluate stage); FID and LPIPS need
pretrained networks that cannot be downloaded here. Writes the "JPEG vs PNG outputs" section
of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import os

import numpy as np
import torch
from PIL import Image, ImageFilter

from benchmarks.report import machine_and_load, publish
from pipeline.pairs import TEST_TABLE, describe_test_pairs
from pipeline.scoring import PSNR_CAP
from san_model.metrics import l1_distance, psnr, ssim
from storage import open_store


def round_trip(images: np.ndarray, fmt: str, quality: int) -> np.ndarray:
    """uint8 [N, H, W, 3] saved as ``fmt`` (PNG or JPEG at ``quality``) and decoded again."""
    out = np.empty_like(images)
    for k, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format=fmt, quality=quality)
        out[k] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


def scores(images: np.ndarray, target: np.ndarray, batch: int = 500) -> dict[str, float]:
    """Mean L1, SSIM, PSNR (capped as the evaluate stage) of ``images`` against ``target``."""

    def signed(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 127.5 - 1.0

    parts: dict[str, list[torch.Tensor]] = {"l1": [], "ssim": [], "psnr": []}
    for start in range(0, len(images), batch):
        a, b = signed(images[start : start + batch]), signed(target[start : start + batch])
        parts["l1"].append(l1_distance(a, b))
        parts["ssim"].append(ssim(a, b))
        parts["psnr"].append(psnr(a, b).clamp(max=PSNR_CAP))
    return {name: float(torch.cat(values).mean()) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--pairs", type=int, default=1000, help="first N test pairs")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    store = open_store(args.store)
    table = store.read_table(TEST_TABLE)[["source", "target"]].to_numpy(np.int64)[: args.pairs]
    images = store.load_in_memory(("images",))["images"]
    source, target = images[table[:, 0]], images[table[:, 1]]
    formats = [("PNG", 0), ("JPEG", 75), ("JPEG", 90), ("JPEG", 95)]
    rows = []
    blurred = np.stack(
        [np.asarray(Image.fromarray(t).filter(ImageFilter.GaussianBlur(1))) for t in target]
    )
    outputs = {
        "the target (perfect)": target,
        "the target blurred": blurred,
        "copy the source": source,
    }
    for label, output in outputs.items():
        png = scores(round_trip(output, "PNG", 0), target)
        assert png == scores(output, target), "PNG must be lossless"
        for fmt, quality in formats:
            got = png if fmt == "PNG" else scores(round_trip(output, fmt, quality), target)
            name = "PNG" if fmt == "PNG" else f"JPEG q{quality}"
            rows.append(
                f"| {label} | {name} | {got['l1']:.4f} | {got['ssim']:.4f} | "
                f"{got['psnr']:.2f} | {got['l1'] - png['l1']:+.4f} | "
                f"{got['ssim'] - png['ssim']:+.4f} | {got['psnr'] - png['psnr']:+.2f} |"
            )
    load.append(os.getloadavg()[0])
    lines = [
        f"{machine_and_load(load)}; 1 thread. Store `{args.store}` "
        f"({store.height}x{store.width}), the first {len(table)} test pairs "
        f"({describe_test_pairs(store.stamp('pairs'))}). "
        "`python -m benchmarks.jpeg_scoring`.",
        "",
        "| output | file | L1 | SSIM | PSNR | L1 - PNG's | SSIM - PNG's | PSNR - PNG's |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    lines += [
        "",
        "PNG scores the output exactly (the PSNR of a perfect output is capped at 100 dB); "
        "each JPEG row's difference to its PNG row is what the file format alone changes.",
    ]
    publish("JPEG vs PNG outputs", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
