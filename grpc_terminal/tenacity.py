"""tenacity adapters: retry only what may succeed, and wait at least what the server asked.

::

    from tenacity import Retrying, stop_after_attempt, wait_exponential
    from grpc_terminal.tenacity import retry_if_retryable, wait_retry_info

    for attempt in Retrying(
        retry=retry_if_retryable(),
        wait=wait_retry_info(wait_exponential(multiplier=0.1, max=5)),
        stop=stop_after_attempt(5),
        reraise=True,
    ):
        with attempt:
            stub.Grant(request)

A terminal failure makes ``retry_if_retryable`` say no, so tenacity raises
it after one attempt.

A server-suggested delay has a ceiling, as in :class:`grpc_terminal.RetryPolicy`
(``max_server_delay``, 300 s by default): ``retry_if_retryable`` does not
retry a failure whose server asks for a longer wait (or for one that cannot
be read), and ``wait_retry_info`` never waits longer than the ceiling for a
server's sake. Absurd values (a pushback of 10**13 ms, a RetryInfo of
10**11 s) never reach tenacity's sleep.
"""

from __future__ import annotations

from collections.abc import Collection

import grpc

from grpc_terminal._classify import RETRYABLE_CODES, retry_delay
from grpc_terminal._retry import (
    DEFAULT_MAX_SERVER_DELAY,
    check_ceiling,
    safe_classify,
    server_delay_too_long,
)

try:
    import tenacity
    from tenacity.retry import retry_base
    from tenacity.wait import wait_base
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.tenacity needs tenacity: pip install 'grpc-terminal[tenacity]'"
    ) from exc

__all__ = ["retry_if_retryable", "wait_retry_info"]


class retry_if_retryable(retry_base):
    """Retry when the attempt raised a failure :func:`grpc_terminal.is_retryable` accepts.

    ``retryable_codes`` overrides the code table. ``max_server_delay``
    (seconds, default 300) is the ceiling on a server-suggested wait: a
    failure whose server asks for longer, or for a delay that cannot be
    read, is not retried (tenacity then raises it at once). Attempts that
    returned are not retried.
    """

    def __init__(
        self,
        retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES,
        *,
        max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
    ) -> None:
        self.retryable_codes = frozenset(retryable_codes)
        self.max_server_delay = check_ceiling(max_server_delay)

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if exc is None:
            return False
        verdict = safe_classify(exc, self.retryable_codes)
        return verdict.retryable and not server_delay_too_long(verdict.delay, self.max_server_delay)


class wait_retry_info(wait_base):
    """``fallback``'s wait, raised to the server's suggested delay (RetryInfo, then pushback).

    ``fallback`` is the wait without a server delay (default: exponential,
    0.1 s doubling up to 10 s). ``max_server_delay`` (seconds, default 300)
    caps what a server's delay can add: a longer or unreadable one counts as
    ``max_server_delay`` (with :class:`retry_if_retryable` such a failure is
    not retried at all).
    """

    def __init__(
        self, fallback: wait_base | None = None, *, max_server_delay: float = DEFAULT_MAX_SERVER_DELAY
    ) -> None:
        if fallback is None:
            fallback = tenacity.wait_exponential(multiplier=0.1, max=10)
        self.fallback = fallback
        self.max_server_delay = check_ceiling(max_server_delay)

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            delay = self._server_delay(exc) if exc is not None else None
            if delay is not None:
                wait = max(wait, delay)
        return wait

    def _server_delay(self, exc: BaseException) -> float | None:
        """The server's delay, capped at ``max_server_delay``; an unreadable one counts as the cap."""
        try:
            delay = retry_delay(exc)
        except Exception:
            return self.max_server_delay
        if server_delay_too_long(delay, self.max_server_delay):
            return self.max_server_delay
        return delay
