"""Stage bookkeeping inside a store: stamps, per-block done flags and the one-writer lock.

A stage writes its output in blocks of ``block_size`` images and marks each block done in an
explicit boolean array ``done/<stage>`` (chunk existence is no marker: zarr skips all-zero
chunks). The done array remembers the hash of the configuration that wrote it; a run with another
configuration starts from scratch. A finished stage records a :class:`StageStamp` (a JSON file
under ``stamps/``) whose :attr:`StageStamp.digest` downstream stages and the Prefect cache keys
use. A lock file under ``locks/`` keeps a second run of the same stage out while the first runs.

A run changes nothing until it *begins* (:meth:`StageRun.begin`): the coordinator takes the
lock, checks everything it can (inputs present, files readable, counts possible, weights
loadable), then begins, which removes the old stamp and, under new settings, resets the done
flags. Every write through the store while the run is open begins it, and a stage that writes
outside the store (checkpoints, result files) begins it first. So a rerun that fails its
checks leaves a finished stage finished; one that fails after beginning resumes as a crash
does.

A stage may fan out: the process that holds the lock (the coordinator) hands disjoint block
lists to worker processes, each of which *joins* the run (:meth:`PersonStore.join_stage`),
writes its blocks and marks them done; only the coordinator finishes the stage. Blocks are
whole chunks of every array they touch and each done flag is its own chunk, so workers never
write the same file. The coordinator begins before it fans out.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from foundation import __version__
from foundation.errors import UserError


class StageBusyError(UserError, RuntimeError):
    """Another process holds the stage's lock on this store."""


class MissingInputError(UserError, RuntimeError):
    """A stage needs the output of a stage that has not finished on this store.

    Attributes:
        stage: the stage that was asked to run; missing: the stage it needs first.
    """

    def __init__(self, message: str, *, stage: str = "", missing: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.missing = missing


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


@dataclass
class StageLock:
    """An exclusive lock file, created atomically (O_EXCL) on local disks.

    On object storage (no atomic create) it is a best-effort existence check, documented in
    the README. A lock left by a dead process on this host is taken over.
    """

    fs: Any
    path: str
    local: bool

    def acquire(self, stage: str) -> None:
        owner = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "time": time.time()})
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            for _ in range(2):
                try:
                    descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    if self._holder_is_dead():
                        os.unlink(self.path)
                        continue
                    raise StageBusyError(self._busy_message(stage)) from None
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(owner)
                return
            raise StageBusyError(self._busy_message(stage))
        if self.fs.exists(self.path):
            raise StageBusyError(self._busy_message(stage))
        self.fs.pipe(self.path, owner.encode())

    def release(self) -> None:
        try:
            self.fs.rm(self.path)
        except FileNotFoundError:
            pass

    def _holder(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.fs.cat(self.path)))
        except (FileNotFoundError, ValueError):
            return {}

    def _holder_is_dead(self) -> bool:
        holder = self._holder()
        if holder.get("host") != socket.gethostname() or "pid" not in holder:
            return False
        try:
            os.kill(int(holder["pid"]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False

    def _busy_message(self, stage: str) -> str:
        holder = self._holder()
        return (
            f"stage '{stage}' is already running on this store "
            f"(process {holder.get('pid', '?')} on {holder.get('host', '?')} holds {self.path}); "
            "wait for it to finish, or delete the lock file if that process is gone"
        )


class StageRun:
    """One run of a stage on a store: pending blocks, validated writes, done flags, stamp.

    Obtained from :meth:`storage.PersonStore.stage` (the coordinator, which holds the lock and
    finishes) or :meth:`storage.PersonStore.join_stage` (a worker, which writes the blocks it
    was given); not constructed directly. A coordinator opened without settings gets them from
    :meth:`configure`, after the preparation that needs the lock held.
    """

    def __init__(
        self,
        *,
        store: Any,
        name: str,
        config: Mapping[str, Any] | None,
        inputs: dict[str, str],
        n_blocks: int,
        on_block: Callable[[int, int], None] | None,
        coordinator: bool,
        done: Any = None,
    ) -> None:
        self.store = store
        self.name = name
        self.inputs = inputs
        self.n_blocks = n_blocks
        self.coordinator = coordinator
        self._on_block = on_block
        self._done = done
        # A worker joins a run that has begun; a coordinator begins at its first write.
        self._begun = not coordinator
        self._done_count = 0
        self.config: dict[str, Any] = {}
        self.config_hash = ""
        if config is not None:
            self.configure(config)

    @property
    def configured(self) -> bool:
        return bool(self.config_hash)

    def configure(self, config: Mapping[str, Any]) -> None:
        """Set the run's settings (once): they decide which done blocks are kept.

        Raises:
            RuntimeError: the run has its settings already.
        """
        if self.configured:
            raise RuntimeError(f"stage '{self.name}' is configured already")
        self.config = dict(config)
        self.config_hash = config_hash(config)
        if self.coordinator:
            # Read only: the flags of another configuration are reset when the run begins.
            self._done = self.store._done_array(self.name, self.n_blocks, self.config_hash)
            # Progress count kept here: rereading the flags (one chunk file per block) after
            # every block would cost n_blocks^2 reads over a stage. A worker reports none.
            self._done_count = 0 if self._done is None else int(self._done[:].sum())

    def _require_config(self) -> None:
        if not self.configured:
            raise RuntimeError(f"stage '{self.name}': call configure() before using the run")

    def begin(self) -> None:
        """Start changing the store: remove the stage's stamp and, if the done flags belong to
        other settings, reset them. Idempotent; called by the first write through the store,
        by :meth:`mark_done` and :meth:`finish`; call it before writing outside the store."""
        self._require_config()
        if self._begun:
            return
        self._begun = True
        self.store.clear_stamp(self.name)
        if self._done is None:
            self._done = self.store._create_done_array(self.name, self.n_blocks, self.config_hash)

    @property
    def begun(self) -> bool:
        return self._begun

    def pending_blocks(self) -> list[int]:
        """Blocks not yet marked done for this configuration, in order."""
        self._require_config()
        if self._done is None:
            return list(range(self.n_blocks))
        done = self._done[:]
        return [block for block in range(self.n_blocks) if not done[block]]

    def write(self, array: str, block: int, data: Any) -> None:
        """Validate and write ``data`` as block ``block`` of ``array`` (see PersonStore.write)."""
        self.begin()
        self.store.write(array, block, data)

    def write_encoded(self, array: str, block: int, elements: Any) -> None:
        """Write encoded elements as block ``block`` (see PersonStore.write_encoded)."""
        self.begin()
        self.store.write_encoded(array, block, elements)

    def mark_done(self, block: int) -> None:
        """Record that ``block`` is completely written (call after every write of the block)."""
        self.begin()
        self._done[block] = True
        self._count(1)

    def count_done(self, blocks: list[int]) -> None:
        """Report progress for ``blocks`` that workers who joined this run have marked done."""
        self._count(len(blocks))

    def _count(self, blocks: int) -> None:
        self._done_count += blocks
        if self._on_block is not None:
            self._on_block(self._done_count, self.n_blocks)

    def finish(
        self, *, counts: Mapping[str, int], report: Mapping[str, Any] | None = None
    ) -> StageStamp:
        """Check every block is done and record the stage's stamp (coordinator only)."""
        if not self.coordinator:
            raise RuntimeError(
                f"stage '{self.name}': a worker that joined the run cannot finish it; "
                "the process holding the stage's lock does"
            )
        self.begin()
        missing = self.pending_blocks()
        if missing:
            raise RuntimeError(
                f"stage '{self.name}' cannot finish: {len(missing)} of {self.n_blocks} blocks "
                f"not done (first: {missing[:5]})"
            )
        stamp = StageStamp(
            stage=self.name,
            config_hash=self.config_hash,
            config=_as_json(self.config),
            inputs=self.inputs,
            version=__version__,
            counts={key: int(value) for key, value in counts.items()},
            report=_as_json(dict(report or {})),
            finished_at=time.time(),
        )
        self.store._write_stamp(stamp)
        return stamp


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the stamp file will hold (tuples become lists), so a stamp equals its reread."""
    return dict(json.loads(json.dumps(values, default=str)))
