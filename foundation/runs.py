"""A training run's folder: its checkpoint is continued, or replaced only when asked.

A stage that trains (the generator, a Re-ID baseline) continues the checkpoint in its run
folder only when the checkpoint's ``run_tag`` (the stage's digest of its training settings and
inputs) is the run's. A checkpoint of other settings is not continued, and training afresh
would replace it: :func:`check_checkpoint_kept` refuses that before anything is written, unless
the caller asked to replace it, so an earlier run is never lost silently.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from foundation.errors import UserError
from foundation.weights import load_torch_file


class RunFolderInUseError(UserError, FileExistsError):
    """A run folder holds a checkpoint of other settings, which a new run would replace."""


def flat_settings(settings: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as ``{"model.arch": "resnet50", ...}``, tuples as lists (JSON values)."""
    flat: dict[str, Any] = {}
    for key, value in json.loads(json.dumps(dict(settings), default=list)).items():
        if isinstance(value, dict):
            flat.update(flat_settings(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def check_checkpoint_kept(
    checkpoint: Path,
    *,
    run_tag: str,
    config: Mapping[str, Any],
    what: str,
    inputs: str,
    overwrite: bool = False,
) -> None:
    """Refuse a run that would train afresh over ``checkpoint`` of other settings or inputs.

    Args:
        checkpoint: the file the run continues or replaces (absent: nothing to keep).
        run_tag: the run's digest; a checkpoint with the same tag is continued, not replaced.
        config: the run's settings as the checkpoint stores them (its ``"config"`` entry),
            compared field by field to name what differs.
        what: how the message calls the checkpoint ("generator checkpoint").
        inputs: what else the tag covers, said when no setting differs ("the pairs, masks or
            parsing it read were rebuilt since").
        overwrite: the caller asked to replace such a checkpoint.
    Raises:
        RunFolderInUseError: one line naming the file, what differs, and the two ways out.
        UnreadableWeightsError: the checkpoint does not load.
    """
    if overwrite or not checkpoint.is_file():
        return
    state = load_torch_file(checkpoint, what=what, mmap=zipfile.is_zipfile(checkpoint))
    if not isinstance(state, dict) or state.get("run_tag") == run_tag:
        return
    saved = flat_settings(state.get("config") or {})
    changed = [
        f"{name} {saved.get(name)!r} -> {value!r}"
        for name, value in flat_settings(config).items()
        if saved.get(name) != value
    ]
    reason = (
        f"other settings ({', '.join(changed[:3])}{', ...' if len(changed) > 3 else ''})"
        if changed
        else f"other inputs ({inputs}) or another augment-market version"
    )
    raise RunFolderInUseError(
        f"{checkpoint} is a {what} trained under {reason}; this run would replace it: give "
        "another run folder (--out), or add --overwrite to replace it"
    )
