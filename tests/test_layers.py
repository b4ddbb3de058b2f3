"""The layers of DESIGN.md §1, checked on the source: imports point down only.

Walks every module's syntax tree (imports inside functions included), so a lazy import cannot slip
past. Top level: ``align4d_core`` never imports Prefect, ``tasks``, ``flows`` or the ``align4d``
console script; ``tasks`` never imports ``flows``; ``flows`` never imports ``align4d``. Inside the
library the packages are ordered (:data:`LEVELS`): a module may import its own level and below.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "align4d_core": ("prefect", "tasks", "flows", "align4d"),
    "tasks": ("flows", "align4d"),
    "flows": ("align4d",),
}
"""What each top-level package must never import (the console script ``align4d`` is the top)."""

LEVELS = {
    "errors": 0,
    "runtime": 0,
    "config": 1,
    "io": 2,
    "scene": 2,
    "sample": 3,
    "guidance": 3,
    "metrics": 3,
    "method": 4,
    "pairs": 5,
    "prior": 5,
    "pipeline": 6,
    "reporting": 7,
    "__init__": 8,  # align4d_core/__init__.py re-exports from below
}
"""The library's packages from the bottom up: files and tensors, then the method, then running it,
then reporting on runs."""


def imports_of(source: str, module: str, is_package: bool) -> set[str]:
    """Every module a source file imports, absolute, wherever in the file the import is."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
    return found


def modules(top: str):
    for path in sorted((ROOT / top).rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        yield ".".join(parts), path.read_text(encoding="utf-8"), is_package


def violations(top: str, sources=None) -> list[str]:
    """``module imports name`` for every import that breaks a rule of this file."""
    found = []
    for module, source, is_package in sources if sources is not None else modules(top):
        for name in sorted(imports_of(source, module, is_package)):
            root = name.split(".")[0]
            if root in FORBIDDEN.get(top, ()):
                found.append(f"{module} imports {name}")
            if top == "align4d_core" and root == "align4d_core":
                mine, theirs = _level(module), _level(name)
                if theirs is not None and mine is not None and theirs > mine:
                    found.append(f"{module} (level {mine}) imports {name} (level {theirs})")
    return found


def _level(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) == 1:
        return LEVELS["__init__"]
    return LEVELS.get(parts[1])


@pytest.mark.parametrize("top", sorted(FORBIDDEN))
def test_imports_point_down_only(top):
    assert violations(top) == []


def test_every_library_package_has_a_level():
    packages = {p.name for p in (ROOT / "align4d_core").iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    files = {p.stem for p in (ROOT / "align4d_core").glob("*.py")}
    assert packages | files <= set(LEVELS), sorted((packages | files) - set(LEVELS))


@pytest.mark.parametrize(
    "line, expected",
    [
        ("import flows", "imports flows"),
        ("from tasks.common import gpu_slot", "imports tasks.common"),
        ("from prefect import flow", "imports prefect"),
        ("    from align4d.cli import main", "imports align4d.cli"),
        ("from align4d_core.reporting.tables import build_tables", "imports align4d_core.reporting.tables (level 7)"),
    ],
)
def test_the_check_fails_when_a_core_module_imports_upward(line, expected):
    """Adding one such line to a core module (here the optimizer) is caught."""
    path = ROOT / "align4d_core" / "method" / "optimize.py"
    source = path.read_text(encoding="utf-8")
    body = f"def _added():\n    {line.strip()}\n" if line.startswith(" ") else f"{line}\n"
    broken = [("align4d_core.method.optimize", source + "\n" + body, False)]
    assert any(expected in v for v in violations("align4d_core", broken)), violations("align4d_core", broken)


def test_tasks_may_not_import_flows():
    broken = [("tasks.search", "from flows.item import align4d_item\n", False)]
    assert violations("tasks", broken) == ["tasks.search imports flows.item"]
