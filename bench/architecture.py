"""The shape of the code: files per package, import cycles between files, imports that point up the layers.

    python bench/architecture.py            # this checkout
    python bench/architecture.py OTHER_DIR  # another checkout, e.g. a `git worktree` of an older commit

The layers are ``db <- rewards <- collect <- align <- {cli, ui}`` with app.py on top (``make lint`` enforces them
with import-linter; this script counts, so that a before/after can be compared). The import graph is grimp's (the
library import-linter is built on), with imports inside functions included; cycles are its strongly connected
groups of files (scipy), so a package's ``__init__`` importing its own submodules counts. Also printed: files that
import Streamlit outside ``ui/`` and app.py, files that import argparse outside ``cli/``, and imports inside
functions per package (they hide dependencies; the ones left keep torch/transformers off ``geoalign --help``).
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import grimp
import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

LAYERS = ("db", "rewards", "collect", "align", "cli", "ui")  # low to high; cli and ui are siblings
DELIVERY = {"cli", "ui"}


def _package(module: str) -> str:
    return module.split(".")[0]


def _rank(package: str) -> int:
    return 4 if package in DELIVERY else LAYERS.index(package)


def _function_level_imports(path: Path) -> int:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    count = 0
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            count += sum(isinstance(inner, (ast.Import, ast.ImportFrom)) for inner in ast.walk(node))
    return count


def measure(root: Path) -> dict:
    packages = [p for p in LAYERS if (root / p / "__init__.py").exists()]
    sys.path.insert(0, str(root))
    graph = grimp.build_graph(*packages, include_external_packages=True)
    ours = sorted(m for m in graph.modules if _package(m) in packages)
    index = {m: i for i, m in enumerate(ours)}
    edges = [(index[a], index[b]) for a in ours for b in graph.find_modules_directly_imported_by(a) if b in index]
    matrix = csr_matrix((np.ones(len(edges)), ([a for a, _ in edges], [b for _, b in edges])),
                        shape=(len(ours), len(ours)))
    _, labels = connected_components(matrix, directed=True, connection="strong")
    groups = [sorted(ours[i] for i in np.flatnonzero(labels == label)) for label in set(labels)]
    cycles = sorted(g for g in groups if len(g) > 1)
    upward = sorted((ours[a], ours[b]) for a, b in edges if _package(ours[b]) != _package(ours[a])
                    and (_rank(_package(ours[b])) > _rank(_package(ours[a]))
                         or {_package(ours[a]), _package(ours[b])} == DELIVERY))
    files = {p: sorted(f for f in (root / p).rglob("*.py") if "migrations" not in f.parts) for p in packages}
    external = {name: sorted(m for m in ours if graph.direct_import_exists(importer=m, imported=name))
                for name in ("streamlit", "argparse") if name in graph.modules}
    return {
        "files": {p: len(f) for p, f in files.items()} | {"app.py": int((root / "app.py").exists())},
        "cycles": cycles,
        "upward": upward,
        "streamlit_outside_ui": [m for m in external.get("streamlit", []) if _package(m) != "ui"],
        "argparse_outside_cli": [m for m in external.get("argparse", []) if _package(m) != "cli"],
        "function_imports": {p: sum(_function_level_imports(f) for f in fs) for p, fs in files.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parent.parent),
                        help="checkout to measure (default: this one)")
    root = Path(parser.parse_args(argv).root).resolve()
    m = measure(root)
    print(f"architecture of {root.name}")
    print("files per package:  " + ", ".join(f"{p} {n}" for p, n in m["files"].items()))
    print(f"file cycles:        {len(m['cycles'])} ({sum(len(c) for c in m['cycles'])} files)")
    for cycle in m["cycles"]:
        print("  " + " <-> ".join(cycle))
    print(f"upward imports:     {len(m['upward'])}")
    for importer, imported in m["upward"]:
        print(f"  {importer} -> {imported}")
    print(f"streamlit outside ui/: {len(m['streamlit_outside_ui'])} {' '.join(m['streamlit_outside_ui'])}")
    print(f"argparse outside cli/: {len(m['argparse_outside_cli'])} {' '.join(m['argparse_outside_cli'])}")
    print("imports inside functions: " + ", ".join(f"{p} {n}" for p, n in m["function_imports"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
