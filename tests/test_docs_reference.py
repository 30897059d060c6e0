"""The site's reference documents every public name, and only public names.

The public names are ``grpc_terminal.__all__`` and the ``__all__`` of the
adapter modules, read from their source (so the optional extras need not be
installed); the entries are the ``::: <path>`` lines of ``docs/reference/*.md``.
"""

from __future__ import annotations

import ast
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

import grpc_terminal

ROOT = Path(__file__).resolve().parent.parent
# The package as imported (the installed wheel under make test-wheel), read as source.
PACKAGE = Path(grpc_terminal.__file__).resolve().parent
REFERENCE = ROOT / "docs" / "reference"
ADAPTERS = ("tenacity", "api_core", "temporal", "testing", "otel", "prometheus", "validation", "celery")

_ENTRY = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def exported(source: Path) -> list[str]:
    """The names in the ``__all__`` list assigned in ``source``.

    Args:
        source: a Python module's file.
    """
    for node in ast.parse(source.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets):
            return [ast.literal_eval(element) for element in node.value.elts]  # type: ignore[attr-defined]
    raise AssertionError(f"{source} has no __all__")


def public_paths() -> set[str]:
    """The full path of every public name."""
    paths = {f"grpc_terminal.{name}" for name in exported(PACKAGE / "__init__.py")}
    for module in ADAPTERS:
        paths |= {f"grpc_terminal.{module}.{name}" for name in exported(PACKAGE / f"{module}.py")}
    return paths


def entries() -> list[str]:
    """Every ``::: path`` entry of the reference pages."""
    return [m.group(1) for page in sorted(REFERENCE.glob("*.md"))
            for m in _ENTRY.finditer(page.read_text(encoding="utf-8"))]


def test_every_public_name_has_a_reference_entry() -> None:
    missing = public_paths() - set(entries())
    assert not missing, f"no reference entry for: {sorted(missing)}"


def test_reference_entries_are_public_and_unique() -> None:
    found = entries()
    allowed = public_paths() | {f"grpc_terminal.{module}" for module in ADAPTERS}
    assert not set(found) - allowed, f"not public: {sorted(set(found) - allowed)}"
    assert len(found) == len(set(found)), "a name is documented twice"
    assert not any("._" in path.replace(".__version__", "") for path in found)


def _roles() -> ModuleType:
    # The docs extension runs inside mkdocstrings: griffe comes with the dev tools,
    # not with the floor environment (make test sets GT_NO_SKIP, so it never skips there).
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("sphinx_roles", ROOT / "docs" / "sphinx_roles.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_roles_become_links_to_public_names_or_code() -> None:
    rewrite = _roles().rewrite
    public = {"grpc_terminal.RetryPolicy", "grpc_terminal.StopReason",
              "grpc_terminal.tenacity.wait_retry_info"}
    text = (":class:`RetryPolicy` stops with :attr:`StopReason.DEADLINE`; see :func:`wait_retry_info`,"
            " :data:`MAX_DURATION` and :class:`~ValueError`. Example::")
    assert rewrite(text, "grpc_terminal.tenacity", public) == (
        "[`RetryPolicy`][grpc_terminal.RetryPolicy] stops with "
        "[`StopReason.DEADLINE`][grpc_terminal.StopReason]; see "
        "[`wait_retry_info`][grpc_terminal.tenacity.wait_retry_info], `MAX_DURATION` and `ValueError`."
        " Example:"
    )
