"""``augment-market doctor``: is this machine ready for a paper run? One table, then one line
per missing item saying how to get it.

Checked: Python; torch, the CUDA version it is built for and every visible GPU with its memory;
every pretrained weight file (where it was found, its sha256 against the published prefix or,
for a file with no published hash, that it loads as tensors); memory; free disk beside the store;
the store's format, images and finished stages. Nothing is downloaded or written.

A paper run needs a CUDA GPU, the weight files of :data:`PAPER_WEIGHTS` (the others are
alternatives: TF-FID's Inception, the CPU demos' ResNet-18), :data:`MIN_DISK_GIB` free beside
the store and :data:`MIN_MEMORY_GIB` of memory; anything short of that is a problem.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from foundation.weights import (
    MissingWeightsError,
    UnreadableWeightsError,
    WeightsFile,
    check_torch_file,
    resolve_weights,
    sha256_of,
    weights_dir,
)

# Weight files a paper run uses (masks, parsing, perceptual loss, FID, LPIPS, Re-ID backbone).
PAPER_WEIGHTS = (
    "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth",
    "exp-schp-201908261155-lip.pth",
    "vgg19-dcbfe2b4.pth",
    "inception_v3_google-0cc3c7bd.pth",
    "alexnet-owt-7be5be79.pth",
    "resnet50-0676ba61.pth",
)
# Free disk a Market-1501 paper run fills, with room to spare: the store with an alpha-2 set
# (about 0.2 GiB), generator checkpoints (about 0.6 GiB each), four Re-ID runs (about 0.3 GiB
# each), TensorBoard logs, samples and an export.
MIN_DISK_GIB = 5.0
# Market-1501 decoded in memory (images, masks, parsing: about 1.3 GB) plus the networks.
MIN_MEMORY_GIB = 8.0
# The oldest NVIDIA driver release for each CUDA major version torch may be built for.
CUDA_DRIVERS = {"12": "525", "13": "580"}


@dataclass(frozen=True)
class Finding:
    """One row of the table.

    Attributes:
        item: what was checked (``"GPU 0"``, a weight file's name, ``"store"``).
        status: ``"ok"``, ``"missing"``, ``"damaged"``, ``"optional"`` (missing but not
            needed for a paper run) or ``"info"``.
        detail: what was found.
        fix: for a problem, what to do (one sentence naming the file or thing).
    """

    item: str
    status: str
    detail: str
    fix: str = ""

    @property
    def is_problem(self) -> bool:
        return self.status in ("missing", "damaged")


def check_weights(spec: WeightsFile, *, required: bool) -> Finding:
    """Where ``spec``'s file is and whether it is the published one (no download)."""
    try:
        path = resolve_weights(spec, download=False)
    except MissingWeightsError:
        where = f"{weights_dir()} (or $TORCH_HOME/hub/checkpoints)"
        fix = f"{spec.file_name}: run `make weights`, or get it from {spec.url} into {where}"
        if required:
            return Finding(spec.file_name, "missing", "not found", fix)
        return Finding(spec.file_name, "optional", "not found (not needed for a paper run)")
    damaged = (
        f"{spec.file_name} at {path}: delete it and run `make weights` (or get it from {spec.url})"
    )
    if spec.sha256_prefix:
        digest = sha256_of(path)
        if not digest.startswith(spec.sha256_prefix):
            return Finding(
                spec.file_name,
                "damaged",
                f"{path}: sha256 {digest[:12]}..., published {spec.sha256_prefix}...",
                damaged,
            )
        return Finding(spec.file_name, "ok", f"{path} (sha256 {spec.sha256_prefix}... matches)")
    try:
        check_torch_file(path)
    except UnreadableWeightsError as error:
        return Finding(spec.file_name, "damaged", f"{path}: {error}", damaged)
    return Finding(spec.file_name, "ok", f"{path} (no published sha256; loads as tensors)")


def check_torch() -> list[Finding]:
    """torch, its CUDA build, and every visible GPU's name and memory."""
    import torch

    cuda = torch.version.cuda
    findings = [
        Finding("torch", "info", f"{torch.__version__} (built for CUDA {cuda or 'none: CPU only'})")
    ]
    if not torch.cuda.is_available():
        driver = CUDA_DRIVERS.get((cuda or "").split(".")[0])
        needs = f"; CUDA {cuda} needs NVIDIA driver {driver} or newer" if driver else ""
        findings.append(
            Finding(
                "GPU",
                "missing",
                "no CUDA GPU visible",
                f"GPU: no CUDA GPU is visible to torch{needs} (`nvidia-smi` shows the driver); "
                "the demo runs on the CPU, the paper's settings need a GPU",
            )
        )
        return findings
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        findings.append(
            Finding(
                f"GPU {index}",
                "ok",
                f"{props.name}, {props.total_memory / 2**30:.1f} GiB, "
                f"compute capability {props.major}.{props.minor}",
            )
        )
    return findings


def check_machine(store: str | None) -> list[Finding]:
    """Python, memory and the free disk beside ``store`` (the working folder without one)."""
    findings = [Finding("Python", "info", f"{platform.python_version()} ({platform.machine()})")]
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    findings.append(
        Finding("memory", "ok", f"{memory:.1f} GiB")
        if memory >= MIN_MEMORY_GIB
        else Finding(
            "memory",
            "missing",
            f"{memory:.1f} GiB",
            f"memory: {memory:.1f} GiB; a Market-1501 run holds about 1.3 GB of decoded images "
            f"and the networks: use a machine with {MIN_MEMORY_GIB:.0f} GiB or more",
        )
    )
    if store is not None and "://" in store:
        findings.append(Finding("disk", "info", f"{store} is remote: free space not checked"))
        return findings
    folder = Path(store).expanduser().resolve() if store is not None else Path.cwd()
    while not folder.exists():  # the store may not exist yet: its nearest existing folder
        folder = folder.parent
    free = shutil.disk_usage(folder).free / 2**30
    detail = f"{free:.1f} GiB free in {folder}"
    if free >= MIN_DISK_GIB:
        findings.append(Finding("disk", "ok", detail))
    else:
        findings.append(
            Finding(
                "disk",
                "missing",
                detail,
                f"disk: {free:.1f} GiB free in {folder}; a paper run needs about "
                f"{MIN_DISK_GIB:.0f} GiB: free some space or put the store on another disk",
            )
        )
    return findings


def check_store(store: str) -> list[Finding]:
    """The store's format, images and finished stages (read only)."""
    from storage import open_store

    try:
        opened = open_store(store, mode="r")
    except Exception as error:  # any reason the store does not open is this row's finding
        reason = " ".join(str(error).split()) or type(error).__name__
        return [
            Finding(
                "store",
                "missing",
                f"{store}: {reason}",
                f"store {store}: {reason}",
            )
        ]
    findings = [
        Finding(
            "store",
            "ok",
            f"{opened.url}: format {opened.format}, {opened.n_images} images of "
            f"{opened.height}x{opened.width}",
        )
    ]
    stamps = opened.stamps()
    findings.append(
        Finding(
            "finished stages",
            "info",
            ", ".join(stamps) if stamps else "none yet (next: augment-market segment masks STORE)",
        )
    )
    return findings


def examine(
    store: str | None = None, *, weights: Sequence[WeightsFile] | None = None
) -> list[Finding]:
    """Every finding, in the table's order.

    Args:
        store: a store folder or URL to examine (and whose disk to check).
        weights: the weight files to check (default: every file of the weights table).
    """
    if weights is None:
        from flows.offline import every_weights_file

        weights = every_weights_file()
    findings = check_machine(store) + check_torch()
    findings += [check_weights(spec, required=spec.file_name in PAPER_WEIGHTS) for spec in weights]
    if store is not None:
        findings += check_store(store)
    return findings


def table(findings: Sequence[Finding]) -> list[str]:
    """The findings as aligned text lines: item, status, detail."""
    width = max(len(f.item) for f in findings)
    return [f"{f.item:<{width}}  {f.status:<8}  {f.detail}" for f in findings]
