"""The cache policy of the ``augment-market`` stages: valid while the store still holds the output.

A stage task's cache key is a hash of

* the stage name and the store URL,
* the stage's settings (every task argument except ``upstream`` and ``fan_out``, which says
  where blocks run, not what they hold; a ``device`` argument counts only by its type,
  ``cuda:0`` and ``cuda:1`` give the same output),
* the digests of the input stamps it reads (the :class:`storage.StageStamp` values in the
  task's ``upstream`` argument; a missing input counts as ``None``),
* the package version (``foundation.__version__``).

That key alone is not enough: Prefect keeps cache records in result storage, apart from the
store, so a record outlives a deleted stamp, and a key that returns to an old value (settings
A, then B, then A again) would hand back A's result while the store holds B's output. So a
record is a hit only when the digest of the stamp it recorded equals the digest of the stage's
stamp in the store *now*. A record that fails that check is stale: the policy then looks one
"generation" further, at ``hash(key, stale digest)``, and returns the first key whose record is
absent (the stage runs and records there) or valid (a hit); after
:attr:`StageCachePolicy.max_generations` stale records it returns ``None`` (the stage runs and
nothing is cached). Stamp digests are deterministic (settings, inputs, version, counts; not
time), so after a rerun the original key is usually valid again.

Consequences: change nothing and every stage is a hit; delete a stamp and that stage reruns;
its dependants rerun only if the rerun produced a different digest (their input digests are
part of their keys). Forcing a stage is ``refresh_cache`` (the flow's ``refresh`` list).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect.cache_policies import CachePolicy
from prefect.context import TaskRunContext
from pydantic import BaseModel

from foundation import __version__
from storage import StageStamp, open_store


def _jsonable(value: Any) -> Any:
    """Settings as plain JSON types, so equal settings hash equally across processes."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _hash(*parts: Any) -> str:
    blob = json.dumps(_jsonable(list(parts)), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def stage_key(stage: str, inputs: Mapping[str, Any]) -> str:
    """The base cache key of ``stage`` called with task arguments ``inputs`` (see module doc)."""
    upstream = inputs.get("upstream") or {}
    digests = {
        name: stamp.digest if isinstance(stamp, StageStamp) else None
        for name, stamp in upstream.items()
    }
    settings = {
        name: value for name, value in inputs.items() if name not in ("upstream", "fan_out")
    }
    if isinstance(settings.get("device"), str):
        settings["device"] = settings["device"].split(":")[0]
    return _hash(stage, settings, digests, __version__)


def current_digest(store_url: str, stage: str) -> str | None:
    """Digest of ``stage``'s stamp in the store now; None when the store or the stamp is gone."""
    try:
        stamp = open_store(store_url).stamp(stage)
    except FileNotFoundError:
        return None
    return None if stamp is None else stamp.digest


def folder_fingerprint(folder: str | Path) -> str:
    """Hash of every file's relative path, size and modification time under ``folder``.

    Part of the ingest stage's key, so new, removed or rewritten source images rerun it.
    Cheap: one directory walk, no file is read (Market-1501: about 0.1 s).
    """
    root = Path(folder)
    entries = []
    for directory, _, files in os.walk(root):
        for name in files:
            path = Path(directory, name)
            info = path.stat()
            entries.append((str(path.relative_to(root)), info.st_size, info.st_mtime_ns))
    return _hash(sorted(entries))


@dataclass
class StageCachePolicy(CachePolicy):
    """Cache key of a stage task, valid only while the store still holds the recorded output.

    The task must take ``store_url: str`` and ``upstream: dict[str, StageStamp | None]`` and
    return the stage's :class:`storage.StageStamp`. See the module docstring for the rules.

    Attributes:
        stage: the stamp name the task writes (``"masks"``, ``"reid_augmented"``...).
        max_generations: stale records to step over before giving up caching for a call.
    """

    stage: str = ""
    max_generations: int = 8

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = stage_key(self.stage, inputs)
        current = current_digest(str(inputs["store_url"]), self.stage)
        records = task_ctx.result_store
        for _ in range(self.max_generations):
            if not records.exists(key):
                return key
            recorded = records.read(key).result
            recorded_digest = recorded.digest if isinstance(recorded, StageStamp) else None
            if recorded_digest is not None and recorded_digest == current:
                return key
            key = _hash(key, recorded_digest)
        return None
