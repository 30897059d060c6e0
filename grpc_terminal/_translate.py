"""The server's one decision: what status a raised exception becomes.

Pure of I/O apart from logging; the sync and aio interceptors call
:meth:`Translator.translate` (for what a handler raised) and
:meth:`Translator.handler_status` (for a status the handler set itself) and
differ only in how they send the result.

Kept whole (over the ~400-line guide): every way a failure leaves a handler
(raised, mapped, relayed, grouped, set by the handler) is decided here, in one place.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeGuard, cast

import grpc
from google.rpc import error_details_pb2 as ed

from grpc_terminal._classify import classify
from grpc_terminal._decode import decode, from_rpc_error, parse_status
from grpc_terminal._encode import TRUNCATION_MARK, encode
from grpc_terminal._errors import Metadata, NotFound, StatusError, Unknown, class_for, decoded, is_received
from grpc_terminal._hooks import notify
from grpc_terminal._options import ErrorEvent, ServerOptions
from grpc_terminal._reason import reason_name
from grpc_terminal._trailers import (
    PUSHBACK_KEY,
    STATUS_DETAILS_KEY,
    Encoded,
    read_metadata,
    trailer_size,
    valid_metadata,
)

__all__ = ["HandlerStatus", "Translator"]

_log = logging.getLogger("grpc_terminal.server")

_OK = grpc.StatusCode.OK
_PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

#: Codes this process's own grpc produces for a call that failed in transport
#: (connection refused, DNS, TLS, deadline, credentials plugin, message size).
#: A relayed failure with one of these and no rich status is not repeated
#: word for word: its message names our hosts, addresses and configuration.
TRANSPORT_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)

UPSTREAM_CREDENTIALS_MESSAGE = "upstream rejected this server's credentials"
MASKED_MESSAGE = "not found"


@dataclass(frozen=True, slots=True)
class HandlerStatus:
    """What to send for a status the handler set itself (``abort``, ``set_code``)."""

    #: The code to send (the handler's, or ``NOT_FOUND`` when masked).
    code: grpc.StatusCode
    #: The message to send (cut with a marker when over the budget).
    details: str
    #: The trailing metadata to send: invalid entries dropped, within the budget.
    trailing_metadata: Metadata
    #: A PERMISSION_DENIED replaced by a bare NOT_FOUND.
    masked: bool
    #: Anything differs from what the handler set.
    changed: bool


@dataclass(frozen=True, slots=True)
class _Decision:
    err: StatusError  # what is sent
    real: StatusError  # what it was before masking
    expected: bool
    masked: bool


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def _message_of(exc: BaseException) -> str:
    """The text a mapped exception's class is built with.

    ``str(KeyError("alice"))`` is ``"'alice'"``: for an exception whose one
    argument is a str and whose ``__str__`` is a built-in one, that argument
    itself; else ``str(exc)``.
    """
    try:
        args = exc.args
        if len(args) == 1 and isinstance(args[0], str):
            owner = next(k for k in type(exc).__mro__ if "__str__" in vars(k))
            if owner.__module__ == "builtins":
                return args[0]
    except Exception:
        pass
    return _safe_str(exc)


def is_group(exc: BaseException) -> TypeGuard[BaseExceptionGroup[BaseException]]:
    """``isinstance(exc, BaseExceptionGroup)``, typed with the members' type (isinstance leaves it unknown).

    Args:
        exc: the exception to test.
    """
    return isinstance(exc, BaseExceptionGroup)


def _members(group: BaseExceptionGroup[BaseException]) -> tuple[BaseException, ...]:
    try:
        return tuple(m for m in group.exceptions if isinstance(m, BaseException))
    except Exception:  # a hostile subclass
        return ()


def group_leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    """Every member of ``group`` that is not itself a group, nested groups included.

    Depth first, in the order the members were given; each exception once
    (cycle-safe), with no limit but memory.
    """
    seen = {id(group)}
    stack: list[Iterator[BaseException]] = [iter(_members(group))]
    end = object()
    while stack:
        member: object = next(stack[-1], end)
        if member is end:
            stack.pop()
            continue
        assert isinstance(member, BaseException)
        if id(member) in seen:
            continue
        seen.add(id(member))
        if is_group(member):
            stack.append(iter(_members(member)))
        else:
            yield member


#: The code and reason of every unexpected failure, as its log record names them.
_UNKNOWN_NAME = grpc.StatusCode.UNKNOWN.name


def _has_pfd(err: StatusError) -> bool:
    try:
        return err.failure_detail is not None
    except Exception:
        return False


def _request_id(err: StatusError) -> str | None:
    try:
        rid = err.request_id
    except Exception:
        return None
    return rid if isinstance(rid, str) and rid else None


def _effective_code(code: object, aio: bool) -> grpc.StatusCode:
    """The code grpc sends for what a handler passed to ``abort``/``set_code``.

    The sync server sends UNKNOWN for anything but a ``StatusCode``; the aio
    server takes an int as the code with that number.
    """
    if isinstance(code, grpc.StatusCode):
        return grpc.StatusCode.UNKNOWN if code is _OK else code
    if aio and isinstance(code, int) and not isinstance(code, bool):
        for candidate in grpc.StatusCode:
            if candidate.value[0] == code and candidate is not _OK:
                return candidate
    return grpc.StatusCode.UNKNOWN


def _cut(text: str, limit: int) -> str:
    raw = text.encode("utf-8", "replace")
    if len(raw) <= limit:
        return text
    keep = max(0, limit - len(TRUNCATION_MARK))
    return raw[:keep].decode("utf-8", "ignore") + TRUNCATION_MARK


class Translator:
    """Turns exceptions into statuses, by the mapping and the safety rules.

    * a :class:`StatusError` raised here is sent as it is;
    * a failure received from a downstream call (a raw ``grpc.RpcError``, or a
      typed error built from one) is relayed by this rule:

      1. a downstream ``UNAUTHENTICATED`` (rich or not) is about this server's
         own credentials, not the caller's: it becomes ``INTERNAL`` "upstream
         rejected this server's credentials" (with a request id);
      2. one that carries a rich status (a ``grpc-status-details-bin`` trailer
         that decodes, with the call's code) came from a peer: its code,
         message and details are relayed;
      3. otherwise, for a code this process's own grpc produces
         (:data:`TRANSPORT_CODES`: connection refused, DNS, TLS, deadline,
         message size...) the code is kept but the message becomes
         "upstream call failed: <CODE>" with a request id: the original text
         (addresses, host names) is logged here, never sent;
      4. any other code from a plain peer (``NOT_FOUND``...) is relayed with its message.

      Trailers received with a relayed failure are never re-sent.
    * an exception whose class (or a base class) is in ``errors`` becomes
      what the mapping gives, the most specific class winning; a class is
      built with the exception's message (the argument itself when it is one
      str: ``KeyError("alice")`` gives ``alice``);
    * an exception group (``ExceptionGroup``, ``BaseExceptionGroup``,
      ``asyncio.TaskGroup``) is sent as its member that matters most, nested
      groups included, each member looked at once: the first terminal member
      (a ProvisionFailureDetail, raised, relayed or mapped); else the first
      StatusError or relayed ``grpc.RpcError``; else the mapped member whose
      mapped class is the most specific (deepest), the first on ties. With
      no such member the group's own class is looked up in ``errors``; else
      it is unexpected. Unexpected members next to the chosen one are logged
      with the traceback;
    * anything else is unexpected: ``UNKNOWN`` with a generic message and a
      request id, the traceback logged here under the same id.

    With ``mask_permission_denied`` a resulting ``PERMISSION_DENIED`` is sent
    as ``NOT_FOUND`` "not found" that keeps only the request id (if any) and
    no application trailing metadata; the log and ``on_error`` get the real
    code and reason with ``masked=True``.
    """

    def __init__(self, options: ServerOptions | None = None) -> None:
        """Translate by ``options`` (the defaults when None); warns once when ``debug`` is on."""
        self.options = options = options if options is not None else ServerOptions()
        self._errors = options.errors or {}
        self.domain = options.domain
        self.debug = options.debug
        self.mask_permission_denied = options.mask_permission_denied
        self.budget = options.budget
        self.on_error = options.on_error
        self.log = options.logger or _log
        if self.debug:
            self.log.warning(
                "grpc_terminal: DEBUG MODE IS ON: tracebacks of unexpected errors are sent "
                "to clients as DebugInfo. Never enable this in production."
            )

    # -- what an exception becomes ----------------------------------------------------

    def _mapped(self, exc: BaseException) -> tuple[StatusError, type[BaseException]] | None:
        """The mapped error for ``exc`` and the class that matched; raises if the mapping fails."""
        for klass in type(exc).__mro__:
            factory = self._errors.get(klass)
            if factory is None:
                continue
            result: object
            if isinstance(factory, type):
                result = factory(_message_of(exc))
            else:
                result = cast(Callable[[BaseException], object], factory)(exc)
            if not isinstance(result, StatusError):
                raise TypeError(
                    f"error mapping for {klass.__name__} returned {type(result).__name__}, "
                    "not a StatusError"
                )
            return result, klass
        return None

    def _relayed(self, exc: grpc.RpcError, method: str) -> StatusError:
        """What to send for a failure received from a downstream call (see the class docstring)."""
        if isinstance(exc, StatusError) and not is_received(exc):
            return exc  # raised by this process: sent as it is
        typed = from_rpc_error(exc)
        code = typed.code()
        if code is _UNAUTHENTICATED:
            replacement: StatusError = class_for(grpc.StatusCode.INTERNAL)(UPSTREAM_CREDENTIALS_MESSAGE)
        elif code not in TRANSPORT_CODES or self._peer_status(typed):
            return typed
        else:
            replacement = class_for(code)(f"upstream call failed: {code.name}")
        request_id = uuid.uuid4().hex
        replacement.request_info = ed.RequestInfo(request_id=request_id)
        self.log.warning(
            "%s: a downstream call failed with %s %r; sent as %s (request id %s)",
            method, code.name, typed.message, replacement.code().name, request_id,
            extra={"grpc_method": method, "request_id": request_id},
        )
        return replacement

    @staticmethod
    def _peer_status(typed: StatusError) -> bool:
        try:
            trailers = read_metadata(typed.trailing_metadata())
            return parse_status(typed.code(), trailers) is not None
        except Exception:
            return False

    def _expected(self, exc: BaseException, method: str) -> tuple[StatusError, int, int] | None:
        """``(error, tier, depth)`` for an expected exception, else None; raises if a mapping fails.

        Tier 0: a StatusError or relayed grpc.RpcError; tier 1: a mapped
        exception, ``depth`` being the length of the matched class's MRO.
        """
        if isinstance(exc, grpc.RpcError):
            return self._relayed(exc, method), 0, 0
        found = self._mapped(exc)
        if found is None:
            return None
        return found[0], 1, len(found[1].__mro__)

    def _expected_or_none(self, exc: BaseException, method: str) -> tuple[StatusError, int, int] | None:
        try:
            return self._expected(exc, method)
        except Exception as mapping_failure:
            self.log.error(
                "error mapping failed for %s in %s", type(exc).__name__, method, exc_info=mapping_failure,
            )
            return None

    def _from_group(self, group: BaseExceptionGroup[BaseException], method: str) -> StatusError | None:
        best: tuple[tuple[int, int, int, int], StatusError] | None = None
        unexpected = 0
        for index, member in enumerate(group_leaves(group)):
            found = self._expected_or_none(member, method)
            if found is None:
                unexpected += 1
                continue
            err, tier, depth = found
            key = (0, 0, 0, index) if _has_pfd(err) else (1, tier, -depth, index)
            if best is None or key < best[0]:
                best = (key, err)
        if best is None:
            try:
                own = self._mapped(group)
            except Exception as mapping_failure:
                self.log.error(
                    "error mapping failed for %s in %s", type(group).__name__, method,
                    exc_info=mapping_failure,
                )
                return None
            return own[0] if own is not None else None
        if unexpected:
            self.log.error(
                "%d unexpected error(s) in an exception group raised by %s; the group is sent as %s",
                unexpected, method, type(best[1]).__name__,
                exc_info=(type(group), group, group.__traceback__),
                extra={"grpc_method": method},
            )
        return best[1]

    def _unexpected(self, exc: BaseException, method: str) -> StatusError:
        request_id = uuid.uuid4().hex
        self.log.error(
            "unexpected error in %s (request id %s)",
            method,
            request_id,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={
                "grpc_method": method, "grpc_code": _UNKNOWN_NAME, "reason": _UNKNOWN_NAME,
                "request_id": request_id,
            },
        )
        err = Unknown(f"unexpected server error (request id {request_id})")
        err.request_info = ed.RequestInfo(request_id=request_id)
        if self.debug:
            err.debug_info = ed.DebugInfo(
                stack_entries=traceback.format_exception(type(exc), exc, exc.__traceback__),
                detail=f"{type(exc).__name__}: {_safe_str(exc)}",
            )
        return err

    def _masked(self, err: StatusError) -> StatusError:
        """The bare NOT_FOUND sent for ``err``: the request id is all it keeps."""
        masked = NotFound(MASKED_MESSAGE)
        request_id = _request_id(err)
        if request_id is not None:
            masked.request_info = ed.RequestInfo(request_id=request_id)
        return masked

    def _decide(self, exc: BaseException, method: str) -> _Decision:
        err: StatusError | None
        if is_group(exc):
            err = self._from_group(exc, method)
        else:
            found = self._expected_or_none(exc, method)
            err = found[0] if found is not None else None
        expected = err is not None
        if err is None:
            err = self._unexpected(exc, method)
        if self.mask_permission_denied and err.code() == _PERMISSION_DENIED:
            return _Decision(self._masked(err), err, expected, True)
        return _Decision(err, err, expected, False)

    def resolve(self, exc: BaseException, method: str) -> tuple[StatusError, bool]:
        """The error to send for ``exc`` and whether it was expected."""
        decision = self._decide(exc, method)
        return decision.err, decision.expected

    def translate(
        self, exc: BaseException, method: str, metadata: Iterable[tuple[Any, Any]] = ()
    ) -> Encoded:
        """What to send for ``exc`` raised by ``method``; logs it and calls ``on_error``.

        ``metadata`` is the handler's trailing metadata, sent alongside
        (invalid entries dropped) unless the failure is masked.
        """
        decision = self._decide(exc, method)
        encoded = encode(
            decision.err, domain=self.domain, debug=self.debug, budget=self.budget,
            metadata=() if decision.masked else metadata,
        )
        if not self._wants_event(log=decision.expected):
            return encoded
        try:
            event = self._event(decision, encoded, method, exc)
        except Exception:  # a broken StatusError subclass: what was sent still stands
            self.log.warning("cannot describe the %s sent by %s", encoded.code.name, method, exc_info=True)
            event = ErrorEvent(method, encoded.code, encoded.code.name, None, decision.expected, exc)
        self._report(event, log=decision.expected)
        return encoded

    def _wants_event(self, *, log: bool) -> bool:
        """True when someone reads the :class:`ErrorEvent`: a hook, or the INFO line when ``log``."""
        return self.on_error is not None or (log and self.log.isEnabledFor(logging.INFO))

    @staticmethod
    def _reason(err: StatusError, code: grpc.StatusCode) -> str:
        pfd = err.failure_detail
        if pfd is not None:
            return reason_name(pfd.reason)
        info = err.error_info
        if info is not None and info.reason:
            return str(info.reason)
        return code.name

    def _event(self, decision: _Decision, encoded: Encoded, method: str, exc: BaseException) -> ErrorEvent:
        sent = decision.err
        code = encoded.code
        if decision.masked:
            real_code = decision.real.code()
            code = real_code if isinstance(real_code, grpc.StatusCode) else _PERMISSION_DENIED
        return ErrorEvent(
            method, code, self._reason(decision.real, code), _request_id(sent), decision.expected, exc,
            terminal=_has_pfd(sent), retryable=classify(sent).retryable,
            masked=decision.masked, sent_code=encoded.code,
        )

    def _report(self, event: ErrorEvent, *, log: bool) -> None:
        if log:
            extra = {"grpc_method": event.method, "grpc_code": event.code.name, "reason": event.reason}
            if event.masked and event.sent_code is not None:
                self.log.info(
                    "%s failed: %s %s (masked: sent as %s)",
                    event.method, event.code.name, event.reason, event.sent_code.name,
                    extra={**extra, "masked": True},
                )
            else:
                self.log.info("%s failed: %s %s", event.method, event.code.name, event.reason, extra=extra)
        notify(self.on_error, self.log, "on_error", event)

    # -- a status the handler set itself -------------------------------------------------

    def clean(
        self, code: grpc.StatusCode, details: str, metadata: object, *, fit: bool = True
    ) -> tuple[str, Metadata, bool]:
        """``(details, metadata, changed)`` made sendable with ``code``.

        Invalid entries are dropped (and logged), ``grpc-status-details-bin``
        and ``grpc-retry-pushback-ms`` kept when well-formed. With ``fit``,
        over the budget a rich status is fitted like ours, else application
        entries are dropped (the largest first) and then the message is cut.
        """
        kept: list[tuple[str, str | bytes]] = []
        changed = False
        try:
            # Whatever the handler set: each entry's shape is checked below.
            items: list[Any] = list(metadata or ())  # type: ignore[call-overload]
        except Exception:
            self.log.warning(
                "grpc_terminal: dropping unreadable trailing metadata: %s",
                type(metadata).__name__,
            )
            items, changed = [], True
        for item in items:
            try:
                key, value = item
            except Exception:
                self.log.warning("grpc_terminal: dropping trailing metadata entry: not a pair")
                changed = True
                continue
            if key == STATUS_DETAILS_KEY:
                problem = None if isinstance(value, bytes) else f"{key} needs bytes"
            elif key == PUSHBACK_KEY:
                ok = isinstance(value, str) and value.isascii() and value.isprintable()
                problem = None if ok else f"{key} needs a printable ASCII str"
            else:
                problem = valid_metadata(key, value)
            if problem is None:
                kept.append((key, value))
            else:
                self.log.warning("grpc_terminal: dropping trailing metadata: %s", problem)
                changed = True
        if not fit or trailer_size(code, details, tuple(kept)) <= self.budget:
            return details, tuple(kept), changed
        return self._fit(code, details, kept)

    def _fit(
        self, code: grpc.StatusCode, details: str, kept: list[tuple[str, str | bytes]]
    ) -> tuple[str, Metadata, bool]:
        original = trailer_size(code, details, tuple(kept))
        app = [(k, v) for k, v in kept if k not in (STATUS_DETAILS_KEY, PUSHBACK_KEY)]
        if parse_status(code, tuple(kept)) is not None:
            # A rich status the handler built (abort_with_status): fit it as ours are fitted.
            encoded = encode(
                decode(code, details, tuple(kept)), domain=self.domain, debug=self.debug,
                budget=self.budget, metadata=app,
            )
            return encoded.message, encoded.trailing_metadata, True
        reserved = [(k, v) for k, v in kept if k == PUSHBACK_KEY]
        # Application metadata goes first, the largest entries first.
        order = sorted(range(len(app)), key=lambda i: -trailer_size(code, "", (app[i],)))
        dropped: set[int] = set()
        for index in order:
            survivors = tuple(e for i, e in enumerate(app) if i not in dropped) + tuple(reserved)
            if trailer_size(code, details, survivors) <= self.budget:
                break
            dropped.add(index)
        metadata = tuple(e for i, e in enumerate(app) if i not in dropped) + tuple(reserved)
        message = details
        if trailer_size(code, message, metadata) > self.budget:
            low, high = 0, len(details.encode("utf-8", "replace"))
            while low < high:
                mid = (low + high + 1) // 2
                if trailer_size(code, _cut(details, mid), metadata) <= self.budget:
                    low = mid
                else:
                    high = mid - 1
            message = _cut(details, low)
        self.log.warning(
            "grpc_terminal: the %s status set by the handler needs %d bytes, over the %d-byte trailer "
            "budget; dropped %d trailing metadata entries%s",
            code.name, original, self.budget, len(dropped),
            " and cut the message" if message != details else "",
        )
        return message, metadata, True

    def handler_status(
        self,
        exc: BaseException | None,
        method: str,
        code: object,
        details: str,
        metadata: object,
        *,
        aborted: bool,
        aio: bool,
    ) -> HandlerStatus:
        """What to send for a status the handler set itself, and report it.

        ``code``, ``details`` and ``metadata`` are what the handler passed to
        ``abort`` (``aborted``) or set with ``set_code``/``set_details``/
        ``set_trailing_metadata``; ``exc`` is what it raised then (None when
        it returned). The code and message stand (``PERMISSION_DENIED``
        masked when asked); invalid metadata entries are dropped and the
        trailers fitted into the budget. An exception raised after
        ``set_code`` is logged with its traceback, since nothing else records it.
        """
        effective = _effective_code(code, aio)
        if exc is not None and not aborted:
            self.log.warning(
                "%s raised %s after setting status %s; keeping that status",
                method, type(exc).__name__, effective.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        try:
            real = decode(effective, details, metadata)
        except Exception:  # decode never raises; belt and braces for the report
            real = decoded(class_for(effective), effective, details, (), ())
        if self.mask_permission_denied and effective is _PERMISSION_DENIED:
            encoded = encode(self._masked(real), domain=self.domain, debug=False, budget=self.budget)
            result = HandlerStatus(encoded.code, encoded.message, encoded.trailing_metadata, True, True)
        else:
            message, trailers, changed = self.clean(effective, details, metadata)
            result = HandlerStatus(effective, message, trailers, False, changed)
        log = aborted or exc is None or result.masked
        if not self._wants_event(log=log):
            return result
        try:
            event = ErrorEvent(
                method, effective, self._reason(real, effective), _request_id(real), True,
                exc if exc is not None else Exception(), terminal=_has_pfd(real) and not result.masked,
                retryable=classify(decode(result.code, result.details, result.trailing_metadata)).retryable,
                masked=result.masked, sent_code=result.code,
            )
        except Exception:
            self.log.warning("cannot describe the %s set by %s", effective.name, method, exc_info=True)
            event = ErrorEvent(method, effective, effective.name, None, True, exc or Exception())
        self._report(event, log=log)
        return result
