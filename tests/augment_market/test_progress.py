"""The command line's progress: plain lines off a terminal, a rich bar on one."""

from __future__ import annotations

import io

from augment_market.progress import CommandProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_each_tenth_with_rate_eta_and_status():
    now = [100.0]
    stream = io.StringIO()
    statuses = iter(f"loss {k}" for k in range(100))
    with CommandProgress(
        "train", "steps", status=lambda: next(statuses), stream=stream, clock=lambda: now[0]
    ) as report:
        for step in range(11, 51):  # a resumed run: 10 steps were done before
            now[0] += 2.0
            report(step, 50)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train: 11/50 steps (22%), loss 0"
    assert lines[1].startswith("train: 15/50 steps (30%), 0.5 steps/s, ETA 1 min 10 s, loss")
    assert lines[-1].startswith("train: 50/50 steps (100%), 0.5 steps/s, loss")
    assert "ETA" not in lines[-1]
    assert len(lines) == 1 + 8  # the first call, then 30%, 40%, ..., 100%


def test_a_plain_line_at_least_every_interval():
    now = [0.0]
    stream = io.StringIO()
    report = CommandProgress("masks", "blocks", stream=stream, clock=lambda: now[0])
    for block in range(1, 4):
        now[0] += 31.0
        report(block, 1000)  # under a tenth each time
    assert len(stream.getvalue().splitlines()) == 3


def test_a_bar_on_a_terminal_is_drawn_and_closed():
    stream = Terminal()
    with CommandProgress("train", "steps", status=lambda: "loss g_total 1.5", stream=stream) as p:
        for step in range(1, 5):
            p(step, 4)
    drawn = stream.getvalue()
    assert "100%" in drawn and "4/4" in drawn and "loss g_total 1.5" in drawn
    assert "\n" not in drawn.split("train")[0]  # no plain lines before the bar
