"""Evaluation and synthesis throughput of the paper-size generator at 128x64.

Measures, on random weights (the cost does not depend on the weights): generator inference
images/s (synthesis), Inception-v3 feature images/s at 299x299 (FID), LPIPS pairs/s, and from
them the wall time of the paper's 12,000-pair evaluation against Market-1501's 12,936 training
images (generate 12,000; Inception on 12,000 + 12,936; LPIPS and mask-LPIPS on 12,000 pairs).
Run: ``python -m benchmarks.evaluation [--device cuda]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from benchmarks.report import machine, write_section
from san_model.config import SANConfig
from san_model.generator import build_generator, generate
from san_model.metrics import build_fid_extractor, build_lpips, lpips_distance

TEST_PAIRS = 12_000
TRAIN_IMAGES = 12_936


def rate(step: Callable[[], object], items: int, device: str, repeats: int) -> float:
    """Items per second of ``step`` after one warm-up call."""
    step()
    if device == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(repeats):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return items * repeats / (time.perf_counter() - started)


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device, batch = args.device, args.batch
    generator = build_generator(config=SANConfig.market1501()).to(device).eval()
    u8 = torch.randint(0, 256, (batch, 128, 64, 3), dtype=torch.uint8)
    masks = torch.randint(0, 2, (batch, 128, 64), dtype=torch.uint8)
    parsing = torch.randint(0, 20, (batch, 128, 64), dtype=torch.uint8)
    synthesis = rate(
        lambda: generate(generator, u8, masks, parsing, masks, parsing), batch, device, args.repeats
    )
    inception = build_fid_extractor(variant="torchvision", pretrained=False).to(device)
    images = torch.rand(batch, 3, 128, 64, device=device) * 2 - 1
    fid = rate(lambda: inception(images), batch, device, args.repeats)
    lpips_net = build_lpips(pretrained=False).to(device)
    other = torch.rand_like(images) * 2 - 1
    lpips = rate(lambda: lpips_distance(lpips_net, images, other), batch, device, args.repeats)
    seconds = TEST_PAIRS / synthesis + (TEST_PAIRS + TRAIN_IMAGES) / fid + 2 * TEST_PAIRS / lpips
    gpu_note = (
        ""
        if device == "cuda"
        else (
            "\n\nGPU (CUDA, bf16 autocast in generation): not measured, no GPU was lent; run "
            "`python -m benchmarks.evaluation --device cuda`."
        )
    )
    body = (
        f"Machine: {machine()}; device {device}, batch {batch}, fp32"
        f"{' (generator bf16 autocast)' if device == 'cuda' else ''}, random weights.\n\n"
        "| measure | figure |\n|---|---|\n"
        f"| synthesis: paper-size SAN generator, 128x64 | {synthesis:,.1f} images/s |\n"
        f"| FID features: Inception-v3 at 299x299 | {fid:,.1f} images/s |\n"
        f"| LPIPS (AlexNet), 128x64 pairs | {lpips:,.1f} pairs/s |\n"
        f"| evaluation of 12,000 test pairs (FID vs 12,936 train, LPIPS, mask-LPIPS), "
        f"from the rates above | {seconds / 60:,.1f} min |" + gpu_note
    )
    print(body)
    write_section(f"Evaluation and synthesis ({device})", body)


if __name__ == "__main__":
    main()
