"""Running a :class:`~grpc_terminal.RetryPolicy` over sync response streams.

A response stream is re-started while nothing has reached the caller; once
a response has, a failure ends it (``StopReason.COMMITTED``). Each attempt
is a typed response stream of ``_calls``, so the policy judges typed errors.
Cancelling the stream in the wait between two attempts ends it at once; the
reader then gets a typed ``CANCELLED`` error, as grpc gives for a cancelled call.
"""

from __future__ import annotations

import threading
from typing import Any

import grpc

from grpc_terminal._calls import LocallyCancelled, Raised, SyncCall, TypedStream
from grpc_terminal._errors import StatusError
from grpc_terminal._retry import RetryPolicy, RetryRun, StopReason
from grpc_terminal._retrying import Attempt, call_options

__all__ = ["RetryingStream", "RetryingUnaryStream"]


class RetryingStream(SyncCall):
    """A sync response stream re-started while nothing has reached the caller.

    ``cancel()`` from another thread ends a backoff at once: the reader then
    gets a typed ``CANCELLED`` error, as grpc gives for a cancelled call.

    Args:
        policy: the retry policy.
        timeout: the call's own timeout (the policy may set a shorter one).
        attempt: starts one attempt (a typed response stream).
    """

    def __init__(self, policy: RetryPolicy, timeout: float | None, attempt: Attempt) -> None:
        self._policy = policy
        self._run = RetryRun(policy, timeout)
        self._start_attempt = attempt
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._delivered = False
        self._cancelled = False
        self._backing_off = False
        self._ended = False
        super().__init__(self._start())

    def _start(self) -> Any:
        return self._start_attempt(self._run.timeout())

    def result(self, timeout: float | None = None) -> Any:
        return self._inner.result(timeout)

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._inner.exception(timeout)  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        with self._lock:
            if self._ended or self._cancelled:
                return False
            inner = self._inner
            if not self._backing_off and inner.done() and inner.code() is grpc.StatusCode.OK:
                return False
            self._cancelled = True
            if self._backing_off:
                self._inner = LocallyCancelled()
        self._wake.set()
        inner.cancel()
        return True

    def _cancelled_now(self) -> StatusError:
        """Stand for the cancelled call from now on; its error."""
        with self._lock:
            self._ended = True
            if not isinstance(self._inner, LocallyCancelled):
                self._inner = LocallyCancelled()
            stand_in: LocallyCancelled = self._inner
        return stand_in.error

    def _backoff(self, wait: float) -> bool:
        """Wait, then start the next attempt; False when cancelled meanwhile."""
        with self._lock:
            if self._cancelled:
                return False
            self._backing_off = True
        self._run.sleep(wait, self._wake)
        attempt = None if self._cancelled else self._start()
        with self._lock:
            self._backing_off = False
            if not self._cancelled:
                self._inner = attempt
                return True
        if attempt is not None:
            attempt.cancel()
        return False

    def _end(self) -> None:
        with self._lock:
            self._ended = True

    def __next__(self) -> Any:
        while True:
            inner = self._inner
            try:
                item = next(inner)
            except StopIteration:
                with self._lock:
                    first, self._ended = not self._ended, True
                if first:
                    self._run.succeeded()
                raise
            except Exception as err:
                if isinstance(inner, LocallyCancelled):
                    raise
                if self._cancelled:
                    if isinstance(err, grpc.RpcError) and _code(err) is grpc.StatusCode.CANCELLED:
                        self._end()
                        raise
                    raise self._cancelled_now() from None
                if self._delivered:
                    self._end()
                    self._run.stop(err, StopReason.COMMITTED)
                    raise
                wait = self._run.failed(err)
                if wait is None:
                    self._end()
                    self._run.end(err)
                    raise
                if not self._backoff(wait):
                    raise self._cancelled_now() from None
                continue
            self._delivered = True
            return item


def _code(err: grpc.RpcError) -> grpc.StatusCode | None:
    try:
        code = err.code()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode) else None


class RetryingUnaryStream:
    """A unary-stream multicallable whose response streams are retried under a policy.

    Args:
        typed: the typed multicallable the attempts are made with.
        policy: the retry policy.
    """

    def __init__(self, typed: TypedStream, policy: RetryPolicy) -> None:
        self._typed = typed
        self._policy = policy

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> RetryingStream:
        timeout, options = call_options(*args, **kwargs)

        def attempt(timeout: float | None) -> Any:
            try:
                return self._typed(request, timeout=timeout, **options)
            except Exception as exc:
                return Raised(exc)

        return RetryingStream(self._policy, timeout, attempt)
