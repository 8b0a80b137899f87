"""The import graph of `archiver/`, read from the source (AST): every import counts, those inside
functions and under `TYPE_CHECKING` too. `python scripts/import_graph.py` prints the figures
(modules, arrows, floors, the longest chain counted by package); `--check` exits 1 when there
is an import circle or the package chain is deeper than `MAX_PACKAGE_DEPTH` (make check).

A module's parent packages are not counted as imported (Python runs their `__init__` first,
but that is no design dependency); `from archiver.x import y` is an arrow to `archiver.x.y`
when that is a module, else to `archiver.x`."""

from __future__ import annotations

import argparse
import ast
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "archiver"
MAX_PACKAGE_DEPTH = 8


def modules(root: Path = ROOT) -> dict[str, Path]:
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def arrows(found: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {name: set() for name in found}
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in found else base
                           for a in node.names]  # fmt: skip
            for target in targets:
                while target and target not in found:
                    target = target.rpartition(".")[0]
                if target and target != name and target.startswith(PACKAGE):
                    graph[name].add(target)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v) :]
            del stack[stack.index(v) :]
            on.difference_update(component)
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def longest(graph: dict[str, set[str]]) -> list[str]:
    """The longest chain of arrows (the graph must have no circle)."""

    @cache
    def chain(v: str) -> tuple[str, ...]:
        best: tuple[str, ...] = ()
        for w in graph[v]:
            candidate = chain(w)
            if len(candidate) > len(best):
                best = candidate
        return (v, *best)

    found: list[str] = []
    for v in graph:
        candidate = chain(v)
        if len(candidate) > len(found):
            found = list(candidate)
    return found


def by_package(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph of archiver's top-level packages (and leaf modules) alone."""

    def top(name: str) -> str:  # archiver.__main__ is the root's entry, no package
        return PACKAGE if name == f"{PACKAGE}.__main__" else ".".join(name.split(".")[:2])

    packages: dict[str, set[str]] = {}
    for v, targets in graph.items():
        packages.setdefault(top(v), set()).update(top(w) for w in targets if top(w) != top(v))
    packages.pop(PACKAGE, None)
    for targets in packages.values():
        targets.discard(PACKAGE)
    return packages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 on a circle or a deep chain")
    args = parser.parse_args(argv)
    found = modules()
    graph = arrows(found)
    loops = circles(graph)
    print(f"modules {len(found)}, arrows {sum(map(len, graph.values()))}, circles {len(loops)}")
    for loop in loops:
        print("  circle:", " <-> ".join(loop))
    packages = by_package(graph)
    package_loops = circles(packages)
    for loop in package_loops:
        print("  packages in a circle:", " <-> ".join(loop))
    if not loops:
        floors = longest(graph)
        print(f"floors {len(floors)}: {' > '.join(floors)}")
    if not package_loops:
        chain = longest(packages)
        print(f"package depth {len(chain)}: {' > '.join(chain)}")
    else:
        chain = []
    bad = bool(loops or package_loops or len(chain) > MAX_PACKAGE_DEPTH)
    if args.check and bad:
        print(f"import graph check failed (circles, or a package chain deeper than "
              f"{MAX_PACKAGE_DEPTH})", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
