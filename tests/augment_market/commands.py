"""The real command line run in the test's process (``tests.augment_market.commands``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from augment_market.cli import main
from storage import PersonStore

EXIT_USER = 1  # bad input or settings


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run ``augment-market ARGS`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exited:
        main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def one_error_line(err: str) -> str:
    """The single ``error: ...`` line of a failed command, without the prefix; short."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and len(lines[0]) < 400, err
    return lines[0].removeprefix("error: ")


def fails_cleanly(capsys, snapshot, store: PersonStore, *args, code: int = EXIT_USER) -> str:
    """Run a command that must fail on ``store`` without changing it; its error line."""
    before = snapshot(store)
    exit_code, _, err = cli(capsys, *args)
    assert exit_code == code, err
    assert snapshot(store) == before, "a failed command changed the store"
    return one_error_line(err)


def refused_parameters(capsys, path: Path, text: str) -> str:
    """``augment-market run --config PATH`` on a parameters file holding ``text``: a bad input
    (exit 1); its error line."""
    path.write_text(text)
    code, _, err = cli(capsys, "run", "--config", path)
    assert code == EXIT_USER, err
    return one_error_line(err)
