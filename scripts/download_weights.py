"""Download every pretrained weight file into one folder, on a machine with internet.

    make weights                                   # into $AUGMENT_MARKET_WEIGHTS or
                                                   # ~/.cache/augment-market/weights
    uv run python scripts/download_weights.py --dest weights     # docker/compose.yaml mounts it

The files and their sha256 prefixes are the weights table (``flows.offline.every_weights_file``,
the README's "Pretrained weights"). A file already present is checked, not downloaded again;
torchvision files are checked against the sha256 prefix in their names while they download.
The SCHP checkpoint is on Google Drive with no direct link: the script tries Drive's download
endpoint and keeps the file only if it loads as a PyTorch checkpoint, else it says where to get
it by hand. Exit status 1 when a file is still missing at the end.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from flows.offline import every_weights_file
from foundation.weights import (
    UnreadableWeightsError,
    WeightsFile,
    check_torch_file,
    sha256_of,
    weights_dir,
)

DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"


def download_url(spec: WeightsFile) -> str:
    """Where to fetch ``spec`` from: its URL, or Drive's download endpoint for a Drive page."""
    drive = re.search(r"drive\.google\.com/file/d/([\w-]+)", spec.url)
    return DRIVE_DOWNLOAD.format(drive.group(1)) if drive else spec.url


def fetch(spec: WeightsFile, dest: Path) -> str:
    """Make ``dest / spec.file_name`` a complete copy; return what happened, one line.

    Raises:
        RuntimeError: the file could not be fetched or is not the published one.
    """
    target = dest / spec.file_name
    if target.is_file():
        if spec.sha256_prefix and not sha256_of(target).startswith(spec.sha256_prefix):
            raise RuntimeError(f"{target} is there but its sha256 is not {spec.sha256_prefix}...")
        check_torch_file(target)
        return f"present  {target}"
    partial = target.with_name(target.name + ".partial")
    try:
        torch.hub.download_url_to_file(
            download_url(spec), str(partial), hash_prefix=spec.sha256_prefix or None
        )
        check_torch_file(partial)
    except (OSError, RuntimeError, UnreadableWeightsError) as error:
        partial.unlink(missing_ok=True)
        raise RuntimeError(
            f"{spec.file_name}: {type(error).__name__}: {error}; get it from {spec.url} "
            f"and put it in {dest}"
        ) from None
    partial.rename(target)
    return f"fetched  {target}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dest", type=Path, default=None, help="folder (default: the weights folder)"
    )
    args = parser.parse_args(argv)
    dest = (args.dest or weights_dir()).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    files = every_weights_file()
    failed = 0
    for spec in files:
        try:
            print(fetch(spec, dest), flush=True)
        except RuntimeError as error:
            print(f"MISSING  {error}", file=sys.stderr, flush=True)
            failed += 1
    print(f"{dest}: {len(files) - failed} of {len(files)} files")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
