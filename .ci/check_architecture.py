"""Architecture checks CI runs: no import cycle, lazy or type-only ones included; no private
Optuna or MLflow name outside a package's ``_compat.py``; no module over 300 lines and no
function over 60, docstrings included.

The graph is built from every import statement of src/ and plugins/ (module level, inside
functions, under TYPE_CHECKING), so a cycle hidden behind a lazy import is still a cycle.
Prints one line per problem and exits 1 when there is any.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = (ROOT / "src", ROOT / "plugins")
UPSTREAM = ("optuna", "mlflow")
MAX_MODULE_LINES = 300
MAX_FUNCTION_LINES = 60


def modules() -> dict[str, Path]:
    """Dotted module name to file, for every module of the project."""
    found = {}
    for base in SOURCES:
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_names(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module name an import statement of the file refers to, with its line."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            # "from package import module" imports the module; "from module import name",
            # the module (the way import-linter's graph reads it).
            for alias in node.names:
                yield f"{target}.{alias.name}", node.lineno


def graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Module to the project modules it imports (a package import counts as its __init__)."""
    edges: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        for target, _ in imported_names(name, path):
            while target and target not in found:
                target = target.rpartition(".")[0]  # a name defined in a module: the module
            if target and target != name:
                edges[name].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(edges[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while component[-1:] != [node]:
                component.append(stack.pop())
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def upstream_private_names() -> set[str]:
    """Private attribute and method names that Optuna's and MLflow's own classes define."""
    names: set[str] = set()
    pattern = re.compile(r"(?:self\.|def )(_[a-z]\w*)")
    for package in UPSTREAM:
        root = Path(__import__(package).__file__).parent
        for path in root.rglob("*.py"):
            names.update(pattern.findall(path.read_text(errors="replace")))
    return names


def private_uses(found: dict[str, Path]) -> Iterator[str]:
    """Private upstream names used outside ``_compat.py``: imports of private modules, and
    ``obj._name`` where ``_name`` is private to Optuna or MLflow and ``obj`` is not self."""
    private = upstream_private_names()
    for name, path in found.items():
        if path.name == "_compat.py":
            continue
        where = path.relative_to(ROOT)
        for target, line in imported_names(name, path):
            parts = target.split(".")
            if parts[0] in UPSTREAM and any(p.startswith("_") for p in parts[1:]):
                yield f"{where}:{line}: imports the private {target}"
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in private
                and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                yield f"{where}:{node.lineno}: uses the private name {node.attr}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "setattr", "hasattr")
                and len(node.args) > 1
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in private
            ):
                yield f"{where}:{node.lineno}: {node.func.id} of the private {node.args[1].value}"


def oversized(found: dict[str, Path]) -> Iterator[str]:
    """Modules over MAX_MODULE_LINES lines and functions over MAX_FUNCTION_LINES."""
    for path in found.values():
        text = path.read_text()
        where = path.relative_to(ROOT)
        if len(text.splitlines()) > MAX_MODULE_LINES:
            yield f"{where}: {len(text.splitlines())} lines (at most {MAX_MODULE_LINES})"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    yield f"{where}:{node.lineno}: {node.name} has {length} lines (at most 60)"


def main() -> int:
    found = modules()
    problems = [f"import cycle: {' <-> '.join(c)}" for c in cycles(graph(found))]
    problems += list(private_uses(found))
    problems += list(oversized(found))
    for problem in problems:
        print(problem)
    print(f"{len(found)} modules, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
