"""Running a :class:`~grpc_terminal.RetryPolicy` over grpc calls: the client interceptors.

The policy itself (a value: backoff, budget, history) lives in ``_retry``;
this module is the transport that applies it to sync and aio calls with a
unary request.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from grpc_terminal._client import _SyncCall
from grpc_terminal._errors import StatusError
from grpc_terminal._retry import RetryPolicy, StopReason, _Run, attach_history

__all__ = ["aio_retry_interceptors", "sync_retry_interceptor"]


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


class _FailedCall(grpc.Call, _Future):
    """A finished, failed call standing for an error an inner interceptor gave back."""

    def __init__(self, error: StatusError) -> None:
        self._error = error

    def result(self, timeout: float | None = None) -> Any:
        raise self._error

    def exception(self, timeout: float | None = None) -> Exception | None:
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
        return ()

    def trailing_metadata(self) -> Any:
        return self._error.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return self._error.code()

    def details(self) -> str:
        return self._error.details()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


def _as_call(outcome: Any) -> Any:
    """The call for what a sync continuation returned.

    For a blocking call grpc's continuation returns the error itself when the
    inner call raised; a typed error is no future, so stand in for it with the
    raw call it came from (typed again on ``result()``) or a finished call.
    """
    if not isinstance(outcome, StatusError):
        return outcome
    raw = outcome.__cause__
    if isinstance(raw, grpc.RpcError) and not isinstance(raw, StatusError) and hasattr(raw, "result"):
        call = _SyncCall(raw)
        call._typed = outcome
        return call
    return _FailedCall(outcome)


class _SyncRetryInterceptor(_UU, _US):
    """Retries sync unary-request calls. Calls with a streaming request are not intercepted.

    A unary-unary attempt is waited for inside the interceptor, so a
    ``.future()`` call with retry returns an already finished future.
    """

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        run = _Run(self.policy, details.timeout)
        while True:
            call = _as_call(continuation(_sync_details(details, run.timeout()), request))
            err = call.exception()
            if err is None:
                run.succeeded()
                return call
            wait = run.failed(err)
            if wait is None:
                attach_history(err, run.history())
                return call
            self.policy.sleep(wait)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _SyncRetryingStream(self.policy, continuation, details, request)


class _SyncRetryingStream(_SyncCall):
    """A sync response stream re-started while nothing has reached the caller."""

    def __init__(self, policy: RetryPolicy, continuation: Any, details: Any, request: Any) -> None:
        self._policy = policy
        self._run = _Run(policy, details.timeout)
        self._continuation = continuation
        self._details = details
        self._request = request
        self._delivered = False
        self._cancelled = False
        self._ended = False
        super().__init__(self._start())

    def _start(self) -> Any:
        return self._continuation(_sync_details(self._details, self._run.timeout()), self._request)

    def result(self, timeout: float | None = None) -> Any:
        return self._inner.result(timeout)

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._inner.exception(timeout)  # type: ignore[no-any-return]

    def cancel(self) -> bool:
        self._cancelled = True
        return bool(self._inner.cancel())

    def __next__(self) -> Any:
        while True:
            try:
                item = next(self._inner)
            except StopIteration:
                if not self._ended:
                    self._ended = True
                    self._run.succeeded()
                raise
            except Exception as err:
                if self._delivered or self._cancelled:
                    self._run.stop(err, StopReason.COMMITTED)
                    raise
                wait = self._run.failed(err)
                if wait is None:
                    attach_history(err, self._run.history())
                    raise
                self._policy.sleep(wait)
                if self._cancelled:
                    raise
                self._inner = self._start()
                continue
            self._delivered = True
            return item


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
                await self.policy.async_sleep(wait)
                continue
            run.succeeded()
            return call


class _AioRetryingStream(_AioUSCall):
    """An aio response stream re-started while nothing has reached the caller."""

    def __init__(
        self, policy: RetryPolicy, run: _Run, call: Any, restart: Callable[[], Awaitable[Any]]
    ) -> None:
        self._policy = policy
        self._run = run
        self._call = call
        self._restart = restart
        self._delivered = False
        self._cancelled = False
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
                if self._delivered or self._cancelled:
                    self._run.stop(err, StopReason.COMMITTED)
                    raise
                wait = self._run.failed(err)
                if wait is None:
                    attach_history(err, self._run.history())
                    raise
                await self._policy.async_sleep(wait)
                if self._cancelled:
                    raise
                self._call = await self._restart()
                continue
            self._run.succeeded()
            return

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
        self._cancelled = True
        return bool(self._call.cancel())

    def cancelled(self) -> bool:
        return bool(self._call.cancelled())

    def done(self) -> bool:
        return bool(self._call.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _inner: callback(self))

    def time_remaining(self) -> float | None:
        return self._call.time_remaining()  # type: ignore[no-any-return]

    async def initial_metadata(self) -> Any:
        return await self._call.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._call.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        return await self._call.code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        return await self._call.details()  # type: ignore[no-any-return]

    async def debug_error_string(self) -> str:
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
