"""CPU training's thread setting: one intra-op thread inside, the caller's count restored."""

import threading

import pytest
import torch

from foundation.cpu import TRAINING_THREADS, training_threads


def run_together(*bodies) -> None:
    """Run each body in a thread of its own, all at once, and wait for all."""
    threads = [threading.Thread(target=body) for body in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def test_cpu_training_runs_on_one_thread_and_restores_the_count(two_threads) -> None:
    with training_threads("cpu"):
        assert torch.get_num_threads() == TRAINING_THREADS == 1
    assert torch.get_num_threads() == 2


def test_a_cuda_device_leaves_the_count_alone(two_threads) -> None:
    with training_threads(torch.device("cuda")):
        assert torch.get_num_threads() == 2


def test_restored_even_when_training_fails(two_threads) -> None:
    with pytest.raises(RuntimeError), training_threads("cpu"):
        raise RuntimeError("a step failed")
    assert torch.get_num_threads() == 2


def test_overlapping_trainings_restore_only_when_the_last_leaves(two_threads) -> None:
    """Stages are threads of one process: the first to leave must not give the other back
    two threads, and the count found before the first is the one restored."""
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def first() -> None:
        with training_threads("cpu"):
            first_in.set()
            second_in.wait()
        first_out.set()

    def second() -> None:
        first_in.wait()
        with training_threads("cpu"):
            second_in.set()
            first_out.wait()
            seen["after the first left"] = torch.get_num_threads()

    run_together(first, second)
    assert seen == {"after the first left": 1}
    assert torch.get_num_threads() == 2


def test_a_thread_that_ran_torch_before_trains_on_one_thread_too(two_threads) -> None:
    """torch's count is per thread once a thread has run a parallel op (a reused stage thread):
    a training that starts while another trains must set it in its own thread, or it trains
    on two threads, and its numbers depend on which stage started first."""
    warmed, first_in, seen_in_second = threading.Event(), threading.Event(), threading.Event()
    seen = {}
    x = torch.randn(512, 512)

    def first() -> None:
        warmed.wait()
        with training_threads("cpu"):
            first_in.set()
            seen_in_second.wait()

    def second() -> None:
        x.add(x)  # a parallel op: this thread's team size is now fixed at two
        assert torch.get_num_threads() == 2
        warmed.set()
        first_in.wait()
        with training_threads("cpu"):
            seen["second"] = torch.get_num_threads()
        seen_in_second.set()

    run_together(first, second)
    assert seen == {"second": 1}
