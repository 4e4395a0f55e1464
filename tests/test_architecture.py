"""Dependencies point one way (docs/architecture.md): knowledge/ is a leaf, the core owns its
contracts and imports no plugin, adapters do not know each other, and nothing imports in a
circle. Imports under ``if TYPE_CHECKING:`` are left out: they cost nothing at run time."""

from __future__ import annotations

import grimp
import pytest

pytestmark = pytest.mark.unit

PLUGINS = ("bot.app", "bot.middlewares", "bot.__main__")
# What the core may use of knowledge/: its settings models (bot.yaml's sections) and the text
# helpers everyone shares.
KNOWLEDGE_FOR_THE_CORE = {"knowledge.settings", "knowledge.text"}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bot", "adapters", "knowledge", exclude_type_checking_imports=True)


def _within(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def edges(graph: grimp.ImportGraph) -> list[tuple[str, str]]:
    return [
        (module, imported)
        for module in sorted(graph.modules)
        for imported in sorted(graph.find_modules_directly_imported_by(module))
    ]


def test_knowledge_is_a_leaf(graph: grimp.ImportGraph) -> None:
    found = [
        (a, b)
        for a, b in edges(graph)
        if _within(a, "knowledge") and _within(b, "bot", "adapters")
    ]
    assert found == []


def test_the_core_imports_no_plugin_and_only_the_public_knowledge(
    graph: grimp.ImportGraph,
) -> None:
    found = []
    for a, b in edges(graph):
        if not _within(a, "bot") or _within(a, *PLUGINS):
            continue
        if _within(b, "adapters", *PLUGINS) or (
            _within(b, "knowledge") and b not in KNOWLEDGE_FOR_THE_CORE
        ):
            found.append((a, b))
    assert found == []


def test_adapters_depend_on_the_core_not_on_each_other(graph: grimp.ImportGraph) -> None:
    found = []
    for a, b in edges(graph):
        if not _within(a, "adapters"):
            continue
        if _within(b, *PLUGINS):
            found.append((a, b))
        platform_a, platform_b = a.split(".")[:2], b.split(".")[:2]
        if (
            _within(b, "adapters")
            and len(platform_a) == len(platform_b) == 2
            and platform_a != platform_b
            and platform_b[1] != "common"
        ):
            found.append((a, b))
    assert found == []


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    successors = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    for root in sorted(successors):
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = low[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = successors[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    cycles.append(sorted(component))
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    assert cycles == []
