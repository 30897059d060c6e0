"""The layer contract (`make lint` runs import-linter) holds, and it catches a cycle.

The contract lives in pyproject.toml under [tool.importlinter]. These tests run
the real tool: once on the package as it is, once on a copy with one import
added against the layers, at function level, where a late import would hide it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import grpc_terminal

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(grpc_terminal.__file__).resolve().parent  # the tree, or site-packages under test-wheel

pytest.importorskip("importlinter", reason="import-linter is a dev dependency (make test installs it)")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    script = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, check=False,
    )


def test_the_package_keeps_its_layers() -> None:
    result = _lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_a_hidden_import_cycle_breaks_the_contract(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "grpc_terminal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    history = tmp_path / "grpc_terminal" / "_history.py"
    history.write_text(
        history.read_text(encoding="utf-8")
        + "\n\ndef _late() -> None:\n    from grpc_terminal import _retry  # a cycle, hidden in a function\n",
        encoding="utf-8",
    )
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "grpc_terminal._history is not allowed to import grpc_terminal._retry" in result.stdout
    assert "No import cycle among the package's modules BROKEN" in result.stdout
