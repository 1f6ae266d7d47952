"""Package layers: foundation at the bottom imports nothing of ours; no package below the
command line imports it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"foundation", "storage", "pipeline", "san_model", "reid", "flows", "augment_market"}


def imported_packages(package: str) -> dict[str, set[str]]:
    """module file -> top-level packages of ours it imports (relative imports stay inside)."""
    found = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names & OURS - {package}
    return found


def test_foundation_imports_nothing_of_ours():
    assert imported_packages("foundation") and not any(imported_packages("foundation").values())


@pytest.mark.parametrize("package", ["storage", "pipeline", "san_model", "reid", "flows"])
def test_no_package_depends_on_the_command_line(package):
    offenders = {
        module: names
        for module, names in imported_packages(package).items()
        if "augment_market" in names
    }
    assert offenders == {}
