"""The one-writer lock of a stage on a store: a file under ``locks/<stage>.lock``."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import dataclass
from typing import Any

from foundation.errors import UserError


class StageBusyError(UserError, RuntimeError):
    """Another process holds the stage's lock on this store."""


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
