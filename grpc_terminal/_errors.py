"""One exception hierarchy, raised on the server and caught on the client.

Every class is a :class:`grpc.RpcError` and answers ``code()``, ``details()``
and ``trailing_metadata()`` like a finished :class:`grpc.Call`, so code that
catches ``grpc.RpcError`` keeps working; its base, ``_surface.CallSurface``,
also makes it the ``grpc.Call``, ``grpc.Future`` and ``grpc.aio.AioRpcError``
of the RPC that failed with it::

    grpc.RpcError
    └── StatusError                      one non-OK status with its rich details
        ├── Cancelled                    CANCELLED
        ├── Unknown                      UNKNOWN
        ├── InvalidArgument              INVALID_ARGUMENT
        ├── DeadlineExceeded             DEADLINE_EXCEEDED
        ├── NotFound                     NOT_FOUND
        ├── AlreadyExists                ALREADY_EXISTS
        ├── PermissionDenied             PERMISSION_DENIED
        │   └── OperationNotPermitted    (also a TerminalError)
        ├── ResourceExhausted            RESOURCE_EXHAUSTED
        ├── FailedPrecondition           FAILED_PRECONDITION
        │   ├── UserNotProvisionable     (also a TerminalError)
        │   ├── TargetManagedExternally  (also a TerminalError)
        │   ├── LicenseExhausted         (also a TerminalError)
        │   └── ValidationFailure        (also a TerminalError)
        ├── Aborted                      ABORTED
        ├── OutOfRange                   OUT_OF_RANGE
        ├── Unimplemented                UNIMPLEMENTED
        ├── Internal                     INTERNAL
        ├── Unavailable                  UNAVAILABLE
        ├── DataLoss                     DATA_LOSS
        ├── Unauthenticated              UNAUTHENTICATED
        └── TerminalError                carries a ProvisionFailureDetail
            ├── UserNotProvisionable
            ├── TargetManagedExternally
            ├── LicenseExhausted
            ├── ValidationFailure
            └── OperationNotPermitted

A ``TerminalError`` whose reason this version does not know is a plain
``TerminalError`` whose ``reason`` is a ``Reason`` pseudo-member named
``REASON_<n>`` (still equal to the number ``n``).

Kept whole (over the ~400-line guide): the tree above is the whole hierarchy,
and half the lines are the documentation of the options ``help()`` shows.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, TypedDict, Unpack

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed

from grpc_terminal import _details
from grpc_terminal._history import RetryHistory
from grpc_terminal._reason import (
    ProvisionFailureDetail,
    Reason,
    ReasonLike,
    code_for_reason,
    coerce_reason,
    is_known_reason,
    parse_reason,
    reason_name,
)
from grpc_terminal._surface import CallSurface

__all__ = [
    "Aborted",
    "AlreadyExists",
    "DETAIL_SLOTS",
    "Cancelled",
    "DataLoss",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Internal",
    "InvalidArgument",
    "LicenseExhausted",
    "NotFound",
    "OperationNotPermitted",
    "OutOfRange",
    "PermissionDenied",
    "ResourceExhausted",
    "StatusError",
    "StatusOptions",
    "TargetManagedExternally",
    "TerminalError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UserNotProvisionable",
    "ValidationFailure",
    "attach",
    "class_for",
    "decoded",
    "is_received",
    "terminal_error",
]

_log = logging.getLogger("grpc_terminal")

Metadata = tuple[tuple[str, str | bytes], ...]


class StatusOptions(TypedDict, total=False):
    """The keyword options every error class takes; see :class:`StatusError` for each."""

    retry_delay: float | datetime.timedelta | None
    field_violations: _details.Pairs | None
    precondition_violations: Iterable[tuple[str, str, str]] | None
    quota_violations: _details.Pairs | None
    resource_info: ed.ResourceInfo | tuple[str, str] | None
    help_links: _details.Pairs | None
    localized_message: str | tuple[str, str] | None
    metadata: Mapping[str, str] | None
    error_reason: str | None
    domain: str | None
    extra_details: Iterable[Message]
    trailing_metadata: Iterable[tuple[str, str | bytes]]


#: Written by the class definitions below (``code=`` and ``reason=`` class keywords).
_CLASS_FOR_CODE: dict[grpc.StatusCode, type[StatusError]] = {}
_CLASS_FOR_REASON: dict[Reason, type[TerminalError]] = {}


#: Full protobuf name -> the :class:`StatusError` attribute that holds that detail
#: decoded, and its message class. The order is the order details are written.
DETAIL_SLOTS: dict[str, tuple[str, type[Message]]] = {
    ProvisionFailureDetail.DESCRIPTOR.full_name: ("failure_detail", ProvisionFailureDetail),
    ed.ErrorInfo.DESCRIPTOR.full_name: ("error_info", ed.ErrorInfo),
    ed.RetryInfo.DESCRIPTOR.full_name: ("retry_info", ed.RetryInfo),
    ed.RequestInfo.DESCRIPTOR.full_name: ("request_info", ed.RequestInfo),
    ed.BadRequest.DESCRIPTOR.full_name: ("bad_request", ed.BadRequest),
    ed.PreconditionFailure.DESCRIPTOR.full_name: ("precondition_failure", ed.PreconditionFailure),
    ed.QuotaFailure.DESCRIPTOR.full_name: ("quota_failure", ed.QuotaFailure),
    ed.ResourceInfo.DESCRIPTOR.full_name: ("resource_info", ed.ResourceInfo),
    ed.Help.DESCRIPTOR.full_name: ("help", ed.Help),
    ed.LocalizedMessage.DESCRIPTOR.full_name: ("localized_message", ed.LocalizedMessage),
    ed.DebugInfo.DESCRIPTOR.full_name: ("debug_info", ed.DebugInfo),
}

#: Slots read through a read-only property and stored under another name.
_STORED_AS = {"failure_detail": "_failure_detail"}


def _restore(cls: type[StatusError], args: tuple[Any, ...], state: dict[str, Any]) -> StatusError:
    obj = cls.__new__(cls, *args)
    BaseException.__init__(obj, *args)
    obj.__dict__.update(state)
    return obj


class StatusError(CallSurface):
    """One non-OK gRPC status with its rich details (arguments: see ``__init__``)."""

    #: The status code instances of this class carry.
    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN

    def __init_subclass__(cls, *, code: grpc.StatusCode | None = None, **kwargs: Any) -> None:
        """Register ``cls`` as *the* class for ``code`` (given as a class keyword).

        Only this module's classes pass ``code=`` (``class NotFound(StatusError,
        code=grpc.StatusCode.NOT_FOUND)``): the registry that decoding uses is
        written by the definitions themselves. A subclass of yours inherits its
        base's code and registers nothing.
        """
        super().__init_subclass__(**kwargs)
        if code is not None:
            if code in _CLASS_FOR_CODE:
                raise TypeError(f"{code.name} already has its class: {_CLASS_FOR_CODE[code].__name__}")
            cls.grpc_code = code
            _CLASS_FOR_CODE[code] = cls

    _failure_detail: ProvisionFailureDetail | None = None
    error_info: ed.ErrorInfo | None = None
    retry_info: ed.RetryInfo | None = None
    request_info: ed.RequestInfo | None = None
    bad_request: ed.BadRequest | None = None
    precondition_failure: ed.PreconditionFailure | None = None
    quota_failure: ed.QuotaFailure | None = None
    resource_info: ed.ResourceInfo | None = None
    help: ed.Help | None = None
    localized_message: ed.LocalizedMessage | None = None
    debug_info: ed.DebugInfo | None = None
    #: Set by RetryPolicy when it gives up: attempts, codes, waits and why it stopped.
    retry_history: RetryHistory | None = None

    def __init__(
        self,
        message: str = "",
        *,
        retry_delay: float | datetime.timedelta | None = None,
        field_violations: _details.Pairs | None = None,
        precondition_violations: Iterable[tuple[str, str, str]] | None = None,
        quota_violations: _details.Pairs | None = None,
        resource_info: ed.ResourceInfo | tuple[str, str] | None = None,
        help_links: _details.Pairs | None = None,
        localized_message: str | tuple[str, str] | None = None,
        metadata: Mapping[str, str] | None = None,
        error_reason: str | None = None,
        domain: str | None = None,
        extra_details: Iterable[Message] = (),
        trailing_metadata: Iterable[tuple[str, str | bytes]] = (),
    ) -> None:
        """Build the error: ``message`` positional, every option keyword-only, all optional.

        Raise a subclass on the server (``raise gt.NotFound("user 7")``), catch
        one on the client. The options become standard ``google.rpc`` details,
        sent in ``grpc-status-details-bin`` and read back on the client into
        the attribute of the same kind (``bad_request``, ``error_info``,
        ``help``, ...).

        Args:
            message: the status message (``grpc-message``) the caller sees.
            retry_delay: the server's suggested wait before a retry, in seconds
                (a float) or a ``datetime.timedelta``, 0 to 10 years; sent as a
                ``RetryInfo`` and as the ``grpc-retry-pushback-ms`` trailer (a
                terminal error sends a pushback of -1 whatever this says).
            field_violations: what is wrong with the request, sent as a
                ``BadRequest``: a ``{field: description}`` mapping or
                ``(field, description)`` pairs.
            precondition_violations: the failed preconditions, sent as a
                ``PreconditionFailure``: ``(type, subject, description)`` triples.
            quota_violations: the exhausted quotas, sent as a ``QuotaFailure``: a
                ``{subject: description}`` mapping or pairs.
            resource_info: the resource concerned, sent as a ``ResourceInfo``: a
                ``google.rpc.ResourceInfo`` or ``(resource_type, resource_name)``.
            help_links: where to read more, sent as a ``Help``: a
                ``{description: url}`` mapping or pairs.
            localized_message: a user-facing text, sent as a ``LocalizedMessage``:
                ``"text"`` (locale ``en-US``) or ``(locale, text)``.
            metadata: the ``ErrorInfo`` metadata, str to str; keys are made
                lowerCamelCase (``user_id`` becomes ``userId``).
            error_reason: the ``ErrorInfo`` reason, UPPER_SNAKE_CASE, 2 to 63
                characters; by default the code name (a terminal error: its
                reason name, e.g. ``USER_NOT_PROVISIONABLE``).
            domain: the ``ErrorInfo`` domain; by default the server
                interceptor's ``domain``.
            extra_details: more protobuf messages: a standard ``google.rpc``
                detail goes to its attribute (the first of each type), anything
                else to ``extra_details``, sent packed as a ``google.protobuf.Any``.
            trailing_metadata: application ``(key, value)`` trailers to send
                with the status (``-bin`` keys take bytes); entries grpc would
                reject are dropped and logged when sending.

        Raises:
            TypeError: an argument of the wrong type (a ``message`` that is not
                a str, pairs that are not pairs of str, ...).
            ValueError: an argument out of range (a negative ``retry_delay``, an
                ``error_reason`` that is not UPPER_SNAKE_CASE, a metadata key
                that cannot be made lowerCamelCase).
        """
        if not isinstance(message, str):
            raise TypeError(f"message must be str, got {type(message).__name__}")
        super().__init__(message)
        self.message = message
        self._code = type(self).grpc_code
        self._received = False
        self.extra_details: list[any_pb2.Any] = []
        self.error_info = ed.ErrorInfo(
            reason=(
                _details.validate_error_reason(error_reason)
                if error_reason is not None
                else self._default_error_reason()
            ),
            domain=domain or "",
            metadata=_details.error_metadata(metadata or {}),
        )
        if retry_delay is not None:
            self.retry_info = ed.RetryInfo(
                retry_delay=_details.duration_from_delay(retry_delay)
            )
        if field_violations is not None:
            self.bad_request = _details.bad_request(field_violations)
        if precondition_violations is not None:
            self.precondition_failure = _details.precondition_failure(precondition_violations)
        if quota_violations is not None:
            self.quota_failure = _details.quota_failure(quota_violations)
        if resource_info is not None:
            self.resource_info = _details.resource_info(resource_info)
        if help_links is not None:
            self.help = _details.help_links(help_links)
        if localized_message is not None:
            self.localized_message = _details.localized(localized_message)
        for extra in extra_details:
            attach(self, extra)
        self._trailing_metadata: Metadata = tuple(
            (str(k), v) for k, v in trailing_metadata
        )

    # -- construction helpers -------------------------------------------------

    def _default_error_reason(self) -> str:
        return self._code.name

    # -- the grpc.Call surface ------------------------------------------------

    def code(self) -> grpc.StatusCode:
        """The status code."""
        return self._code

    def details(self) -> str:
        """The status message (``grpc-message``)."""
        return self.message

    def trailing_metadata(self) -> Metadata:  # type: ignore[override]
        """Trailing metadata received with the status, or to send with it."""
        return self._trailing_metadata

    # -- rich details -----------------------------------------------------------

    @property
    def failure_detail(self) -> ProvisionFailureDetail | None:
        """The ProvisionFailureDetail, when this failure is terminal."""
        return self._failure_detail

    @property
    def retry_delay(self) -> float | None:
        """The RetryInfo delay in seconds (what ``retry_delay=`` set), if any.

        :func:`grpc_terminal.retry_delay` also reads ``grpc-retry-pushback-ms``:
        use it for the wait the server suggested by either route.
        """
        if self.retry_info is None or not self.retry_info.HasField("retry_delay"):
            return None
        return _details.delay_from_duration(self.retry_info.retry_delay)

    @property
    def request_id(self) -> str | None:
        """The RequestInfo request id, if any."""
        return self.request_info.request_id if self.request_info is not None else None

    @property
    def field_violations(self) -> list[tuple[str, str]]:
        """BadRequest field violations as ``(field, description)`` pairs."""
        if self.bad_request is None:
            return []
        return [(v.field, v.description) for v in self.bad_request.field_violations]

    # -- printing and pickling --------------------------------------------------

    def __str__(self) -> str:
        return self.message or self._code.name

    def __repr__(self) -> str:
        parts = [f"code={self._code.name}"]
        if self._failure_detail is not None:
            parts.append(f"reason={reason_name(self._failure_detail.reason)}")
        parts.append(f"message={self.message!r}")
        if self.retry_delay is not None:
            parts.append(f"retry_delay={self.retry_delay!r}")
        if self.request_id:
            parts.append(f"request_id={self.request_id!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def is_received(err: StatusError) -> bool:
    """True when ``err`` was decoded from a status received from a peer (not raised here)."""
    return bool(getattr(err, "_received", False))


def decoded(
    cls: type[StatusError],
    code: grpc.StatusCode,
    message: str,
    details: Iterable[tuple[any_pb2.Any, Message | None]],
    trailing_metadata: Metadata,
) -> StatusError:
    """An instance of ``cls`` built from a received status, without validating it.

    Args:
        cls: the class :func:`class_for` chose for ``code`` (and the reason).
        code: the call's status code.
        message: the call's status message.
        details: ``(packed, unpacked)`` pairs, ``unpacked`` None for types this
            version does not know (kept packed in ``extra_details``).
        trailing_metadata: the trailers the call ended with.
    """
    obj = cls.__new__(cls)
    BaseException.__init__(obj, message)
    obj.message = message
    obj.extra_details = []
    # What __init__ sets, for a status received rather than raised here.
    vars(obj).update(_code=code, _received=True, _trailing_metadata=trailing_metadata)
    for packed, unpacked in details:
        attach(obj, packed, unpacked)
    return obj


def attach(err: StatusError, message: Message, unpacked: Message | None = None) -> None:
    """Put a detail in ``err``'s slot for it; unknown types (and repeats) go to ``extra_details``.

    Args:
        err: the error the detail belongs to.
        message: a detail message, or an ``Any`` packing one.
        unpacked: ``message`` (an ``Any``) already unpacked by the caller, if it was.
    """
    if not isinstance(message, Message):
        raise TypeError(f"extra_details must be protobuf messages, got {type(message).__name__}")
    if isinstance(message, any_pb2.Any):
        slot = DETAIL_SLOTS.get(message.TypeName())
        if slot is not None and getattr(err, slot[0]) is None:
            if unpacked is None:
                unpacked = slot[1]()
                if not message.Unpack(unpacked):
                    unpacked = None
            if unpacked is not None:
                setattr(err, _STORED_AS.get(slot[0], slot[0]), unpacked)
                return
        err.extra_details.append(message)
        return
    slot = DETAIL_SLOTS.get(message.DESCRIPTOR.full_name)
    if slot is not None and getattr(err, slot[0]) is None:
        setattr(err, _STORED_AS.get(slot[0], slot[0]), message)
        return
    err.extra_details.append(_details.pack(message))


class Cancelled(StatusError, code=grpc.StatusCode.CANCELLED):
    """The call was cancelled (CANCELLED)."""


class Unknown(StatusError, code=grpc.StatusCode.UNKNOWN):
    """An error with no better code (UNKNOWN)."""


class InvalidArgument(StatusError, code=grpc.StatusCode.INVALID_ARGUMENT):
    """The request is invalid whatever the system state (INVALID_ARGUMENT)."""


class DeadlineExceeded(StatusError, code=grpc.StatusCode.DEADLINE_EXCEEDED):
    """The deadline passed before the operation finished (DEADLINE_EXCEEDED)."""


class NotFound(StatusError, code=grpc.StatusCode.NOT_FOUND):
    """A requested entity was not found (NOT_FOUND)."""


class AlreadyExists(StatusError, code=grpc.StatusCode.ALREADY_EXISTS):
    """The entity to create already exists (ALREADY_EXISTS)."""


class PermissionDenied(StatusError, code=grpc.StatusCode.PERMISSION_DENIED):
    """The caller may not do this (PERMISSION_DENIED)."""


class ResourceExhausted(StatusError, code=grpc.StatusCode.RESOURCE_EXHAUSTED):
    """A quota or resource ran out (RESOURCE_EXHAUSTED)."""


class FailedPrecondition(StatusError, code=grpc.StatusCode.FAILED_PRECONDITION):
    """The system is not in a state that allows this (FAILED_PRECONDITION)."""


class Aborted(StatusError, code=grpc.StatusCode.ABORTED):
    """A concurrency conflict aborted the operation (ABORTED)."""


class OutOfRange(StatusError, code=grpc.StatusCode.OUT_OF_RANGE):
    """The operation went past the valid range (OUT_OF_RANGE)."""


class Unimplemented(StatusError, code=grpc.StatusCode.UNIMPLEMENTED):
    """The operation is not implemented or supported (UNIMPLEMENTED)."""


class Internal(StatusError, code=grpc.StatusCode.INTERNAL):
    """An invariant of the server broke (INTERNAL)."""


class Unavailable(StatusError, code=grpc.StatusCode.UNAVAILABLE):
    """The service is unavailable for now; retrying may help (UNAVAILABLE)."""


class DataLoss(StatusError, code=grpc.StatusCode.DATA_LOSS):
    """Unrecoverable data loss or corruption (DATA_LOSS)."""


class Unauthenticated(StatusError, code=grpc.StatusCode.UNAUTHENTICATED):
    """The request has no valid credentials (UNAUTHENTICATED)."""


def _checked_reason(reason: ReasonLike) -> Reason:
    """``reason`` as a Reason: a name, a Reason or a non-negative int32."""
    if isinstance(reason, str):
        return parse_reason(reason)
    if isinstance(reason, bool) or not isinstance(reason, int) or not 0 <= reason < 2**31:
        raise TypeError(f"reason must be a Reason, a reason name or a non-negative int32, got {reason!r}")
    return Reason(reason)


class TerminalError(StatusError):
    """A failure that retrying cannot fix; carries a ProvisionFailureDetail (arguments: see ``__init__``)."""

    _reason: ClassVar[Reason | None] = None

    def __init_subclass__(cls, *, reason: Reason | None = None, **kwargs: Any) -> None:
        """Register ``cls`` as *the* class for ``reason`` (given as a class keyword).

        As with ``code=`` on :class:`StatusError`, only this module's classes
        pass it; the code is the reason's (:func:`code_for_reason`).
        """
        super().__init_subclass__(**kwargs)
        if reason is not None:
            if reason in _CLASS_FOR_REASON:
                raise TypeError(f"{reason.name} already has its class: {_CLASS_FOR_REASON[reason].__name__}")
            cls._reason = reason
            cls.grpc_code = code_for_reason(reason)
            _CLASS_FOR_REASON[reason] = cls

    def __init__(
        self,
        detail: str = "",
        *,
        reason: ReasonLike | None = None,
        message: str | None = None,
        **options: Unpack[StatusOptions],
    ) -> None:
        """Build the terminal error.

        Use a subclass (``UserNotProvisionable``, ...) or :func:`terminal_error`;
        ``TerminalError`` itself needs ``reason=`` (for reasons this version
        has no class for).

        Args:
            detail: the admin-facing explanation, sent as the
                ProvisionFailureDetail ``detail`` (and as the status message
                unless ``message`` is given).
            reason: a :class:`Reason`, its number (a non-negative int32) or its
                name (``"LICENSE_EXHAUSTED"`` or ``"REASON_LICENSE_EXHAUSTED"``,
                any case). Required on ``TerminalError`` itself; a subclass's own
                reason is the only one it accepts.
            message: the status message, when it should differ from ``detail``.
            options: the keyword options of :class:`StatusError`:
                ``retry_delay``, ``field_violations``, ``precondition_violations``,
                ``quota_violations``, ``resource_info``, ``help_links``,
                ``localized_message``, ``metadata``, ``error_reason``,
                ``domain``, ``extra_details`` and ``trailing_metadata`` (see
                ``help(grpc_terminal.StatusError)`` for each).

        Raises:
            TypeError: no ``reason`` on ``TerminalError`` itself, a reason that
                is not a Reason, a name or a non-negative int32, or a ``detail``
                that is not a str.
            ValueError: an unknown reason name (the message lists the valid
                ones), ``UNSPECIFIED``, or a reason that is not the subclass's.
        """
        fixed = type(self)._reason
        if reason is None:
            if fixed is None:
                raise TypeError("TerminalError needs a reason (or use one of its subclasses)")
            reason = fixed
        reason = _checked_reason(reason)
        if fixed is not None and reason != fixed:
            raise ValueError(f"{type(self).__name__} has reason {fixed.name}, not {reason.name}")
        if reason == Reason.UNSPECIFIED:
            raise ValueError(
                "REASON_UNSPECIFIED is not a terminal reason; "
                "terminal_error() turns it into an INTERNAL error instead"
            )
        if not isinstance(detail, str):
            raise TypeError(f"detail must be str, got {type(detail).__name__}")
        self._failure_detail = ProvisionFailureDetail(
            reason=int(reason), detail=_details.clean_text(detail)  # type: ignore[arg-type]
        )
        super().__init__(detail if message is None else message, **options)
        self._code = code_for_reason(reason)

    def _default_error_reason(self) -> str:
        assert self._failure_detail is not None
        return reason_name(self._failure_detail.reason)

    @property
    def reason(self) -> Reason:
        """The reason, a :class:`Reason` (a ``REASON_<n>`` pseudo-member for a number not known here)."""
        return coerce_reason(self._failure_detail.reason if self._failure_detail else 0)

    @property
    def detail(self) -> str:
        """The admin-facing detail of the ProvisionFailureDetail."""
        return self._failure_detail.detail if self._failure_detail else ""


class UserNotProvisionable(TerminalError, FailedPrecondition, reason=Reason.USER_NOT_PROVISIONABLE):
    """The target user cannot be provisioned in its current state."""


class TargetManagedExternally(TerminalError, FailedPrecondition, reason=Reason.TARGET_MANAGED_EXTERNALLY):
    """The target is governed by something outside this service's control."""


class LicenseExhausted(TerminalError, FailedPrecondition, reason=Reason.LICENSE_EXHAUSTED):
    """A capacity limit such as license seats was reached."""


class ValidationFailure(TerminalError, FailedPrecondition, reason=Reason.VALIDATION_FAILURE):
    """The upstream rejected the request as invalid for this target."""


class OperationNotPermitted(TerminalError, PermissionDenied, reason=Reason.OPERATION_NOT_PERMITTED):
    """Policy forbids the operation."""


def class_for(code: grpc.StatusCode, reason: int | None = None) -> type[StatusError]:
    """The most specific class for ``code`` (and a ProvisionFailureDetail ``reason``).

    A reason whose class disagrees with ``code`` (a peer that lies) and an
    unknown reason give plain :class:`TerminalError`; an OK code gives
    :class:`Unknown`, since a failed call cannot honestly be OK.
    """
    if reason is not None:
        cls = _CLASS_FOR_REASON.get(coerce_reason(reason)) if is_known_reason(reason) else None
        if cls is not None and cls.grpc_code == code:
            return cls
        return TerminalError
    return _CLASS_FOR_CODE.get(code, Unknown)


def terminal_error(
    reason: ReasonLike, fmt: str, *args: object, **options: Unpack[StatusOptions]
) -> StatusError:
    """Build the terminal error for ``reason``, like Go's ``NewTerminalError``.

    ``REASON_UNSPECIFIED`` is a programming error: it gives an
    :class:`Internal` error with no ProvisionFailureDetail (logged), never an
    exception of its own.

    Args:
        reason: a :class:`Reason`, its number (a non-negative int32; a number
            this version does not know gives a plain :class:`TerminalError`)
            or its name: ``"LICENSE_EXHAUSTED"`` or
            ``"REASON_LICENSE_EXHAUSTED"``, in any case.
        fmt: the detail (also the status message); %-formatted only when
            ``args`` are given, so a literal upstream message such as
            ``"50% of seats"`` survives unchanged. A format that does not fit
            ``args`` is logged and the arguments appended instead.
        args: the values for ``fmt``'s placeholders.
        options: the keyword options of :class:`StatusError`:
            ``retry_delay``, ``field_violations``, ``precondition_violations``,
            ``quota_violations``, ``resource_info``, ``help_links``,
            ``localized_message``, ``metadata``, ``error_reason``,
            ``domain``, ``extra_details`` and ``trailing_metadata`` (see
            ``help(grpc_terminal.StatusError)`` for each).

    Returns:
        The most specific class for ``reason`` (``LicenseExhausted``, ...).

    Raises:
        ValueError: an unknown reason name (the message lists the valid
            names).
        TypeError: a reason that is not a Reason, a name or a non-negative
            int32.
    """
    known = _checked_reason(reason)
    message = fmt
    if args:
        try:
            message = fmt % args
        except (TypeError, ValueError, KeyError) as exc:
            _log.warning("terminal_error: cannot format %r with %d args: %s", fmt, len(args), exc)
            message = " ".join([fmt, *map(str, args)])
    if known == Reason.UNSPECIFIED:
        _log.error("terminal_error called with REASON_UNSPECIFIED: sending INTERNAL instead")
        return Internal(message, **options)
    if is_known_reason(known):
        return _CLASS_FOR_REASON[known](message, **options)
    return TerminalError(message, reason=known, **options)
