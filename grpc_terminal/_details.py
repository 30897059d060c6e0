"""Standard ``google.rpc`` error details: the one table of known types.

Every detail type is carried at most once per status (AIP-193). This module
turns the friendly keyword options of :class:`~grpc_terminal.StatusError`
into protobuf messages and knows which attribute each known type lives in.
"""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import Iterable, Mapping
from typing import TypeAlias, TypeGuard, cast

from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed

__all__ = [
    "MAX_SERVER_DELAY",
    "Pairs",
    "camel_key",
    "clean_text",
    "delay_from_duration",
    "duration_from_delay",
    "help_links",
    "localized",
    "precondition_failure",
    "quota_failure",
    "resource_info",
    "bad_request",
    "is_error_reason",
    "validate_error_reason",
]

Pairs: TypeAlias = Mapping[str, str] | Iterable[tuple[str, str]]

_REASON_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,61}[A-Z0-9]$")
_CAMEL_RE = re.compile(r"^[a-z][a-zA-Z0-9]{0,63}$")
_MAX_DELAY = 10 * 365 * 24 * 3600.0

#: The longest server-suggested delay, in seconds, that classification ever
#: reports: the protobuf ``Duration`` maximum (10,000 years). A longer
#: ``RetryInfo`` or ``grpc-retry-pushback-ms`` from a peer is clamped to it, so
#: every consumer gets a finite float (retry policies give up long before).
MAX_SERVER_DELAY = 315_576_000_000.0


def clean_text(text: str) -> str:
    """``text`` made UTF-8 encodable: lone surrogates (``os.fsdecode``, bad JSON) become U+FFFD.

    Protobuf refuses such strings with ``UnicodeEncodeError``; every str that
    goes into a message we build passes through here first.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "".join("\N{REPLACEMENT CHARACTER}" if "\ud800" <= c <= "\udfff" else c for c in text)
    return text


def _pairs(value: Pairs, what: str) -> list[tuple[str, str]]:
    # Untyped callers pass anything, and isinstance(Mapping) leaves the value type
    # unknown: each item's shape is checked below.
    items = cast("Iterable[tuple[object, object]]", value.items() if isinstance(value, Mapping) else value)
    out: list[tuple[str, str]] = []
    for item in items:
        try:
            first, second = item
        except (TypeError, ValueError):
            raise TypeError(f"{what}: expected (str, str) pairs, got {item!r}") from None
        if not isinstance(first, str) or not isinstance(second, str):
            raise TypeError(f"{what}: expected (str, str) pairs, got {item!r}")
        out.append((clean_text(first), clean_text(second)))
    return out


def is_error_reason(value: object) -> TypeGuard[str]:
    """True for an ErrorInfo reason in AIP-193's form: UPPER_SNAKE_CASE, 2 to 63 characters.

    Args:
        value: anything; only a str can be a reason.
    """
    return isinstance(value, str) and _REASON_RE.match(value) is not None


def validate_error_reason(reason: str) -> str:
    """Check an ErrorInfo reason is UPPER_SNAKE_CASE, at most 63 characters."""
    if not is_error_reason(reason):
        raise ValueError(
            f"ErrorInfo reason must be UPPER_SNAKE_CASE ([A-Z][A-Z0-9_]*, 2..63 chars), got {reason!r}"
        )
    return reason


def camel_key(key: str) -> str:
    """Return ``key`` as a lowerCamelCase ErrorInfo metadata key.

    snake_case and kebab-case keys are converted (``user_id`` -> ``userId``);
    anything that still is not lowerCamelCase raises ``ValueError``.
    """
    if not isinstance(key, str):
        raise TypeError(f"ErrorInfo metadata keys must be str, got {key!r}")
    head, *rest = re.split(r"[_\-]+", key) if key else [""]
    camel = head[:1].lower() + head[1:] + "".join(p[:1].upper() + p[1:] for p in rest)
    if not _CAMEL_RE.match(camel):
        raise ValueError(
            f"ErrorInfo metadata key {key!r} is not lowerCamelCase ([a-z][a-zA-Z0-9]*, max 64)"
        )
    return camel


def error_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """Validate ErrorInfo metadata: lowerCamelCase str keys, str values."""
    if not isinstance(metadata, Mapping):
        raise TypeError(f"metadata must be a mapping of str to str, got {type(metadata).__name__}")
    out: dict[str, str] = {}
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise TypeError(f"ErrorInfo metadata value for {key!r} must be str, got {value!r}")
        out[camel_key(key)] = clean_text(value)
    return out


def duration_from_delay(delay: float | datetime.timedelta) -> duration_pb2.Duration:
    """Seconds (or a timedelta) as a protobuf Duration.

    Raises ``ValueError`` for a negative, NaN or too large delay and
    ``TypeError`` for anything but an int, a float or a timedelta (a bool too).
    """
    if isinstance(delay, bool) or not isinstance(delay, int | float | datetime.timedelta):
        raise TypeError(f"retry_delay must be a number of seconds or a timedelta, got {delay!r}")
    try:
        seconds = delay.total_seconds() if isinstance(delay, datetime.timedelta) else float(delay)
    except OverflowError:  # an int too large for a float
        seconds = math.inf
    if math.isnan(seconds) or seconds < 0 or seconds > _MAX_DELAY:
        raise ValueError(f"retry_delay must be between 0 and {_MAX_DELAY:.0f} seconds, got {delay!r}")
    whole = math.floor(seconds)
    return duration_pb2.Duration(seconds=whole, nanos=round((seconds - whole) * 1e9) % 1_000_000_000)


def delay_from_duration(duration: duration_pb2.Duration) -> float | None:
    """A Duration in seconds, at most :data:`MAX_SERVER_DELAY`; ``None`` when negative or malformed."""
    seconds = duration.seconds + duration.nanos / 1e9
    if seconds < 0 or not math.isfinite(seconds):
        return None
    return min(seconds, MAX_SERVER_DELAY)


def bad_request(violations: Pairs) -> ed.BadRequest:
    """``{field: description}`` as a BadRequest."""
    msg = ed.BadRequest()
    for field, description in _pairs(violations, "field_violations"):
        msg.field_violations.add(field=field, description=description)
    return msg


def precondition_failure(violations: Iterable[tuple[str, str, str]]) -> ed.PreconditionFailure:
    """``(type, subject, description)`` triples as a PreconditionFailure."""
    msg = ed.PreconditionFailure()
    for item in violations:
        if not (isinstance(item, tuple) and len(item) == 3 and all(isinstance(s, str) for s in item)):
            raise TypeError(
                f"precondition_violations: expected (type, subject, description) str triples, got {item!r}"
            )
        kind, subject, description = (clean_text(text) for text in item)
        msg.violations.add(type=kind, subject=subject, description=description)
    return msg


def quota_failure(violations: Pairs) -> ed.QuotaFailure:
    """``{subject: description}`` as a QuotaFailure."""
    msg = ed.QuotaFailure()
    for subject, description in _pairs(violations, "quota_violations"):
        msg.violations.add(subject=subject, description=description)
    return msg


def resource_info(value: ed.ResourceInfo | tuple[str, str]) -> ed.ResourceInfo:
    """A ResourceInfo, or ``(resource_type, resource_name)``."""
    if isinstance(value, ed.ResourceInfo):
        return value
    kind, name = _pairs([value], "resource_info")[0]
    return ed.ResourceInfo(resource_type=kind, resource_name=name)


def help_links(links: Pairs) -> ed.Help:
    """``{description: url}`` as a Help."""
    msg = ed.Help()
    for description, url in _pairs(links, "help_links"):
        msg.links.add(description=description, url=url)
    return msg


def localized(value: str | tuple[str, str]) -> ed.LocalizedMessage:
    """A user-facing message: ``"text"`` (locale ``en-US``) or ``(locale, text)``."""
    if isinstance(value, str):
        return ed.LocalizedMessage(locale="en-US", message=clean_text(value))
    locale, text = _pairs([value], "localized_message")[0]
    return ed.LocalizedMessage(locale=locale, message=text)


def pack(message: Message) -> any_pb2.Any:
    """``message`` as an Any (an Any is returned unchanged)."""
    if isinstance(message, any_pb2.Any):
        return message
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
