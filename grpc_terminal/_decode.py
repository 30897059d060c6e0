"""Decoding: the typed error for what a peer sent. Never raises.

The call's own code and message are authoritative; a ``grpc-status-details-bin``
trailer is read strictly, else leniently (:func:`salvage_status`), else as the
base64 text of one, and ignored when its code disagrees with the call's.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from grpc_terminal._errors import DETAIL_SLOTS, Metadata, StatusError, Unknown, class_for, decoded
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._trailers import STATUS_DETAILS_KEY, read_metadata

__all__ = ["decode", "from_rpc_error", "parse_status", "salvage_status"]

_log = logging.getLogger("grpc_terminal")


_CODES_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


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


def parse_status(code: grpc.StatusCode, trailers: Metadata) -> status_pb2.Status | None:
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
            url = packed.type_url  # what Any.TypeName() and Any.Unpack() read, read once
            slot = DETAIL_SLOTS.get(url.rpartition("/")[2])
            if slot is None:
                out.append((packed, None))
                continue
            if "/" in url:  # Any.Unpack refuses a type URL without one
                unpacked = slot[1]()
                unpacked.ParseFromString(packed.value)
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
        status = parse_status(code, trailers)
        details = _usable(status.details) if status is not None else []
        reason = next(
            (int(msg.reason) for _, msg in details if isinstance(msg, ProvisionFailureDetail)), None
        )
        cls = class_for(code, reason)
        try:
            return decoded(cls, code, message, details, trailers)
        except Exception:
            _log.debug("grpc_terminal: details unusable, keeping the code only", exc_info=True)
            return decoded(class_for(code), code, message, (), trailers)
    except Exception:
        _log.debug("grpc_terminal: decode failed", exc_info=True)
        try:
            fallback = code if isinstance(code, grpc.StatusCode) else grpc.StatusCode.UNKNOWN
            return decoded(class_for(fallback), fallback, "", (), ())
        except Exception:
            return decoded(Unknown, grpc.StatusCode.UNKNOWN, "", (), ())


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
