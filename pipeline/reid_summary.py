"""Re-ID comparison rows summarised over paired seeds: means, differences and verdicts.

:func:`summarize` turns the rows of :func:`pipeline.reid_compare.comparison_rows` into means
with 95% intervals and the paired difference of every set against ``original`` and ``copies``:
per seed k the difference d_k of the two sets' numbers, then mean(d) +- t(0.975, n - 1) *
sd(d) / sqrt(n) over the n seeds (Student's t; no interval from one seed). The verdict of a
set against copies, per model and distance, reads the mAP difference: "helps" when its
interval lies above 0, "hurts" below, else "no measurable difference".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from pipeline.augmentation_sets import ORIGINAL

# The control that adds images of the same people without any new pose.
CONTROL = "copies"
NUMBERS = ("rank1", "rank5", "rank10", "mAP")


@dataclass(frozen=True)
class Interval:
    """A mean over n paired seeds with its 95% Student-t interval (None for n = 1)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval:
        x = np.asarray(values, dtype=np.float64)
        mean = float(x.mean())
        if len(x) < 2:
            return cls(mean, None, None, len(x))
        half = float(stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
        return cls(mean, mean - half, mean + half, len(x))

    def text(self, signed: bool = False) -> str:
        value = f"{self.mean:+.2f}" if signed else f"{self.mean:.2f}"
        if self.low is None or self.high is None:
            return value
        return f"{value} [{self.low:.2f}, {self.high:.2f}]"

    def verdict(self) -> str:
        """Of a difference: helps / hurts when the interval excludes 0."""
        if self.low is None or self.high is None:
            return "no interval (1 seed)"
        if self.low > 0:
            return "helps"
        if self.high < 0:
            return "hurts"
        return "no measurable difference"


def _by_seed(rows: Sequence[Mapping[str, Any]], model: str, distance: str, set_name: str):
    return {
        row["seed"]: row
        for row in rows
        if (row["model"], row["distance"], row["set"]) == (model, distance, set_name)
    }


def summarize(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Means, paired differences and verdicts of comparison rows.

    Returns:
        ``{"sets": [...], "differences": [...], "verdicts": [...]}``: per (model, distance,
        set) each number's :class:`Interval` as a dict; per (model, distance, set, baseline)
        the paired difference over the seeds both have; per (model, distance) the verdict of
        every set other than original and copies against copies (mAP).
    """
    keys = list(dict.fromkeys((row["model"], row["distance"]) for row in rows))
    sets = list(dict.fromkeys(row["set"] for row in rows))
    summary: dict[str, Any] = {"sets": [], "differences": [], "verdicts": []}
    for model, distance in keys:
        for set_name in sets:
            runs = _by_seed(rows, model, distance, set_name)
            if not runs:
                continue
            first = next(iter(runs.values()))
            summary["sets"].append(
                {
                    "model": model,
                    "distance": distance,
                    "set": set_name,
                    "seeds": sorted(runs),
                    "steps": first["steps"],
                    "images": first["images"],
                    **{
                        key: dataclasses.asdict(Interval.of([r[key] for r in runs.values()]))
                        for key in NUMBERS
                    },
                }
            )
        for baseline in (ORIGINAL, CONTROL):
            base = _by_seed(rows, model, distance, baseline)
            for set_name in sets:
                if set_name in (baseline, ORIGINAL) or not base:
                    continue
                runs = _by_seed(rows, model, distance, set_name)
                paired = sorted(set(runs) & set(base))
                if not paired:
                    continue
                summary["differences"].append(
                    {
                        "model": model,
                        "distance": distance,
                        "set": set_name,
                        "against": baseline,
                        "seeds": paired,
                        **{
                            key: dataclasses.asdict(
                                Interval.of([runs[s][key] - base[s][key] for s in paired])
                            )
                            for key in NUMBERS
                        },
                    }
                )
        against_control = [
            d
            for d in summary["differences"]
            if (d["model"], d["distance"], d["against"]) == (model, distance, CONTROL)
            and d["set"] != ORIGINAL
        ]
        if against_control:
            summary["verdicts"].append(
                {
                    "model": model,
                    "distance": distance,
                    "sets": {d["set"]: Interval(**d["mAP"]).verdict() for d in against_control},
                }
            )
    return summary
