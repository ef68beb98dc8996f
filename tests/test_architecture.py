"""The layers hold: import-linter's contracts pass, and the counts of bench/architecture.py are all zero."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
sys.path.insert(0, str(REPO / "bench"))
import architecture  # noqa: E402


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_are_kept():
    run = lint_imports(REPO)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 kept, 0 broken" in run.stdout


def test_no_cycles_no_upward_imports_and_each_library_in_its_room():
    m = architecture.measure(REPO)
    assert m["cycles"] == []
    assert m["upward"] == []
    assert m["streamlit_outside_ui"] == [] and m["argparse_outside_cli"] == []


@pytest.mark.parametrize("file, line, contract", [
    ("collect/overview.py", "import align.rounds  # noqa: F401\n", "Layers"),
    ("align/registry.py", "import streamlit  # noqa: F401\n", "Streamlit"),
    ("db/queries.py", "import argparse  # noqa: F401\n", "command lines"),
    ("align/config.py", "import align.rounds  # noqa: F401\n", "cycles"),
])
def test_a_wrong_import_breaks_a_contract(tmp_path, file, line, contract):
    """The contracts can fail: one added import in a copy of the tree breaks the named one."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", ".git", ".geoalign", "tests", "bench",
                                                              "__pycache__", "*.png"))
    target = copy / file
    target.write_text(line + target.read_text(encoding="utf-8"), encoding="utf-8")
    run = lint_imports(copy)
    assert run.returncode != 0
    broken = [row for row in run.stdout.splitlines() if row.endswith("BROKEN")]
    assert len(broken) == 1 and contract in broken[0], run.stdout
