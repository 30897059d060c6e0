"""The server's one decision: what status a raised exception becomes.

Pure of I/O apart from logging; the sync and aio interceptors call
:meth:`Translator.translate` and differ only in how they send the result.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.rpc import error_details_pb2 as ed

from grpc_terminal._classify import RETRYABLE_CODES, classify
from grpc_terminal._codec import DEFAULT_DOMAIN, TRAILER_BUDGET, Encoded, encode, from_rpc_error
from grpc_terminal._errors import NotFound, StatusError, TerminalError, Unknown
from grpc_terminal._reason import reason_name

__all__ = ["ErrorEvent", "ErrorMapping", "Translator"]

ErrorFactory: TypeAlias = type[StatusError] | Callable[[BaseException], StatusError]
ErrorMapping: TypeAlias = Mapping[type[BaseException], ErrorFactory]

_log = logging.getLogger("grpc_terminal.server")


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One failed RPC, as the server reported it (passed to ``on_error``)."""

    #: The full method name, e.g. ``/pkg.Service/Method``.
    method: str
    code: grpc.StatusCode
    #: The ProvisionFailureDetail reason, else the ErrorInfo reason, else the code's name.
    reason: str
    #: The request id sent with an unexpected error (None otherwise).
    request_id: str | None
    #: False for exceptions nobody mapped (sent as UNKNOWN with a request id).
    expected: bool
    #: What the handler raised (a bare ``Exception`` for ``context.abort``).
    exception: BaseException
    #: A ProvisionFailureDetail was sent.
    terminal: bool = False
    #: What :func:`grpc_terminal.is_retryable` will say on the client.
    retryable: bool = False


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return type(exc).__name__


def _validate(errors: ErrorMapping | None) -> dict[type[BaseException], ErrorFactory]:
    if errors is None:
        return {}
    if not isinstance(errors, Mapping):
        raise TypeError(f"errors must be a mapping of exception class to error, got {errors!r}")
    table: dict[type[BaseException], ErrorFactory] = {}
    for source, target in errors.items():
        if not (isinstance(source, type) and issubclass(source, BaseException)):
            raise TypeError(f"errors: key {source!r} is not an exception class")
        if isinstance(target, type):
            if not issubclass(target, StatusError):
                raise TypeError(
                    f"errors[{source.__name__}]: {target.__name__} is not a grpc_terminal.StatusError"
                )
            if target is TerminalError:
                raise TypeError(
                    f"errors[{source.__name__}]: TerminalError needs a reason; map to one of its "
                    "subclasses or to a function returning terminal_error(...)"
                )
        elif not callable(target):
            raise TypeError(
                f"errors[{source.__name__}]: expected a StatusError class or a callable, got {target!r}"
            )
        table[source] = target
    return table


class Translator:
    """Turns exceptions into statuses, by the mapping and the safety rules.

    * a :class:`StatusError` is sent as it is;
    * a raw ``grpc.RpcError`` from a downstream call is relayed as its typed
      error (its code, details and message came from a peer, not from us);
    * an exception whose class (or a base class) is in ``errors`` becomes
      what the mapping gives, the most specific class winning;
    * anything else is unexpected: ``UNKNOWN`` with a generic message and a
      request id, the traceback logged here under the same id.
    """

    def __init__(
        self,
        errors: ErrorMapping | None = None,
        *,
        domain: str = DEFAULT_DOMAIN,
        debug: bool = False,
        mask_permission_denied: bool = False,
        budget: int = TRAILER_BUDGET,
        on_error: Callable[[ErrorEvent], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._errors = _validate(errors)
        if not isinstance(domain, str) or not domain or len(domain) > 253:
            raise ValueError(f"domain must be a non-empty str of at most 253 chars, got {domain!r}")
        if not isinstance(budget, int) or budget < 512:
            raise ValueError(f"budget must be an int of at least 512 bytes, got {budget!r}")
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, got {on_error!r}")
        self.domain = domain
        self.debug = bool(debug)
        self.mask_permission_denied = bool(mask_permission_denied)
        self.budget = budget
        self.on_error = on_error
        self.log = logger or _log
        if self.debug:
            self.log.warning(
                "grpc_terminal: DEBUG MODE IS ON: tracebacks of unexpected errors are sent "
                "to clients as DebugInfo. Never enable this in production."
            )

    def _mapped(self, exc: BaseException) -> StatusError | None:
        for klass in type(exc).__mro__:
            factory = self._errors.get(klass)
            if factory is None:
                continue
            result: object = factory(_safe_str(exc)) if isinstance(factory, type) else factory(exc)
            if not isinstance(result, StatusError):
                raise TypeError(
                    f"error mapping for {klass.__name__} returned {type(result).__name__}, "
                    "not a StatusError"
                )
            return result
        return None

    def _unexpected(self, exc: BaseException, method: str) -> StatusError:
        request_id = uuid.uuid4().hex
        self.log.error(
            "unexpected error in %s (request id %s)",
            method,
            request_id,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"grpc_method": method, "request_id": request_id},
        )
        err = Unknown(f"unexpected server error (request id {request_id})")
        err.request_info = ed.RequestInfo(request_id=request_id)
        if self.debug:
            err.debug_info = ed.DebugInfo(
                stack_entries=traceback.format_exception(type(exc), exc, exc.__traceback__),
                detail=f"{type(exc).__name__}: {_safe_str(exc)}",
            )
        return err

    def resolve(self, exc: BaseException, method: str) -> tuple[StatusError, bool]:
        """The error to send for ``exc`` and whether it was expected."""
        err: StatusError | None
        try:
            if isinstance(exc, StatusError):
                err, expected = exc, True
            elif isinstance(exc, grpc.RpcError):
                err, expected = from_rpc_error(exc), True
            else:
                mapped = self._mapped(exc)
                err, expected = (mapped, True) if mapped is not None else (None, False)
        except Exception as mapping_failure:
            self.log.error(
                "error mapping failed for %s in %s", type(exc).__name__, method,
                exc_info=mapping_failure,
            )
            err, expected = None, False
        if err is None:
            err = self._unexpected(exc, method)
        if self.mask_permission_denied and err.code() == grpc.StatusCode.PERMISSION_DENIED:
            masked = NotFound("not found")
            masked.request_info = err.request_info
            err = masked
        return err, expected

    def translate(
        self, exc: BaseException, method: str, metadata: Iterable[tuple[Any, Any]] = ()
    ) -> Encoded:
        """What to send for ``exc`` raised by ``method``; logs it and calls ``on_error``."""
        err, expected = self.resolve(exc, method)
        encoded = encode(
            err, domain=self.domain, debug=self.debug, budget=self.budget, metadata=metadata
        )
        try:
            event = self._event(err, encoded, method, expected, exc)
        except Exception:  # a broken StatusError subclass: what was sent still stands
            self.log.warning("cannot describe the %s sent by %s", encoded.code.name, method, exc_info=True)
            event = ErrorEvent(method, encoded.code, encoded.code.name, None, expected, exc)
        self._report(event, log=expected)
        return encoded

    @staticmethod
    def _event(
        err: StatusError, encoded: Encoded, method: str, expected: bool, exc: BaseException
    ) -> ErrorEvent:
        pfd = err.failure_detail
        if pfd is not None:
            reason = reason_name(pfd.reason)
        elif err.error_info is not None and err.error_info.reason:
            reason = err.error_info.reason
        else:
            reason = encoded.code.name
        return ErrorEvent(
            method, encoded.code, reason, err.request_id, expected, exc,
            terminal=pfd is not None, retryable=classify(err).retryable,
        )

    def _report(self, event: ErrorEvent, *, log: bool) -> None:
        if log:
            self.log.info(
                "%s failed: %s %s",
                event.method,
                event.code.name,
                event.reason,
                extra={"grpc_method": event.method, "grpc_code": event.code.name, "reason": event.reason},
            )
        if self.on_error is not None:
            try:
                self.on_error(event)
            except Exception:
                self.log.exception("on_error hook failed")

    def handler_status(self, exc: BaseException, method: str, code: grpc.StatusCode, aborted: bool) -> None:
        """Report a status the handler set itself (``abort``, or ``set_code`` then raise).

        That status is sent untouched; an exception raised after ``set_code``
        is logged with its traceback, since nothing else records it.
        """
        if not aborted:
            self.log.warning(
                "%s raised %s after setting status %s; keeping that status",
                method,
                type(exc).__name__,
                code.name,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
        retryable = code in RETRYABLE_CODES
        self._report(ErrorEvent(method, code, code.name, None, True, exc, False, retryable), log=aborted)
