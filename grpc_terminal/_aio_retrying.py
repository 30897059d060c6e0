"""Running a :class:`~grpc_terminal.RetryPolicy` over ``grpc.aio`` calls: the retry interceptors.

They retry the calls with a unary request and sit outside (before) the
typed-error interceptors, so each attempt is a typed call of ``_aio_calls``
and they judge typed errors. Cancelling a retried call ends it at once, in
an attempt or in the wait between two: the reader then gets
``asyncio.CancelledError``, as grpc.aio gives for a cancelled call.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from grpc_terminal._aio_calls import AioLocallyCancelled, AioUnaryStreamCall
from grpc_terminal._retry import RetryPolicy, RetryRun, StopReason
from grpc_terminal._retrying import checked_policy

__all__ = ["AioRetryingStream", "aio_retry_interceptors"]

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _AioUU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _AioUS = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
else:
    _AioUU, _AioUS = grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor


class _AioRetryUnaryUnary(_AioUU):
    """Retries aio unary-unary calls; cancelling the call cancels a backoff as well."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        run = RetryRun(self.policy, client_call_details.timeout)
        while True:
            call = await continuation(client_call_details._replace(timeout=run.timeout()), request)
            try:
                await call
            except Exception as err:
                wait = run.failed(err)
                if wait is None:
                    run.end(err)
                    return call
                # grpc.aio cancels this interceptor's task when the call is
                # cancelled: the sleep ends with asyncio.CancelledError.
                await self.policy.async_sleep(wait)
                continue
            run.succeeded()
            return call


class AioRetryingStream(AioUnaryStreamCall):
    """An aio response stream re-started while nothing has reached the caller.

    The typed call of the current attempt is the one it delegates to.
    ``cancel()`` ends a backoff at once: the reader then gets
    ``asyncio.CancelledError``, as grpc.aio gives for a cancelled call, and
    the call answers ``CANCELLED`` (an :class:`AioLocallyCancelled` stands in
    for it).

    Args:
        policy: the retry policy.
        run: the retried call's state.
        call: the first attempt's typed call.
        restart: starts the next attempt.
    """

    def __init__(
        self, policy: RetryPolicy, run: RetryRun, call: Any, restart: Callable[[], Awaitable[Any]]
    ) -> None:
        super().__init__(call)
        self._policy = policy
        self._run = run
        self._restart = restart
        self._delivered = False
        self._cancelled = False
        self._ended = False
        self._sleeper: asyncio.Future[Any] | None = None
        self._responses: AsyncIterator[Any] | None = None
        # The reader may iterate outside the context the call was made in
        # (an interceptor's span closed by then): judge failures, and call the
        # policy's hooks, in a copy of the caller's context, as the sync calls do.
        self._context = contextvars.copy_context()

    def _stand_in(self) -> None:
        """The call is over, cancelled while no attempt was running: answer as such from now on."""
        if not isinstance(self._inner, AioLocallyCancelled):
            self._inner = AioLocallyCancelled(self._inner)

    async def _retried(self) -> AsyncIterator[Any]:
        while True:
            try:
                async for item in self._inner:
                    self._delivered = True
                    yield item
            except Exception as err:
                if self._cancelled:
                    self._stand_in()
                    self._ended = True
                    raise asyncio.CancelledError() from None
                if self._delivered:
                    self._ended = True
                    self._context.copy().run(self._run.stop, err, StopReason.COMMITTED)
                    raise
                wait = self._context.copy().run(self._run.failed, err)
                if wait is None:
                    self._ended = True
                    self._context.copy().run(self._run.end, err)
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
        self._inner = call
        return True

    def __aiter__(self) -> AsyncIterator[Any]:
        if self._responses is None:
            self._responses = self._retried()
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
            self._cancelled = True
            self._stand_in()
            sleeper.cancel()
            return True
        if self._inner.done() and not self._delivered:
            # failed, and the reader has not judged it yet: no retry any more
            self._cancelled = True
            self._stand_in()
            return True
        if self._inner.cancel():
            self._cancelled = True
            return True
        return False


class _AioRetryUnaryStream(_AioUS):
    """Retries aio unary-stream calls while no response has reached the caller."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy

    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        run = RetryRun(self.policy, client_call_details.timeout)

        async def restart() -> Any:
            return await continuation(client_call_details._replace(timeout=run.timeout()), request)

        return AioRetryingStream(self.policy, run, await restart(), restart)


def aio_retry_interceptors(policy: RetryPolicy) -> list[grpc.aio.ClientInterceptor]:
    """aio client interceptors retrying unary-request calls under ``policy`` (one per kind).

    Calls with a streaming request get no retry interceptor: they are never
    re-sent. Put these *before* the typed-error interceptors (outermost), as
    :func:`grpc_terminal.aio_interceptors` does.

    Args:
        policy: the retry policy.

    Raises:
        TypeError: ``policy`` is not a :class:`~grpc_terminal.RetryPolicy`.
    """
    checked = checked_policy(policy)
    interceptors: list[Any] = [_AioRetryUnaryUnary(checked), _AioRetryUnaryStream(checked)]
    return interceptors
