"""Print the project's import graph between its parts, its cycles and its function-level imports.

    python bench/imports.py            # the graph between bot/, bot/app, adapters/, knowledge/
    python bench/imports.py --modules  # every module-to-module edge

Reads the source with ``ast`` (nothing is imported), so it runs anywhere. Imports under
``if TYPE_CHECKING:`` are left out: they cost nothing at run time and make no cycle.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "adapters", "knowledge")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def part_of(module: str) -> str:
    """The architectural part a module belongs to."""
    if module.startswith(("bot.app", "bot.__main__")):
        return "bot.app (composition root)"
    if module.startswith("bot.middlewares"):
        return "bot.middlewares (plugins)"
    if module.startswith("bot"):
        return "bot (core)"
    return module.split(".")[0]


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.top: set[str] = set()
        self.in_functions: list[tuple[int, str]] = []
        self._depth = 0

    def _resolve(self, node: ast.ImportFrom) -> list[str]:
        base = node.module or ""
        if node.level:
            here = self.module.split(".")
            if not self.is_package:
                here = here[:-1]
            here = here[: len(here) - (node.level - 1)]
            base = ".".join([*here, base] if base else here)
        return [f"{base}.{alias.name}" for alias in node.names] + [base]

    def _add(self, names: list[str], line: int) -> None:
        names = [n for n in names if n.split(".")[0] in PACKAGES]
        if self._depth:
            self.in_functions.extend((line, n) for n in names[:1])
        else:
            self.top.update(names)

    def visit_Import(self, node: ast.Import) -> None:
        names = [alias.name for alias in node.names]
        if self._depth:
            self.in_functions.extend((node.lineno, n) for n in names)
        self._add(names, node.lineno) if not self._depth else None

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        resolved = self._resolve(node)
        if self._depth:
            self.in_functions.append((node.lineno, resolved[-1]))
        else:
            self._add(resolved, node.lineno)

    def visit_If(self, node: ast.If) -> None:
        if _type_checking(node):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = _function
    visit_AsyncFunctionDef = _function


def scan() -> tuple[dict[str, set[str]], dict[str, list[tuple[int, str]]]]:
    files = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    modules = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    local: dict[str, list[tuple[int, str]]] = {}
    for module, path in modules.items():
        visitor = Imports(module, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
        targets = set()
        for name in visitor.top:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
        if visitor.in_functions:
            local[module] = visitor.in_functions
    return graph, local


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="print every module edge")
    args = parser.parse_args()
    graph, local = scan()
    parts: dict[tuple[str, str], int] = defaultdict(int)
    for source, targets in graph.items():
        for target in targets:
            a, b = part_of(source), part_of(target)
            if a != b:
                parts[(a, b)] += 1
    print("imports between parts (module edges):")
    for (a, b), count in sorted(parts.items()):
        print(f"  {a:32} -> {b:32} {count}")
    if args.modules:
        print("module edges:")
        for source in sorted(graph):
            for target in sorted(graph[source]):
                print(f"  {source} -> {target}")
    found = cycles(graph)
    print(f"import cycles: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))
    total = sum(len(v) for v in local.values())
    ours = sum(1 for v in local.values() for _, n in v if n.split(".")[0] in PACKAGES)
    print(f"imports inside functions: {total} ({ours} of the project's own modules)")
    for module in sorted(local):
        names = ", ".join(sorted({n for _, n in local[module]}))
        print(f"  {module}: {names}")


if __name__ == "__main__":
    main()
