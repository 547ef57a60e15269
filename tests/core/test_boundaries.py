"""Boundaries of the source tree, checked by parsing it with `ast`.

The lake has one reader and one writer: `minyun.core` (issue 10, item 4).

Every module under `src/minyun` is parsed with `ast` (imports inside functions count too).
No module outside `minyun.core` imports `deltalake`; one outside it that imports `duckdb`
must be listed below with its reason: DuckDB over data that is not (yet) a lake resource.
An entry whose module no longer imports the engine fails too, so the lists only shrink.

No module under `src/minyun` has an `assert` statement (issue 11, item 7): `python -O` drops
them, so a check the code relies on raises an explicit error.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

DUCKDB_ALLOWED = {
    "minyun.ingest.sources": (
        "reads the incoming source file (CSV, XLSX, a database dump) in the load's validation "
        "pass, before it is a resource"
    ),
    "minyun.ingest.service": (
        "the load's validation pass: rules, rejects and repeated keys over the incoming source "
        "and the load's own files before they are committed"
    ),
    "minyun.ingest.infer": (
        "guesses a schema from a steward's sample file, read in a work folder and deleted, "
        "never a resource"
    ),
    "minyun.apps.ecocloud.ingest": (
        "validation and upsert of incoming readings and the city hours over the eco-cloud's "
        "control-plane tables, not lake resources"
    ),
    "minyun.apps.ecocloud.detect": (
        "alert detection over the eco-cloud's control-plane readings, not lake resources"
    ),
    "minyun.apps.ecocloud.cnemc": (
        "writes a CNEMC-layout CSV of an in-memory table of readings, not a lake resource"
    ),
    "minyun.subjects.linkage": (
        "Splink's own in-memory DuckDB (and the id assignment's SQL) over Arrow tables the "
        "resolution job read through access plans and the core lake reader; never a resource"
    ),
}

DELTALAKE_ALLOWED: dict[str, str] = {}


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """The top-level packages a module imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def _outside_core() -> dict[str, set[str]]:
    modules = {_module(path): _imports(path) for path in sorted((SRC / "minyun").rglob("*.py"))}
    assert "minyun.core.lake" in modules and "minyun.ingest.service" in modules
    return {
        name: imported
        for name, imported in modules.items()
        if name != "minyun.core" and not name.startswith("minyun.core.")
    }


@pytest.mark.parametrize(
    ("package", "allowed"), [("deltalake", DELTALAKE_ALLOWED), ("duckdb", DUCKDB_ALLOWED)]
)
def test_only_core_and_the_listed_modules_import_the_lake_engines(
    package: str, allowed: dict[str, str]
) -> None:
    importing = {name for name, imported in _outside_core().items() if package in imported}
    assert importing - set(allowed) == set(), (
        f"outside minyun.core only the listed modules may import {package}; read and write "
        "resources through core.lake"
    )
    assert set(allowed) - importing == set(), f"listed but no longer importing {package}"
    assert all(reason.strip() for reason in allowed.values())


def test_the_walk_sees_imports_inside_functions(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from deltalake.transaction import AddAction\n")
    assert _imports(module) == {"deltalake"}


# --- no import cycle among the catalog, ingest and query (issue 11, item 6) ----------------

LAYERED = ("minyun.catalog", "minyun.ingest", "minyun.query")


def _minyun_imports(path: Path, module: str) -> set[str]:
    """The minyun modules a module imports, anywhere in it (relative imports resolved)."""
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name == "minyun" or name.startswith("minyun.")}


def _package_of(module: str, packages: tuple[str, ...]) -> str | None:
    return next((p for p in packages if module == p or module.startswith(p + ".")), None)


def _package_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """package -> the other packages (of `packages`) any of its modules imports."""
    graph: dict[str, set[str]] = {p: set() for p in packages}
    for path in sorted((SRC / "minyun").rglob("*.py")):
        module = _module(path)
        source = _package_of(module, packages)
        if source is None:
            continue
        for imported in _minyun_imports(path, module):
            target = _package_of(imported, packages)
            if target is not None and target != source:
                graph[source].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first node repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for after in sorted(graph.get(node, ())):
            found = visit(after, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_catalog_ingest_and_query_import_each_other_in_no_cycle() -> None:
    graph = _package_graph(LAYERED)
    assert graph["minyun.ingest"] and graph["minyun.query"]  # the walk sees their imports
    cycle = _cycle(graph)
    assert cycle is None, (
        f"import cycle {' -> '.join(cycle or [])}: the catalog imports neither ingest nor "
        "query, ingest does not import query (the serving refresh is core.serving's job)"
    )


def test_the_cycle_check_finds_cycles_and_relative_imports(tmp_path: Path) -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    module = tmp_path / "pkg" / "m.py"
    module.parent.mkdir()
    module.write_text("def f():\n    from ..query import service\n")
    assert _minyun_imports(module, "minyun.ingest.m") >= {"minyun.query.service"}


def _asserts(path: Path) -> list[int]:
    """The lines of a module's `assert` statements (they vanish under `python -O`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Assert)]


def test_src_has_no_assert_statements() -> None:
    """A check that guards the code at run time raises an error; `python -O` drops asserts."""
    found = {
        f"{path.relative_to(SRC)}:{line}"
        for path in sorted((SRC / "minyun").rglob("*.py"))
        for line in _asserts(path)
    }
    assert found == set(), "raise an explicit error instead of assert"


def test_the_walk_sees_asserts_anywhere(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("class C:\n    def f(self, x):\n        if x:\n            assert x, 'm'\n")
    assert _asserts(module) == [4]
