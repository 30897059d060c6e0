"""Retry classification: is a failure terminal, retryable, and after how long?

One precedence, first match wins (the design's section 4):

1. a ProvisionFailureDetail anywhere in the error          -> terminal
2. ``grpc-retry-pushback-ms`` negative                     -> terminal
3. RESOURCE_EXHAUSTED from the client's own metadata limit -> terminal
4. RetryInfo present                                       -> retryable
5. by code: :data:`RETRYABLE_CODES` retryable, the rest terminal;
   exceptions that carry no gRPC status are not retryable.

Rule 3 recognises the message grpc's C core gives when *received* metadata
is over the client's limit (measured on grpcio 1.85 with a real server
sending 20 KiB and 10 KiB trailers), for example::

    Stream removed (received metadata size exceeds hard limit (value length 20480 vs. 16384))
    Stream removed (received metadata size exceeds soft limit (10365 vs. 8192);  ...)

and the older form ``received trailing metadata size exceeds limit``. Only a
*received* status (not one a program built) qualifies. The soft limit
rejects at random, so a retry may pass by luck; it is still a configuration
fault (the peer's metadata is too big) and is treated as terminal.

The code table is overridable: every function taking ``retryable_codes``
accepts any collection of :class:`grpc.StatusCode`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass

import grpc

from grpc_terminal._codec import PUSHBACK_KEY, from_rpc_error, read_metadata
from grpc_terminal._errors import StatusError
from grpc_terminal._reason import ProvisionFailureDetail

__all__ = [
    "RETRYABLE_CODES",
    "Verdict",
    "classify",
    "failure_detail",
    "find_status",
    "is_retryable",
    "is_terminal",
    "retry_delay",
]

#: Codes retried by default. Everything else is terminal.
RETRYABLE_CODES: frozenset[grpc.StatusCode] = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)

# The message grpc's core gives when received metadata is over its limit:
# "received metadata size exceeds soft limit (...)" / "... hard limit (...)"
# (grpcio >= 1.5x) and "received initial/trailing metadata size exceeds limit"
# (older cores). Deliberately narrow: a server's own "quota exceeds limit" is
# an ordinary, retryable RESOURCE_EXHAUSTED.
_CLIENT_METADATA_LIMIT = re.compile(
    r"\breceived (?:initial |trailing )?metadata size exceeds (?:soft |hard )?limit\b"
)

_MAX_WALK = 64


def _walk(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes, contexts and exception-group members, once each."""
    seen: set[int] = set()
    queue = [exc]
    while queue and len(seen) < _MAX_WALK:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        if current.__cause__ is not None:
            queue.append(current.__cause__)
        if current.__context__ is not None and not current.__suppress_context__:
            queue.append(current.__context__)


def find_status(exc: BaseException) -> StatusError | None:
    """The first gRPC failure in ``exc`` or what it wraps, typed."""
    for current in _walk(exc):
        if isinstance(current, StatusError):
            return current
        if isinstance(current, grpc.RpcError) and callable(getattr(current, "code", None)):
            return from_rpc_error(current)
    return None


def failure_detail(exc: BaseException) -> ProvisionFailureDetail | None:
    """The ProvisionFailureDetail carried by ``exc`` or anything it wraps."""
    for current in _walk(exc):
        status = find_status(current) if isinstance(current, grpc.RpcError) else None
        if status is not None and status.failure_detail is not None:
            return copy.deepcopy(status.failure_detail)
    return None


def is_terminal(exc: BaseException) -> bool:
    """True when a ProvisionFailureDetail is present (Go's ``IsTerminal``)."""
    return failure_detail(exc) is not None


def _pushback_ms(status: StatusError) -> int | None:
    try:
        trailers = read_metadata(status.trailing_metadata())
    except Exception:  # a subclass's trailing_metadata() that raises: no pushback
        return None
    for key, value in trailers:
        if key == PUSHBACK_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            try:
                return int(text.strip())
            except ValueError:
                return None
    return None


@dataclass(frozen=True, slots=True)
class Verdict:
    """What classification decided for one failure, and by which rule."""

    retryable: bool
    rule: str
    code: grpc.StatusCode | None
    delay: float | None


def classify(
    exc: BaseException, *, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES
) -> Verdict:
    """Apply the precedence to ``exc``; ``retryable_codes`` overrides the code table.

    ``Verdict.rule`` names the rule that decided: ``provision_failure_detail``,
    ``negative_pushback``, ``client_metadata_limit``, ``retry_info``, ``code``
    or ``not_grpc``. ``Verdict.delay`` is the server's suggested wait (RetryInfo,
    else a non-negative pushback) for a retryable failure, else None.
    """
    if failure_detail(exc) is not None:
        status = find_status(exc)
        return Verdict(False, "provision_failure_detail", status.code() if status else None, None)
    status = find_status(exc)
    if status is None:
        return Verdict(False, "not_grpc", None, None)
    code = status.code()
    pushback = _pushback_ms(status)
    if pushback is not None and pushback < 0:
        return Verdict(False, "negative_pushback", code, None)
    if (
        code is grpc.StatusCode.RESOURCE_EXHAUSTED
        and status._received
        and _CLIENT_METADATA_LIMIT.search(status.message) is not None
    ):
        return Verdict(False, "client_metadata_limit", code, None)
    delay = status.retry_delay
    if delay is None and pushback is not None:
        delay = pushback / 1000.0
    if status.retry_delay is not None:
        return Verdict(True, "retry_info", code, delay)
    retryable = code in retryable_codes
    return Verdict(retryable, "code", code, delay if retryable else None)


def is_retryable(
    exc: BaseException, *, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES
) -> bool:
    """True when retrying ``exc`` may help (the full precedence; NOT_FOUND is not)."""
    return classify(exc, retryable_codes=retryable_codes).retryable


def retry_delay(exc: BaseException) -> float | None:
    """The server's suggested wait in seconds: RetryInfo, then pushback; else None."""
    status = find_status(exc)
    if status is None:
        return None
    if status.retry_delay is not None:
        return status.retry_delay
    pushback = _pushback_ms(status)
    return pushback / 1000.0 if pushback is not None and pushback >= 0 else None
