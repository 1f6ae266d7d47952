"""Block bookkeeping: done flags, resume after a crash, stamps, the one-writer lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

from storage import (
    MissingInputError,
    StageBusyError,
    config_hash,
    create_store,
    open_store,
)


def _store(path, n=10, block_size=2):
    index = pd.DataFrame(
        {
            "person_id": np.arange(n) + 1,
            "camera": np.ones(n, int),
            "split": ["train"] * n,
            "filename": [f"{i}.jpg" for i in range(n)],
        }
    )
    return create_store(str(path), index=index, height=2, width=2, block_size=block_size)


def _fill(run, store, blocks, value=1):
    for block in blocks:
        rows = store.block_slice(block)
        run.write("masks", block, np.full((rows.stop - rows.start, 2, 2), value, np.uint8))
        run.mark_done(block)


def test_config_hash_is_order_independent():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_stamp_digest_tracks_inputs_and_config(tmp_path):
    store = _store(tmp_path / "s")
    with store.stage("ingest", config={}) as run:
        _fill(run, store, run.pending_blocks())
        ingest = run.finish(counts={"images": 10})
    with store.stage("masks", config={"t": 0.5}, inputs=["ingest"]) as run:
        _fill(run, store, run.pending_blocks())
        first = run.finish(counts={"empty": 0})
    assert first.inputs == {"ingest": ingest.digest}
    with store.stage("masks", config={"t": 0.6}, inputs=["ingest"]) as run:
        assert run.pending_blocks() == list(range(5)), "new config must restart every block"
        _fill(run, store, run.pending_blocks())
        second = run.finish(counts={"empty": 0})
    assert second.digest != first.digest
    assert open_store(str(tmp_path / "s")).stamp("masks") == second


def test_missing_input_is_refused(tmp_path):
    store = _store(tmp_path / "s")
    with pytest.raises(MissingInputError, match="needs stage 'ingest'"):
        with store.stage("masks", config={}, inputs=["ingest"]):
            pass


def test_unfinished_blocks_prevent_stamp(tmp_path):
    store = _store(tmp_path / "s")
    with store.stage("masks", config={}) as run:
        _fill(run, store, [0, 1])
        with pytest.raises(RuntimeError, match="3 of 5 blocks not done"):
            run.finish(counts={})
    assert store.stamp("masks") is None


CRASHING_WRITER = textwrap.dedent("""
    import os, sys, numpy as np
    from storage import open_store
    store = open_store(sys.argv[1], mode="r+")
    with store.stage("masks", config={"k": 1}) as run:
        for block in run.pending_blocks()[:3]:
            rows = store.block_slice(block)
            run.write("masks", block, np.full((rows.stop - rows.start, 2, 2), 1, np.uint8))
            run.mark_done(block)
        os._exit(9)  # killed mid-stage: no cleanup, lock file left behind
""")


def test_crash_mid_stage_keeps_blocks_and_resumes(tmp_path):
    store = _store(tmp_path / "s")
    crashed = subprocess.run([sys.executable, "-c", CRASHING_WRITER, str(tmp_path / "s")])
    assert crashed.returncode == 9
    reopened = open_store(str(tmp_path / "s"), mode="r+")
    assert reopened.stamp("masks") is None
    assert reopened.read("masks")[:6].min() == 1, "completed blocks are kept"
    with reopened.stage("masks", config={"k": 1}) as run:
        assert run.pending_blocks() == [3, 4], "a rerun continues where the crash stopped"
        _fill(run, reopened, run.pending_blocks())
        run.finish(counts={})
    assert reopened.read("masks").min() == 1
    assert store.stamp("masks") is not None


HOLDING_WRITER = textwrap.dedent("""
    import sys, time
    from storage import open_store
    store = open_store(sys.argv[1], mode="r+")
    with store.stage("masks", config={}) as run:
        print("holding", flush=True)
        time.sleep(30)
""")


def test_second_writer_is_refused_while_first_holds_the_stage(tmp_path):
    _store(tmp_path / "s")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WRITER, str(tmp_path / "s")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        store = open_store(str(tmp_path / "s"), mode="r+")
        with pytest.raises(StageBusyError, match="already running"):
            with store.stage("masks", config={}):
                pass
        with store.stage("parsing", config={}) as run:  # other stages are free
            assert run.n_blocks == 5
    finally:
        holder.kill()
        holder.wait()
    deadline = time.time() + 5
    while time.time() < deadline:  # the dead holder's lock is taken over
        try:
            with store.stage("masks", config={}):
                break
        except StageBusyError:
            time.sleep(0.1)
    else:
        pytest.fail("lock of a killed process was not taken over")


def test_workers_join_a_running_stage_and_only_the_coordinator_finishes(tmp_path):
    store = _store(tmp_path / "s")
    with pytest.raises(RuntimeError, match="not running"):
        store.join_stage("masks", config={"k": 1})
    progress = []
    with store.stage("masks", config={"k": 1}, on_block=lambda *p: progress.append(p)) as run:
        with pytest.raises(RuntimeError, match="not begun"):
            store.join_stage("masks", config={"k": 1})
        run.begin()  # a coordinator begins before it fans out
        worker = open_store(str(tmp_path / "s"), mode="r+").join_stage("masks", config={"k": 1})
        _fill(worker, worker.store, [1, 3])
        assert run.pending_blocks() == [0, 2, 4], "the coordinator sees the worker's flags"
        assert progress == [], "workers report no progress themselves"
        run.count_done([1, 3])
        assert progress == [(2, 5)]
        with pytest.raises(RuntimeError, match="runs with other settings"):
            worker.store.join_stage("masks", config={"k": 2})
        with pytest.raises(RuntimeError, match="cannot finish"):
            worker.finish(counts={})
        _fill(run, store, run.pending_blocks())
        run.finish(counts={})
    assert store.read("masks").min() == 1
    with pytest.raises(RuntimeError, match="not running"):
        store.join_stage("masks", config={"k": 1})


def _finished_masks(path):
    store = _store(path)
    with store.stage("masks", config={"k": 1}) as run:
        _fill(run, store, run.pending_blocks())
        stamp = run.finish(counts={})
    return store, stamp


def test_a_rerun_that_fails_before_writing_leaves_the_finished_stage(tmp_path):
    store, stamp = _finished_masks(tmp_path / "s")
    with pytest.raises(ValueError, match="bad input"):
        with store.stage("masks", config={"k": 2}) as run:
            assert run.pending_blocks() == list(range(5)), "other settings: every block"
            raise ValueError("bad input found while checking")
    assert store.stamp("masks") == stamp
    with store.stage("masks", config={"k": 1}) as run:
        assert run.pending_blocks() == [], "the done flags of the finished run are kept"


def test_the_first_write_begins_the_run(tmp_path):
    store, _ = _finished_masks(tmp_path / "s")
    with pytest.raises(RuntimeError, match="crash"):
        with store.stage("masks", config={"k": 2}) as run:
            store.write_table("notes", pd.DataFrame({"a": [1]}))
            assert run.begun
            raise RuntimeError("crash after a write")
    assert store.stamp("masks") is None, "changed outputs never keep the old stamp"
    with store.stage("masks", config={"k": 1}) as run:
        assert run.pending_blocks() == list(range(5)), "flags of the other settings were reset"


def test_settings_computed_under_the_lock(tmp_path):
    store, stamp = _finished_masks(tmp_path / "s")
    with store.stage("masks") as run:
        with pytest.raises(RuntimeError, match="configure"):
            run.pending_blocks()
        run.configure({"k": 1})
        assert run.pending_blocks() == []
        assert run.finish(counts={}).digest == stamp.digest
