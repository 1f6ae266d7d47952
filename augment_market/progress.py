"""Progress of a stage run from the command line, on stderr.

A stage reports through a plain ``progress(done, total)`` callback. :class:`CommandProgress`
is that callback: on a terminal, a rich progress bar (percent, count in the stage's unit, rate,
time left, and a status such as training losses); otherwise (a log file, a pipe, CI) one plain
line with a newline at every tenth of the work and at least every ``log_interval`` seconds,
as the flow's log lines read: ``train: 600/1200 steps (50%), 2.1 steps/s, ETA 4 min 45 s``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

from foundation.progress import format_duration


class CommandProgress:
    """A ``progress(done, total)`` callback drawing one stage's progress on ``stream``.

    Use it as a context manager: the bar is removed however the stage ends.

    Args:
        label: the stage's name as the command calls it (``"train"``, ``"masks"``).
        unit: what ``done`` counts (``"steps"``, ``"blocks"``).
        status: polled with each drawn update for a short text (``"g_total 1.23, d 0.41"``).
        stream: where to draw (default stderr); a bar only when it is a terminal.
        log_interval: longest gap between plain lines, in seconds.
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        label: str,
        unit: str,
        *,
        status: Callable[[], str] | None = None,
        stream: IO[str] | None = None,
        log_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.unit, self.status = label, unit, status
        self.stream = stream if stream is not None else sys.stderr
        self.log_interval = log_interval
        self._clock = clock
        self._origin: tuple[float, int] | None = None
        self._last_line = -float("inf")
        self._last_decile = -1
        self._last_status = 0.0
        self._text = ""
        self._bar: Any = None  # rich.progress.Progress on a terminal, once started
        self._task: Any = None

    def __enter__(self) -> CommandProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def rate(self, done: int) -> float | None:
        """Units per second since the first call (a resumed stage starts past 0)."""
        if self._origin is None:
            return None
        started, first = self._origin
        elapsed = self._clock() - started
        return (done - first) / elapsed if done > first and elapsed > 0 else None

    def line(self, done: int, total: int) -> str:
        """The plain line: label, count, percent, rate, time left, status."""
        percent = 100.0 * done / total if total else 100.0
        text = f"{self.label}: {done}/{total} {self.unit} ({percent:.0f}%)"
        rate = self.rate(done)
        if rate is not None:
            text += f", {rate:.3g} {self.unit}/s"
            if done < total:
                text += f", ETA {format_duration((total - done) / rate)}"
        return text + (f", {self._text}" if self._text else "")

    def _poll(self, now: float) -> None:
        if self.status is not None and now - self._last_status >= 1.0:
            self._text = self.status()
            self._last_status = now

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if self._origin is None:
            self._origin = (now, done)
        if self.stream.isatty():
            self._draw(done, total, now)
            return
        percent = 100.0 * done / total if total else 100.0
        decile = int(percent // 10)
        if decile > self._last_decile or now - self._last_line >= self.log_interval:
            self._poll(now)
            print(self.line(done, total), file=self.stream, flush=True)
            self._last_decile = max(decile, self._last_decile)
            self._last_line = now

    def _draw(self, done: int, total: int, now: float) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TaskProgressColumn,
            TextColumn,
            TimeRemainingColumn,
        )

        if self._bar is None:
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                MofNCompleteColumn(),
                TextColumn(self.unit),
                TextColumn("{task.fields[rate]}"),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._task = self._bar.add_task(self.label, total=total, rate="", status="")
            self._bar.start()
        self._poll(now)
        rate = self.rate(done)
        self._bar.update(
            self._task,
            completed=done,
            total=total,
            rate=f"{rate:.3g} {self.unit}/s" if rate is not None else "",
            status=self._text,
        )
