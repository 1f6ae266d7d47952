"""Locating pretrained weight files: one place for every package.

Lookup order for a file name: the explicit path the caller gives, the weights folder
(``$AUGMENT_MARKET_WEIGHTS``, default ``~/.cache/augment-market/weights``), torch's hub cache
(``$TORCH_HOME/hub/checkpoints``, where torchvision downloads land), then a download from the
official URL when ``download=True``. When all fail, :class:`MissingWeightsError` names the
file, the folders searched and the URL, so an offline user knows exactly what to fetch.

Every file is read with ``torch.load(weights_only=True)``: tensors and plain values only, never
pickled code. A file that cannot be read that way (truncated, not a PyTorch file, or holding
pickled objects) raises :class:`UnreadableWeightsError` naming it; one that loads but holds
another network's tensors raises :class:`WrongNetworkError`, checked by :func:`check_fits`
before a stage begins and again where the tensors are loaded (:func:`load_into`).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import sys
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundation.errors import UserError

if TYPE_CHECKING:
    import torch


class MissingWeightsError(UserError, FileNotFoundError):
    """A pretrained weight file is neither on disk nor downloadable."""


class UnreadableWeightsError(UserError, ValueError):
    """A weight or checkpoint file exists but does not load as tensors."""


class WrongNetworkError(UnreadableWeightsError):
    """A weight file that loads, but holds another network's tensors."""


@dataclass(frozen=True)
class WeightsFile:
    """An official weight file: where it comes from and how to check it.

    Attributes:
        file_name: the official file name (torchvision's, or the paper repository's).
        url: where the file is published; a Google Drive page for files with no direct link.
        sha256_prefix: leading hex digits of the file's sha256 (torchvision puts 8-10 of them in
            the file name); empty when the publisher gives none.
    """

    file_name: str
    url: str
    sha256_prefix: str = ""


def weights_dir() -> Path:
    """The folder searched first for weight files (``$AUGMENT_MARKET_WEIGHTS``)."""
    env = os.environ.get("AUGMENT_MARKET_WEIGHTS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "augment-market" / "weights"


def torch_hub_dir() -> Path:
    """torch's download cache for checkpoints (``$TORCH_HOME/hub/checkpoints``).

    torch's own answer once torch is loaded (it honours ``torch.hub.set_dir``); before that,
    the same rule from the environment (``$TORCH_HOME``, else ``$XDG_CACHE_HOME/torch``, else
    ``~/.cache/torch``), so that finding a file does not load torch.
    """
    if "torch" in sys.modules:
        return Path(sys.modules["torch"].hub.get_dir()) / "checkpoints"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    home = os.environ.get("TORCH_HOME") or os.path.join(cache, "torch")
    return Path(home).expanduser() / "hub" / "checkpoints"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for piece in iter(lambda: handle.read(1 << 20), b""):
            digest.update(piece)
    return digest.hexdigest()


def resolve_weights(
    spec: WeightsFile, *, path: str | Path | None = None, download: bool = True
) -> Path:
    """Return a local path to ``spec``'s file, downloading it when allowed and possible.

    Args:
        spec: the official file.
        path: an explicit file (or folder holding ``spec.file_name``) given by the user; when
            given it must exist, nothing else is searched.
        download: try the official URL when no local copy exists.

    Raises:
        MissingWeightsError: the file is nowhere and could not be downloaded.
    """
    if path is not None:
        candidate = Path(path).expanduser()
        if candidate.is_dir():
            candidate = candidate / spec.file_name
        if not candidate.is_file():
            raise MissingWeightsError(
                f"weights file {candidate} does not exist (expected {spec.file_name}, "
                f"published at {spec.url})"
            )
        return candidate
    searched = [weights_dir(), torch_hub_dir()]
    for folder in searched:
        candidate = folder / spec.file_name
        if candidate.is_file():
            return candidate
    if download and not spec.url.startswith("https://drive.google.com"):
        target = torch_hub_dir() / spec.file_name
        target.parent.mkdir(parents=True, exist_ok=True)
        import torch

        try:
            torch.hub.download_url_to_file(
                spec.url, str(target), hash_prefix=spec.sha256_prefix or None, progress=False
            )
            return target
        except Exception as error:  # no network, DNS failure, hash mismatch
            reason = f"download failed ({type(error).__name__}: {error})"
    else:
        reason = "download disabled" if not download else "no direct download link"
    folders = ", ".join(str(f) for f in searched)
    raise MissingWeightsError(
        f"pretrained weights {spec.file_name} not found in {folders}; {reason}. "
        f"Get it from {spec.url} and put it in {searched[0]} "
        f"(or set AUGMENT_MARKET_WEIGHTS to the folder holding it)."
    )


def load_torch_file(
    path: str | Path, *, what: str = "weights file", map_location: str = "cpu", mmap: bool = False
) -> Any:
    """``torch.load(path, weights_only=True)``, every failure named by the file.

    Args:
        what: how the message calls the file ("weights file", "generator checkpoint").
        mmap: map the file instead of reading it (zip-format files only: cheap, for checks).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        UnreadableWeightsError: truncated or not a PyTorch file, or it holds pickled objects
            other than tensors and plain values, which are refused, never run.
    """
    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except pickle.UnpicklingError:
        raise UnreadableWeightsError(
            f"{what} {path} was refused: it holds pickled Python objects, not only tensors, "
            "and such files are never loaded (they can run code); use the official file"
        ) from None
    except Exception as error:  # torch reports a damaged file as RuntimeError, EOFError, ...
        # torch's first sentence says what is wrong; the rest is advice about its internals.
        reason = (str(error).splitlines() or [""])[0].split(". ")[0].rstrip(".")[:160]
        cause = f"{type(error).__name__}: {reason}" if reason else type(error).__name__
        raise UnreadableWeightsError(
            f"{what} {path} cannot be read ({cause}): it is truncated or not a PyTorch file; "
            "replace it with a complete copy"
        ) from None


def check_torch_file(path: str | Path, *, what: str = "weights file") -> None:
    """Check that ``path`` loads under :func:`load_torch_file`, before a stage relies on it.

    A zip-format file (every ``torch.save`` since torch 1.6) is memory-mapped, so its tensors
    are not read; an older file is loaded whole.

    Raises:
        FileNotFoundError, UnreadableWeightsError: as :func:`load_torch_file`.
    """
    load_torch_file(path, what=what, mmap=zipfile.is_zipfile(path))


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a checkpoint's tensors safely (``weights_only=True``) on the CPU.

    Unwraps the ``{"state_dict": ...}`` wrapper that research checkpoints use.

    Raises:
        UnreadableWeightsError: the file does not load, or holds no state dict.
    """
    return _unwrap(load_torch_file(path), path)


def _shape(value: Any) -> tuple[int, ...] | None:
    shape = getattr(value, "shape", None)
    return None if shape is None else tuple(shape)


def check_fits(
    state: Mapping[str, Any],
    expected: Mapping[str, Sequence[int]],
    *,
    path: str | Path,
    network: str,
    official: str = "",
    extra: bool = False,
) -> None:
    """Check that the state dict ``state`` read from ``path`` holds ``network``'s tensors.

    Args:
        state: name -> tensor, as read from the file (after any renaming the loader does).
        expected: name -> shape of every tensor the network takes (``module.state_dict()``).
        network: how the message calls the network ("Mask R-CNN ResNet-50 FPN v2").
        official: the official file's name, named in the message.
        extra: tensors the network does not take are fine (a file of which the network uses a
            part, as the perceptual loss uses VGG-19's first layers).
    Raises:
        WrongNetworkError: tensors missing, unexpected or of other shapes; one line naming the
            file, the first of each kind and their counts.
    """
    # BatchNorm counts its batches; files saved by older torch lack the count and still load.
    missing = [
        name for name in expected if name not in state and not name.endswith("num_batches_tracked")
    ]
    unexpected = [] if extra else [name for name in state if name not in expected]
    reshaped = [
        name
        for name, shape in expected.items()
        if name in state and _shape(state[name]) != tuple(shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} of its {len(expected)} tensors missing ({missing[0]}...)")
    if unexpected:
        problems.append(f"{len(unexpected)} it does not have ({unexpected[0]}...)")
    if reshaped:
        name = reshaped[0]
        shape = _shape(state[name])
        problems.append(
            f"{len(reshaped)} of other shapes ({name} is {list(shape) if shape else 'no tensor'}"
            f", not {list(expected[name])})"
        )
    if problems:
        raise WrongNetworkError(
            f"weights file {path} is not a {network} file: {'; '.join(problems)}; give the "
            f"official file{f' ({official})' if official else ''}"
        )


def load_into(
    module: torch.nn.Module,
    state: Mapping[str, Any],
    *,
    path: str | Path,
    network: str,
    official: str = "",
    assign: bool = False,
) -> None:
    """``module.load_state_dict(state, strict=True)``, a mismatch named by the file.

    Raises:
        WrongNetworkError: see :func:`check_fits`; the module is left unchanged.
    """
    expected = {name: tuple(value.shape) for name, value in module.state_dict().items()}
    check_fits(state, expected, path=path, network=network, official=official)
    module.load_state_dict(state, strict=True, assign=assign)


def state_dict_of(path: str | Path) -> dict[str, Any]:
    """The tensors of a weight file, memory-mapped when it is a zip file (cheap, for checks);
    the ``{"state_dict": ...}`` wrapper of research checkpoints is unwrapped.

    Raises:
        UnreadableWeightsError: as :func:`load_state_dict`.
    """
    blob = load_torch_file(path, mmap=zipfile.is_zipfile(path))
    return _unwrap(blob, path)


def _unwrap(blob: Any, path: str | Path) -> dict[str, Any]:
    if isinstance(blob, dict) and "state_dict" in blob and isinstance(blob["state_dict"], dict):
        blob = blob["state_dict"]
    if not isinstance(blob, dict):
        raise UnreadableWeightsError(
            f"weights file {path} holds a {type(blob).__name__}, not a state dict; "
            "use the official file"
        )
    return blob
