"""Status codec: typed exception <-> code, message and trailers.

Encoding keeps every trailer we send within :data:`TRAILER_BUDGET` bytes,
shrinking in the fixed order of :data:`SHRINK_ORDER`. Decoding never raises:
whatever a peer sends, the caller gets the most honest typed error we can
build, falling back to the code alone.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

from grpc_terminal._details import DETAIL_SLOTS, clean_text, delay_from_duration, pack
from grpc_terminal._errors import Metadata, StatusError, Unknown, class_for
from grpc_terminal._reason import ProvisionFailureDetail

__all__ = [
    "DEFAULT_DOMAIN",
    "MIN_BUDGET",
    "PUSHBACK_KEY",
    "SHRINK_ORDER",
    "STATUS_DETAILS_KEY",
    "TRAILER_BUDGET",
    "Encoded",
    "decode",
    "encode",
    "from_rpc_error",
    "read_metadata",
    "trailer_size",
]

_log = logging.getLogger("grpc_terminal")

STATUS_DETAILS_KEY = "grpc-status-details-bin"
PUSHBACK_KEY = "grpc-retry-pushback-ms"
DEFAULT_DOMAIN = "grpc-terminal"

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

#: What goes first when trailers would exceed the budget. Each step is applied
#: until the trailers fit or the step has nothing left to remove (repeated
#: violations are halved, latest first), then the next step starts. "Unknown
#: fields" are the fields of a known detail that this version cannot read (a
#: newer peer's, or junk), found in details relayed from a peer. The code,
#: the ProvisionFailureDetail reason, the ErrorInfo reason and a truncated
#: message and detail always survive, and with the default budget the result
#: always fits; when anything was cut the ErrorInfo carries the metadata
#: entry ``grpcTerminalTruncated: "true"`` and cut text ends with
#: :data:`TRUNCATION_MARK`.
SHRINK_ORDER = (
    "DebugInfo",
    "unrecognised extra details",
    "unknown fields of known details",
    "Help",
    "LocalizedMessage",
    "ResourceInfo",
    "QuotaFailure violations",
    "PreconditionFailure violations",
    "BadRequest field violations",
    "ErrorInfo metadata",
    "RequestInfo serving data",
    "application trailing metadata",
    "message and detail, truncated with a marker",
    "RequestInfo and ErrorInfo domain",
)

TRUNCATION_MARK = "...[truncated]"
TRUNCATED_KEY = "grpcTerminalTruncated"

#: Counted on top of our own trailers: when a call fails before any response,
#: grpc sends a Trailers-Only response whose one header block also holds
#: ``:status``, ``content-type`` and possibly ``grpc-accept-encoding`` (175
#: bytes by the metadata-limit count), all checked against the same limit.
RESPONSE_HEADERS_ALLOWANCE = 176

_KEY_RE = re.compile(r"^[0-9a-z_.\-]+$")
_HPACK_ENTRY_OVERHEAD = 32
_MAX_ERROR_REASON = 63


@dataclass(frozen=True, slots=True)
class Encoded:
    """What the server sends for one failure."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Metadata

    def size(self) -> int:
        """Bytes these trailers take against gRPC's metadata limit (never an underestimate)."""
        return trailer_size(self.code, self.message, self.trailing_metadata)


_PLAIN_BYTES = bytes(b for b in range(0x20, 0x7F) if b != 0x25)


def _percent_encoded_len(text: str) -> int:
    raw = text.encode("utf-8", "replace")
    return len(raw) + 2 * len(raw.translate(None, _PLAIN_BYTES))


def _entry_size(key: str, value: str | bytes) -> int:
    if key.endswith("-bin"):
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
        length = 4 * ((len(raw) + 2) // 3)
    else:
        length = len(value.encode("utf-8", "replace")) if isinstance(value, str) else len(value)
    return len(key.encode("utf-8", "replace")) + length + _HPACK_ENTRY_OVERHEAD


def trailer_size(code: grpc.StatusCode, message: str, trailing_metadata: Metadata) -> int:
    """Size of a status's trailers as gRPC's metadata limit counts them.

    Includes :data:`RESPONSE_HEADERS_ALLOWANCE`; binary values are counted
    base64-encoded (grpc may send them as true binary, which is smaller).
    """
    size = RESPONSE_HEADERS_ALLOWANCE
    size += len("grpc-status") + len(str(code.value[0])) + _HPACK_ENTRY_OVERHEAD
    size += len("grpc-message") + _percent_encoded_len(message) + _HPACK_ENTRY_OVERHEAD
    return size + sum(_entry_size(k, v) for k, v in trailing_metadata)


def valid_metadata(key: object, value: object) -> str | None:
    """Why ``(key, value)`` cannot be sent as application metadata, or None."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        return f"invalid metadata key {_short(key)}"
    if key.startswith("grpc-"):
        return f"reserved metadata key {_short(key)}"
    if key.endswith("-bin"):
        return None if isinstance(value, bytes) else f"binary metadata {key!r} needs bytes"
    if not isinstance(value, str) or not all(0x20 <= ord(c) <= 0x7E for c in value):
        return f"metadata {key!r} needs a printable ASCII str value"
    return None


def _short(obj: object) -> str:
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
                _log.warning("grpc_terminal: dropping trailing metadata entry %s: not a pair", _short(item))
                continue
            problem = valid_metadata(key, value)
            if problem is None:
                out.append((key, value))
            else:
                _log.warning("grpc_terminal: dropping trailing metadata: %s", problem)
    except Exception:
        _log.warning("grpc_terminal: dropping malformed trailing metadata", exc_info=True)
    return out


def _truncate(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    keep = max(0, limit - len(TRUNCATION_MARK))
    return raw[:keep].decode("utf-8", "ignore") + TRUNCATION_MARK


def _error_reason(reason: str) -> str:
    """An ErrorInfo reason cut to its longest valid length, 63 bytes (a peer's may be anything)."""
    raw = reason.encode("utf-8")
    return reason if len(raw) <= _MAX_ERROR_REASON else raw[:_MAX_ERROR_REASON].decode("utf-8", "ignore")


def _slot_value(exc: StatusError, attr: str, cls: type[Message]) -> Message | None:
    try:
        value: object = getattr(exc, attr, None)
    except Exception:
        _log.warning("grpc_terminal: %s.%s is unreadable; not sent", type(exc).__name__, attr)
        return None
    if value is None:
        return None
    if type(value) is not cls:
        _log.warning(
            "grpc_terminal: %s.%s is a %s, not a %s; not sent",
            type(exc).__name__, attr, type(value).__name__, cls.DESCRIPTOR.full_name,
        )
        return None
    return value


_M = TypeVar("_M", bound=Message)


def _copy(message: _M) -> _M:
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


class _Draft:
    """One status while it is fitted into the budget.

    ``slots`` start as the raised error's own messages, copied only where they
    must differ (a cut detail, a default domain): a status that fits costs no
    copies. Before any shrinking step :meth:`own` copies them all, so fitting
    never changes the raised error.
    """

    def __init__(
        self, exc: StatusError, domain: str, debug: bool, app_md: list[Any], budget: int
    ) -> None:
        code = exc.code()
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            _log.error("grpc_terminal: %s has code %s; sending UNKNOWN", type(exc).__name__, _short(code))
            code = grpc.StatusCode.UNKNOWN
        self.code = code
        message = exc.message
        if not isinstance(message, str):
            _log.error("grpc_terminal: %s.message is not a str; not sent", type(exc).__name__)
            message = ""
        # Text longer than the budget can never be sent whole: cut it now (the
        # truncation step will cut further) so fitting stays cheap.
        cap = max(budget, len(TRUNCATION_MARK))
        self.message = _truncate(clean_text(message), cap)
        self.app_md = app_md
        self.shrunk: list[str] = []
        self.slots: dict[str, Message] = {}
        for attr, cls in DETAIL_SLOTS.values():
            value = _slot_value(exc, attr, cls)
            if value is not None:
                self.slots[attr] = value
        pfd = self.slots.get("_failure_detail")
        self.terminal = pfd is not None
        if isinstance(pfd, ProvisionFailureDetail):
            detail = _truncate(clean_text(pfd.detail), cap)
            if detail != pfd.detail:
                pfd = self.slots["_failure_detail"] = _copy(pfd)
                pfd.detail = detail
        retry = self.slots.get("_retry_info")
        self.retry_delay: float | None = None
        if isinstance(retry, ed.RetryInfo) and retry.HasField("retry_delay"):
            self.retry_delay = delay_from_duration(retry.retry_delay)
        info = self.slots.get("error_info")
        if isinstance(info, ed.ErrorInfo) and not info.domain:
            info = self.slots["error_info"] = _copy(info)
            info.domain = domain
        if not debug:
            self.slots.pop("debug_info", None)
        extras: Iterable[object] = getattr(exc, "extra_details", None) or []
        self.extras: list[any_pb2.Any] = [x for x in extras if type(x) is any_pb2.Any]
        self._owned = False

    def own(self) -> None:
        """Copy every message, so shrinking steps may change them."""
        if not self._owned:
            self.slots = {attr: _copy(msg) for attr, msg in self.slots.items()}
            self.extras = [_copy(x) for x in self.extras]
            self._owned = True

    def status(self) -> status_pb2.Status:
        details: list[any_pb2.Any] = []
        for attr, msg in self.slots.items():
            if attr == "error_info" and self.shrunk and isinstance(msg, ed.ErrorInfo):
                marked = ed.ErrorInfo()
                marked.CopyFrom(msg)
                marked.metadata[TRUNCATED_KEY] = "true"
                msg = marked
            details.append(pack(msg))
        return status_pb2.Status(
            code=self.code.value[0], message=self.message, details=details + self.extras
        )

    def encoded(self) -> Encoded:
        md: list[tuple[str, str | bytes]] = list(self.app_md)
        md.append((STATUS_DETAILS_KEY, self.status().SerializeToString()))
        if self.terminal:
            md.append((PUSHBACK_KEY, "-1"))
        elif self.retry_delay is not None:
            md.append((PUSHBACK_KEY, str(min(round(self.retry_delay * 1000), 2**31 - 1))))
        return Encoded(self.code, self.message, tuple(md))


def _drop(attr: str) -> Callable[[_Draft], bool]:
    def step(draft: _Draft) -> bool:
        return draft.slots.pop(attr, None) is not None

    return step


def _halve(attr: str, field: str) -> Callable[[_Draft], bool]:
    """Drop the second half of a repeated field; the detail itself when empty."""

    def step(draft: _Draft) -> bool:
        msg = draft.slots.get(attr)
        if msg is None:
            return False
        items = getattr(msg, field)
        if len(items) <= 1:
            del draft.slots[attr]
            return True
        del items[len(items) // 2 :]
        return True

    return step


def _drop_extras(draft: _Draft) -> bool:
    changed = bool(draft.extras)
    draft.extras.clear()
    return changed


def _drop_unknown_fields(draft: _Draft) -> bool:
    changed = False
    for msg in draft.slots.values():
        before = msg.ByteSize()
        msg.DiscardUnknownFields()
        changed = msg.ByteSize() != before or changed
    return changed


def _drop_error_metadata(draft: _Draft) -> bool:
    info = draft.slots.get("error_info")
    if isinstance(info, ed.ErrorInfo) and info.metadata:
        info.metadata.clear()
        return True
    return False


def _drop_serving_data(draft: _Draft) -> bool:
    info = draft.slots.get("request_info")
    if isinstance(info, ed.RequestInfo) and info.serving_data:
        info.serving_data = ""
        return True
    return False


def _drop_app_md(draft: _Draft) -> bool:
    changed = bool(draft.app_md)
    draft.app_md.clear()
    return changed


# One step per SHRINK_ORDER entry before the truncation of free text.
_STEPS: tuple[Callable[[_Draft], bool], ...] = (
    _drop("debug_info"),
    _drop_extras,
    _drop_unknown_fields,
    _drop("help"),
    _drop("localized_message"),
    _drop("resource_info"),
    _halve("quota_failure", "violations"),
    _halve("precondition_failure", "violations"),
    _halve("bad_request", "field_violations"),
    _drop_error_metadata,
    _drop_serving_data,
    _drop_app_md,
)


class _Texts:
    """The free text of a draft, truncated together to one byte limit."""

    def __init__(self, draft: _Draft) -> None:
        self.draft = draft
        self.message = draft.message
        pfd = draft.slots.get("_failure_detail")
        self.pfd = pfd if isinstance(pfd, ProvisionFailureDetail) else None
        self.detail = self.pfd.detail if self.pfd is not None else ""
        request = draft.slots.get("request_info")
        self.request = request if isinstance(request, ed.RequestInfo) else None
        self.request_id = self.request.request_id if self.request is not None else ""
        info = draft.slots.get("error_info")
        self.info = info if isinstance(info, ed.ErrorInfo) else None
        self.domain = self.info.domain if self.info is not None else ""
        self.reason = self.info.reason if self.info is not None else ""

    def longest(self) -> int:
        texts = (self.message, self.detail, self.request_id, self.domain)
        return max(len(t.encode("utf-8")) for t in texts)

    def apply(self, limit: int, floor: int = 64) -> Encoded:
        d = self.draft
        d.message = _truncate(self.message, max(limit, len(TRUNCATION_MARK)))
        if self.pfd is not None:
            self.pfd.detail = _truncate(self.detail, max(limit, len(TRUNCATION_MARK)))
        if self.request is not None:
            self.request.request_id = _truncate(self.request_id, max(limit, floor))
        if self.info is not None:
            self.info.domain = _truncate(self.domain, max(limit, floor))
            self.info.reason = _error_reason(self.reason)
        return d.encoded()


def _fit(draft: _Draft, budget: int) -> Encoded:
    encoded = draft.encoded()
    original = encoded.size()
    if original <= budget:
        return encoded
    draft.own()
    for name, step in zip(SHRINK_ORDER, _STEPS, strict=False):
        changed = False
        while encoded.size() > budget and step(draft):
            changed = True
            if not draft.shrunk or draft.shrunk[-1] != name:
                draft.shrunk.append(name)
            encoded = draft.encoded()
        if changed and encoded.size() <= budget:
            break
    if encoded.size() > budget:
        # Truncate the free text: the largest common byte limit that fits.
        draft.shrunk.append(SHRINK_ORDER[-2])
        texts = _Texts(draft)
        low, high = 0, min(texts.longest(), budget)
        best = texts.apply(0)
        if best.size() <= budget:
            while low < high:
                mid = (low + high + 1) // 2
                if texts.apply(mid).size() <= budget:
                    low = mid
                else:
                    high = mid - 1
            best = texts.apply(low)
        encoded = best
    if encoded.size() > budget:
        # The irreducible status: code, reasons, retry delay and the truncation mark.
        draft.shrunk.append(SHRINK_ORDER[-1])
        _keep_irreducible(draft)
        texts = _Texts(draft)
        encoded = texts.apply(0, floor=0)
        if encoded.size() > budget:
            _log.error(
                "grpc_terminal: even the smallest status for %s takes %d bytes, over the %d-byte "
                "trailer budget; sending it anyway", draft.code.name, encoded.size(), budget,
            )
    _log.warning(
        "grpc_terminal: %s status needs at least %d bytes, over the %d-byte trailer budget; "
        "cut: %s (now %d bytes)",
        draft.code.name, original, budget, "; ".join(draft.shrunk), encoded.size(),
    )
    return encoded


def _keep_irreducible(draft: _Draft) -> None:
    """Rebuild the draft's details from their essential fields only: nothing
    else (no unknown field, no domain, no RequestInfo) can survive."""
    slots: dict[str, Message] = {}
    pfd = draft.slots.get("_failure_detail")
    if isinstance(pfd, ProvisionFailureDetail):
        slots["_failure_detail"] = ProvisionFailureDetail(reason=pfd.reason, detail=pfd.detail)
    info = draft.slots.get("error_info")
    if isinstance(info, ed.ErrorInfo):
        slots["error_info"] = ed.ErrorInfo(reason=_error_reason(info.reason))
    retry = draft.slots.get("_retry_info")
    if isinstance(retry, ed.RetryInfo) and retry.HasField("retry_delay"):
        slim = ed.RetryInfo()
        slim.retry_delay.seconds = retry.retry_delay.seconds
        slim.retry_delay.nanos = retry.retry_delay.nanos
        slots["_retry_info"] = slim
    draft.slots = slots
    draft.extras = []
    draft.app_md = []


def _app_metadata(exc: StatusError, metadata: Iterable[tuple[Any, Any]]) -> list[tuple[str, str | bytes]]:
    app_md = sanitize_metadata(metadata)
    try:
        if not getattr(exc, "_received", False):
            app_md += sanitize_metadata(exc.trailing_metadata())
    except Exception:
        _log.warning(
            "grpc_terminal: %s.trailing_metadata() failed; not sent", type(exc).__name__, exc_info=True
        )
    return app_md


def _minimal(exc: object, budget: int) -> Encoded:
    """Code, reasons and a truncated message only: for errors too broken to encode."""
    try:
        code = exc.code() if isinstance(exc, StatusError) else None
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        draft = _Draft.__new__(_Draft)
        draft.code, draft.app_md, draft.shrunk, draft.extras = code, [], [], []
        message = getattr(exc, "message", "")
        draft.message = clean_text(message) if isinstance(message, str) else ""
        draft.slots, draft.terminal, draft.retry_delay = {}, False, None
        draft._owned = True  # pyright: ignore[reportPrivateUsage]  # TODO(arch)
        pfd: object = getattr(exc, "_failure_detail", None)
        if isinstance(pfd, ProvisionFailureDetail):
            slim = ProvisionFailureDetail()
            slim.reason = pfd.reason
            slim.detail = clean_text(pfd.detail)
            draft.slots["_failure_detail"] = slim
        info: Any = getattr(exc, "error_info", None)
        if isinstance(info, ed.ErrorInfo):
            draft.slots["error_info"] = ed.ErrorInfo(reason=_error_reason(clean_text(info.reason)))
        draft.terminal = "_failure_detail" in draft.slots
        return _fit(draft, budget)
    except Exception:
        _log.error("grpc_terminal: cannot encode even a minimal status; sending UNKNOWN", exc_info=True)
        status = status_pb2.Status(code=grpc.StatusCode.UNKNOWN.value[0])
        return Encoded(grpc.StatusCode.UNKNOWN, "", ((STATUS_DETAILS_KEY, status.SerializeToString()),))


def encode(
    exc: StatusError,
    *,
    domain: str = DEFAULT_DOMAIN,
    debug: bool = False,
    budget: int = TRAILER_BUDGET,
    metadata: Iterable[tuple[Any, Any]] = (),
) -> Encoded:
    """The code, message and trailers the server sends for ``exc``. Never raises.

    ``metadata`` is application trailing metadata to send alongside (what the
    handler already set); invalid entries are dropped and logged. Trailers
    ``exc`` was *received* with are never re-sent. The result's ``size()`` is
    at most ``budget`` (see :data:`SHRINK_ORDER`) whenever ``budget`` is at
    least :data:`MIN_BUDGET`; under it, when even the irreducible status does
    not fit, that status is sent and the overrun logged. A detail
    that cannot be encoded (a wrong type assigned to an attribute) is dropped
    and logged; an error that cannot be encoded at all is sent as its code,
    reasons and message.
    """
    try:
        return _fit(_Draft(exc, domain, debug, _app_metadata(exc, metadata), budget), budget)
    except Exception:
        _log.error(
            "grpc_terminal: cannot encode %s; sending its code and reasons only", type(exc).__name__,
            exc_info=True,
        )
        return _minimal(exc, budget)


# -- decoding ------------------------------------------------------------------

_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


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


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while shift < 70:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
    raise ValueError("varint too long")


def salvage_status(raw: bytes) -> status_pb2.Status:
    """What can be salvaged of a Status the strict parser rejects.

    Reads the code and every detail that is a well-formed ``Any``, skipping
    the message (often the culprit: invalid UTF-8) and anything malformed.
    Raises ``ValueError`` when the framing itself is broken.
    """
    code, pos = 0, 0
    details: list[any_pb2.Any] = []
    while pos < len(raw):
        tag, pos = _varint(raw, pos)
        field, wire = tag >> 3, tag & 7
        value: int | bytes | None = None  # a fixed-width field is skipped, never read
        if wire == 0:
            value, pos = _varint(raw, pos)
        elif wire == 2:
            length, pos = _varint(raw, pos)
            if pos + length > len(raw):
                raise ValueError("truncated field")
            value, pos = raw[pos : pos + length], pos + length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
            if pos > len(raw):
                raise ValueError("truncated field")
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if field == 1 and isinstance(value, int):
            code = value & 0xFFFFFFFF
            code = code - 2**32 if code >= 2**31 else code
        elif field == 3 and isinstance(value, bytes):
            try:
                details.append(any_pb2.Any.FromString(value))
            except Exception:
                continue
    return status_pb2.Status(code=code, details=details)


def _status_bytes(value: str | bytes) -> bytes | None:
    if isinstance(value, bytes):
        return value
    # grpc always hands -bin values over as bytes; a str here came from
    # something else (a test double, a proxy): take it as base64, else raw.
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
    except Exception:
        return value.encode("latin-1", "replace")


_BASE64_RE = re.compile(rb"^[A-Za-z0-9+/]+={0,2}$")


def _read_status(raw: bytes, unwrap: bool = True) -> status_pb2.Status | None:
    """``raw`` as a Status: strictly, else leniently, else as base64 text of one."""
    try:
        return status_pb2.Status.FromString(raw)
    except Exception:  # DecodeError, UnicodeDecodeError (pure-python protobuf), ...
        pass
    try:
        return salvage_status(raw)
    except Exception:
        pass
    if unwrap and len(raw) % 4 == 0 and _BASE64_RE.match(raw):
        # A peer that base64-encoded the value itself (grpc encodes it again).
        return _read_status(base64.b64decode(raw), unwrap=False)
    return None


def _parse_status(code: grpc.StatusCode, trailers: Metadata) -> status_pb2.Status | None:
    """The first readable status details trailer that agrees with ``code``."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY:
            continue
        raw = _status_bytes(value)
        if raw is None:
            continue
        status = _read_status(raw)
        if status is None:
            _log.debug("grpc_terminal: undecodable %s trailer", STATUS_DETAILS_KEY)
            continue
        if status.code != code.value[0]:
            _log.debug(
                "grpc_terminal: status details say code %d, call says %s: ignoring details",
                status.code,
                code.name,
            )
            continue
        return status
    return None


def _usable(details: Iterable[any_pb2.Any]) -> list[tuple[any_pb2.Any, Message | None]]:
    """``details`` each unpacked once: known types that fail to unpack are dropped,
    unknown types kept packed (``None`` beside them)."""
    out: list[tuple[any_pb2.Any, Message | None]] = []
    for packed in details:
        try:
            slot = DETAIL_SLOTS.get(packed.TypeName())
            if slot is None:
                out.append((packed, None))
                continue
            unpacked = slot[1]()
            if packed.Unpack(unpacked):
                out.append((packed, unpacked))
        except Exception:
            continue
    return out


def decode(code: Any, message: Any, trailing_metadata: Any) -> StatusError:
    """The typed error for a failed call. Never raises.

    The call's own code and message are authoritative; a details trailer whose
    code disagrees with the call is ignored, and so are details that cannot be
    decoded (a status whose message is not UTF-8 keeps its well-formed
    details). Unknown detail types are kept as ``Any`` in ``extra_details``.
    """
    try:
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        elif not isinstance(message, str):
            message = "" if message is None else _safe_text(message)
        trailers = read_metadata(trailing_metadata)
        status = _parse_status(code, trailers)
        details = _usable(status.details) if status is not None else []
        reason = next(
            (int(msg.reason) for _, msg in details if isinstance(msg, ProvisionFailureDetail)), None
        )
        cls = class_for(code, reason)
        try:
            return cls._decoded(code, message, details, trailers)  # pyright: ignore[reportPrivateUsage]  # TODO(arch)
        except Exception:
            _log.debug("grpc_terminal: details unusable, keeping the code only", exc_info=True)
            return class_for(code)._decoded(code, message, (), trailers)  # pyright: ignore[reportPrivateUsage]  # TODO(arch)
    except Exception:
        _log.debug("grpc_terminal: decode failed", exc_info=True)
        try:
            fallback = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            return class_for(fallback)._decoded(fallback, "", (), ())  # pyright: ignore[reportPrivateUsage]  # TODO(arch)
        except Exception:
            return Unknown._decoded(grpc.StatusCode.UNKNOWN, "", (), ())  # pyright: ignore[reportPrivateUsage]  # TODO(arch)


def _safe_text(obj: object) -> str:
    try:
        return str(obj)
    except Exception:
        return ""


def _call(obj: Any, name: str) -> Any:
    try:
        method = getattr(obj, name, None)
        return method() if callable(method) else None
    except Exception:
        return None


def from_rpc_error(err: BaseException) -> StatusError:
    """The typed error for a raw ``grpc.RpcError`` (or ``AioRpcError``). Never raises.

    A :class:`StatusError` is returned as it is; otherwise the result has
    ``err`` as its ``__cause__``.

    Args:
        err: the failure as grpc raised it; its ``code()``, ``details()`` and
            ``trailing_metadata()`` are read (whatever they return or raise).
    """
    if isinstance(err, StatusError):
        return err
    result = decode(_call(err, "code"), _call(err, "details"), _call(err, "trailing_metadata"))
    result.__cause__ = err
    return result


class _StatusFields(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


class _Status(_StatusFields, grpc.Status):
    """A grpc.Status for ``context.abort_with_status``."""


def status_from_encoded(encoded: Encoded) -> grpc.Status:
    """``encoded`` as a grpc.Status."""
    return _Status(encoded.code, encoded.message, encoded.trailing_metadata)
