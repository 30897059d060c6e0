"""Running a :class:`~grpc_terminal.RetryPolicy` over grpc calls: the client interceptors.

The policy itself (a value: backoff, budget, history) lives in ``_retry``;
this module is the transport that applies it to sync and aio calls with a
unary request.

Cancelling a retried call ends it at once, in an attempt or in the wait
between two: the caller then sees what grpc shows for a cancelled call (sync:
``cancelled()``, ``grpc.FutureCancelledError`` from ``result()``, a
``CANCELLED`` error from a response iterator; aio: ``asyncio.CancelledError``).
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import grpc.aio

from grpc_terminal._client import LOCAL_CANCELLATION_DETAILS, _SyncCall, debug_string_of, typed_error
from grpc_terminal._errors import StatusError
from grpc_terminal._retry import RetryPolicy, StopReason, _Run, attach_history

__all__ = ["aio_retry_interceptors", "sync_retry_interceptor"]

_log = logging.getLogger("grpc_terminal")

if TYPE_CHECKING:
    _UU = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.UnaryStreamClientInterceptor[Any, Any]
    _AioUU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _AioUS = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _AioUSCall = grpc.aio.UnaryStreamCall[Any, Any]
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future
    _UU, _US = grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor
    _AioUU, _AioUS = grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor
    _AioUSCall = grpc.aio.UnaryStreamCall


class _CallDetails(
    collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression")
    ),
    grpc.ClientCallDetails,
):
    """Sync call details with a per-attempt timeout."""


def _sync_details(details: Any, timeout: float | None) -> Any:
    return _CallDetails(
        details.method,
        timeout,
        getattr(details, "metadata", None),
        getattr(details, "credentials", None),
        getattr(details, "wait_for_ready", None),
        getattr(details, "compression", None),
    )


def _sleeps_by_default(policy: RetryPolicy) -> bool:
    """The policy sleeps with ``time.sleep``, which an event wait can stand in for."""
    return policy.sleep is time.sleep


def _run_callback(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        _log.exception("grpc_terminal: a call's callback raised")


class _LocallyCancelled(grpc.Call, _Future):
    """A retried call the application cancelled while no attempt was running.

    It answers as grpc's own cancelled calls do: ``CANCELLED`` with grpc's
    details, ``grpc.FutureCancelledError`` from ``result()``, and a typed
    ``CANCELLED`` error (a :class:`~grpc_terminal.Cancelled`) from a response iterator.
    """

    def __init__(self) -> None:
        self.error = typed_error(_CancelledRpcError())

    def result(self, timeout: float | None = None) -> NoReturn:
        raise grpc.FutureCancelledError()

    def exception(self, timeout: float | None = None) -> NoReturn:
        raise grpc.FutureCancelledError()

    def traceback(self, timeout: float | None = None) -> NoReturn:
        raise grpc.FutureCancelledError()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return True

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def initial_metadata(self) -> Any:
        return ()

    def trailing_metadata(self) -> Any:
        return ()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def details(self) -> str:
        return LOCAL_CANCELLATION_DETAILS

    def debug_error_string(self) -> str:
        return self.error.debug_error_string()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> NoReturn:
        raise self.error


class _CancelledRpcError(grpc.RpcError):
    """The raw form of a local cancellation, for :func:`typed_error`."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def details(self) -> str:
        return LOCAL_CANCELLATION_DETAILS

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def initial_metadata(self) -> tuple[()]:
        return ()

    def debug_error_string(self) -> str:
        return f"CANCELLED:{LOCAL_CANCELLATION_DETAILS}"


class _Raised(grpc.Call, _Future):
    """The outcome of an attempt that raised instead of returning a call (e.g. a predicate's error)."""

    def __init__(self, error: Exception) -> None:
        self._error = error

    def result(self, timeout: float | None = None) -> NoReturn:
        raise self._error

    def exception(self, timeout: float | None = None) -> Exception:
        return self._error

    def traceback(self, timeout: float | None = None) -> Any:
        return self._error.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def initial_metadata(self) -> Any:
        return None

    def trailing_metadata(self) -> Any:
        return None

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return "Exception raised while intercepting the RPC"

    def debug_error_string(self) -> str:
        return repr(self._error)

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class _SyncRetryingCall(grpc.Call, _Future):
    """A unary-unary call retried under a policy: a Call-Future from the first attempt on.

    Each attempt after the first starts when the previous one has failed and
    the backoff has passed, on a short-lived thread of its own (in a copy of
    the caller's context), so ``future()`` returns at once and ``cancel()``
    ends the call at once, in an attempt or in a backoff. A blocking call
    waits in ``result()``, as grpc's interceptor chain makes it. The Call
    methods answer from the final attempt, so they wait until there is one.
    """

    def __init__(self, policy: RetryPolicy, continuation: Any, details: Any, request: Any) -> None:
        self._policy = policy
        self._run = _Run(policy, details.timeout)
        self._continuation = continuation
        self._details = details
        self._request = request
        self._context = contextvars.copy_context()
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._attempt: Any = None
        self._outcome: Any = None
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._rpc_callbacks: list[Callable[[], None]] = []

    # -- driving the attempts ----------------------------------------------------------

    def start(self) -> None:
        """Make the first attempt (in the caller's thread)."""
        try:
            self._launch()
        except Exception as exc:
            self._finish(_Raised(exc))

    def _launch(self) -> None:
        attempt = self._continuation(_sync_details(self._details, self._run.timeout()), self._request)
        with self._lock:
            late = self._outcome is not None
            if not late:
                self._attempt = attempt
        if late:
            attempt.cancel()
            return
        attempt.add_done_callback(self._attempt_done)

    def _attempt_done(self, attempt: Any) -> None:
        try:
            self._judge(attempt)
        except Exception as exc:
            self._finish(_Raised(exc))

    def _judge(self, attempt: Any) -> None:
        with self._lock:
            if self._outcome is not None or attempt is not self._attempt:
                return
        try:
            err = attempt.exception()
        except grpc.FutureCancelledError:
            self._finish(attempt)
            return
        if err is None:
            self._run.succeeded()
            self._finish(attempt)
            return
        wait = self._run.failed(err)
        if wait is None:
            attach_history(err, self._run.history())
            self._finish(attempt)
            return
        thread = threading.Thread(
            target=self._context.copy().run,
            args=(self._backoff, wait),
            name="grpc-terminal-retry",
            daemon=True,
        )
        thread.start()

    def _backoff(self, wait: float) -> None:
        try:
            if _sleeps_by_default(self._policy):
                self._wake.wait(wait)
            else:
                self._policy.sleep(wait)
            if self._outcome is None:
                self._launch()
        except Exception as exc:
            self._finish(_Raised(exc))

    def _finish(self, outcome: Any) -> bool:
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
            rpc_callbacks, self._rpc_callbacks = self._rpc_callbacks, []
            done_callbacks, self._done_callbacks = self._done_callbacks, []
            self._lock.notify_all()
        self._wake.set()
        for callback in rpc_callbacks:
            _run_callback(callback)
        for fn in done_callbacks:
            _run_callback(fn, self)
        return True

    def _final(self, timeout: float | None = None) -> Any:
        with self._lock:
            if not self._lock.wait_for(lambda: self._outcome is not None, timeout):
                raise grpc.FutureTimeoutError()
            return self._outcome

    # -- grpc.Future --------------------------------------------------------------------

    def cancel(self) -> bool:
        with self._lock:
            attempt = self._attempt
        if not self._finish(_LocallyCancelled()):
            return False
        if attempt is not None:
            attempt.cancel()
        return True

    def cancelled(self) -> bool:
        outcome = self._outcome
        return outcome is not None and bool(outcome.cancelled())

    def running(self) -> bool:
        return self._outcome is None

    def done(self) -> bool:
        return self._outcome is not None

    def result(self, timeout: float | None = None) -> Any:
        return self._final(timeout).result()

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._final(timeout).exception()  # type: ignore[no-any-return]

    def traceback(self, timeout: float | None = None) -> Any:
        return self._final(timeout).traceback()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._lock:
            if self._outcome is None:
                self._done_callbacks.append(fn)
                return
        fn(self)

    # -- grpc.Call ----------------------------------------------------------------------

    def initial_metadata(self) -> Any:
        return self._final().initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._final().trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return self._final().code()  # type: ignore[no-any-return]

    def details(self) -> str:
        return self._final().details()  # type: ignore[no-any-return]

    def debug_error_string(self) -> str:
        return debug_string_of(self._final())

    def is_active(self) -> bool:
        return self._outcome is None

    def time_remaining(self) -> float | None:  # type: ignore[override]
        remaining = self._run.remaining()
        return None if remaining is None else max(remaining, 0.0)

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._outcome is not None:
                return False
            self._rpc_callbacks.append(callback)
            return True


class _SyncRetryInterceptor(_UU, _US):
    """Retries sync unary-request calls. Calls with a streaming request are not intercepted."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        call = _SyncRetryingCall(self.policy, continuation, details, request)
        call.start()
        return call

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _SyncRetryingStream(self.policy, continuation, details, request)


class _SyncRetryingStream(_SyncCall):
    """A sync response stream re-started while nothing has reached the caller.

    ``cancel()`` from another thread ends a backoff at once: the reader then
    gets a typed ``CANCELLED`` error, as grpc gives for a cancelled call.
    """

    def __init__(self, policy: RetryPolicy, continuation: Any, details: Any, request: Any) -> None:
        self._policy = policy
        self._run = _Run(policy, details.timeout)
        self._continuation = continuation
        self._details = details
        self._request = request
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._delivered = False
        self._cancelled = False
        self._backing_off = False
        self._ended = False
        super().__init__(self._start())

    def _start(self) -> Any:
        return self._continuation(_sync_details(self._details, self._run.timeout()), self._request)

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
                self._inner = _LocallyCancelled()
        self._wake.set()
        inner.cancel()
        return True

    def _cancelled_now(self) -> StatusError:
        """Stand for the cancelled call from now on; its error."""
        with self._lock:
            self._ended = True
            if not isinstance(self._inner, _LocallyCancelled):
                self._inner = _LocallyCancelled()
            stand_in: _LocallyCancelled = self._inner
        return stand_in.error

    def _backoff(self, wait: float) -> bool:
        """Wait, then start the next attempt; False when cancelled meanwhile."""
        with self._lock:
            if self._cancelled:
                return False
            self._backing_off = True
        if _sleeps_by_default(self._policy):
            self._wake.wait(wait)
        else:
            self._policy.sleep(wait)
        attempt = None if self._cancelled else self._start()
        with self._lock:
            self._backing_off = False
            if not self._cancelled:
                self._inner = attempt
                return True
        if attempt is not None:
            attempt.cancel()
        return False

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
                if isinstance(inner, _LocallyCancelled):
                    raise
                if self._cancelled:
                    if isinstance(err, grpc.RpcError) and _code(err) is grpc.StatusCode.CANCELLED:
                        with self._lock:
                            self._ended = True
                        raise
                    raise self._cancelled_now() from None
                if self._delivered:
                    with self._lock:
                        self._ended = True
                    self._run.stop(err, StopReason.COMMITTED)
                    raise
                wait = self._run.failed(err)
                if wait is None:
                    with self._lock:
                        self._ended = True
                    attach_history(err, self._run.history())
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


def sync_retry_interceptor(policy: RetryPolicy) -> Any:
    """A sync client interceptor retrying unary-request calls under ``policy``.

    Put it *outside* (before) the typed-error interceptor, as
    :func:`grpc_terminal.intercept_channel` does, so it classifies typed errors
    and the caller gets the last typed error with ``retry_history``.
    """
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    return _SyncRetryInterceptor(policy)


class _AioRetryUnaryUnary(_AioUU):
    """Retries aio unary-unary calls; cancelling the call cancels a backoff as well."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        run = _Run(self.policy, details.timeout)
        while True:
            call = await continuation(details._replace(timeout=run.timeout()), request)
            try:
                await call
            except Exception as err:
                wait = run.failed(err)
                if wait is None:
                    attach_history(err, run.history())
                    return call
                # grpc.aio cancels this interceptor's task when the call is
                # cancelled: the sleep ends with asyncio.CancelledError.
                await self.policy.async_sleep(wait)
                continue
            run.succeeded()
            return call


class _AioRetryingStream(_AioUSCall):
    """An aio response stream re-started while nothing has reached the caller.

    ``cancel()`` ends a backoff at once: the reader then gets
    ``asyncio.CancelledError``, as grpc.aio gives for a cancelled call, and
    the call answers ``CANCELLED``.
    """

    def __init__(
        self, policy: RetryPolicy, run: _Run, call: Any, restart: Callable[[], Awaitable[Any]]
    ) -> None:
        self._policy = policy
        self._run = run
        self._call = call
        self._restart = restart
        self._delivered = False
        self._cancelled = False
        #: Cancelled while no attempt was running: the call itself is over.
        self._cancelled_between = False
        self._ended = False
        self._sleeper: asyncio.Future[Any] | None = None
        self._responses: AsyncIterator[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                async for item in self._call:
                    self._delivered = True
                    yield item
            except Exception as err:
                if self._cancelled:
                    self._cancelled_between = True
                    self._ended = True
                    raise asyncio.CancelledError() from None
                if self._delivered:
                    self._ended = True
                    self._run.stop(err, StopReason.COMMITTED)
                    raise
                wait = self._run.failed(err)
                if wait is None:
                    self._ended = True
                    attach_history(err, self._run.history())
                    raise
                if not await self._backoff(wait):
                    self._ended = True
                    raise asyncio.CancelledError() from None
                continue
            self._ended = True
            self._run.succeeded()
            return

    async def _backoff(self, wait: float) -> bool:
        """Wait, then start the next attempt; False when cancelled meanwhile."""
        if self._cancelled:
            return False
        sleeper = asyncio.ensure_future(self._policy.async_sleep(wait))
        self._sleeper = sleeper
        try:
            await sleeper
        except asyncio.CancelledError:
            if not self._cancelled:  # the reader's own task was cancelled
                raise
            return False
        finally:
            self._sleeper = None
        if self._cancelled:
            return False
        call = await self._restart()
        if self._cancelled:
            call.cancel()
            return False
        self._call = call
        return True

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._responses is None:
            self._responses = self._iterate()
        return self._responses

    async def read(self) -> Any:
        try:
            return await self.__aiter__().__anext__()
        except StopAsyncIteration:
            return grpc.aio.EOF  # type: ignore[attr-defined]

    def cancel(self) -> bool:
        if self._ended or self._cancelled:
            return False
        sleeper = self._sleeper
        if sleeper is not None and not sleeper.done():
            self._cancelled = self._cancelled_between = True
            sleeper.cancel()
            return True
        if self._call.done() and not self._delivered:
            # failed, and the reader has not judged it yet: no retry any more
            self._cancelled = self._cancelled_between = True
            return True
        if self._call.cancel():
            self._cancelled = True
            return True
        return False

    def cancelled(self) -> bool:
        return self._cancelled_between or bool(self._call.cancelled())

    def done(self) -> bool:
        return self._cancelled_between or bool(self._call.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._cancelled_between:
            callback(self)
            return
        self._call.add_done_callback(lambda _inner: callback(self))

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()  # type: ignore[no-any-return]

    async def initial_metadata(self) -> Any:
        if self._cancelled_between:
            return grpc.aio.Metadata()
        return await self._call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        if self._cancelled_between:
            return grpc.aio.Metadata()
        return await self._call.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        if self._cancelled_between:
            return grpc.StatusCode.CANCELLED
        return await self._call.code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        if self._cancelled_between:
            return LOCAL_CANCELLATION_DETAILS
        return await self._call.details()  # type: ignore[no-any-return]

    async def debug_error_string(self) -> str:
        if self._cancelled_between:
            return ""
        return await self._call.debug_error_string()  # type: ignore[no-any-return]

    async def wait_for_connection(self) -> None:
        await self._call.wait_for_connection()


class _AioRetryUnaryStream(_AioUS):
    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        run = _Run(self.policy, details.timeout)

        async def restart() -> Any:
            return await continuation(details._replace(timeout=run.timeout()), request)

        return _AioRetryingStream(self.policy, run, await restart(), restart)


def aio_retry_interceptors(policy: RetryPolicy) -> list[grpc.aio.ClientInterceptor]:
    """aio client interceptors retrying unary-request calls under ``policy`` (one per kind).

    Calls with a streaming request get no retry interceptor: they are never
    re-sent. Put these *before* the typed-error interceptors (outermost), as
    :func:`grpc_terminal.aio_interceptors` does.
    """
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    interceptors: list[Any] = [_AioRetryUnaryUnary(policy), _AioRetryUnaryStream(policy)]
    return interceptors
