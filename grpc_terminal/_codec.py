"""Status codec: typed exception <-> code, message and trailers.

Encoding keeps every trailer we send within :data:`TRAILER_BUDGET` bytes,
shrinking in the fixed order of :data:`SHRINK_ORDER`. Decoding never raises:
whatever a peer sends, the caller gets the most honest typed error we can
build, falling back to the code alone.
"""

from __future__ import annotations

import collections
import copy
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

from grpc_terminal._details import DETAIL_SLOTS, pack
from grpc_terminal._errors import Metadata, StatusError, Unknown, class_for
from grpc_terminal._reason import ProvisionFailureDetail

__all__ = [
    "DEFAULT_DOMAIN",
    "PUSHBACK_KEY",
    "SHRINK_ORDER",
    "STATUS_DETAILS_KEY",
    "TRAILER_BUDGET",
    "Encoded",
    "decode",
    "encode",
    "from_rpc_error",
    "trailer_size",
]

_log = logging.getLogger("grpc_terminal")

STATUS_DETAILS_KEY = "grpc-status-details-bin"
PUSHBACK_KEY = "grpc-retry-pushback-ms"
DEFAULT_DOMAIN = "grpc-terminal"

#: Bytes all trailers we send may take, counted as gRPC's metadata limit does
#: (name + value + 32 per entry), with binary values base64-encoded and the
#: message counted twice: percent-encoded in ``grpc-message`` and inside
#: ``grpc-status-details-bin``. grpc's client rejects trailers over 8 KiB
#: (randomly) and 16 KiB (always) with RESOURCE_EXHAUSTED.
TRAILER_BUDGET = 4096

#: What goes first when trailers would exceed the budget. The code, the
#: ProvisionFailureDetail reason, the ErrorInfo reason and domain, and a
#: truncated message and detail always survive.
SHRINK_ORDER = (
    "DebugInfo",
    "unrecognised extra details",
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
)

TRUNCATION_MARK = "...[truncated]"

_KEY_RE = re.compile(r"^[0-9a-z_.\-]+$")
_HPACK_ENTRY_OVERHEAD = 32


@dataclass(frozen=True, slots=True)
class Encoded:
    """What the server sends for one failure."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Metadata

    def size(self) -> int:
        """Bytes these trailers take against gRPC's metadata limit."""
        return trailer_size(self.code, self.message, self.trailing_metadata)


def _percent_encoded_len(text: str) -> int:
    return sum(1 if 0x20 <= b <= 0x7E and b != 0x25 else 3 for b in text.encode("utf-8", "replace"))


def _entry_size(key: str, value: str | bytes) -> int:
    if key.endswith("-bin"):
        raw = value if isinstance(value, bytes) else value.encode("utf-8", "replace")
        length = 4 * ((len(raw) + 2) // 3)
    else:
        length = len(value) if isinstance(value, (str, bytes)) else len(str(value))
    return len(key) + length + _HPACK_ENTRY_OVERHEAD


def trailer_size(code: grpc.StatusCode, message: str, trailing_metadata: Metadata) -> int:
    """Size of a status's trailers as gRPC's metadata limit counts them."""
    size = len("grpc-status") + len(str(code.value[0])) + _HPACK_ENTRY_OVERHEAD
    size += len("grpc-message") + _percent_encoded_len(message) + _HPACK_ENTRY_OVERHEAD
    return size + sum(_entry_size(k, v) for k, v in trailing_metadata)


def valid_metadata(key: object, value: object) -> str | None:
    """Why ``(key, value)`` cannot be sent as application metadata, or None."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        return f"invalid metadata key {key!r}"
    if key.startswith("grpc-"):
        return f"reserved metadata key {key!r}"
    if key.endswith("-bin"):
        return None if isinstance(value, bytes) else f"binary metadata {key!r} needs bytes"
    if not isinstance(value, str) or not all(0x20 <= ord(c) <= 0x7E for c in value):
        return f"metadata {key!r} needs a printable ASCII str value"
    return None


def sanitize_metadata(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[str, str | bytes]]:
    """Application metadata we can send; drops (and logs) what grpc would reject."""
    out: list[tuple[str, str | bytes]] = []
    try:
        for key, value in pairs:
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


class _Draft:
    """A mutable copy of one status while it is fitted into the budget."""

    def __init__(self, exc: StatusError, domain: str, debug: bool, app_md: list[Any]) -> None:
        self.code = exc.code()
        self.message = exc.message
        self.terminal = exc.failure_detail is not None
        self.retry_delay = exc.retry_delay
        self.app_md = app_md
        self.slots: dict[str, Message] = {}
        for attr, _cls in DETAIL_SLOTS.values():
            value = getattr(exc, attr)
            if value is not None:
                self.slots[attr] = copy.deepcopy(value)
        info = self.slots.get("error_info")
        if isinstance(info, ed.ErrorInfo) and not info.domain:
            info.domain = domain
        if not debug:
            self.slots.pop("debug_info", None)
        self.extras: list[any_pb2.Any] = list(exc.extra_details)

    def status(self) -> status_pb2.Status:
        details = [pack(msg) for msg in self.slots.values()]
        return status_pb2.Status(
            code=self.code.value[0], message=self.message, details=details + self.extras
        )

    def encoded(self) -> Encoded:
        md: list[tuple[str, str | bytes]] = list(self.app_md)
        md.append((STATUS_DETAILS_KEY, self.status().SerializeToString()))
        if self.terminal:
            md.append((PUSHBACK_KEY, "-1"))
        elif self.retry_delay is not None:
            md.append((PUSHBACK_KEY, str(round(self.retry_delay * 1000))))
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


# One step list per SHRINK_ORDER entry, applied repeatedly until it fits.
_STEPS: tuple[Callable[[_Draft], bool], ...] = (
    _drop("debug_info"),
    _drop_extras,
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


def _fit(draft: _Draft, budget: int) -> Encoded:
    encoded = draft.encoded()
    for step in _STEPS:
        while encoded.size() > budget and step(draft):
            encoded = draft.encoded()
        if encoded.size() <= budget:
            return encoded
    # Last resort: truncate the free text (message, detail, request id) until it fits.
    message, pfd = draft.message, draft.slots.get("_failure_detail")
    detail = pfd.detail if isinstance(pfd, ProvisionFailureDetail) else ""
    request = draft.slots.get("request_info")
    request_id = request.request_id if isinstance(request, ed.RequestInfo) else ""
    limit = max(len(message.encode()), len(detail.encode()), len(request_id.encode()))
    while encoded.size() > budget and limit > 0:
        limit = limit // 2
        draft.message = _truncate(message, max(limit, len(TRUNCATION_MARK)))
        if isinstance(pfd, ProvisionFailureDetail):
            pfd.detail = _truncate(detail, max(limit, len(TRUNCATION_MARK)))
        if isinstance(request, ed.RequestInfo):
            request.request_id = _truncate(request_id, max(limit, 64))
        info = draft.slots.get("error_info")
        if isinstance(info, ed.ErrorInfo):
            info.domain = _truncate(info.domain, max(limit, 64))
        encoded = draft.encoded()
    return encoded


def encode(
    exc: StatusError,
    *,
    domain: str = DEFAULT_DOMAIN,
    debug: bool = False,
    budget: int = TRAILER_BUDGET,
    metadata: Iterable[tuple[Any, Any]] = (),
) -> Encoded:
    """The code, message and trailers the server sends for ``exc``.

    ``metadata`` is application trailing metadata to send alongside (what the
    handler already set); invalid entries are dropped and logged. Trailers
    ``exc`` was *received* with are never re-sent.
    """
    app_md = sanitize_metadata(metadata)
    if not exc._received:
        app_md += sanitize_metadata(exc.trailing_metadata())
    return _fit(_Draft(exc, domain, debug, app_md), budget)


# -- decoding ------------------------------------------------------------------

_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def _metadata(raw: Any) -> Metadata:
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


def _parse_status(code: grpc.StatusCode, trailers: Metadata) -> status_pb2.Status | None:
    """The first well-formed status details trailer that agrees with ``code``."""
    for key, value in trailers:
        if key != STATUS_DETAILS_KEY:
            continue
        raw = value if isinstance(value, bytes) else value.encode("latin-1", "replace")
        try:
            status = status_pb2.Status.FromString(raw)
        except Exception:  # DecodeError, UnicodeDecodeError (pure-python protobuf), ...
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


def decode(code: Any, message: Any, trailing_metadata: Any) -> StatusError:
    """The typed error for a failed call. Never raises.

    The call's own code and message are authoritative; a details trailer whose
    code disagrees with the call is ignored, and so are details that cannot be
    decoded. Unknown detail types are kept as ``Any`` in ``extra_details``.
    """
    try:
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            code = grpc.StatusCode.UNKNOWN
        if isinstance(message, bytes):
            message = message.decode("utf-8", "replace")
        elif not isinstance(message, str):
            message = "" if message is None else str(message)
        trailers = _metadata(trailing_metadata)
        status = _parse_status(code, trailers)
        details = list(status.details) if status is not None else []
        reason = None
        for packed in details:
            if packed.TypeName() == ProvisionFailureDetail.DESCRIPTOR.full_name:
                pfd = ProvisionFailureDetail()
                try:
                    if packed.Unpack(pfd):
                        reason = int(pfd.reason)
                        break
                except Exception:
                    continue
        cls = class_for(code, reason)
        try:
            return cls._decoded(code, message, details, trailers)
        except Exception:
            _log.debug("grpc_terminal: details unusable, keeping the code only", exc_info=True)
            return class_for(code)._decoded(code, message, (), trailers)
    except Exception:
        _log.debug("grpc_terminal: decode failed", exc_info=True)
        return Unknown._decoded(grpc.StatusCode.UNKNOWN, "", (), ())


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
    """
    if isinstance(err, StatusError):
        return err
    result = decode(_call(err, "code"), _call(err, "details"), _call(err, "trailing_metadata"))
    result.__cause__ = err
    return result


class _Status(
    collections.namedtuple("_Status", ("code", "details", "trailing_metadata")), grpc.Status
):
    """A grpc.Status for ``context.abort_with_status``."""


def status_from_encoded(encoded: Encoded) -> grpc.Status:
    """``encoded`` as a grpc.Status."""
    return _Status(encoded.code, encoded.message, encoded.trailing_metadata)
