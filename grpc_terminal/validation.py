"""Validation failures as ``INVALID_ARGUMENT`` with one field violation per problem.

A UI that shows errors next to each input field needs to know *which* field
is wrong. :func:`from_pydantic` turns a pydantic ``ValidationError`` into
:class:`grpc_terminal.InvalidArgument` carrying a ``google.rpc.BadRequest``
whose field violations name each field the way ``google.rpc.BadRequest``
(AIP-193) writes field paths::

    import pydantic
    import grpc_terminal as gt
    from grpc_terminal.validation import from_pydantic

    server = grpc.server(pool, interceptors=[
        gt.ServerInterceptor(errors={pydantic.ValidationError: from_pydantic}),
    ])
    # a handler that calls Order.model_validate(...) on bad input now fails with
    # INVALID_ARGUMENT; the client reads err.field_violations:
    # [("items[0].id", "Field required")]

:func:`from_protovalidate` does the same for a protovalidate
``ValidationError`` (protovalidate 2.1 or later validates ``google.protobuf``
messages), and :func:`validate_request` validates a request with protovalidate
and raises that error: give it to the server as
``gt.ServerInterceptor(validate=validate_request)`` and every request is
checked before its handler runs.

Field paths (:func:`field_path`):

* fields are joined with ``.`` and list items are indexed, as in the
  ``BadRequest.FieldViolation`` documentation: ``items[0].id``,
  ``email_addresses[3].type[2]``;
* map keys are written as AIP-161 writes them in field masks: ``labels.env``,
  and a key that is not an identifier between backticks: ``labels.`team name```
  (a backtick or backslash in the key is escaped with a backslash);
* an error about the whole request (a pydantic ``model_validator``, a
  protovalidate message rule) has the empty path ``""``.

What is sent, and what is not:

* the description is pydantic's ``msg`` (protovalidate's ``message``), cut
  to :data:`MAX_DESCRIPTION` characters. The input value is never read: a
  message only holds what the validator put in it (pydantic's built-in
  messages name the expected type or limit, not the value; a ``ValueError``
  raised by *your* validator is sent as you wrote it, so do not put secrets
  in it);
* the error type (``missing``, ``string.min_len``) becomes the violation's
  ``reason`` in UPPER_SNAKE_CASE (``MISSING``, ``STRING_MIN_LEN``) when the
  installed googleapis-common-protos has that field;
* at most :data:`MAX_VIOLATIONS` violations are built; the status message
  and the ``LocalizedMessage`` summary (locale ``en-US``) give the full count.
  The server's trailer budget may drop the summary and halve the violations
  further (see the trailer budget in the guarantees): the code stays
  ``INVALID_ARGUMENT``.

pydantic reports what it validated, and the path says the same: the member
of a union that failed appears as a segment (``u.int``, ``pet.cat.lives``),
and an ``int`` in a location is written as an index (``[5]``) even for a
``dict[int, ...]`` key, which pydantic's location cannot tell apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, cast

from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt

if TYPE_CHECKING:
    import pydantic

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_VIOLATIONS",
    "field_path",
    "from_protovalidate",
    "from_pydantic",
    "validate_request",
]

#: The most field violations one error carries; the rest are counted in the
#: message and the summary. A 4 KiB trailer budget holds far fewer anyway.
MAX_VIOLATIONS = 100

#: The longest description sent for one violation, in characters.
MAX_DESCRIPTION = 200

#: The longest field path sent, in characters; a longer one is cut at a
#: segment and ends in ``...``.
_MAX_PATH = 200

#: The longest map key written in a path, in characters (then ``...``).
_MAX_KEY = 64

#: How many field paths the LocalizedMessage summary names.
_SUMMARY_PATHS = 5

_INDEX = re.compile(r"\[-?[0-9]+\]\Z")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NOT_REASON = re.compile(r"[^A-Z0-9]+")
_REASON = re.compile(r"[A-Z][A-Z0-9_]*[A-Z0-9]\Z")
_KEY_MARK = "[key]"  # pydantic's last location item for an invalid dict key
_HAS_REASON = "reason" in ed.BadRequest.FieldViolation.DESCRIPTOR.fields_by_name


def _cut(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters (ending in ``...`` when cut), lone surrogates replaced."""
    text = text if len(text) <= limit else text[: limit - 3] + "..."
    return text.encode("utf-8", "replace").decode("utf-8")


def _key(text: str) -> str:
    """A map key or name as one path segment: bare when an identifier, else in backticks."""
    text = _cut(text, _MAX_KEY)
    if _IDENTIFIER.match(text):
        return text
    return "`" + text.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _index(value: object) -> str:
    """A list index as a path segment (``[3]``); joined without a dot."""
    return f"[{value}]"


def _join(segments: Iterable[str]) -> str:
    """Segments (``name``, ``[3]``) as one path, cut at a segment boundary past ``_MAX_PATH``.

    Only an index segment (made by :func:`_index`, all digits inside) follows
    without a dot.
    """
    path = ""
    for segment in segments:
        piece = segment if _INDEX.match(segment) or not path else "." + segment
        if len(path) + len(piece) > _MAX_PATH:
            return path + "..."
        path += piece
    return path


def field_path(location: Iterable[object]) -> str:
    """The field path for a location such as pydantic's ``loc``: ``("items", 0, "id")`` -> ``items[0].id``.

    Args:
        location: the path's items from the outside in: a str is a field name
            or a map key (written bare when it is an identifier, otherwise
            between backticks, AIP-161 style), an int (not a bool) is a list
            index (``[0]``); anything else is written as its ``str()`` in
            backticks. An empty location is the empty path (the whole request).

    Returns:
        The path, at most about 200 characters (longer ones end in ``...``).
    """
    segments: list[str] = []
    for item in location:
        if isinstance(item, int) and not isinstance(item, bool):
            segments.append(_index(item))
        elif isinstance(item, str):
            segments.append(_key(item))
        else:
            segments.append("`" + _cut(str(item), _MAX_KEY).replace("\\", "\\\\").replace("`", "\\`") + "`")
    return _join(segments)


def _reason(kind: object) -> str:
    """An error type (``string_too_short``, ``string.min_len``) as an UPPER_SNAKE reason, or ``""``."""
    if not isinstance(kind, str):
        return ""
    reason = _NOT_REASON.sub("_", kind.upper()).strip("_")[:63].rstrip("_")
    return reason if _REASON.match(reason) else ""


def _description(message: object, for_key: bool) -> str:
    text = message if isinstance(message, str) else ""
    if for_key:
        text = "invalid key: " + text
    return _cut(text, MAX_DESCRIPTION)


def _violation(path: str, description: str, reason: str) -> ed.BadRequest.FieldViolation:
    violation = ed.BadRequest.FieldViolation(field=path, description=description)
    if _HAS_REASON and reason:
        violation.reason = reason
    return violation


def _summary(total: int, paths: Sequence[str], first: str) -> str:
    named = [path or "(the request)" for path in paths[:_SUMMARY_PATHS]]
    if total == 1:
        return f"The request is invalid: {named[0]}: {first}" if named else "The request is invalid."
    more = f" and {total - len(named)} more" if total > len(named) else ""
    return f"The request has {total} errors: {', '.join(named)}{more}."


def _invalid_argument(total: int, violations: list[ed.BadRequest.FieldViolation]) -> gt.InvalidArgument:
    """The error for ``total`` problems, ``violations`` being the first of them."""
    noun = "error" if total == 1 else "errors"
    paths = [violation.field for violation in violations]
    first = violations[0].description if violations else ""
    return gt.InvalidArgument(
        f"invalid request: {total} validation {noun}",
        extra_details=[ed.BadRequest(field_violations=violations)],
        localized_message=_summary(total, paths, first),
    )


def from_pydantic(exc: pydantic.ValidationError) -> gt.InvalidArgument:
    """A pydantic ``ValidationError`` as an ``InvalidArgument``: one field violation per error.

    Use it in the interceptor's mapping:
    ``gt.ServerInterceptor(errors={pydantic.ValidationError: from_pydantic})``,
    or raise it yourself: ``raise from_pydantic(exc) from exc``.

    Args:
        exc: the pydantic (v2) ``ValidationError``. Each of its errors gives
            one ``BadRequest`` field violation: the path of its ``loc`` (see
            :func:`field_path`; an invalid dict key's path is the key's, its
            description starts with ``invalid key:``), its ``msg`` as the
            description and its ``type`` as the reason. Input values are
            never read.

    Returns:
        An ``InvalidArgument`` with the ``BadRequest`` (at most
        :data:`MAX_VIOLATIONS` violations), a ``LocalizedMessage`` summary in
        ``en-US`` and the message ``"invalid request: <n> validation errors"``.

    Raises:
        TypeError: ``exc`` is not a pydantic ``ValidationError``.
    """
    wrong = TypeError(f"from_pydantic expects a pydantic ValidationError, got {type(exc).__name__}")
    try:
        import pydantic_core
    except ImportError:  # pragma: no cover - depends on the environment
        raise wrong from None
    if not isinstance(exc, pydantic_core.ValidationError):
        raise wrong
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    violations: list[ed.BadRequest.FieldViolation] = []
    for error in errors[:MAX_VIOLATIONS]:
        location = tuple(error["loc"])
        for_key = bool(location) and location[-1] == _KEY_MARK
        if for_key:
            location = location[:-1]
        violations.append(
            _violation(field_path(location), _description(error["msg"], for_key), _reason(error["type"]))
        )
    return _invalid_argument(len(errors), violations)


def _subscript(element: object) -> tuple[str, object] | None:
    """The ``subscript`` oneof of a ``buf.validate.FieldPathElement`` as ``(field, value)``.

    protovalidate 1.x gives ``google.protobuf`` messages (``WhichOneof``),
    2.x protobuf-py ones (``subscript`` is ``None`` or has ``field`` and ``value``).
    """
    which = getattr(element, "WhichOneof", None)
    if callable(which):
        name = which("subscript")
        return (name, getattr(element, name)) if isinstance(name, str) else None
    sub = getattr(element, "subscript", None)
    name = getattr(sub, "field", None)
    return (name, getattr(sub, "value", None)) if isinstance(name, str) else None


def _protovalidate_path(violation: object) -> str:
    path = getattr(violation, "field", None)
    segments: list[str] = []
    for element in getattr(path, "elements", None) or ():
        name = getattr(element, "field_name", "")
        # A field name is a proto identifier, or protovalidate's "[pkg.ext]" for an extension.
        segments.append(name if isinstance(name, str) and name.startswith("[") else _key(str(name)))
        sub = _subscript(element)
        if sub is None:
            continue
        kind, value = sub
        if kind == "index":
            segments.append(_index(value))
        elif kind == "bool_key":
            segments.append("true" if value else "false")
        else:  # string_key, int_key, uint_key: AIP-161 map traversal
            segments.append(_key(str(value)))
    return _join(segments)


def from_protovalidate(exc: BaseException) -> gt.InvalidArgument:
    """A protovalidate ``ValidationError`` as an ``InvalidArgument``: one field violation per rule broken.

    Use it in the interceptor's mapping
    (``errors={protovalidate.ValidationError: from_protovalidate}``), or let
    :func:`validate_request` raise it.

    Args:
        exc: a protovalidate ``ValidationError`` (2.1 or later; 1.1.2 and
            1.2 work too): each of its ``violations`` gives one ``BadRequest``
            field violation: the path of its ``field`` (map keys AIP-161
            style, see :func:`field_path`; a violation about a map key says
            ``invalid key:`` first), its ``message`` (its ``rule_id`` when the
            rule has no message) as the description, and its ``rule_id`` as
            the reason (``string.min_len`` -> ``STRING_MIN_LEN``). A message
            rule has the empty path.

    Returns:
        An ``InvalidArgument`` like :func:`from_pydantic`'s.

    Raises:
        TypeError: ``exc`` has no ``violations`` list.
    """
    violations_of = getattr(exc, "violations", None)
    if not isinstance(violations_of, Sequence):
        raise TypeError(
            f"from_protovalidate expects a protovalidate ValidationError, got {type(exc).__name__}"
        )
    items = cast("Sequence[object]", violations_of)
    violations: list[ed.BadRequest.FieldViolation] = []
    for item in items[:MAX_VIOLATIONS]:
        proto = getattr(item, "proto", item)
        rule_id = getattr(proto, "rule_id", "")
        message = getattr(proto, "message", "") or rule_id
        for_key = getattr(proto, "for_key", False) is True
        violations.append(
            _violation(_protovalidate_path(proto), _description(message, for_key), _reason(rule_id))
        )
    return _invalid_argument(len(items), violations)


def validate_request(request: object) -> None:
    """Validate ``request`` with protovalidate; raise ``InvalidArgument`` if it breaks a rule.

    Meant as the server's ``validate=`` option
    (``gt.ServerInterceptor(validate=validate_request)``: each request is
    checked before its handler runs); also usable at the top of a handler. A
    request that is not a ``google.protobuf`` message (raw bytes when the
    method has no deserializer) is left alone.

    Args:
        request: the deserialized request message.

    Raises:
        grpc_terminal.InvalidArgument: the violations, as :func:`from_protovalidate` builds them.
        ImportError: protovalidate is not installed.
    """
    if not isinstance(request, Message):
        return
    try:
        import protovalidate
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError("validate_request needs protovalidate: pip install 'protovalidate>=2.1'") from exc
    try:
        protovalidate.validate(request)
    except protovalidate.ValidationError as exc:
        raise from_protovalidate(exc) from None
