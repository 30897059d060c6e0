"""The server's options, defined once: :class:`ServerOptions`.

Both interceptors *are* a ``ServerOptions`` (their keyword arguments are its
fields), and :func:`grpc_terminal.to_status` takes one, so every way an
exception becomes a status is configured by the same checked value.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Never, TypeAlias

import grpc

from grpc_terminal._encode import DEFAULT_DOMAIN
from grpc_terminal._errors import StatusError, TerminalError
from grpc_terminal._hooks import checked
from grpc_terminal._trailers import MAX_BUDGET, MIN_BUDGET, TRAILER_BUDGET

__all__ = ["ErrorEvent", "ErrorFactory", "ErrorMapping", "OnError", "ServerOptions"]

#: What one exception class maps to: a :class:`StatusError` class (called with
#: the exception's message) or a function taking the exception and returning a
#: StatusError. A function may be typed with its own exception class
#: (``def seats(e: SeatsFull) -> StatusError``): ``Never`` accepts it.
ErrorFactory: TypeAlias = type[StatusError] | Callable[[Never], StatusError]

#: The ``errors=`` argument of the interceptors: exception class -> :data:`ErrorFactory`.
#: Annotate a mapping kept in a variable with it (``errors: ErrorMapping = {...}``).
ErrorMapping: TypeAlias = Mapping[type[BaseException], ErrorFactory]

@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """One failed RPC, as the server reported it (passed to ``on_error``).

    For a masked failure (``mask_permission_denied``) ``code`` and ``reason``
    are the real ones, ``masked`` is True and ``sent_code`` is what the caller
    got (``NOT_FOUND``).
    """

    #: The full method name, e.g. ``/pkg.Service/Method``.
    method: str
    #: The status code of the failure (before masking).
    code: grpc.StatusCode
    #: The ProvisionFailureDetail reason, else the ErrorInfo reason, else the code's name.
    reason: str
    #: The request id sent with the failure (unexpected errors, replaced transport errors), else None.
    request_id: str | None
    #: False for exceptions nobody mapped (sent as UNKNOWN with a request id).
    expected: bool
    #: What the handler raised (a bare ``Exception`` for ``context.abort``, or for a
    #: status the handler set and then returned).
    exception: BaseException
    #: A ProvisionFailureDetail was sent.
    terminal: bool = False
    #: What :func:`grpc_terminal.is_retryable` will say on the client.
    retryable: bool = False
    #: The failure was a PERMISSION_DENIED sent as a bare NOT_FOUND.
    masked: bool = False
    #: The code the caller got; ``code`` unless masked (filled in from ``code`` when not given).
    sent_code: grpc.StatusCode | None = None

    def __post_init__(self) -> None:
        if self.sent_code is None:
            object.__setattr__(self, "sent_code", self.code)


#: A server hook: called with the :class:`ErrorEvent` of each failed RPC.
OnError: TypeAlias = Callable[[ErrorEvent], object]


_NO_ERRORS: Mapping[type[BaseException], ErrorFactory] = MappingProxyType({})


def checked_errors(errors: ErrorMapping | None) -> Mapping[type[BaseException], ErrorFactory]:
    """``errors`` as a read-only copy, each entry checked; raises ``TypeError`` on a bad one."""
    if errors is None:
        return _NO_ERRORS
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
            if target is StatusError:
                raise TypeError(
                    f"errors[{source.__name__}]: StatusError itself has no code of its own (it would "
                    "send UNKNOWN); map to the class for the code you mean, e.g. NotFound"
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
    return MappingProxyType(table)


@dataclass(frozen=True)
class ServerOptions:
    """How raised exceptions become statuses: the options of both server interceptors.

    ``ServerInterceptor`` and ``AioServerInterceptor`` take exactly these
    arguments (they are ``ServerOptions`` themselves), and
    :func:`grpc_terminal.to_status` takes one as ``options=``. Every value is
    checked when it is built; a bad one raises at once.

    Args:
        errors: maps your own exception classes to what they become: a
            StatusError class (built with the exception's message) or a
            function taking the exception and returning a StatusError
            (annotate a mapping kept in a variable as ``ErrorMapping``). The
            most specific class wins. Kept as a read-only copy; a bad entry
            raises ``TypeError``.
        domain: the ErrorInfo domain sent with errors that carry none (a
            non-empty printable str of at most 253 characters).
        debug: True sends tracebacks of unexpected errors as DebugInfo. Never
            in production: the interceptor logs a warning when it is built.
            A bool (anything else is a ``TypeError``, so ``"no"`` cannot
            turn it on).
        mask_permission_denied: send every ``PERMISSION_DENIED`` (raised,
            mapped, relayed, ``abort``-ed, or set with ``set_code``) as a bare
            ``NOT_FOUND`` "not found" that keeps only the request id; the log
            and ``on_error`` still get the real code and reason.
        budget: the bytes all trailers of one failure may take, from 1024 to
            8192 (default ``TRAILER_BUDGET``, 4096): grpc clients refuse
            larger trailers by default with RESOURCE_EXHAUSTED, which would
            make a terminal failure retryable. What does not fit is cut
            in the order of ``SHRINK_ORDER``; a status the handler set itself
            loses application metadata first, then message text.
        on_error: one callable, or a list or tuple of them (called in
            order), each called with an :class:`ErrorEvent` for every failed
            RPC (raised, aborted, or a code the handler set), on the RPC's
            own thread or task, so the RPC's span and context are current.
            What a hook raises is logged and skipped: it never changes what
            the caller gets, nor stops the hooks after it. A list is kept as
            a tuple; an ``async def`` hook is refused.
        logger: the ``logging.Logger`` (or ``LoggerAdapter``) to use
            instead of ``grpc_terminal.server``.
        validate: called with each request message before the handler sees
            it (each message of a request stream as the handler reads it);
            what it raises is translated as if the handler had raised it, so
            map its exception class in ``errors`` (``grpc_terminal.validation``
            has the mappings for protovalidate and pydantic). None (the
            default) checks nothing. Its return value is ignored (raise to
            refuse a request). A plain function: an ``async def`` is
            refused, and an awaitable it returns fails the call.

    Raises:
        TypeError: a bad ``errors`` entry, an ``on_error`` that is not a
            callable or a list or tuple of callables (or is an ``async def``),
            or a ``validate`` that is not a plain callable.
        ValueError: an empty, overlong or unprintable ``domain``, or a
            ``budget`` that is not an int from 1024 to 8192.
    """

    errors: ErrorMapping | None = None
    domain: str = field(default=DEFAULT_DOMAIN, kw_only=True)
    debug: bool = field(default=False, kw_only=True)
    mask_permission_denied: bool = field(default=False, kw_only=True)
    budget: int = field(default=TRAILER_BUDGET, kw_only=True)
    on_error: OnError | Sequence[OnError] | None = field(default=None, kw_only=True)
    logger: logging.Logger | None = field(default=None, kw_only=True)
    validate: Callable[[Any], object] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "errors", checked_errors(self.errors))
        domain, budget = self.domain, self.budget
        if not isinstance(domain, str) or not domain or len(domain) > 253 or not domain.isprintable():
            raise ValueError(
                f"domain must be a non-empty printable str of at most 253 chars, got {domain!r}"
            )
        if not isinstance(budget, int) or isinstance(budget, bool) or not MIN_BUDGET <= budget <= MAX_BUDGET:
            raise ValueError(
                f"budget must be an int of {MIN_BUDGET} to {MAX_BUDGET} bytes, got {budget!r}"
            )
        object.__setattr__(self, "on_error", checked(self.on_error, "on_error"))
        if self.validate is not None and not callable(self.validate):
            raise TypeError(f"validate must be a callable or None, got {self.validate!r}")
        checked(self.validate, "validate")  # refuses an async def
        for name in ("debug", "mask_permission_denied"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.logger is not None and not isinstance(self.logger, logging.Logger | logging.LoggerAdapter):
            raise TypeError(f"logger must be a logging.Logger or None, got {self.logger!r}")

    def __hash__(self) -> int:
        errors = tuple((self.errors or {}).items())
        return hash((errors, self.domain, self.debug, self.mask_permission_denied, self.budget,
                     self.on_error, self.logger, self.validate))
