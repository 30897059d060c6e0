"""Every ```python block in README.md runs, as a user would paste it.

Each block runs in a fresh interpreter (so a fresh namespace), from the
repository root, bounded to 30 s, and must leave no gRPC server serving when
it ends (a block that starts a server stops it).
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TIMEOUT = 30

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# Runs one block in a fresh namespace, then checks that no sync server's serving
# thread and no event loop thread is left behind.
_RUNNER = textwrap.dedent(
    """
    import sys, threading, time
    source = sys.stdin.read()
    namespace = {"__name__": "__main__"}
    exec(compile(source, sys.argv[1], "exec"), namespace)
    deadline = time.monotonic() + 5
    def leftovers():
        return [t.name for t in threading.enumerate()
                if t is not threading.main_thread() and t.is_alive()
                and ("_serve" in t.name or "run_forever" in t.name)]
    while leftovers() and time.monotonic() < deadline:
        time.sleep(0.05)
    if leftovers():
        sys.exit("block left a server running: " + ", ".join(leftovers()))
    """
)


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number, code)`` of every ```python fenced block in ``text``."""
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in _FENCE.finditer(text)]


def _blocks() -> list[tuple[int, str]]:
    return python_blocks(README.read_text(encoding="utf-8")) if README.exists() else []


BLOCKS = _blocks()


def test_readme_has_python_blocks() -> None:
    assert README.exists(), "README.md is missing"
    assert BLOCKS, "README.md has no ```python blocks to check"


def test_block_extraction() -> None:
    sample = "x\n```python\na = 1\n```\n```sh\nmake\n```\n```python\nb = 2\n```\n"
    assert python_blocks(sample) == [(2, "a = 1\n"), (8, "b = 2\n")]


@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block_runs(line: int, code: str) -> None:
    try:
        result = subprocess.run(
            [sys.executable, "-c", _RUNNER, f"README.md:{line}"],
            input=code, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README.md block at line {line} did not finish within {TIMEOUT} s")
    assert result.returncode == 0, (
        f"README.md block at line {line} failed (exit {result.returncode}):\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
