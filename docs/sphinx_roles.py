"""A griffe extension: grpc_terminal's Sphinx-flavoured docstrings, read as Markdown.

mkdocstrings reads the docstrings as Google style (``Args:`` sections); this
extension, listed under the Python handler's ``extensions`` in mkdocs.yml,
rewrites what Markdown would show badly, once the package is loaded:

* a role naming a public name (``:class:`RetryPolicy```, ``:func:`is_retryable```,
  ``:attr:`StopReason.DEADLINE```) becomes a link to that name's reference
  entry; a role naming anything else (a private constant, ``ValueError``)
  becomes inline code, so ``mkdocs build --strict`` has no unresolved link;
* a paragraph ending in ``::`` (a reStructuredText literal block) ends in ``:``;
* an attribute with no docstring takes the ``#:`` comment lines above it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

__all__ = ["SphinxRoles", "public_names", "rewrite"]

_ROLE = re.compile(r":(?:class|func|meth|attr|data|mod|exc|obj):`~?\.?([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.MULTILINE)
_PUBLIC_MODULES = ("grpc_terminal", "grpc_terminal.tenacity", "grpc_terminal.api_core",
                   "grpc_terminal.temporal", "grpc_terminal.testing")


def public_names(package: griffe.Module) -> set[str]:
    """Full paths of every name the public modules export through ``__all__``.

    Args:
        package: the loaded ``grpc_terminal`` package.
    """
    names: set[str] = set()
    for path in _PUBLIC_MODULES:
        module = package if path == package.path else package.get_member(path.rsplit(".", 1)[1])
        names.update(f"{path}.{name}" for name in (module.exports or ()) if isinstance(name, str))
    return names


def _target(role: str, home: str, public: set[str]) -> str | None:
    """The public path ``role`` names, seen from module ``home``, or ``None``."""
    head = role.split(".", 1)[0]
    for candidate in (role, f"{home}.{role}", f"grpc_terminal.{role}"):
        if candidate in public:
            return candidate
        owner = candidate.rsplit(".", 1)[0] if "." in role else None
        if owner and owner in public and owner.endswith(f".{head}"):
            return owner
    return None


def rewrite(text: str, home: str, public: set[str]) -> str:
    """``text`` with its roles as links or code and ``::`` literal markers as ``:``.

    Args:
        text: a docstring.
        home: the public module the docstring belongs to (``grpc_terminal`` for
            the private modules, whose names it re-exports).
        public: what :func:`public_names` returned.
    """

    def link(match: re.Match[str]) -> str:
        role = match.group(1).removesuffix("()")
        target = _target(role, home, public)
        return f"[`{role}`][{target}]" if target else f"`{role}`"

    return _LITERAL.sub(r"\1:", _ROLE.sub(link, text))


def _comment_docstring(attr: griffe.Attribute) -> str | None:
    """The ``#:`` comment lines right above ``attr``'s assignment, joined."""
    path = attr.filepath
    lines = dict(attr.lines_collection.items()).get(path)
    if not lines or attr.lineno is None:
        return None
    found: list[str] = []
    number = min(attr.lineno, len(lines)) - 2
    while number >= 0 and lines[number].strip().startswith("#:"):
        found.insert(0, lines[number].strip()[2:].strip())
        number -= 1
    return "\n".join(found) or None


def _walk(obj: griffe.Object) -> list[griffe.Object]:
    found = [obj]
    for member in obj.members.values():
        if not member.is_alias and isinstance(member, griffe.Object):
            found.extend(_walk(member))
    return found


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        """Rewrite the docstrings of ``pkg`` and of every object in it.

        Args:
            pkg: the package griffe has just loaded.
            **kwargs: griffe's other arguments (unused).
        """
        if pkg.path != "grpc_terminal":
            return
        public = public_names(pkg)
        for obj in _walk(pkg):
            if isinstance(obj, griffe.Attribute) and obj.docstring is None:
                comment = _comment_docstring(obj)
                if comment:
                    obj.docstring = griffe.Docstring(comment, parent=obj)
            if obj.docstring is None:
                continue
            module = obj.module.path
            home = module if module in _PUBLIC_MODULES else "grpc_terminal"
            obj.docstring.value = rewrite(obj.docstring.value, home, public)
