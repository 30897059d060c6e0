"""The benchmark service and the interceptor variants compared.

One service, ``bench.Bench``, with a unary method and a server-streaming
method. The request's value says what the handler does: ``ok`` answers,
``raise`` raises a terminal error (what a grpc-terminal user writes), ``abort``
calls ``context.abort`` with the same code and message (what a user of plain
grpcio writes), ``status`` builds the same ``google.rpc.Status`` grpc-terminal
sends (ProvisionFailureDetail + ErrorInfo, same message) by hand and calls
``context.abort_with_status(rpc_status.to_status(...))`` (what a user of
grpcio-status writes to send the same details), ``plain`` raises an ordinary
exception (grpcio sends UNKNOWN).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import grpc
import grpc.aio
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import grpc_terminal as gt

__all__ = [
    "CLIENT_VARIANTS",
    "KINDS",
    "SERVER_VARIANTS",
    "server_variants",
    "STREAM_RESPONSES",
    "Msg",
    "AioProxyChannel",
    "SyncProxyChannel",
    "aio_client_interceptors",
    "aio_handlers",
    "aio_server_interceptors",
    "hand_written_decode",
    "hand_written_status",
    "method_path",
    "sync_client_interceptors",
    "sync_handlers",
    "sync_server_interceptors",
]

Msg = wrappers_pb2.StringValue
SERVICE = "bench.Bench"
KINDS = ("unary", "stream")
_METHODS = {"unary": "Unary", "stream": "ServerStream"}
#: Responses per server-streaming call.
STREAM_RESPONSES = 10
TERMINAL_MESSAGE = "Okta E0000038: user 'jdoe' is SUSPENDED"

SERVER_VARIANTS = ("none", "passthrough", "noop", "ours", "grpc-interceptor")
# "ours" is what a user gets by default: gt.intercept_channel / gt.aio_intercept_channel
# (multicallables wrapped, no interceptor chain); "ours-interceptors" is the same
# conversion as grpc interceptors (gt.aio_interceptors(), and what
# intercept_channel(retry=...) builds on).
CLIENT_VARIANTS = ("none", "noop", "ours", "ours-interceptors", "proxy")


def server_variants() -> tuple[str, ...]:
    """The server variants this environment can run (grpc-interceptor is optional)."""
    try:
        import grpc_interceptor  # noqa: F401
    except ImportError:
        return tuple(v for v in SERVER_VARIANTS if v != "grpc-interceptor")
    return SERVER_VARIANTS


def method_path(kind: str) -> str:
    return f"/{SERVICE}/{_METHODS[kind]}"


class Boom(Exception):
    """An ordinary application exception."""


def hand_written_status() -> grpc.Status:
    """The status grpc-terminal sends for the benchmark's terminal error, built by hand.

    What a handler on plain grpcio + grpcio-status writes to send the same
    details: built on every call, as a handler would.
    """
    detail = any_pb2.Any()
    detail.Pack(gt.ProvisionFailureDetail(reason=gt.Reason.USER_NOT_PROVISIONABLE.value,
                                          detail=TERMINAL_MESSAGE))
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason="USER_NOT_PROVISIONABLE", domain="grpc-terminal"))
    status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message=TERMINAL_MESSAGE,
                               details=[detail, info])
    return rpc_status.to_status(status)


def _fail_sync(mode: str, context: grpc.ServicerContext) -> None:
    if mode == "raise":
        raise gt.UserNotProvisionable(TERMINAL_MESSAGE)
    if mode == "abort":
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, TERMINAL_MESSAGE)
    if mode == "status":
        context.abort_with_status(hand_written_status())
    if mode == "plain":
        raise Boom(TERMINAL_MESSAGE)


async def _fail_aio(mode: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if mode == "raise":
        raise gt.UserNotProvisionable(TERMINAL_MESSAGE)
    if mode == "abort":
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, TERMINAL_MESSAGE)
    if mode == "status":
        await context.abort_with_status(hand_written_status())
    if mode == "plain":
        raise Boom(TERMINAL_MESSAGE)


_DESER, _SER = Msg.FromString, Msg.SerializeToString
_OK = Msg(value="ok")
_ITEM = Msg(value="item")


def sync_handlers() -> grpc.GenericRpcHandler[Any, Any]:
    def unary(request: Msg, context: grpc.ServicerContext) -> Msg:
        _fail_sync(request.value, context)
        return _OK

    def stream(request: Msg, context: grpc.ServicerContext) -> Iterator[Msg]:
        _fail_sync(request.value, context)
        for _ in range(STREAM_RESPONSES):
            yield _ITEM

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, _DESER, _SER),
            "ServerStream": grpc.unary_stream_rpc_method_handler(stream, _DESER, _SER),
        },
    )


def aio_handlers() -> grpc.GenericRpcHandler[Any, Any]:
    async def unary(request: Msg, context: grpc.aio.ServicerContext[Any, Any]) -> Msg:
        await _fail_aio(request.value, context)
        return _OK

    async def stream(request: Msg, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Msg]:
        await _fail_aio(request.value, context)
        for _ in range(STREAM_RESPONSES):
            yield _ITEM

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, _DESER, _SER),
            "ServerStream": grpc.unary_stream_rpc_method_handler(stream, _DESER, _SER),
        },
    )


# -- server interceptor variants ------------------------------------------------------

Continuation = Callable[[grpc.HandlerCallDetails], Any]


class _SyncPassthrough(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Returns the handler unchanged: the floor of any interceptor at all."""

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        return continuation(details)


class _AioPassthrough(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]], details: Any
    ) -> Any:
        return await continuation(details)


def _sync_wrap(handler: Any) -> Any:
    """The handler with its behaviour wrapped in a try/except that does nothing."""
    if handler is None:
        return None
    if handler.unary_unary is not None:
        behavior = handler.unary_unary

        def unary(request: Any, context: Any) -> Any:
            try:
                return behavior(request, context)
            except Exception:
                raise

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        gen = handler.unary_stream

        def stream(request: Any, context: Any) -> Iterator[Any]:
            try:
                yield from gen(request, context)
            except Exception:
                raise

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )
    return handler


def _aio_wrap(handler: Any) -> Any:
    if handler is None:
        return None
    if handler.unary_unary is not None:
        behavior = handler.unary_unary

        async def unary(request: Any, context: Any) -> Any:
            try:
                return await behavior(request, context)
            except Exception:
                raise

        return grpc.unary_unary_rpc_method_handler(
            unary, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        agen = handler.unary_stream

        async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for item in agen(request, context):
                    yield item
            except Exception:
                raise

        return grpc.unary_stream_rpc_method_handler(
            stream, handler.request_deserializer, handler.response_serializer
        )
    return handler


class _SyncNoop(grpc.ServerInterceptor):  # type: ignore[type-arg]
    """Wraps each behaviour in a do-nothing try/except: the floor of an exception-mapping interceptor."""

    def intercept_service(self, continuation: Continuation, details: grpc.HandlerCallDetails) -> Any:
        return _sync_wrap(continuation(details))


class _AioNoop(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]], details: Any
    ) -> Any:
        return _aio_wrap(await continuation(details))


def sync_server_interceptors(variant: str) -> list[Any]:
    if variant == "none":
        return []
    if variant == "passthrough":
        return [_SyncPassthrough()]
    if variant == "noop":
        return [_SyncNoop()]
    if variant == "ours":
        return [gt.ServerInterceptor()]
    if variant == "grpc-interceptor":
        from grpc_interceptor import ExceptionToStatusInterceptor

        return [ExceptionToStatusInterceptor()]
    raise ValueError(f"unknown server variant {variant!r}")


def aio_server_interceptors(variant: str) -> list[Any]:
    if variant == "none":
        return []
    if variant == "passthrough":
        return [_AioPassthrough()]
    if variant == "noop":
        return [_AioNoop()]
    if variant == "ours":
        return [gt.AioServerInterceptor()]
    if variant == "grpc-interceptor":
        from grpc_interceptor.exception_to_status import AsyncExceptionToStatusInterceptor

        return [AsyncExceptionToStatusInterceptor()]
    raise ValueError(f"unknown server variant {variant!r}")


# -- client interceptor variants --------------------------------------------------------


class _SyncClientNoop(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    """Hands the call straight back: the floor of any sync client interceptor."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(details, request)


class _AioUUNoop(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


class _AioUSNoop(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[type-arg]
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


# -- the "proxy" client variant: typed errors without grpc's interceptor machinery ------------
#
# Not part of the package: a measured floor for a channel wrapper that converts
# errors in the stub call itself (try/except costs nothing when nothing is raised).


class _SyncProxyIterator:
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __iter__(self) -> _SyncProxyIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except grpc.RpcError as err:
            raise gt.from_rpc_error(err) from err


class _SyncProxyCallable:
    def __init__(self, inner: Any, streaming: bool) -> None:
        self._inner, self._streaming = inner, streaming

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        try:
            result = self._inner(request, **kwargs)
        except grpc.RpcError as err:
            raise gt.from_rpc_error(err) from err
        return _SyncProxyIterator(result) if self._streaming else result


class SyncProxyChannel:
    """Just enough of a channel for the benchmark's two stubs."""

    def __init__(self, raw: grpc.Channel) -> None:
        self._raw = raw

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        return _SyncProxyCallable(self._raw.unary_unary(method, **kwargs), False)

    def unary_stream(self, method: str, **kwargs: Any) -> Any:
        return _SyncProxyCallable(self._raw.unary_stream(method, **kwargs), True)


class _AioProxyCallable:
    def __init__(self, inner: Any, streaming: bool) -> None:
        self._inner, self._streaming = inner, streaming

    async def _unary(self, request: Any, kwargs: Any) -> Any:
        try:
            return await self._inner(request, **kwargs)
        except grpc.RpcError as err:
            raise gt.from_rpc_error(err) from err

    async def _stream(self, request: Any, kwargs: Any) -> AsyncIterator[Any]:
        try:
            async for item in self._inner(request, **kwargs):
                yield item
        except grpc.RpcError as err:
            raise gt.from_rpc_error(err) from err

    def __call__(self, request: Any, **kwargs: Any) -> Any:
        return self._stream(request, kwargs) if self._streaming else self._unary(request, kwargs)


class AioProxyChannel:
    def __init__(self, raw: grpc.aio.Channel) -> None:
        self._raw = raw

    def unary_unary(self, method: str, **kwargs: Any) -> Any:
        return _AioProxyCallable(self._raw.unary_unary(method, **kwargs), False)

    def unary_stream(self, method: str, **kwargs: Any) -> Any:
        return _AioProxyCallable(self._raw.unary_stream(method, **kwargs), True)


def hand_written_decode(err: grpc.RpcError) -> tuple[Any, ...]:
    """What a grpcio-status client writes to read those details back: the status and its two details."""
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    if status is None:
        return ()
    detail, info = gt.ProvisionFailureDetail(), error_details_pb2.ErrorInfo()
    for packed in status.details:
        if packed.Is(detail.DESCRIPTOR):
            packed.Unpack(detail)
        elif packed.Is(info.DESCRIPTOR):
            packed.Unpack(info)
    return status, detail, info


def sync_client_interceptors(variant: str) -> list[Any] | None:
    """None means: use the raw channel, not ``grpc.intercept_channel``."""
    if variant in ("none", "grpcio-status"):
        return None
    if variant == "noop":
        return [_SyncClientNoop()]
    if variant in ("ours", "proxy"):
        return []  # gt.intercept_channel / SyncProxyChannel
    if variant == "ours-interceptors":
        from grpc_terminal._client import SyncInterceptor

        return [SyncInterceptor()]
    raise ValueError(f"unknown client variant {variant!r}")


def aio_client_interceptors(variant: str) -> list[Any] | None:
    if variant in ("none", "grpcio-status"):
        return None
    if variant == "noop":
        return [_AioUUNoop(), _AioUSNoop()]
    if variant == "ours-interceptors":
        return list(gt.aio_interceptors())
    if variant in ("ours", "proxy"):
        return None  # gt.aio_intercept_channel / AioProxyChannel around the raw channel
    raise ValueError(f"unknown client variant {variant!r}")
