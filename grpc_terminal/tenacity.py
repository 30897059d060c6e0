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
"""

from __future__ import annotations

from collections.abc import Collection

import grpc

from grpc_terminal._classify import RETRYABLE_CODES, classify, retry_delay

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

    ``retryable_codes`` overrides the code table. Attempts that returned are
    not retried.
    """

    def __init__(self, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES) -> None:
        self.retryable_codes = frozenset(retryable_codes)

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and classify(exc, retryable_codes=self.retryable_codes).retryable


class wait_retry_info(wait_base):
    """``fallback``'s wait, raised to the server's suggested delay (RetryInfo, then pushback)."""

    def __init__(self, fallback: wait_base | None = None) -> None:
        if fallback is None:
            fallback = tenacity.wait_exponential(multiplier=0.1, max=10)
        self.fallback = fallback

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        wait = float(self.fallback(retry_state))
        outcome = retry_state.outcome
        if outcome is not None and outcome.failed:
            exc = outcome.exception()
            delay = retry_delay(exc) if exc is not None else None
            if delay is not None:
                wait = max(wait, delay)
        return wait
