"""Retry classification: is a failure terminal, retryable, and after how long?

One precedence, first match wins (the design's section 4):

1. a ProvisionFailureDetail anywhere in the error          -> terminal
2. ``grpc-retry-pushback-ms`` negative                     -> terminal
3. a fault of the client's own configuration or code      -> terminal
   (its metadata or message size limits, its (de)serializers)
4. RetryInfo present                                       -> retryable
5. by code: :data:`RETRYABLE_CODES` retryable, the rest terminal;
   exceptions that carry no gRPC status are not retryable.

"Anywhere" means the error, its ``__cause__`` and (unless suppressed)
``__context__``, and the members of exception groups, nested to any depth:
every exception is visited once (cycles included), iteratively, with no
limit but memory.

Rule 3 recognises the message grpc's C core gives when *received* metadata
is over the client's limit (measured on grpcio 1.85 with a real server
sending 20 KiB and 10 KiB trailers), for example::

    Stream removed (received metadata size exceeds hard limit (value length 20480 vs. 16384))
    Stream removed (received metadata size exceeds soft limit (10365 vs. 8192);  ...)

and the older form ``received trailing metadata size exceeds limit``. Only a
*received* status (not one a program built) qualifies. The soft limit
rejects at random, so a retry may pass by luck; it is still a configuration
fault (the peer's metadata is too big) and is treated as terminal.

Rule 3 also covers the statuses grpcio produces on the client for its own
channel options and code (measured on grpcio 1.85, sync channels; aio
channels do not fail on (de)serializer errors)::

    RESOURCE_EXHAUSTED  Stream removed (CLIENT: Received message larger than max (2003 vs. 100))
    RESOURCE_EXHAUSTED  CLIENT: Sent message larger than max (503 vs. 100)
    INTERNAL            Exception deserializing response!
    INTERNAL            Exception serializing request!

These count only for a received status that carries no rich status
(``grpc-status-details-bin``): a peer that explains itself (a
RESOURCE_EXHAUSTED with a RetryInfo, say) is classified by what it says.

Server-suggested delays are clamped to :data:`MAX_SERVER_DELAY` seconds:
whatever a peer sends (a 400-digit pushback, a RetryInfo of 10^11 s), every
function here returns a finite float and never raises. A pushback of ``0``
means "retry at once": the delay is ``0.0``.

The code table is overridable: every function taking ``retryable_codes``
accepts any collection of :class:`grpc.StatusCode`.
"""

from __future__ import annotations

import collections
import copy
import re
from collections.abc import Collection, Iterator
from typing import cast

import grpc

from grpc_terminal._decode import from_rpc_error
from grpc_terminal._details import MAX_SERVER_DELAY
from grpc_terminal._errors import StatusError, is_received
from grpc_terminal._history import Verdict
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._trailers import PUSHBACK_KEY, STATUS_DETAILS_KEY, read_metadata

__all__ = [
    "MAX_SERVER_DELAY",
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

# Rule 3's other client-side faults (see the module docs): grpc's own limits
# on message size, and the Python client's (de)serializer failures.
_CLIENT_MESSAGE_LIMIT = re.compile(r"\b(?:Received|Sent) message larger than max\b")
_CLIENT_SERIALIZATION = re.compile(r"^Exception (?:deserializing response|serializing request)\b")


def _walk(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes, contexts and exception-group members, once each.

    Breadth first, iterative (a chain of any depth, no recursion), each
    exception once by identity (cycles end), bounded by memory only. Raises
    ``TypeError`` at once (not at the first step) for what is not an exception.
    """
    if not isinstance(exc, BaseException):
        raise TypeError(f"expected an exception, got {type(exc).__name__}: {exc!r:.80}")
    return _breadth_first(exc)


def _breadth_first(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = {id(exc)}
    queue: collections.deque[BaseException] = collections.deque((exc,))
    while queue:
        current = queue.popleft()
        yield current
        following: list[BaseException | None] = []
        if isinstance(current, BaseExceptionGroup):
            # isinstance leaves the group's member type unknown; it is bound to BaseException.
            group = cast("BaseExceptionGroup[BaseException]", current)
            following.extend(group.exceptions)
        following.append(current.__cause__)
        if not current.__suppress_context__:
            following.append(current.__context__)
        for nxt in following:
            if isinstance(nxt, BaseException) and id(nxt) not in seen:
                seen.add(id(nxt))
                queue.append(nxt)


def _as_status(exc: BaseException) -> StatusError | None:
    """``exc`` itself as a typed gRPC failure, without looking at what it wraps."""
    if isinstance(exc, StatusError):
        return exc
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return from_rpc_error(exc)
    return None


def find_status(exc: BaseException) -> StatusError | None:
    """The first gRPC failure in ``exc`` or what it wraps, typed.

    Args:
        exc: any exception; it, its causes and contexts and the members of
            exception groups are searched breadth first.

    Returns:
        The first :class:`StatusError` found (a raw ``grpc.RpcError`` is
        decoded), or None when there is none.
    """
    for current in _walk(exc):
        status = _as_status(current)
        if status is not None:
            return status
    return None


def failure_detail(exc: BaseException) -> ProvisionFailureDetail | None:
    """The ProvisionFailureDetail carried by ``exc`` or anything it wraps.

    Args:
        exc: any exception; every gRPC failure in it, its causes, contexts
            and exception-group members is looked at, once each.

    Returns:
        A copy of the first ProvisionFailureDetail found, or None.
    """
    for current in _walk(exc):
        status = _as_status(current)
        if status is not None and status.failure_detail is not None:
            return copy.deepcopy(status.failure_detail)
    return None


def is_terminal(exc: BaseException) -> bool:
    """True when a ProvisionFailureDetail is present (Go's ``IsTerminal``).

    Args:
        exc: any exception; searched like :func:`failure_detail`.
    """
    return failure_detail(exc) is not None


_PUSHBACK_RE = re.compile(r"^([+-]?)([0-9]+)$", re.ASCII)
_MAX_PUSHBACK_MS = int(MAX_SERVER_DELAY * 1000)


def _trailers(status: StatusError) -> tuple[tuple[str, str | bytes], ...]:
    try:
        return read_metadata(status.trailing_metadata())
    except Exception:  # a subclass's trailing_metadata() that raises: no trailers
        return ()


def _pushback_ms(status: StatusError) -> int | None:
    """The pushback trailer in ms: -1 for any negative value, clamped to the
    maximum delay; None when absent or not a decimal integer."""
    for key, value in _trailers(status):
        if key == PUSHBACK_KEY:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            match = _PUSHBACK_RE.match(text.strip())
            if match is None:
                return None
            sign, digits = match.groups()
            digits = digits.lstrip("0") or "0"
            if sign == "-" and digits != "0":
                return -1
            # Compared as text first: int() of thousands of digits is slow (or refused).
            if len(digits) > len(str(_MAX_PUSHBACK_MS)):
                return _MAX_PUSHBACK_MS
            return min(int(digits), _MAX_PUSHBACK_MS)
    return None


def _delay_s(pushback: int) -> float:
    return min(pushback / 1000.0, MAX_SERVER_DELAY)


def _received_bare(status: StatusError) -> bool:
    """True for a status grpc produced on this side: received, with no rich status from a peer."""
    received = is_received(status)
    return received and not any(key == STATUS_DETAILS_KEY for key, _ in _trailers(status))


def _message_of(status: StatusError) -> str:
    """The status message, or ``""`` when code replaced it with something that is not text."""
    return status.message if isinstance(status.message, str) else ""


def _client_fault(status: StatusError, code: grpc.StatusCode) -> str | None:
    """Rule 3's name for a client-side message-size or (de)serializer fault, else None."""
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        pattern, rule = _CLIENT_MESSAGE_LIMIT, "client_message_limit"
    elif code is grpc.StatusCode.INTERNAL:
        pattern, rule = _CLIENT_SERIALIZATION, "client_serialization"
    else:
        return None
    if pattern.search(_message_of(status)) is None or not _received_bare(status):
        return None
    return rule


def classify(
    exc: BaseException, *, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES
) -> Verdict:
    """Apply the precedence to ``exc``; ``retryable_codes`` overrides the code table.

    ``Verdict.rule`` names the rule that decided: ``provision_failure_detail``,
    ``negative_pushback``, ``client_metadata_limit``, ``client_message_limit``,
    ``client_serialization``, ``retry_info``, ``code`` or ``not_grpc``.
    ``Verdict.delay`` is the server's suggested wait in seconds (RetryInfo,
    else a non-negative pushback; at most :data:`MAX_SERVER_DELAY`) for a
    retryable failure, else None. Never raises for what a peer sent.

    Args:
        exc: any exception; searched like :func:`find_status`.
        retryable_codes: the codes rule 5 retries (default
            :data:`RETRYABLE_CODES`).
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
        and is_received(status)
        and _CLIENT_METADATA_LIMIT.search(_message_of(status)) is not None
    ):
        return Verdict(False, "client_metadata_limit", code, None)
    client_fault = _client_fault(status, code)
    if client_fault is not None:
        return Verdict(False, client_fault, code, None)
    delay = status.retry_delay
    if delay is None and pushback is not None:
        delay = _delay_s(pushback)
    if status.retry_delay is not None:
        return Verdict(True, "retry_info", code, delay)
    retryable = code in retryable_codes
    return Verdict(retryable, "code", code, delay if retryable else None)


def is_retryable(
    exc: BaseException, *, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES
) -> bool:
    """True when retrying ``exc`` may help (the full precedence; NOT_FOUND is not).

    Args:
        exc: any exception; see :func:`classify`.
        retryable_codes: the codes rule 5 retries (default
            :data:`RETRYABLE_CODES`).
    """
    return classify(exc, retryable_codes=retryable_codes).retryable


def retry_delay(exc: BaseException) -> float | None:
    """The server's suggested wait in seconds: RetryInfo, then pushback; else None.

    The result is finite, at most :data:`MAX_SERVER_DELAY`; a pushback of 0
    gives ``0.0`` (retry at once), a negative one None.

    Args:
        exc: any exception; the first gRPC failure in it is read (see
            :func:`find_status`).
    """
    status = find_status(exc)
    if status is None:
        return None
    if status.retry_delay is not None:
        return status.retry_delay
    pushback = _pushback_ms(status)
    return _delay_s(pushback) if pushback is not None and pushback >= 0 else None
