"""Stage runs inside a store: per-block done flags, resumption, coordinators and workers.

A stage writes its output in blocks of ``block_size`` images and marks each block done in an
explicit boolean array ``done/<stage>`` (chunk existence is no marker: zarr skips all-zero
chunks). The done array remembers the hash of the configuration that wrote it; a run with another
configuration starts from scratch. A finished stage records a
:class:`storage.StageStamp` (:mod:`storage.stamps`). A lock file under ``locks/``
(:mod:`storage.locks`) keeps a second run of the same stage out while the first runs.

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

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import zarr

from foundation import __version__
from foundation.errors import UserError
from storage.locks import StageLock
from storage.stamps import StageStamp, StampRecords, config_hash

if TYPE_CHECKING:
    from storage.store import PersonStore


class MissingInputError(UserError, RuntimeError):
    """A stage needs the output of a stage that has not finished on this store.

    Attributes:
        stage: the stage that was asked to run; missing: the stage it needs first.
    """

    def __init__(self, message: str, *, stage: str = "", missing: str = "") -> None:
        super().__init__(message)
        self.stage = stage
        self.missing = missing


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
        store: PersonStore,
        name: str,
        config: Mapping[str, Any] | None,
        inputs: dict[str, str],
        n_blocks: int,
        on_block: Callable[[int, int], None] | None,
        coordinator: bool,
        done: zarr.Array | None = None,
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
            self._done = self.store.done_flags(self.name, self.n_blocks, self.config_hash)
            # Progress count kept here: rereading the flags (one chunk file per block) after
            # every block would cost n_blocks^2 reads over a stage. A worker reports none.
            self._done_count = 0 if self._done is None else int(np.asarray(self._done[:]).sum())

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
            self._done = self.store.reset_done_flags(self.name, self.n_blocks, self.config_hash)

    @property
    def begun(self) -> bool:
        return self._begun

    def pending_blocks(self) -> list[int]:
        """Blocks not yet marked done for this configuration, in order."""
        self._require_config()
        if self._done is None:
            return list(range(self.n_blocks))
        done = np.asarray(self._done[:])
        return [block for block in range(self.n_blocks) if not done[block]]

    def write(self, array: str, block: int, data: np.ndarray) -> None:
        """Validate and write ``data`` as block ``block`` of ``array`` (see PersonStore.write)."""
        self.begin()
        self.store.write(array, block, data)

    def write_encoded(self, array: str, block: int, elements: Sequence[bytes]) -> None:
        """Write encoded elements as block ``block`` (see PersonStore.write_encoded)."""
        self.begin()
        self.store.write_encoded(array, block, elements)

    def mark_done(self, block: int) -> None:
        """Record that ``block`` is completely written (call after every write of the block)."""
        self.begin()
        assert self._done is not None  # begin() made them
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
        self.store.write_stamp(stamp)
        return stamp


def _as_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """What the stamp file will hold (tuples become lists), so a stamp equals its reread."""
    return dict(json.loads(json.dumps(values, default=str)))


class StageRuns(StampRecords):
    """Stage runs on a store: done flags, locks, coordinators and workers (part of
    :class:`storage.PersonStore`, which a run writes through)."""

    def done_flags(self, stage: str, n_blocks: int, digest: str) -> zarr.Array | None:
        """The done flags of ``stage`` if they belong to configuration ``digest`` and this block
        count, else None (read only: see :meth:`reset_done_flags`)."""
        path = f"done/{stage}"
        if path in self.group:
            done = self._array(path)
            if done.attrs.get("config_hash") == digest and done.shape == (n_blocks,):
                return done
        return None

    def reset_done_flags(self, stage: str, n_blocks: int, digest: str) -> zarr.Array:
        """Fresh done flags of ``stage`` for configuration ``digest``, replacing any others."""
        done = self.group.create_array(
            f"done/{stage}",
            shape=(n_blocks,),
            dtype="bool",
            chunks=(1,),
            fill_value=False,
            overwrite=True,
        )
        done.attrs["config_hash"] = digest
        return done

    def _whole(self) -> PersonStore:
        """This handle as the store a run writes through: a StageRuns is always part of a
        :class:`storage.PersonStore`."""
        return cast("PersonStore", self)

    def _lock(self, stage: str) -> StageLock:
        return StageLock(self.fs, self._path("locks", f"{stage}.lock"), self.local)

    @contextmanager
    def stage(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
        n_blocks: int | None = None,
        on_block: Callable[[int, int], None] | None = None,
    ) -> Iterator[StageRun]:
        """Run stage ``name``: hold its lock, resume its done blocks, then let it stamp.

        Nothing in the store changes until the run begins (:meth:`StageRun.begin`, or any write
        through this store while the run is open): a stage that fails its checks before that
        leaves its earlier stamp, done flags and outputs as they were.

        Args:
            config: JSON-able settings; a change starts the stage's blocks afresh. None: the
                stage computes them under the lock and calls :meth:`StageRun.configure`.
            inputs: stages whose output this one reads; each must have a stamp.
            n_blocks: blocks of the stage's output (default: the store's image blocks).
            on_block: called as ``on_block(done, total)`` after each block (progress).

        Raises:
            StageBusyError: another process runs this stage on this store.
            MissingInputError: an input stage has not finished.
        """
        self._check_writable()
        input_digests = {}
        for stage_name in inputs:
            stamp = self.stamp(stage_name)
            if stamp is None:
                raise MissingInputError(
                    f"stage '{name}' needs stage '{stage_name}' finished first on {self.url}",
                    stage=name,
                    missing=stage_name,
                )
            input_digests[stage_name] = stamp.digest
        lock = self._lock(name)
        lock.acquire(name)
        try:
            run = StageRun(
                store=self._whole(),
                name=name,
                config=config,
                inputs=input_digests,
                n_blocks=self.n_blocks if n_blocks is None else n_blocks,
                on_block=on_block,
                coordinator=True,
            )
            self._open_runs.append(run)
            try:
                yield run
            finally:
                self._open_runs.remove(run)
        finally:
            lock.release()

    def join_stage(self, name: str, *, config: Mapping[str, Any]) -> StageRun:
        """A worker's handle on stage ``name``, which another process runs with ``config``.

        The worker writes and marks done the blocks its coordinator gave it; it takes no lock
        and cannot finish the stage (see :mod:`storage.stages`).

        Raises:
            RuntimeError: no process holds the stage's lock, or the run in progress has another
                configuration (the coordinator restarted with other settings) or has not begun.
        """
        self._check_writable()
        lock = self._lock(name)
        if not self.fs.exists(lock.path):
            raise RuntimeError(
                f"stage '{name}' is not running on {self.url}: a worker joins a stage only "
                "while its coordinator holds the lock"
            )
        digest = config_hash(config)
        path = f"done/{name}"
        done = self._array(path) if path in self.group else None
        if done is None or done.attrs.get("config_hash") != digest:
            raise RuntimeError(
                f"stage '{name}' on {self.url} runs with other settings than this worker's "
                f"(config hash {digest}), or its coordinator has not begun the run; the "
                "worker's blocks are not written"
            )
        return StageRun(
            store=self._whole(),
            name=name,
            config=config,
            inputs={},
            n_blocks=int(done.shape[0]),
            on_block=None,
            coordinator=False,
            done=done,
        )
