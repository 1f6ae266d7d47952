"""Live progress of a running stage: a progress artifact, log lines with an ETA, and what the
stage's own outputs say while it runs (losses, sample grids).

The pipeline functions report through a plain ``progress(done, total)`` callback.
:class:`StageProgress` turns it into one Prefect progress artifact per stage run, updated in
place at most every 2 s (its description carries a text bar, the count, the ETA and the latest
losses, so the card reads as progress wherever the UI shows it), and a log line at every 10 %
and at least every 30 s. A :class:`Watch` adds what only the stage's folder knows:
:class:`TrainingWatch` reads the generator's TensorBoard losses and publishes each new
training sample grid as a picture; :class:`foundation.progress.LogTail` picks the loss out of
a library's log.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, cast
from uuid import UUID

from prefect import get_run_logger
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from flows.publish import artifact_key, image_markdown, update_markdown_artifact
from foundation.progress import TrainingLosses, format_duration
from storage import StageStamp

# What a stage's ``progress(done, total)`` counts (default: store blocks).
UNITS = {"generator": "steps", "evaluate": "test pairs", "reid": "steps", "pairs": "pairs"}
BAR_WIDTH = 10


class Watch(Protocol):
    """Extra live information about a running stage, polled with its progress updates."""

    def start(self) -> None:
        """Called when the stage starts (in the stage's thread)."""

    def stop(self) -> None:
        """Called when the stage ends, however it ends."""

    def poll(self) -> str:
        """Publish what is new; return a short status (``"loss 0.41"``) or ``""``."""
        ...


def text_bar(percent: float, width: int = BAR_WIDTH) -> str:
    """``"[###-------]"`` for 25 %: progress in plain text (Markdown, logs)."""
    filled = min(width, max(0, round(width * percent / 100)))
    return "[" + "#" * filled + "-" * (width - filled) + "]"


class StageProgress:
    """A ``progress(done, total)`` callback that updates a Prefect progress artifact and logs.

    Args:
        stage: stage (stamp) name; the artifact key is ``augment-market-<stage>``.
        watch: extra live information (losses, pictures) polled with each update.
        min_interval: seconds between artifact updates (the last update always goes through).
        log_interval: longest gap between log lines, in seconds (also one line every 10 %).
        clock: seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        stage: str,
        *,
        watch: Watch | None = None,
        min_interval: float = 2.0,
        log_interval: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stage = stage
        self.unit = UNITS.get(stage.split("_")[0], "blocks")
        self.watch = watch
        self.min_interval = min_interval
        self.log_interval = log_interval
        self._clock = clock
        self._origin: tuple[float, int] | None = None  # (time, done) at the first call
        self._last_update = -float("inf")
        self._last_log = -float("inf")
        self._last_decile = -1
        self._status = ""
        self._percent = 0.0  # of the latest call
        # Called from sync code, so the sync variant runs (its stub also admits a coroutine).
        self.artifact_id = cast(
            UUID,
            create_progress_artifact(
                0.0,
                key=artifact_key("augment-market", stage),
                description=f"`{text_bar(0)}` started",
            ),
        )

    def __enter__(self) -> StageProgress:
        if self.watch is not None:
            self.watch.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: object
    ) -> None:
        if self.watch is not None:
            self.watch.stop()
        if error is not None:
            self.fail(error)

    def fail(self, error: BaseException) -> None:
        """Say on the card that the stage failed (or was cancelled), with its error's first
        line, where it stopped."""
        ended = "cancelled" if isinstance(error, KeyboardInterrupt | SystemExit) else "failed"
        if type(error).__name__ in ("CancelledError", "TerminationSignal"):
            ended = "cancelled"
        reason = (f"{type(error).__name__}: {error}".splitlines() or [""])[0][:200]
        percent = self._percent
        update_progress_artifact(
            self.artifact_id,
            percent,
            description=f"`{text_bar(percent)}` {ended} at {percent:.0f}%: {reason}",
        )

    def eta(self, done: int, total: int) -> float | None:
        """Seconds left at the rate since the first call (a resumed run starts past 0)."""
        if self._origin is None:
            return None
        started, first = self._origin
        elapsed = self._clock() - started
        if done <= first or elapsed <= 0:
            return None
        return (total - done) * elapsed / (done - first)

    def line(self, done: int, total: int) -> str:
        """The log line: ``"generator: 600/1200 steps (50%), ETA 4 min 10 s, loss ..."``."""
        percent = 100.0 * done / total if total else 100.0
        text = f"{self.stage}: {done}/{total} {self.unit} ({percent:.0f}%)"
        return text + self._details(done, total)

    def card(self, done: int, total: int) -> str:
        """The artifact's description, most telling first (a run's artifact cards show one
        line): ``"`[#####-----]` 50%, ETA 4 min 10 s, 600/1200 steps, loss ..."``."""
        percent = 100.0 * done / total if total else 100.0
        return f"`{text_bar(percent)}` {percent:.0f}%" + self._details(done, total, count=True)

    def _details(self, done: int, total: int, *, count: bool = False) -> str:
        eta = self.eta(done, total)
        text = f", ETA {format_duration(eta)}" if eta is not None and done < total else ""
        text += f", {done}/{total} {self.unit}" if count else ""
        return text + (f", {self._status}" if self._status else "")

    def __call__(self, done: int, total: int) -> None:
        now = self._clock()
        if self._origin is None:
            self._origin = (now, done)
        percent = 100.0 * done / total if total else 100.0
        self._percent = percent
        if done >= total or now - self._last_update >= self.min_interval:
            if self.watch is not None:
                self._status = self.watch.poll()
            update_progress_artifact(
                self.artifact_id,
                percent,
                description=self.card(done, total),
            )
            self._last_update = now
        decile = int(percent // 10)
        if decile > self._last_decile or now - self._last_log >= self.log_interval:
            get_run_logger().info("%s", self.line(done, total))
            self._last_decile = max(decile, self._last_decile)
            self._last_log = now

    def finish(self, stamp: StageStamp) -> None:
        """Mark the artifact complete with the stamp's digest (stages that skip all their
        blocks never call back)."""
        if self.watch is not None:
            self.watch.poll()
        counts = ", ".join(f"{key} {value}" for key, value in stamp.counts.items())
        update_progress_artifact(
            self.artifact_id,
            100.0,
            description=f"`{text_bar(100)}` ran, digest `{stamp.digest}`"
            + (f" ({counts})" if counts else ""),
        )


def publish_cached(stage: str, stamp: StageStamp | None) -> None:
    """The card of a stage that did not run because its cache was valid: complete, "cached",
    with the digest of the stamp it reused."""
    digest = f", digest `{stamp.digest}`" if stamp is not None else ""
    create_progress_artifact(
        100.0,
        key=artifact_key("augment-market", stage),
        description=f"`{text_bar(100)}` cached{digest}",
    )


class TrainingWatch:
    """The generator's run folder while it trains: the latest losses from its TensorBoard
    events, and each new ``samples/step_*.png`` grid shown in the artifact
    ``augment-market-generator-samples`` (one Markdown artifact, updated in place).

    Args:
        run_dir: the generator's run folder (``<run_dir>/generator``).
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.latest_sample: Path | None = None
        self._losses = TrainingLosses(self.run_dir)
        self._artifact_id: UUID | None = None

    @property
    def losses(self) -> dict[str, float]:
        """The latest value of each loss term read so far."""
        return self._losses.latest

    def start(self) -> None:
        self._seen = set(self._samples())  # a resumed run's old grids are not news

    def stop(self) -> None:
        pass

    def _samples(self) -> list[Path]:
        return sorted((self.run_dir / "samples").glob("step_*.png"))

    def poll(self) -> str:
        text = self._losses.poll()
        new = [path for path in self._samples() if path not in self._seen]
        if new:
            self._seen.update(new)
            self._publish(new[-1])
        return text

    def _publish(self, grid: Path) -> None:
        step = int(grid.stem.removeprefix("step_"))
        markdown = "\n".join(
            [
                f"## Generator training samples, step {step}",
                "",
                image_markdown(grid, f"training samples at step {step}"),
                "",
                f"Rows of the training batch at step {step}: source | target pose (mask and "
                f"parsing) | generated | ground truth. `{grid}`",
            ]
        )
        description = f"Training sample grid, step {step}"
        if self._artifact_id is None:
            self._artifact_id = cast(
                UUID,
                create_markdown_artifact(
                    markdown,
                    key="augment-market-generator-samples",
                    description=description,
                ),
            )
        else:
            update_markdown_artifact(self._artifact_id, markdown, description=description)
        self.latest_sample = grid
