"""The layout is the architecture: each layer of ``rackwave_source`` imports only the layers
below it, no module imports itself back through others, and dlt's internals are reached from one
module. Read from the source files (every import, those inside functions too), so a new import
that breaks the rule fails here, with the file and line, before it confuses anyone."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "rackwave_source"
COMMAND = ROOT / "pipelines"

#: bottom first; a module may import its own layer and the layers before it
LAYERS: Tuple[Tuple[str, ...], ...] = (
    ("settings", "schema", "exceptions", "timestamps", "dlt_internals"),
    ("rows",),
    ("options",),
    ("api",),
    ("read",),
    ("warehouse",),
    ("push",),
    ("scan_run", "reading", "resources", "source", "__init__"),
)
MAX_TOP_LEVEL_MODULES = 12
#: what only ``dlt_internals`` may touch: names dlt does not document, or keeps private
DLT_PRIVATE = ("_pipe", "_make_session", "_retry_kwargs", "_bind_dataset_name",
               "PipelineContext", "PackageStorage", "json_decode_state")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def python_files(folder: Path) -> List[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imports(path: Path) -> Iterator[Tuple[int, str]]:
    """(line, imported module) of every import in a file, relative ones resolved. ``from a
    import b`` yields ``a.b`` when that is a module of ours, else ``a``."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path.parent)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                yield node.lineno, candidate if _is_ours(candidate) else base


def _is_ours(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(module: str) -> int:
    """The layer of ``rackwave_source.<top>...``: its subpackage or top-level module."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    for index, names in enumerate(LAYERS):
        if top in names:
            return index
    raise AssertionError(f"{module} is in no layer of LAYERS: add it where it belongs")


def graph(folders: Tuple[Path, ...]) -> Dict[str, Set[str]]:
    ours = tuple(module_name(f) for f in folders)
    out: Dict[str, Set[str]] = {}
    for folder in folders:
        for path in python_files(folder):
            out[module_name(path)] = {m for _, m in imports(path)
                                      if m.split(".")[0] in ours and _is_ours(m)}
    return out


def cycles(edges: Dict[str, Set[str]]) -> List[List[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_the_source_has_at_most_twelve_top_level_modules() -> None:
    top = sorted(p.name for p in SOURCE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, top


def test_every_layer_imports_only_the_layers_below_it() -> None:
    wrong = []
    for path in python_files(SOURCE):
        here = layer_of(module_name(path))
        for line, imported in imports(path):
            if imported.startswith("pipelines"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports the command ({imported})")
            elif imported.startswith("rackwave_source.") and layer_of(imported) > here:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {imported}, a layer above")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("folders", [(SOURCE,), (SOURCE, COMMAND)], ids=["source", "command"])
def test_no_module_imports_itself_back(folders: Tuple[Path, ...]) -> None:
    assert cycles(graph(folders)) == []


def test_only_dlt_internals_reaches_into_dlt() -> None:
    wrong = []
    for path in python_files(SOURCE) + python_files(COMMAND):
        if path.name == "dlt_internals.py":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            name = (node.attr if isinstance(node, ast.Attribute)
                    else node.id if isinstance(node, ast.Name) else None)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("dlt"):
                name = next((a.name for a in node.names if a.name in DLT_PRIVATE), None)
            if name in DLT_PRIVATE:
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {name}")
    assert not wrong, "\n".join(wrong)


def test_the_checks_above_see_a_cycle_and_an_upward_import() -> None:
    """The rules cannot pass by reading nothing."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert layer_of("rackwave_source.read.scan") > layer_of("rackwave_source.api.client")
    assert ("rackwave_source.read.cursor" in
            {m for _, m in imports(SOURCE / "warehouse" / "verdicts.py")})


MAX_FUNCTION_LINES = 80


def test_every_function_fits_a_screen() -> None:
    """No function of the source or the command is longer than 80 lines (their complexity is
    ruff's, at most 12: pyproject.toml)."""
    long = []
    for path in python_files(SOURCE) + python_files(COMMAND):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {lines}")
    assert not long, "\n".join(long)
