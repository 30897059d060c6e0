"""Encoding: a typed exception as the code, message and trailers the server sends.

The trailers always fit :data:`~grpc_terminal._trailers.TRAILER_BUDGET` bytes
(when the budget is at least ``MIN_BUDGET``): content goes in the fixed order
of :data:`SHRINK_ORDER`, each step a :class:`ShrinkStep` that owns its name and
its action. An error too broken to encode is sent as its code and reasons.

Kept whole (over the ~400-line guide): the draft, its shrink steps and the fitting loop
are one algorithm; split, each part would reach into the others' state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

from grpc_terminal._details import clean_text, delay_from_duration
from grpc_terminal._errors import DETAIL_SLOTS, Metadata, StatusError, is_received
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._trailers import (
    PUSHBACK_KEY,
    STATUS_DETAILS_KEY,
    TRAILER_BUDGET,
    Encoded,
    sanitize_metadata,
    short_repr,
)

__all__ = [
    "DEFAULT_DOMAIN",
    "IRREDUCIBLE",
    "SHRINK_ORDER",
    "TRUNCATED_KEY",
    "TRUNCATE_TEXT",
    "TRUNCATION_MARK",
    "ShrinkStep",
    "encode",
    "status_from_encoded",
]

_log = logging.getLogger("grpc_terminal")


DEFAULT_DOMAIN = "grpc-terminal"


TRUNCATION_MARK = "...[truncated]"


TRUNCATED_KEY = "grpcTerminalTruncated"


_MAX_ERROR_REASON = 63


def _truncate(text: str, limit: int) -> str:
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    keep = max(0, limit - len(TRUNCATION_MARK))
    return raw[:keep].decode("utf-8", "ignore") + TRUNCATION_MARK


def _clean_cut(text: str, limit: int) -> str:
    """``_truncate(clean_text(text), limit)``, reading at most ``limit + 1`` characters of ``text``.

    Every character takes at least one byte, so a text of more than ``limit``
    characters is cut whatever its tail: only its head is cleaned and measured.
    """
    if len(text) > limit:
        text = text[: limit + 1]
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        return _truncate(clean_text(text), limit)
    if len(raw) <= limit:
        return text
    return raw[: max(0, limit - len(TRUNCATION_MARK))].decode("utf-8", "ignore") + TRUNCATION_MARK


_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def _varint(n: int) -> bytes:
    """``n`` (>= 0) as a protobuf varint."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return tag + _varint(len(payload)) + payload


#: The ``Any.type_url`` field of each detail slot, as ``Any.Pack`` writes it.
_TYPE_URLS = {
    attr: _field(b"\x0a", f"type.googleapis.com/{cls.DESCRIPTOR.full_name}".encode())
    for attr, cls in DETAIL_SLOTS.values()
}


def _error_reason(reason: str) -> str:
    """An ErrorInfo reason cut to its longest valid length, 63 bytes (a peer's may be anything)."""
    raw = reason.encode("utf-8")
    return reason if len(raw) <= _MAX_ERROR_REASON else raw[:_MAX_ERROR_REASON].decode("utf-8", "ignore")


_M = TypeVar("_M", bound=Message)

_SLOTS = tuple(DETAIL_SLOTS.values())


def _has_unknown_fields(msg: Message) -> bool:
    """Whether ``msg`` itself (not its sub-messages) carries fields this version cannot read."""
    try:
        from google.protobuf.unknown_fields import UnknownFieldSet
    except ImportError:  # protobuf < 4.24: cannot tell, so assume it does
        return True
    return len(UnknownFieldSet(msg)) > 0


def _copy(message: _M) -> _M:
    copied = type(message)()
    copied.CopyFrom(message)
    return copied


class _Draft:
    """One status while it is fitted into the budget.

    ``slots`` start as the raised error's own messages, copied only where they
    must differ (a cut detail, a default domain): a status that fits costs no
    copies. A shrinking step changes a slot through :meth:`mutable`, which
    copies it first, so fitting never changes the raised error. Each slot is
    serialized once and kept until it changes: sizes come from those bytes.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        slots: dict[str, Message],
        extras: list[any_pb2.Any],
        app_md: list[tuple[str, str | bytes]],
    ) -> None:
        self.code = code
        self.message = message
        self.slots = slots
        self.extras = extras
        self.app_md = app_md
        self.shrunk: list[str] = []
        pfd = slots.get("failure_detail")
        self.terminal = pfd is not None
        retry = slots.get("retry_info")
        self.retry_delay: float | None = None
        if isinstance(retry, ed.RetryInfo) and retry.HasField("retry_delay"):
            self.retry_delay = delay_from_duration(retry.retry_delay)
        self._owned: set[str] = set()
        self._extras_owned = False
        self._values: dict[str, bytes] = {}
        self._anys: dict[str, bytes] = {}
        #: The budget being fitted (set by :func:`_fit`): lets steps skip what cannot fit.
        self.budget: int | None = None

    @classmethod
    def of(
        cls, exc: StatusError, domain: str, debug: bool, app_md: list[tuple[str, str | bytes]], budget: int
    ) -> _Draft:
        """The draft of what ``exc`` carries (its messages shared, copied only where they must differ)."""
        code = exc.code()
        if not isinstance(code, grpc.StatusCode) or code is grpc.StatusCode.OK:
            _log.error("grpc_terminal: %s has code %s; sending UNKNOWN", type(exc).__name__, short_repr(code))
            code = grpc.StatusCode.UNKNOWN
        message = exc.message
        if not isinstance(message, str):
            _log.error("grpc_terminal: %s.message is not a str; not sent", type(exc).__name__)
            message = ""
        # Text longer than the budget can never be sent whole: cut it now (the
        # truncation step will cut further) so fitting stays cheap.
        cap = max(budget, len(TRUNCATION_MARK))
        slots: dict[str, Message] = {}
        for attr, slot_class in _SLOTS:
            try:
                value = getattr(exc, attr, None)
            except Exception:
                _log.warning("grpc_terminal: %s.%s is unreadable; not sent", type(exc).__name__, attr)
                continue
            if value is None:
                continue
            if type(value) is slot_class:
                slots[attr] = value
            else:
                _log.warning(
                    "grpc_terminal: %s.%s is a %s, not a %s; not sent",
                    type(exc).__name__, attr, type(value).__name__, slot_class.DESCRIPTOR.full_name,
                )
        pfd = slots.get("failure_detail")
        if isinstance(pfd, ProvisionFailureDetail):
            original = pfd.detail  # a new str on every read: read it once
            detail = _clean_cut(original, cap)
            if detail != original:
                if _has_unknown_fields(pfd):
                    pfd = _copy(pfd)
                    pfd.detail = detail
                else:  # its two fields: copying the long detail only to replace it costs ~1 ms per MB
                    pfd = ProvisionFailureDetail(reason=pfd.reason, detail=detail)
                slots["failure_detail"] = pfd
        info = slots.get("error_info")
        if isinstance(info, ed.ErrorInfo) and not info.domain:
            info = slots["error_info"] = _copy(info)
            info.domain = domain
        if not debug:
            slots.pop("debug_info", None)
        extras: Iterable[object] = getattr(exc, "extra_details", None) or []
        packed = [x for x in extras if type(x) is any_pb2.Any]
        return cls(code, _clean_cut(message, cap), slots, packed, app_md)

    def own(self) -> None:
        """Copy every message, so they may be changed in place (then :meth:`changed`)."""
        for attr in self.slots:
            self.mutable(attr)
        if not self._extras_owned:
            self.extras = [_copy(x) for x in self.extras]
            self._extras_owned = True

    def mutable(self, attr: str) -> Message:
        """The slot ``attr``, copied from the raised error's once, to be changed in place."""
        msg = self.slots[attr]
        if attr not in self._owned:
            msg = self.slots[attr] = _copy(msg)
            self._owned.add(attr)
        self._values.pop(attr, None)
        self._anys.pop(attr, None)
        return msg

    def changed(self, *attrs: str) -> None:
        """Forget the bytes of slots that were changed in place."""
        for attr in attrs:
            self._values.pop(attr, None)
            self._anys.pop(attr, None)

    def value(self, attr: str) -> bytes:
        """The slot ``attr`` serialized (once, until it changes)."""
        value = self._values.get(attr)
        if value is None:
            value = self._values[attr] = self.slots[attr].SerializeToString()
        return value

    def _any(self, attr: str) -> bytes:
        """The slot ``attr`` as a serialized ``Any`` (its ErrorInfo marked when anything was cut)."""
        msg = self.slots[attr]
        if attr == "error_info" and self.shrunk and isinstance(msg, ed.ErrorInfo):
            marked = ed.ErrorInfo()
            marked.CopyFrom(msg)
            marked.metadata[TRUNCATED_KEY] = "true"
            return _TYPE_URLS[attr] + _field(b"\x12", marked.SerializeToString())
        value = self._values.get(attr)
        if value is None:
            value = self._values[attr] = msg.SerializeToString()
        url = _TYPE_URLS[attr]
        packed = self._anys[attr] = url + b"\x12" + _varint(len(value)) + value if value else url
        return packed

    def status_bytes(self) -> bytes:
        """The serialized ``google.rpc.Status``: the bytes ``Status(code=..., message=...,
        details=...).SerializeToString()`` gives, from each detail's bytes (the code is never 0)."""
        parts = [b"\x08", _varint(self.code.value[0])]
        if self.message:
            raw = self.message.encode("utf-8")
            parts += (b"\x12", _varint(len(raw)), raw)
        anys = self._anys
        for attr in self.slots:
            packed = anys.get(attr)
            if packed is None or (self.shrunk and attr == "error_info"):
                packed = self._any(attr)
            parts += (b"\x1a", _varint(len(packed)), packed)
        for extra in self.extras:
            packed = extra.SerializeToString()
            parts += (b"\x1a", _varint(len(packed)), packed)
        return b"".join(parts)

    def size_without(self, attr: str) -> int:
        """The size of the trailers without the slot ``attr`` (a lower bound for any
        content of that slot)."""
        slots = self.slots
        self.slots = {name: msg for name, msg in slots.items() if name != attr}
        try:
            return self.encoded().size()
        finally:
            self.slots = slots

    def status(self) -> status_pb2.Status:
        return status_pb2.Status.FromString(self.status_bytes())

    def encoded(self) -> Encoded:
        status = (STATUS_DETAILS_KEY, self.status_bytes())
        if self.terminal:
            md = (*self.app_md, status, (PUSHBACK_KEY, "-1"))
        elif self.retry_delay is not None:
            md = (*self.app_md, status, (PUSHBACK_KEY, str(min(round(self.retry_delay * 1000), 2**31 - 1))))
        else:
            md = (*self.app_md, status)
        return Encoded(self.code, self.message, md)


def _drop(attr: str) -> Callable[[_Draft], bool]:
    def step(draft: _Draft) -> bool:
        return draft.slots.pop(attr, None) is not None

    return step


def _halve(attr: str, field: str) -> Callable[[_Draft], bool]:
    """Drop the second half of a repeated field; the detail itself when empty."""

    def step(draft: _Draft) -> bool:
        if attr not in draft.slots:
            return False
        items = getattr(draft.slots[attr], field)
        keep = len(items) // 2
        budget = draft.budget
        if budget is not None and 2 * keep > budget:
            # Each item takes at least 2 bytes (tag and length): halvings that keep
            # more than budget / 2 items cannot fit, so they are not measured; and
            # when the status is over the budget even without this detail, halving
            # would go on until it is gone.
            if draft.size_without(attr) > budget:
                keep = 0
            while keep > 1 and 2 * keep > budget:
                keep //= 2
        if keep == 0:
            del draft.slots[attr]
            return True
        del getattr(draft.mutable(attr), field)[keep:]
        return True

    return step


def _drop_extras(draft: _Draft) -> bool:
    changed = bool(draft.extras)
    draft.extras = []
    return changed


def _drop_unknown_fields(draft: _Draft) -> bool:
    changed = False
    for attr in list(draft.slots):
        before = len(draft.value(attr))
        draft.mutable(attr).DiscardUnknownFields()
        changed = len(draft.value(attr)) != before or changed
    return changed


def _drop_error_metadata(draft: _Draft) -> bool:
    info = draft.slots.get("error_info")
    if isinstance(info, ed.ErrorInfo) and info.metadata:
        draft.mutable("error_info").metadata.clear()  # type: ignore[attr-defined]
        return True
    return False


def _drop_serving_data(draft: _Draft) -> bool:
    info = draft.slots.get("request_info")
    if isinstance(info, ed.RequestInfo) and info.serving_data:
        draft.mutable("request_info").serving_data = ""  # type: ignore[attr-defined]
        return True
    return False


def _drop_app_md(draft: _Draft) -> bool:
    changed = bool(draft.app_md)
    draft.app_md = []
    return changed


@dataclass(frozen=True, slots=True)
class ShrinkStep:
    """One step of fitting a status into the budget: its name (as :data:`SHRINK_ORDER`
    lists it) and what it removes from a draft (True while it removed something)."""

    name: str
    apply: Callable[[_Draft], bool]


#: The steps that remove whole kinds of content, in order; the free text is cut
#: after them (:data:`TRUNCATE_TEXT`), then only the irreducible status is left
#: (:data:`IRREDUCIBLE`).
_STEPS: tuple[ShrinkStep, ...] = (
    ShrinkStep("DebugInfo", _drop("debug_info")),
    ShrinkStep("unrecognised extra details", _drop_extras),
    ShrinkStep("unknown fields of known details", _drop_unknown_fields),
    ShrinkStep("Help", _drop("help")),
    ShrinkStep("LocalizedMessage", _drop("localized_message")),
    ShrinkStep("ResourceInfo", _drop("resource_info")),
    ShrinkStep("QuotaFailure violations", _halve("quota_failure", "violations")),
    ShrinkStep("PreconditionFailure violations", _halve("precondition_failure", "violations")),
    ShrinkStep("BadRequest field violations", _halve("bad_request", "field_violations")),
    ShrinkStep("ErrorInfo metadata", _drop_error_metadata),
    ShrinkStep("RequestInfo serving data", _drop_serving_data),
    ShrinkStep("application trailing metadata", _drop_app_md),
)

#: The step that cuts the message and the ProvisionFailureDetail's detail.
TRUNCATE_TEXT = "message and detail, truncated with a marker"
#: The last step: only the code, the reasons, the retry delay and the mark are left.
IRREDUCIBLE = "RequestInfo and ErrorInfo domain"

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
SHRINK_ORDER: tuple[str, ...] = (*(step.name for step in _STEPS), TRUNCATE_TEXT, IRREDUCIBLE)


class _Texts:
    """The free text of a draft, truncated together to one byte limit."""

    def __init__(self, draft: _Draft) -> None:
        self.draft = draft
        self.message = draft.message
        pfd = draft.slots.get("failure_detail")
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
        # Their texts change below; the ErrorInfo is serialized anew at every encode
        # anyway once anything was cut (it carries the mark).
        d.changed("failure_detail", "request_info")
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
    draft.budget = budget
    for step in _STEPS:
        changed = False
        while encoded.size() > budget and step.apply(draft):
            changed = True
            if not draft.shrunk or draft.shrunk[-1] != step.name:
                draft.shrunk.append(step.name)
            encoded = draft.encoded()
        if changed and encoded.size() <= budget:
            break
    if encoded.size() > budget:
        # Truncate the free text: the largest common byte limit that fits.
        draft.shrunk.append(TRUNCATE_TEXT)
        draft.own()
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
        draft.shrunk.append(IRREDUCIBLE)
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
    pfd = draft.slots.get("failure_detail")
    if isinstance(pfd, ProvisionFailureDetail):
        slots["failure_detail"] = ProvisionFailureDetail(reason=pfd.reason, detail=pfd.detail)
    info = draft.slots.get("error_info")
    if isinstance(info, ed.ErrorInfo):
        slots["error_info"] = ed.ErrorInfo(reason=_error_reason(info.reason))
    retry = draft.slots.get("retry_info")
    if isinstance(retry, ed.RetryInfo) and retry.HasField("retry_delay"):
        slim = ed.RetryInfo()
        slim.retry_delay.seconds = retry.retry_delay.seconds
        slim.retry_delay.nanos = retry.retry_delay.nanos
        slots["retry_info"] = slim
    draft.slots = slots
    draft.extras = []
    draft.app_md = []
    draft.own()
    draft.changed(*slots)


def _app_metadata(exc: StatusError, metadata: Iterable[tuple[Any, Any]]) -> list[tuple[str, str | bytes]]:
    app_md = sanitize_metadata(metadata)
    try:
        if not is_received(exc):
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
        message = getattr(exc, "message", "")
        slots: dict[str, Message] = {}
        pfd: object = getattr(exc, "failure_detail", None)
        if isinstance(pfd, ProvisionFailureDetail):
            slots["failure_detail"] = ProvisionFailureDetail(reason=pfd.reason, detail=clean_text(pfd.detail))
        info: Any = getattr(exc, "error_info", None)
        if isinstance(info, ed.ErrorInfo):
            slots["error_info"] = ed.ErrorInfo(reason=_error_reason(clean_text(info.reason)))
        text = clean_text(message) if isinstance(message, str) else ""
        draft = _Draft(code, text, slots, [], [])
        draft.own()
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
        return _fit(_Draft.of(exc, domain, debug, _app_metadata(exc, metadata), budget), budget)
    except Exception:
        _log.error(
            "grpc_terminal: cannot encode %s; sending its code and reasons only", type(exc).__name__,
            exc_info=True,
        )
        return _minimal(exc, budget)


class _StatusFields(NamedTuple):
    code: grpc.StatusCode
    details: str
    trailing_metadata: Metadata


class _Status(_StatusFields, grpc.Status):
    """A grpc.Status for ``context.abort_with_status``."""


def status_from_encoded(encoded: Encoded) -> grpc.Status:
    """``encoded`` as a grpc.Status."""
    return _Status(encoded.code, encoded.message, encoded.trailing_metadata)
