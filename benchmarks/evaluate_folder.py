"""evaluate-folder on a trained run: a generator's outputs in each naming convention, and a
baseline method, scored under the evaluate stage's protocol and timed.

``python -m benchmarks.evaluate_folder --store demo_output/store --run demo_output/run/generator``
(after ``make demo``). Writes the generator's held-out images as PATN ``_vis.png`` panels and as
GFLA ``_2_.jpg`` files (JPEG quality 95, as such folders are usually shared), and the
paint-by-parts baseline as ``___.png`` files, then scores each folder with the pixel metrics
(offline: no pretrained Inception/AlexNet can be downloaded here); ``--full`` adds FID, LPIPS
and mask-LPIPS with random networks, which only times them. Writes the "evaluate-folder"
section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.report import machine_and_load, publish
from pipeline.evaluate import generate_pairs
from pipeline.evaluate_folder import evaluate_folder
from san_model.baselines import paint_by_parts
from san_model.checkpoint import load_generator
from storage import PersonStore, open_store


def test_images(store: PersonStore, run: Path) -> dict[str, np.ndarray]:
    """The generator's and paint by parts' images of the test pairs, [P, H, W, 3] uint8."""
    generator, _ = load_generator(run)
    arrays = store.load_in_memory(("images", "masks", "parsing"))
    source, target = store.read_table("pairs_test")[["source", "target"]].to_numpy(np.int64).T
    generated = generate_pairs(generator, arrays, source, target)
    image = torch.from_numpy(arrays["images"][source]).permute(0, 3, 1, 2).float() / 127.5 - 1
    painted = paint_by_parts(
        image,
        torch.from_numpy(arrays["parsing"][source]),
        torch.from_numpy(arrays["parsing"][target]),
    )
    painted_u8 = ((painted + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
    return {"generated": generated, "paint": painted_u8, "images": arrays["images"]}


def write_folders(store: PersonStore, images: dict[str, np.ndarray], root: Path) -> dict[str, Path]:
    """The three folders a user might receive, by convention."""
    pairs = store.read_table("pairs_test")[["source", "target"]].to_numpy(np.int64)
    stems = [Path(name).stem for name in store.index["filename"]]
    patn, gfla, paint = root / "patn", root / "gfla", root / "paint"
    for folder in (patn, gfla, paint):
        folder.mkdir(parents=True)
    for k, (s, t) in enumerate(pairs):
        name = f"{stems[s]}___{stems[t]}"
        strip = [images["images"][s], images["images"][t], images["generated"][k]]
        Image.fromarray(np.concatenate(strip, axis=1)).save(patn / f"{name}_vis.png")
        Image.fromarray(images["generated"][k]).save(
            gfla / f"{stems[s]}_2_{stems[t]}.jpg", quality=95
        )
        Image.fromarray(images["paint"][k]).save(paint / f"{name}.png")
    return {
        "SAN demo, PATN _vis.png panels": patn,
        "SAN demo, GFLA _2_.jpg (quality 95)": gfla,
        "paint by parts, ___.png": paint,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default="demo_output/store")
    parser.add_argument("--run", type=Path, default=Path("demo_output/run/generator"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--full", action="store_true", help="also FID/LPIPS with random networks (slow on a CPU)"
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = open_store(args.store, mode="r+")  # FID statistics of the real images are cached there
    load = [os.getloadavg()[0]]
    stage = store.stamp("evaluate").report.get("metrics", {})
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = write_folders(store, test_images(store, args.run), Path(tmp))
        for name, folder in folders.items():
            start = time.perf_counter()
            result = evaluate_folder(store, folder, name=name, offline=True)
            seconds = time.perf_counter() - start
            rows.append((name, result, seconds, "pixel metrics"))
        if args.full:
            name, folder = next(iter(folders.items()))
            start = time.perf_counter()
            full = evaluate_folder(store, folder, name=name, pretrained=False)
            rows.append((name, full, time.perf_counter() - start, "full protocol, random weights"))
    load.append(os.getloadavg()[0])

    def cell(result: dict, key: str, digits: int) -> str:
        return f"{result[key]:.{digits}f}" if key in result else "n/a"

    pairs = rows[0][1]["test_pairs"]
    lines = [
        f"{machine_and_load(load)}; {args.threads} threads. Store `{args.store}` and generator "
        f"`{args.run}` of `make demo`: {pairs} held-out test pairs. "
        "`python -m benchmarks.evaluate_folder`.",
        "",
        "| folder | scored | seconds | matched | L1 | masked L1 | SSIM | PSNR | part-colour "
        "error | FID (torchvision) | LPIPS |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, result, seconds, scored in rows:
        lines.append(
            f"| {name} | {scored} | {seconds:.1f} | {result['matched']} | {cell(result, 'l1', 4)} "
            f"| {cell(result, 'masked_l1', 4)} | {cell(result, 'ssim', 4)} "
            f"| {cell(result, 'psnr', 2)} | {cell(result, 'part_colour', 1)} "
            f"| {cell(result, 'fid_torchvision', 1)} | {cell(result, 'lpips', 4)} |"
        )
    lines += [
        f"| the evaluate stage of the same run | pixel metrics | | {pairs} | "
        f"{cell(stage, 'l1', 4)} | {cell(stage, 'masked_l1', 4)} | {cell(stage, 'ssim', 4)} "
        f"| {cell(stage, 'psnr', 2)} | {cell(stage, 'part_colour', 1)} | | |",
        "",
        "The PNG panels score exactly as the evaluate stage (same images, same scorer); JPEG "
        "at quality 95 moves the pixel metrics slightly. FID and LPIPS need the pretrained "
        'networks (rates: "Evaluation and synthesis"); with `--full` and random networks '
        "they only time the protocol.",
    ]
    publish("evaluate-folder", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
