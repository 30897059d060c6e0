"""Typed aio calls: the one aio call proxy family every aio client path builds on.

:class:`AioCall` wraps one ``grpc.aio`` call so that its failures raise the
typed error (``_calls.typed_error``); its four kinds are what the typed aio
channel and the typed aio interceptors hand out, and the retrying response
stream (``_aio_retrying``) is one of them whose call changes between
attempts. :class:`AioLocallyCancelled` stands for a retried call the
application cancelled while no attempt was running.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from typing import Any

import grpc
import grpc.aio

from grpc_terminal._calls import LOCAL_CANCELLATION_DETAILS, TypedCall, cause_of

__all__ = [
    "AioCall",
    "AioLocallyCancelled",
    "AioStreamStreamCall",
    "AioStreamUnaryCall",
    "AioUnaryStreamCall",
    "AioUnaryUnaryCall",
]


class AioCall(TypedCall):
    """Delegation shared by the four aio call kinds: ``inner``, with typed failures.

    Args:
        inner: the ``grpc.aio`` call (or another aio call proxy).
    """

    def __getattr__(self, name: str) -> Any:
        # grpc.aio's intercepted calls read private state of the call they get
        # back (e.g. ``_done_writing_flag``); let them see the real call's.
        return getattr(self._inner, name)

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def done(self) -> bool:
        return bool(self._inner.done())

    def time_remaining(self) -> float | None:
        return self._inner.time_remaining()  # type: ignore[no-any-return]

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(self._relay(callback))

    async def initial_metadata(self) -> Any:
        return await self._inner.initial_metadata()

    async def trailing_metadata(self) -> Any:
        return await self._inner.trailing_metadata()

    async def code(self) -> grpc.StatusCode:
        return await self._inner.code()  # type: ignore[no-any-return]

    async def details(self) -> str:
        return await self._inner.details()  # type: ignore[no-any-return]

    async def debug_error_string(self) -> str:
        return await self._inner.debug_error_string()  # type: ignore[no-any-return]

    async def wait_for_connection(self) -> None:
        await self._inner.wait_for_connection()

    def _await(self) -> Generator[Any, None, Any]:
        try:
            awaited: Generator[Any, None, Any] = self._inner.__await__()
            return (yield from awaited)
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            async for response in self._inner:
                yield response
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)

    async def read(self) -> Any:
        try:
            return await self._inner.read()
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)

    async def write(self, request: Any) -> None:
        try:
            await self._inner.write(request)
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)

    async def done_writing(self) -> None:
        try:
            await self._inner.done_writing()
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)


class AioUnaryUnaryCall(AioCall, grpc.aio.UnaryUnaryCall[Any, Any]):
    """A typed ``grpc.aio.UnaryUnaryCall`` (awaited for its response)."""

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await()


class AioUnaryStreamCall(AioCall, grpc.aio.UnaryStreamCall[Any, Any]):
    """A typed ``grpc.aio.UnaryStreamCall`` (iterated, or read, for its responses)."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()


class AioStreamUnaryCall(AioCall, grpc.aio.StreamUnaryCall[Any, Any]):
    """A typed ``grpc.aio.StreamUnaryCall`` (awaited for its response)."""

    def __await__(self) -> Generator[Any, None, Any]:
        return self._await()


class AioStreamStreamCall(AioCall, grpc.aio.StreamStreamCall[Any, Any]):
    """A typed ``grpc.aio.StreamStreamCall`` (iterated, or read, for its responses)."""

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()


class AioLocallyCancelled:
    """An aio call the application cancelled while no attempt was running.

    It answers as grpc.aio's cancelled calls do (``cancelled()``,
    ``CANCELLED`` with grpc's details, empty metadata). Its deadline is the
    one of ``previous``, the attempt it stands in for, which also answers
    ``wait_for_connection()`` and grpc.aio's reads of private state.

    Args:
        previous: the last attempt's call.
    """

    def __init__(self, previous: Any) -> None:
        self._previous = previous

    def __getattr__(self, name: str) -> Any:
        return getattr(self._previous, name)

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return True

    def done(self) -> bool:
        return True

    def time_remaining(self) -> float | None:
        return self._previous.time_remaining()  # type: ignore[no-any-return]

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        callback(self)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        return grpc.aio.Metadata()

    async def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    async def details(self) -> str:
        return LOCAL_CANCELLATION_DETAILS

    async def debug_error_string(self) -> str:
        return ""

    async def wait_for_connection(self) -> None:
        await self._previous.wait_for_connection()
