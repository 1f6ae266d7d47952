"""What a training run costs before it starts: FLOPs counted by torch, time on named GPUs.

:func:`count_flops` runs a function under :class:`torch.utils.flop_counter.FlopCounterMode`
and returns its total. Run on modules and tensors
built on the ``meta`` device, it costs no memory and no arithmetic: the paper-size SAN step
counts in well under a second on a CPU. The counter counts matrix products and convolutions
(forward and backward), which are nearly all of a CNN's arithmetic; element-wise work
(BatchNorm, activations, the optimiser's update) is left out.

:func:`gpu_estimates` turns a FLOP total into hours on the GPU classes of :data:`GPU_PEAKS` at
the utilisations of :data:`UTILISATIONS`: an estimate, never a measurement (the one-shot
``benchmarks/gpu.sh`` prints the two side by side on a real GPU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch.utils.flop_counter import FlopCounterMode

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (FLOP/s, without sparsity).
GPU_PEAKS = {
    "A100 (bf16 peak 312 TFLOP/s)": 312e12,
    "H100 SXM (bf16 peak 989 TFLOP/s)": 989e12,
}
# Fractions of the peak a training loop reaches. Small images (128x64) and BatchNorm-heavy
# networks sit at the low end; the GPU benchmark measures the real one.
UTILISATIONS = (0.3, 0.5)


def count_flops(call: Callable[[], object]) -> int:
    """Run ``call()`` under torch's flop counter; return the FLOPs it counted (a multiply-add
    counts 2)."""
    with FlopCounterMode(display=False) as counter:
        call()
    return int(counter.get_total_flops())


@dataclass(frozen=True)
class TrainingCost:
    """The arithmetic of a training run.

    Attributes:
        parameters: parameters of each network the step runs, by role (``generator``,
            ``discriminator``, ``perceptual``; ``model``).
        step_flops: FLOPs of one optimiser step over the global batch.
        networks: FLOPs of one forward and backward pass of each network alone, per sample
            (image or pair): the check against published sizes.
        steps: optimiser steps of the run (the schedule, or fewer with ``max_steps``).
        batch_size: samples per step (pairs for SAN, images for Re-ID).
    """

    parameters: dict[str, int]
    step_flops: int
    networks: dict[str, int]
    steps: int
    batch_size: int

    @property
    def total_flops(self) -> int:
        """FLOPs of the whole run: ``step_flops * steps``."""
        return self.step_flops * self.steps


@dataclass(frozen=True)
class GPUEstimate:
    """Hours for a FLOP total on one GPU class at one utilisation."""

    gpu: str
    utilisation: float
    hours: float


def gpu_estimates(total_flops: float) -> list[GPUEstimate]:
    """One estimate per GPU class of :data:`GPU_PEAKS` and utilisation of :data:`UTILISATIONS`."""
    return [
        GPUEstimate(gpu, utilisation, total_flops / (peak * utilisation) / 3600)
        for gpu, peak in GPU_PEAKS.items()
        for utilisation in UTILISATIONS
    ]


def format_hours(hours: float) -> str:
    """``"12 s"``, ``"41 min"``, ``"3.2 h"``, ``"2.5 days"``."""
    if hours < 1 / 60:
        return f"{hours * 3600:.0f} s"
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 48:
        return f"{hours:.1f} h"
    return f"{hours / 24:.1f} days"


def format_flops(flops: float) -> str:
    """``"102.5 GFLOP"``, ``"1.23 EFLOP"``: three significant figures in the nearest unit."""
    for unit, scale in (("E", 1e18), ("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}FLOP"
    return f"{flops:.0f} FLOP"


def format_count(n: float) -> str:
    """``"43.7M"``, ``"38.7k"``: parameters in three significant figures."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return f"{n:.0f}"


def describe(cost: TrainingCost, *, sample: str) -> list[str]:
    """The lines ``--dry-run`` prints: parameters, FLOPs per ``sample`` ("pair", "image") of
    each network, per step and in all, then the time estimates of :func:`gpu_estimates`."""
    lines = [
        "parameters: " + ", ".join(f"{k} {format_count(v)}" for k, v in cost.parameters.items()),
        f"forward+backward per {sample}: "
        + ", ".join(f"{k} {format_flops(v)}" for k, v in cost.networks.items()),
        f"one training step ({cost.batch_size} {sample}s): {format_flops(cost.step_flops)} "
        f"({cost.step_flops:,} FLOP)",
        f"the run: {cost.steps:,} steps, {format_flops(cost.total_flops)} "
        f"({cost.total_flops:,} FLOP)",
        "time at " + " / ".join(f"{u:.0%}" for u in UTILISATIONS) + " of the GPU's peak "
        "(estimates from the FLOPs, not measurements):",
    ]
    estimates = gpu_estimates(cost.total_flops)
    width = max(len(gpu) for gpu in GPU_PEAKS)
    for gpu in GPU_PEAKS:
        hours = [format_hours(e.hours) for e in estimates if e.gpu == gpu]
        lines.append(f"  {gpu:<{width}}  {' / '.join(hours)}")
    return lines
