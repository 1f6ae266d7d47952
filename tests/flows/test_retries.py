"""Retries: transient I/O errors are retried, bad input is not."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.tasks import RETRIES, is_transient, retry_on_transient_io
from storage import StoreValidationError


def test_is_transient_classification():
    assert is_transient(OSError("disk hiccup"))
    assert is_transient(ConnectionResetError())
    assert is_transient(TimeoutError())
    for error in (
        FileNotFoundError("input"),
        PermissionError(),
        ValueError("bad"),
        StoreValidationError("bad shape"),
        RuntimeError(),
    ):
        assert not is_transient(error)


@pytest.mark.parametrize(
    ("error", "attempts"), [(OSError, RETRIES + 1), (ValueError, 1), (FileNotFoundError, 1)]
)
def test_task_retries_only_transient_errors(prefect_server, error, attempts):
    calls = []

    @task(retries=RETRIES, retry_delay_seconds=0, retry_condition_fn=retry_on_transient_io)
    def flaky() -> None:
        calls.append(1)
        raise error("boom")

    @flow
    def run() -> None:
        flaky()

    with pytest.raises(error):
        run()
    assert len(calls) == attempts
