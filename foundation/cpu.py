"""CPU training on one intra-op thread: steady step times on shared cores.

A demo-preset SAN step is a few hundred small ops, each a parallel region whose OpenMP team
waits at a barrier for its slowest thread. When other processes hold the cores, a descheduled
worker holds up every barrier: measured on 2 busy cores (docs/cpu.md), every two-thread step
took 1.8-54 s, against 0.3 s of work on one thread. Denormal floats were not the cause (none
were found around the stalls; flushing them changed nothing), so nothing here changes the
arithmetic.

:func:`training_threads` is what the SAN and Re-ID training loops run under. torch's thread
count is two settings: the OpenMP team size of each thread (a thread keeps the count it had at
its first parallel op, or last set itself) and process-wide ones (MKL's, the default of new
threads). So every training sets one thread in its own thread on entry, and the context counts
the trainings inside it: the last to leave restores the count the first found. A thread that
leaves while another trains keeps one thread until it sets its count again.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import torch

TRAINING_THREADS = 1

_lock = threading.Lock()
_inside = 0
_restore = 0


@contextlib.contextmanager
def training_threads(device: str | torch.device) -> Iterator[None]:
    """Run the body with torch's intra-op pool at :data:`TRAINING_THREADS` on the CPU.

    A CUDA ``device`` changes nothing (its host thread only launches kernels). Nested and
    concurrent uses (stages run as threads of one process) share one setting, restored when
    the last of them leaves.
    """
    if torch.device(device).type != "cpu":
        yield
        return
    global _inside, _restore
    with _lock:
        if _inside == 0:
            _restore = torch.get_num_threads()
        # In every entering thread: a stage thread that ran torch ops before another training
        # set one thread still has its own team of two (tests/foundation/test_cpu.py).
        torch.set_num_threads(TRAINING_THREADS)
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                torch.set_num_threads(_restore)
