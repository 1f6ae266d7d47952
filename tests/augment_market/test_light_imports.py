"""Commands that only read and write stores start without torch or Prefect; the flow module
without torch.

Each runs in a fresh interpreter (the test process has both imported already) and reports the
modules it loaded; each must also succeed, so the check covers the work, not just the start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
HEAVY = {"torch", "prefect"}
PROBE = """
import json, sys
from augment_market.cli import main
try:
    main(sys.argv[2:])
    code = 0
except SystemExit as exit:
    code = exit.code or 0
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.argv[1])))
print(json.dumps({"code": code, "loaded": loaded}))
"""


def run(*argv: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(sorted(HEAVY)), *argv],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("light") / "store"
    result = run("ingest", "market1501", str(DATA / "market1501_sample"), "--store", str(path))
    assert result == {"code": 0, "loaded": []}
    return path


def test_ingest_imports_neither_torch_nor_prefect(store: Path) -> None:
    assert (store / "zarr.json").is_file()  # the fixture ingested, in a subprocess, and checked


@pytest.mark.parametrize(
    "command",
    [
        ["--help"],
        ["info", "{store}"],
        ["pairs", "{store}", "--test-pairs", "8"],
        ["export", "{store}", "{tmp}/export"],
        ["migrate", str(DATA / "store_v1"), "{tmp}/migrated"],
    ],
    ids=lambda command: command[0],
)
def test_light_commands_import_neither_torch_nor_prefect(
    command: list[str], store: Path, tmp_path: Path
) -> None:
    argv = [part.format(store=store, tmp=tmp_path) for part in command]
    assert run(*argv) == {"code": 0, "loaded": []}


def test_the_flow_module_imports_no_torch() -> None:
    """Every flow run on a worker and `prefect deploy` load flows/dag.py first: torch comes
    only with a stage that needs it."""
    probe = "import json, sys, flows.dag; print(json.dumps('torch' in sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=True
    )
    assert json.loads(done.stdout) is False
