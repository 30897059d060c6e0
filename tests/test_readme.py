"""Every code block of README.md and of the site (docs/**/*.md) runs, as a user would paste it.

* A ```python block runs in a fresh interpreter (so a fresh namespace), from
  the repository root, bounded to 30 s, and must leave no gRPC server serving
  when it ends. Followed by "It prints:" and a ```text block, it must print
  exactly that, and nothing on stderr.
* A ```sh block followed by its output (```text or ```json) runs, and must
  print exactly that. Any other ```sh block may only hold ``make <target>``
  lines naming targets of the Makefile and ``pip install grpc-terminal[...]``
  lines naming extras of pyproject.toml.
* Every fence names its language; a ```json block is always a command's output.
"""

from __future__ import annotations

import ast
import importlib
import itertools
import os
import re
import shlex
import subprocess
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
TIMEOUT = 30
LANGUAGES = {"python", "sh", "text", "json"}

_FENCE = re.compile(r"^```([\w-]*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_PRINTS = re.compile(r"It prints:\s*$")
# grpc core's log line when a server stops while the client's transport is still
# closing: a race of the machine's load, not of the block (whose channels are
# closed: test_python_block_closes_its_channels).
_GOAWAY = re.compile(r"chttp2_transport\.cc:\d+\] .*Got goaway")

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


@dataclass(frozen=True)
class Block:
    """One fenced block of a document."""

    where: str  #: ``path:line`` of the opening fence
    lang: str
    body: str
    before: str  #: the text between the previous fence and this one
    output: Block | None = None  #: the output block shown right after it, if any


def fenced_blocks(text: str, name: str) -> list[Block]:
    """Every fenced block of ``text`` (``name`` labels them), each with the output shown after it.

    Args:
        text: a Markdown document.
        name: the document's path, for ``Block.where``.
    """
    plain: list[Block] = []
    end = 0
    for m in _FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        plain.append(Block(f"{name}:{line}", m.group(1), m.group(2), text[end:m.start()]))
        end = m.end()
    linked = []
    for block, after in itertools.zip_longest(plain, plain[1:]):
        shows = after is not None and after.lang in ("text", "json") and _shown_after(block, after)
        linked.append(Block(block.where, block.lang, block.body, block.before, after if shows else None))
    return linked


def _shown_after(block: Block, after: Block) -> bool:
    """Whether ``after`` is presented as ``block``'s output."""
    if block.lang == "python":
        return bool(_PRINTS.search(after.before.strip()))
    return block.lang == "sh" and not after.before.strip()


def documents() -> list[Path]:
    """README.md and every page of the site."""
    return [README, *sorted(DOCS.rglob("*.md"))]


def _all_blocks() -> list[Block]:
    return [b for doc in documents() if doc.exists()
            for b in fenced_blocks(doc.read_text(encoding="utf-8"), str(doc.relative_to(ROOT)))]


BLOCKS = _all_blocks()
PYTHON = [b for b in BLOCKS if b.lang == "python"]
COMMANDS = [b for b in BLOCKS if b.lang == "sh" and b.output is not None]
SETUP = [b for b in BLOCKS if b.lang == "sh" and b.output is None]


def _ids(blocks: list[Block]) -> list[str]:
    return [b.where for b in blocks]


def test_documents_have_python_blocks() -> None:
    assert README.exists(), "README.md is missing"
    assert any(b.where.startswith("README.md:") for b in PYTHON), "README.md has no ```python blocks"
    assert any(b.where.startswith("docs/") for b in PYTHON), "docs/ has no ```python blocks"


def test_block_extraction() -> None:
    sample = "x\n```python\na = 1\n```\nIt prints:\n\n```text\n1\n```\n```sh\nmake\n```\n"
    code, shown, command = fenced_blocks(sample, "s.md")
    assert (code.where, code.lang, code.body) == ("s.md:2", "python", "a = 1\n")
    assert code.output == shown and shown.body == "1\n"
    assert (command.lang, command.output) == ("sh", None)


def test_every_fence_names_a_known_language() -> None:
    for block in BLOCKS:
        assert block.lang in LANGUAGES, f"{block.where}: fence language {block.lang!r}"


def test_json_blocks_are_outputs() -> None:
    shown = {b.output.where for b in BLOCKS if b.output is not None}
    for block in BLOCKS:
        if block.lang == "json":
            assert block.where in shown, f"{block.where}: a ```json block that no command or program prints"


def test_readme_is_short_and_opens_with_the_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 250
    first = [b for b in BLOCKS if b.where.startswith("README.md:")][:2]
    assert "make demo" in first[0].body and "make test" in first[0].body
    assert "pip install grpc-terminal" in first[1].body


def unavailable_imports(body: str) -> list[str]:
    """The modules ``body`` imports that cannot be imported here (an optional extra not installed).

    Args:
        body: a Python block.
    """
    tree = ast.parse(body)
    names = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names |= {node.module for node in ast.walk(tree)
              if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    missing = []
    for name in sorted(names):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    return missing


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block_runs(block: Block) -> None:
    # The floor environment has no optional extras (make test sets GT_NO_SKIP: no skip there).
    missing = unavailable_imports(block.body)
    if missing:
        pytest.skip(f"{block.where} imports what is not installed: {', '.join(missing)}")
    try:
        result = subprocess.run(
            [sys.executable, "-c", _RUNNER, block.where],
            input=block.body, capture_output=True, text=True, timeout=TIMEOUT, cwd=ROOT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{block.where} did not finish within {TIMEOUT} s")
    assert result.returncode == 0, (
        f"{block.where} failed (exit {result.returncode}):\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    if block.output is not None:
        assert result.stdout == block.output.body, f"{block.where} prints something else than it shows"
        stderr = [line for line in result.stderr.splitlines() if not _GOAWAY.search(line)]
        assert stderr == [], f"{block.where} wrote to stderr:\n{result.stderr}"


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_block_closes_its_channels(block: Block) -> None:
    # Each channel a block opens is a with-block's context, or is assigned and closed.
    tree = ast.parse(block.body)
    managed = {
        id(item.context_expr)
        for node in ast.walk(tree) if isinstance(node, ast.With | ast.AsyncWith)
        for item in node.items
    }
    closed = {
        node.func.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "close" and isinstance(node.func.value, ast.Name)
    }
    assigned = {
        id(node.value): {t.id for t in node.targets if isinstance(t, ast.Name)}
        for node in ast.walk(tree) if isinstance(node, ast.Assign)
    }
    for node in ast.walk(tree):
        opens = (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                 and node.func.attr == "insecure_channel")
        if opens and id(node) not in managed:
            assert assigned.get(id(node), set()) & closed, f"{block.where}: a channel is never closed"


@pytest.mark.parametrize("block", COMMANDS, ids=_ids(COMMANDS))
def test_command_prints_what_it_shows(block: Block) -> None:
    command = block.body.strip()
    assert "\n" not in command and "..." not in command, f"{block.where}: not one complete command"
    runnable = command.replace("python -m ", f"{shlex.quote(sys.executable)} -m ")
    result = subprocess.run(
        ["bash", "-c", runnable], capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert (result.returncode, result.stderr) == (0, ""), f"{block.where}: {command}"
    assert block.output is not None
    assert result.stdout == block.output.body, f"{block.where}: the output shown differs"


def _make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"^([\w-]+):", text, re.MULTILINE))


def _extras() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["project"]["optional-dependencies"])


@pytest.mark.parametrize("block", SETUP, ids=_ids(SETUP))
def test_setup_commands_name_real_targets_and_extras(block: Block) -> None:
    targets, extras = _make_targets(), _extras()
    for line in block.body.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] == ["make"]:
            assert set(words[1:]) <= targets, f"{block.where}: unknown make target in {line!r}"
        elif words[:2] == ["pip", "install"]:
            for spec in words[2:]:
                name, _, rest = spec.partition("[")
                assert name == "grpc-terminal", f"{block.where}: {spec}"
                assert set(filter(None, rest.rstrip("]").split(","))) <= extras, f"{block.where}: {spec}"
        else:
            pytest.fail(f"{block.where}: a command with no output shown must be make or pip: {line!r}")


def test_decode_examples_cover_every_mode() -> None:
    modes = {("--json" if "--json" in b.body else "--problem" if "--problem" in b.body else "text")
             for b in COMMANDS if "grpc_terminal decode" in b.body}
    assert modes == {"text", "--json", "--problem"}
