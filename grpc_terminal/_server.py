"""Server interceptors: the sync and aio edges around one Translator.

Both interceptors wrap every RPC kind. What differs is only how a status is
sent: the sync edge (``grpc.server``, and sync handlers registered on an aio
server) calls ``context.abort`` which raises, the aio edge awaits it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from grpc_terminal._codec import DEFAULT_DOMAIN, TRAILER_BUDGET
from grpc_terminal._translate import ErrorEvent, ErrorMapping, Translator

__all__ = ["AsyncServerInterceptor", "ServerInterceptor"]

_OK = grpc.StatusCode.OK

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _SyncBase = grpc.ServerInterceptor[Any, Any]
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _SyncBase, _AioBase = grpc.ServerInterceptor, grpc.aio.ServerInterceptor


class _Recorder:
    """Remembers the status a sync handler set on an aio server's context.

    grpcio's ``_SyncServicerContext`` has setters but no getters; without
    them an earlier ``set_code`` or trailing metadata could not be kept.
    """

    def __init__(self, context: Any) -> None:
        self._context = context
        self._code: grpc.StatusCode | None = None
        self._details: str | None = None
        self._trailers: Any = ()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_code(self, code: grpc.StatusCode) -> None:
        self._code = code
        self._context.set_code(code)

    def abort(self, code: grpc.StatusCode, details: str = "", *rest: Any) -> None:
        self._code, self._details = code, details
        self._context.abort(code, details, *rest)

    def set_details(self, details: str) -> None:
        self._details = details
        self._context.set_details(details)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailers = tuple(trailing_metadata)
        self._context.set_trailing_metadata(trailing_metadata)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailers


def _sync_context_factory() -> Any:
    """grpcio's own sync-handler context class for aio servers, if it has one."""
    import importlib

    cygrpc = importlib.import_module("grpc._cython.cygrpc")
    return getattr(cygrpc, "_SyncServicerContext", None)


_SYNC_CONTEXT = _sync_context_factory()


def _blocking_iter(requests: AsyncIterator[Any], loop: asyncio.AbstractEventLoop) -> Iterator[Any]:
    """An aio request stream read from a worker thread, for a sync handler."""
    iterator = requests.__aiter__()

    async def pull() -> Any:
        return await iterator.__anext__()

    while True:
        try:
            yield asyncio.run_coroutine_threadsafe(pull(), loop).result()
        except StopAsyncIteration:
            return


def _text(details: object) -> str:
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details if isinstance(details, str) else ""


def _set_code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) and code is not _OK else None


class _Core:
    """What both interceptors share: the translator and the per-kind wrapping."""

    def __init__(self, errors: ErrorMapping | None, **options: Any) -> None:
        self.translator = Translator(errors, **options)
        # method -> (the handler grpc gave us, our wrapped handler). Generic
        # handlers hand back the same object for every call, so wrapping
        # happens once per method instead of once per RPC.
        self._wrapped: dict[tuple[str, bool], tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}

    def wrapped(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, aio: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``wrap``, remembered per method while grpc hands back the same handler."""
        cached = self._wrapped.get((method, aio))
        if cached is not None and cached[0] is handler:
            return cached[1]
        result = self.wrap(handler, method, aio)
        if len(self._wrapped) < 10_000:
            self._wrapped[(method, aio)] = (handler, result)
        return result

    # -- the sync edge ----------------------------------------------------------

    def fail_sync(self, exc: Exception, context: Any, method: str) -> None:
        """Send the status for ``exc`` from a sync handler; always raises."""
        kept = _set_code(context)
        aborted = isinstance(exc, grpc.aio.AbortError) or (type(exc) is Exception and not exc.args)
        if kept is not None:
            self.translator.handler_status(exc, method, kept, aborted)
            if aborted:
                raise exc  # context.abort() already set the status: grpc sends it
            context.abort(kept, _text(context.details()) or kept.name)
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        encoded = self.translator.translate(exc, method, context.trailing_metadata() or ())
        context.set_trailing_metadata(encoded.trailing_metadata)
        context.abort(encoded.code, encoded.message)
        raise exc  # not reached: abort raises

    def sync_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def handler(request: Any, context: Any) -> Any:
            if not hasattr(context, "trailing_metadata"):
                context = _Recorder(context)
            try:
                return behavior(request, context)
            except Exception as exc:
                self.fail_sync(exc, context, method)

        return handler

    def sync_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def handler(request: Any, context: Any) -> Iterator[Any]:
            if not hasattr(context, "trailing_metadata"):
                context = _Recorder(context)
            try:
                yield from behavior(request, context)
            except Exception as exc:
                self.fail_sync(exc, context, method)

        return handler

    # -- the aio edge -------------------------------------------------------------

    async def fail_aio(self, exc: Exception, context: Any, method: str) -> None:
        """Send the status for ``exc`` from an async handler; always raises."""
        kept = _set_code(context)
        aborted = isinstance(exc, grpc.aio.AbortError)
        if kept is not None:
            self.translator.handler_status(exc, method, kept, aborted)
        if aborted:
            raise exc  # the status is already on its way
        if kept is not None:
            code, message, trailers = kept, _text(context.details()) or kept.name, None
        else:
            encoded = self.translator.translate(exc, method, context.trailing_metadata() or ())
            code, message, trailers = encoded.code, encoded.message, encoded.trailing_metadata
        try:
            if trailers is None:
                await context.abort(code, message)
            else:
                await context.abort(code, message, trailers)
        except grpc.aio.UsageError:
            raise exc from None  # aborted before: that first status stands
        raise exc  # not reached: abort raises AbortError

    def aio_unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> Any:
            try:
                return await behavior(request, context)
            except Exception as exc:
                await self.fail_aio(exc, context, method)

        return handler

    def aio_agen(self, behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            try:
                async for response in behavior(request, context):
                    yield response
            except Exception as exc:
                await self.fail_aio(exc, context, method)

        return handler

    def aio_sync_stream(
        self, behavior: Callable[..., Iterator[Any]], method: str, request_streaming: bool
    ) -> Callable[..., Any]:
        """A sync response generator on an aio server, driven from the loop.

        grpcio runs such generators in a thread that runs ahead of the
        writes; aborting from that thread while a message is still being
        written fails with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS. Pulling one
        item at a time from the loop's executor keeps writes and the final
        status in order; the handler still gets grpcio's sync context.
        """
        sync_context = _SYNC_CONTEXT

        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            end = object()
            try:
                if request_streaming:
                    request = _blocking_iter(request, loop)
                responses = behavior(request, _Recorder(sync_context(context)))
                while (item := await loop.run_in_executor(None, next, responses, end)) is not end:
                    yield item
            except Exception as exc:
                await self.fail_aio(exc, context, method)

        return handler

    # -- wrapping a method handler ------------------------------------------------

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, aio: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` with every behaviour wrapped for its kind and style."""
        codec = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(handler.unary_unary, method, aio), **codec
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(handler.stream_unary, method, aio), **codec
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(handler.unary_stream, method, aio, False), **codec
            )
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(handler.stream_stream, method, aio, True), **codec
            )
        return handler

    def _unary(self, behavior: Callable[..., Any], method: str, aio: bool) -> Callable[..., Any]:
        if aio and inspect.iscoroutinefunction(behavior):
            return self.aio_unary(behavior, method)
        return self.sync_unary(behavior, method)

    def _stream(
        self, behavior: Callable[..., Any], method: str, aio: bool, request_streaming: bool
    ) -> Callable[..., Any]:
        if aio and inspect.isasyncgenfunction(behavior):
            return self.aio_agen(behavior, method)
        if aio and inspect.iscoroutinefunction(behavior):
            return self.aio_unary(behavior, method)  # context.write() style
        if aio and _SYNC_CONTEXT is not None:
            return self.aio_sync_stream(behavior, method, request_streaming)
        return self.sync_stream(behavior, method)


class _Configured:
    """Sync/aio interceptor options.

    ``errors`` maps your own exception classes to error classes (or to
    functions returning a StatusError); the most specific class wins. It is
    checked here, at construction. ``domain`` is the ErrorInfo domain.
    ``debug=True`` sends tracebacks of unexpected errors as DebugInfo (never
    in production; it is logged loudly). ``mask_permission_denied=True``
    sends PERMISSION_DENIED as a bare NOT_FOUND. ``budget`` caps the bytes of
    trailers sent (see ``TRAILER_BUDGET``). ``on_error`` is called with an
    :class:`ErrorEvent` for every failure translated; ``logger`` replaces the
    ``grpc_terminal.server`` logger.
    """

    def __init__(
        self,
        errors: ErrorMapping | None = None,
        *,
        domain: str = DEFAULT_DOMAIN,
        debug: bool = False,
        mask_permission_denied: bool = False,
        budget: int = TRAILER_BUDGET,
        on_error: Callable[[ErrorEvent], None] | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self._core = _Core(
            errors, domain=domain, debug=debug, mask_permission_denied=mask_permission_denied,
            budget=budget, on_error=on_error, logger=logger,
        )


class ServerInterceptor(_Configured, _SyncBase):
    """Sync server interceptor: raised exceptions become rich statuses (options: see _Configured)."""

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=False)


class AsyncServerInterceptor(_Configured, _AioBase):
    """grpc.aio server interceptor: raised exceptions become rich statuses (options: see _Configured)."""

    async def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=True)
