"""Package layers: foundation at the bottom imports nothing of ours; no package below the
command line imports it; only storage/ touches the store's on-disk format."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import storage

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


# Libraries that read and write the store's on-disk format.
FORMAT_LIBRARIES = {"zarr", "numcodecs"}
# Files outside storage/ that may import a format library, and why.
FORMAT_EXCEPTIONS = {
    # Compares the store's codecs with Blosc, format 1's codec, element by element.
    "benchmarks/store_io.py": {"numcodecs"},
    # Damages a store's Zarr metadata by hand, as an outside writer would.
    "tests/augment_market/test_bad_inputs.py": {"zarr"},
}


def format_imports(path: Path) -> set[str]:
    """What a file imports that belongs to the format: a format library, a storage submodule
    (``storage.store``, ``storage.encoding``...) or a name ``storage`` does not export."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
            if node.module == "storage":
                found |= {f"storage.{a.name}" for a in node.names if a.name not in storage.__all__}
        else:
            continue
        found |= {m for m in modules if m.split(".")[0] in FORMAT_LIBRARIES}
        found |= {m for m in modules if m.startswith("storage.")}
    return found


def test_only_storage_touches_the_format():
    """Every module outside storage/ (the packages, benchmarks/, scripts/, tests/) reaches the
    store through the names ``storage`` exports, never zarr, numcodecs or a storage submodule:
    the format can change inside storage/ alone. Exceptions: tests/storage/ tests the
    submodules themselves, and :data:`FORMAT_EXCEPTIONS` (a benchmark's comparison codec, a
    test that damages a store by hand) import a format library, not storage's internals."""
    offenders = {}
    for folder in sorted(ROOT.iterdir()):
        if not folder.is_dir() or folder.name.startswith(".") or folder.name == "storage":
            continue
        for path in sorted(folder.rglob("*.py")):
            relative = path.relative_to(ROOT).as_posix()
            if relative.startswith("tests/storage/"):
                continue
            found = format_imports(path) - FORMAT_EXCEPTIONS.get(relative, set())
            if found:
                offenders[relative] = found
    assert offenders == {}
    assert all(format_imports(ROOT / file) for file in FORMAT_EXCEPTIONS), "exceptions in use"


def module_imports() -> dict[str, set[str]]:
    """Our module -> our modules it imports when it is loaded (module-level statements; an
    ``if`` block, such as ``if TYPE_CHECKING:``, and imports inside functions do not count)."""
    files = {}
    for package in [*sorted(OURS), "benchmarks"]:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            files[name.removesuffix(".__init__")] = path
    graph = {}
    for name, path in files.items():
        targets = set()
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {target for target in targets if target in files} - {name}
    return graph


def test_no_import_circle():
    graph = module_imports()
    state: dict[str, str] = {}
    circles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert circles == []
