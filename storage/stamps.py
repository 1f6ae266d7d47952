"""Stage stamps: what a finished stage did (a JSON file per stage under ``stamps/``).

A finished stage records a :class:`StageStamp` whose :attr:`StageStamp.digest` downstream
stages and the Prefect cache keys use; :mod:`storage.stages` writes it when a run finishes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from foundation import __version__
from storage.base import DamagedStoreError, StoreBase


def config_hash(config: Mapping[str, Any]) -> str:
    """Stable short hash of a JSON-able configuration (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class StageStamp:
    """What a finished stage did: enough to decide whether it must run again.

    Attributes:
        stage: stage name, e.g. ``"masks"``.
        config_hash: :func:`config_hash` of the settings the stage ran with.
        config: those settings.
        inputs: digest of each input stage's stamp at the time this stage ran.
        version: package version that ran it.
        counts: numbers the stage produced (images, empty masks, pairs...).
        report: free-form JSON-able findings (skipped files, metrics).
        finished_at: Unix time.
    """

    stage: str
    config_hash: str
    config: dict[str, Any]
    inputs: dict[str, str]
    version: str
    counts: dict[str, int]
    report: dict[str, Any] = field(default_factory=dict)
    finished_at: float = 0.0

    @property
    def digest(self) -> str:
        """Identity of the stage's output: settings, inputs, code version and counts (not time)."""
        key = [
            self.stage,
            self.config_hash,
            sorted(self.inputs.items()),
            self.version,
            sorted(self.counts.items()),
        ]
        return hashlib.sha256(json.dumps(key, default=str).encode()).hexdigest()[:16]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True, default=str)

    @classmethod
    def from_json(cls, text: str) -> StageStamp:
        return cls(**json.loads(text))


class StampRecords(StoreBase):
    """The stamps of a store (part of :class:`storage.PersonStore`)."""

    def stamp(self, stage: str) -> StageStamp | None:
        """The stamp of a finished stage, or None."""
        path = self._path("stamps", f"{stage}.json")
        if not self.fs.exists(path):
            return None
        try:
            return StageStamp.from_json(self.fs.cat(path).decode())
        except (ValueError, TypeError) as error:  # cut short, or edited by hand
            raise DamagedStoreError(
                f"stamp file {path} of store {self.url} does not read ({type(error).__name__}: "
                f"{str(error)[:120]}); delete it and rerun stage '{stage}' (its finished "
                "blocks are kept)"
            ) from None

    def run_digest(self, stage: str, *, settings: Mapping[str, Any], inputs: Sequence[str]) -> str:
        """What a checkpoint that ``stage`` resumes must have been trained on.

        A hash of ``settings``, the digests of the current stamps of ``inputs`` and the code
        version. A stage keeps it in its checkpoints and never continues one with another
        digest (another alpha's images, pairs of another seed). Pass the settings that define
        the training, not a step target, so a longer schedule still continues a shorter run.
        """
        digests = {name: getattr(self.stamp(name), "digest", None) for name in inputs}
        return config_hash(
            {"stage": stage, "settings": settings, "inputs": digests, "version": __version__}
        )

    def stamps(self) -> dict[str, StageStamp]:
        folder = self._path("stamps")
        if not self.fs.exists(folder):
            return {}
        names = sorted(
            p.rsplit("/", 1)[-1][: -len(".json")]
            for p in self.fs.ls(folder, detail=False)
            if p.endswith(".json")
        )
        return {name: stamp for name in names if (stamp := self.stamp(name)) is not None}

    def write_stamp(self, stamp: StageStamp) -> None:
        """Record a finished stage (:meth:`storage.StageRun.finish` calls this)."""
        self._atomic_write(self._path("stamps", f"{stamp.stage}.json"), stamp.to_json().encode())

    def clear_stamp(self, stage: str) -> None:
        path = self._path("stamps", f"{stage}.json")
        if self.fs.exists(path):
            self.fs.rm(path)
