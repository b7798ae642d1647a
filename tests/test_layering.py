"""The layering of DESIGN.md, enforced: no module imports a layer above its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "icechunk"

# rank of each top-level part of the package (first component after ``icechunk.``)
LAYERS: dict[str, int] = {
    "_errors": 0, "_version": 0, "config": 0, "credentials": 0, "_types": 0,
    "_utilities": 4,
    "format": 1, "storage": 1,
    "core": 2, "_malloc": 2,
    "_sync": 3, "store": 3,
    "repository": 4, "session": 4, "conflicts": 4, "snapshots": 4, "ops": 4, "virtual": 4,
    "testing": 4, "_maintenance": 4, "upgrade": 4,
    "distributed": 5, "xarray": 5, "dask": 5,
}
FORBIDDEN_PAIRS = {("format", "storage"), ("storage", "format")}


def _part(module: str) -> str | None:
    pieces = module.split(".")
    if pieces[0] != "icechunk":
        return None
    return pieces[1] if len(pieces) > 1 else ""


def _runtime_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """(line, module) of every import not guarded by ``if TYPE_CHECKING``."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                found.extend((child.lineno, alias.name) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.lineno, child.module))
                # ``from icechunk import format`` imports the sub-package itself
                if child.module == "icechunk":
                    found.extend(
                        (child.lineno, f"icechunk.{alias.name}") for alias in child.names
                    )
            visit(child)

    visit(tree)
    return found


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_has_a_layer() -> None:
    for path in _modules():
        part = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        assert part in LAYERS, f"{path} is in no layer; add it to LAYERS and DESIGN.md"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_upward_imports(path: Path) -> None:
    own = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
    tree = ast.parse(path.read_text(), filename=str(path))
    for line, module in _runtime_imports(tree):
        target = _part(module)
        if target is None or target == own:
            continue
        if target == "":
            assert LAYERS[own] >= 5, f"{path}:{line}: only integrations may import the facade"
            continue
        assert (own, target) not in FORBIDDEN_PAIRS, f"{path}:{line}: {own} must not import {target}"
        assert LAYERS[target] <= LAYERS[own], (
            f"{path}:{line}: layer {own} ({LAYERS[own]}) imports {module} "
            f"(layer {LAYERS[target]}): upward import"
        )


def test_layering_check_catches_an_upward_import(tmp_path: Path) -> None:
    tree = ast.parse("import icechunk.session\nif TYPE_CHECKING:\n    import icechunk.store\n")
    assert [m for _, m in _runtime_imports(tree)] == ["icechunk.session"]


def test_import_icechunk_loads_no_heavy_integrations() -> None:
    code = (
        "import sys, icechunk\n"
        "bad = [m for m in ('xarray', 'dask', 'distributed', 'virtualizarr') if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
