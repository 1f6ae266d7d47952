"""Progress in words, shared by the flow's log lines and the command line's progress, and the
latest training losses of a generator run."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"3 min 20 s"``, ``"2 h 05 min"``."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class LogTail(logging.Handler):
    """The latest ``loss <number>`` that logger ``name`` wrote from the stage's own thread.

    Stages run as threads of one process (four Re-ID trainings at once), so a record counts
    only when it comes from the thread that started the watch.
    """

    LOSS = re.compile(r"\bloss[ =:]+([-+0-9.eE]+)")
    # Logger name -> (tails attached, level before the first): INFO records must reach the
    # handlers while any tail listens, and the level is restored when the last one stops.
    _attached: dict[str, tuple[int, int]] = {}
    _lock = threading.Lock()

    def __init__(self, name: str) -> None:
        super().__init__(level=logging.INFO)
        self.logger_name = name
        self.loss: str | None = None
        self._thread: int | None = None

    def start(self) -> None:
        self._thread = threading.get_ident()
        logger = logging.getLogger(self.logger_name)
        with self._lock:
            count, level = self._attached.get(self.logger_name, (0, logger.level))
            if count == 0 and logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            self._attached[self.logger_name] = (count + 1, level)
            logger.addHandler(self)

    def stop(self) -> None:
        logger = logging.getLogger(self.logger_name)
        with self._lock:
            logger.removeHandler(self)
            count, level = self._attached.pop(self.logger_name)
            if count > 1:
                self._attached[self.logger_name] = (count - 1, level)
            else:
                logger.setLevel(level)

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread and (found := self.LOSS.search(record.getMessage())):
            self.loss = found.group(1)

    def poll(self) -> str:
        return f"loss {self.loss}" if self.loss is not None else ""


class TrainingLosses:
    """The latest loss terms of a generator run, read from its TensorBoard events while it
    trains (the run logs them every ``log_interval`` steps as ``loss/<term>``).

    Args:
        run_dir: the run folder (its ``tensorboard/`` holds the events).
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.latest: dict[str, float] = {}
        self._events: Any = None  # the EventFileLoader of the newest events file
        self._events_file: Path | None = None

    def poll(self) -> str:
        """Read the events written since the last call; ``"loss g_total 1.234, d 0.456"`` or
        ``""`` before the first. A half-written or foreign file is skipped, never raised."""
        try:
            self._read()
        except Exception as error:  # it must not stop the training it watches
            logger.debug("TensorBoard events of %s unreadable: %s", self.run_dir, error)
        if not self.latest:
            return ""
        return "loss " + ", ".join(f"{name} {value:.3f}" for name, value in self.latest.items())

    def _read(self) -> None:
        files = sorted((self.run_dir / "tensorboard").glob("events.out.tfevents.*"))
        if not files:
            return
        if files[-1] != self._events_file:
            from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

            self._events_file, self._events = files[-1], EventFileLoader(str(files[-1]))
        for event in self._events.Load():  # only the events written since the last call
            for value in event.summary.value:
                if value.tag.startswith("loss/"):
                    number = (
                        value.simple_value
                        if value.WhichOneof("value") == "simple_value"
                        else value.tensor.float_val[0]
                    )
                    self.latest[value.tag.removeprefix("loss/")] = float(number)
