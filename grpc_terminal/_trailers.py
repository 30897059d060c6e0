"""The trailers of a failed call: their keys, their size as gRPC counts it, and cleaning.

gRPC's metadata limit counts every entry of the trailers block (name + value +
32 bytes); grpc rejects application metadata it cannot send, sometimes by
failing the whole call. This module measures and cleans; :mod:`_encode` fits
a status within :data:`TRAILER_BUDGET` and :mod:`_decode` reads one back.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from grpc_terminal._errors import Metadata

__all__ = [
    "MAX_BUDGET",
    "MIN_BUDGET",
    "PUSHBACK_KEY",
    "RESPONSE_HEADERS_ALLOWANCE",
    "STATUS_DETAILS_KEY",
    "TRAILER_BUDGET",
    "Encoded",
    "read_metadata",
    "sanitize_metadata",
    "short_repr",
    "trailer_size",
    "valid_metadata",
]

_log = logging.getLogger("grpc_terminal")


STATUS_DETAILS_KEY = "grpc-status-details-bin"


PUSHBACK_KEY = "grpc-retry-pushback-ms"


#: Bytes all trailers we send may take, counted as gRPC's metadata limit does
#: (name + value + 32 per entry), with binary values counted base64-encoded,
#: the message counted twice (percent-encoded in ``grpc-message`` and inside
#: ``grpc-status-details-bin``) and :data:`RESPONSE_HEADERS_ALLOWANCE` for the
#: response headers a Trailers-Only response carries in the same block. grpc's
#: client rejects metadata over 8 KiB (randomly) and 16 KiB (always) with
#: RESOURCE_EXHAUSTED.
TRAILER_BUDGET = 4096


#: The smallest budget that is always met, whatever the error carries: the
#: irreducible status (code, reasons, retry delay, truncated message and
#: detail) takes at most about 800 bytes. A smaller budget is met when it can
#: be; otherwise the irreducible status is sent and the overrun logged.
MIN_BUDGET = 1024

#: The largest budget accepted: grpc clients refuse trailers over 8 KiB
#: (randomly, up to 16 KiB, then always) with RESOURCE_EXHAUSTED by default,
#: which would turn a terminal failure into a retryable one.
MAX_BUDGET = 8192


#: Counted on top of our own trailers: when a call fails before any response,
#: grpc sends a Trailers-Only response whose one header block also holds
#: ``:status``, ``content-type`` and possibly ``grpc-accept-encoding`` (175
#: bytes by the metadata-limit count), all checked against the same limit.
RESPONSE_HEADERS_ALLOWANCE = 176


_KEY_RE = re.compile(r"^[0-9a-z_.\-]+$")


_HPACK_ENTRY_OVERHEAD = 32


@dataclass(frozen=True, slots=True)
class Encoded:
    """What the server sends for one failure."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Metadata

    def size(self) -> int:
        """Bytes these trailers take against gRPC's metadata limit (never an underestimate)."""
        return trailer_size(self.code, self.message, self.trailing_metadata)


#: The allowance and the fixed part of the ``grpc-status`` and ``grpc-message`` entries.
_STATUS_AND_MESSAGE = (
    RESPONSE_HEADERS_ALLOWANCE + len("grpc-status") + len("grpc-message") + 2 * _HPACK_ENTRY_OVERHEAD
)

_PLAIN_BYTES = bytes(b for b in range(0x20, 0x7F) if b != 0x25)


def _percent_encoded_len(text: str) -> int:
    raw = text.encode("utf-8", "replace")
    return len(raw) + 2 * len(raw.translate(None, _PLAIN_BYTES))


def _entry_size(key: str, value: str | bytes) -> int:
    length = len(value) if isinstance(value, bytes) else len(value.encode("utf-8", "replace"))
    if key.endswith("-bin"):
        length = 4 * ((length + 2) // 3)
    return len(key.encode("utf-8", "replace")) + length + _HPACK_ENTRY_OVERHEAD


def trailer_size(code: grpc.StatusCode, message: str, trailing_metadata: Metadata) -> int:
    """Size of a status's trailers as gRPC's metadata limit counts them.

    Includes :data:`RESPONSE_HEADERS_ALLOWANCE`; binary values are counted
    base64-encoded (grpc may send them as true binary, which is smaller).
    """
    size = _STATUS_AND_MESSAGE + len(str(code.value[0])) + _percent_encoded_len(message)
    for key, value in trailing_metadata:
        size += _entry_size(key, value)
    return size


def valid_metadata(key: object, value: object) -> str | None:
    """Why ``(key, value)`` cannot be sent as application metadata, or None."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        return f"invalid metadata key {short_repr(key)}"
    if key.startswith("grpc-"):
        return f"reserved metadata key {short_repr(key)}"
    if key.endswith("-bin"):
        return None if isinstance(value, bytes) else f"binary metadata {key!r} needs bytes"
    if not isinstance(value, str) or not all(0x20 <= ord(c) <= 0x7E for c in value):
        return f"metadata {key!r} needs a printable ASCII str value"
    return None


def short_repr(obj: object) -> str:
    """A bounded repr for log lines (never raises)."""
    try:
        text = repr(obj)
    except Exception:
        text = f"<{type(obj).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def sanitize_metadata(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[str, str | bytes]]:
    """Application metadata we can send; drops (and logs) what grpc would reject."""
    out: list[tuple[str, str | bytes]] = []
    try:
        for item in pairs:
            try:
                key, value = item
            except Exception:
                _log.warning(
                    "grpc_terminal: dropping trailing metadata entry %s: not a pair", short_repr(item)
                )
                continue
            problem = valid_metadata(key, value)
            if problem is None:
                out.append((key, value))
            else:
                _log.warning("grpc_terminal: dropping trailing metadata: %s", problem)
    except Exception:
        _log.warning("grpc_terminal: dropping malformed trailing metadata", exc_info=True)
    return out


def read_metadata(raw: Any) -> Metadata:
    """The well-formed ``(str, str | bytes)`` pairs of ``raw``; never raises."""
    out: list[tuple[str, str | bytes]] = []
    if raw is None:
        return ()
    try:
        for item in raw:
            try:
                key, value = item
            except (TypeError, ValueError):
                continue
            if isinstance(key, bytes):
                key = key.decode("latin-1")
            if isinstance(key, str) and isinstance(value, (str, bytes)):
                out.append((key, value))
    except Exception:
        _log.debug("grpc_terminal: unreadable trailing metadata", exc_info=True)
    return tuple(out)
