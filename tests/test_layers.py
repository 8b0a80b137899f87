"""The import graph of archiver/ (scripts/import_graph.py, run by `make check` beside
import-linter's layers contract): no circle, however an import is written, and a chain of
packages no deeper than the layers."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _graph_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "import_graph", ROOT / "scripts" / "import_graph.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


graph = _graph_module()


def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in {"archiver/__init__.py": "", **files}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_archiver_package_has_no_circle_and_at_most_eight_floors_of_packages() -> None:
    found = graph.arrows(graph.modules(ROOT))
    assert graph.circles(found) == []
    packages = graph.by_package(found)
    assert graph.circles(packages) == []
    assert len(graph.longest(packages)) <= graph.MAX_PACKAGE_DEPTH
    assert graph.main(["--check"]) == 0


@pytest.mark.parametrize(
    "hidden",
    [
        "from archiver.a import x\n",  # plain
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from archiver.a import x\n",
        "def f():\n    from archiver import a\n    return a\n",  # inside a function
        "import archiver.a.inner as alias\n",  # a submodule, by dotted name
        "from . import a\n",  # relative
    ],
    ids=["plain", "type-checking", "in-a-function", "dotted", "relative"],
)
def test_a_circle_is_found_however_its_import_is_written(tmp_path: Path, hidden: str) -> None:
    root = _tree(
        tmp_path,
        {
            "archiver/a/__init__.py": "",
            "archiver/a/inner.py": "x = 1\n",
            "archiver/a/x.py": "from archiver.b import y\n",
            "archiver/b.py": hidden + "y = 2\n",
        },
    )
    found = graph.arrows(graph.modules(root))
    assert graph.circles(found) or graph.circles(graph.by_package(found))


def test_a_tree_without_circles_passes_and_its_chains_are_counted(tmp_path: Path) -> None:
    root = _tree(
        tmp_path,
        {
            "archiver/top/__init__.py": "",
            "archiver/top/one.py": "from archiver.mid.two import f\n",
            "archiver/mid/__init__.py": "",
            "archiver/mid/two.py": "from archiver.leaf import g\n",
            "archiver/leaf.py": "g = 1\n",
        },
    )
    found = graph.arrows(graph.modules(root))
    assert graph.circles(found) == []
    assert graph.longest(graph.by_package(found)) == [
        "archiver.top",
        "archiver.mid",
        "archiver.leaf",
    ]
