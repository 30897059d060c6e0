"""Wrapping a method handler: every RPC kind, sync and aio, around one Translator.

What differs between the edges is only how a status is sent: the sync edge
(``grpc.server``) sets it on the context and lets grpc send it when the
handler's ``abort`` exception reaches grpc; the aio edge (and sync handlers
on an aio server) send it at once with ``abort``.

Every way out of a wrapped handler goes through here: a raised exception
(:meth:`Translator.translate`), a status the handler set itself with
``abort``/``abort_with_status``/``set_code`` (:meth:`Translator.handler_status`:
metadata cleaned, trailers fitted into the budget, ``PERMISSION_DENIED``
masked when asked), and a normal return (trailing metadata cleaned).

Kept whole (a little over the ~400-line guide): the sync and aio wrappers of the
four RPC kinds share one class so that they differ only at the edge.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent import futures
from typing import Any, NoReturn, TypeAlias, cast

import grpc
import grpc.aio

from grpc_terminal._contexts import SYNC_CONTEXT, AioContext, SyncRecorder, text_of
from grpc_terminal._options import ServerOptions
from grpc_terminal._translate import HandlerStatus, Translator, group_leaves, is_group
from grpc_terminal._validate import validating

__all__ = ["CONTROL_FLOW", "DEFAULT_WORKERS", "HandlerWrapper"]

_OK = grpc.StatusCode.OK

#: Exceptions that control the flow of the program, not the RPC's outcome:
#: they pass through the interceptors untouched (so does a group holding one).
CONTROL_FLOW: tuple[type[BaseException], ...] = (
    KeyboardInterrupt,
    SystemExit,
    GeneratorExit,
    asyncio.CancelledError,
)

#: Attributes grpc reads from a handler's behaviour function (``grpc.experimental``).
_HANDLER_ATTRIBUTES = ("experimental_non_blocking", "experimental_thread_pool")

#: A grpc method-handler builder (``grpc.unary_unary_rpc_method_handler`` and its kin).
_Build: TypeAlias = Callable[..., "grpc.RpcMethodHandler[Any, Any]"]

#: Threads of the pool that drives sync streaming handlers on an aio server.
DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)


def _passes_through(exc: BaseException) -> bool:
    if isinstance(exc, CONTROL_FLOW):
        return True
    if is_group(exc):
        return any(isinstance(member, CONTROL_FLOW) for member in group_leaves(exc))
    return False


def _bare(exc: BaseException) -> bool:
    return type(exc) is Exception and not exc.args


def _is_abort(exc: BaseException) -> bool:
    """The bare ``Exception()`` that a sync ``context.abort`` raises (maybe inside a group)."""
    if is_group(exc):
        return any(_bare(member) for member in group_leaves(exc))
    return _bare(exc)


def _abort_error(exc: BaseException) -> BaseException:
    """grpc.aio's ``AbortError`` for an abort that a task group wrapped, else ``exc``.

    grpc.aio ends an aborted RPC quietly only when its own AbortError comes back.
    """
    if is_group(exc):
        for member in group_leaves(exc):
            if isinstance(member, grpc.aio.AbortError):
                return member
    return exc


def _set_code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) and code is not _OK else None


def _failed(code: object) -> bool:
    """A code the handler set that makes grpc send a failure."""
    return code is not None and code is not _OK and code != 0


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


def _keep_attributes(wrapper: Callable[..., Any], behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``wrapper`` the attributes grpc reads from ``behavior`` (non-blocking, thread pool)."""
    for name in _HANDLER_ATTRIBUTES:
        try:
            if hasattr(behavior, name):
                setattr(wrapper, name, getattr(behavior, name))
        except Exception:  # an object that refuses: grpc reads nothing from ours then
            pass
    return wrapper


class HandlerWrapper:
    """What both interceptors share: the translator and the per-kind wrapping.

    Args:
        options: the interceptor's options (it is one).
    """

    def __init__(self, options: ServerOptions) -> None:
        self.translator = Translator(options)
        self.validate = options.validate
        # method -> (the handler grpc gave us, our wrapped handler). Generic
        # handlers hand back the same object for every call, so wrapping
        # happens once per method instead of once per RPC.
        self._wrapped: dict[tuple[str, bool], tuple[Any, grpc.RpcMethodHandler[Any, Any]]] = {}
        self.thread_pool: futures.Executor | None = None
        self._own_pool: futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def executor(self) -> futures.Executor:
        """The threads that drive sync streaming handlers on an aio server.

        The pool given as ``thread_pool``, else one of our own, created on
        first use: never the event loop's default executor, which belongs to
        the application (``asyncio.to_thread``).
        """
        if self.thread_pool is not None:
            return self.thread_pool
        with self._pool_lock:
            if self._own_pool is None:
                self._own_pool = futures.ThreadPoolExecutor(
                    max_workers=DEFAULT_WORKERS, thread_name_prefix="grpc-terminal"
                )
            return self._own_pool

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

    def _sync_context(self, context: Any, method: str) -> Any:
        if hasattr(context, "trailing_metadata"):
            return context  # grpc.server's own: it has getters, and abort sends nothing yet
        return SyncRecorder(context, self.translator, method)

    def fail_sync(self, exc: BaseException, context: Any, method: str) -> NoReturn:
        """Send the status for ``exc`` from a sync handler; always raises.

        On ``grpc.server`` the status goes out when grpc catches the
        exception ``context.abort`` raises, so a ``BaseException`` that is
        not an ``Exception`` is replaced by it (re-raising it would leave the
        RPC open); on an aio server the status is sent at once and ``exc``
        re-raised.
        """
        recorder = isinstance(context, SyncRecorder)
        if recorder and context.aborted:
            raise exc  # the handler's abort already sent the status
        code = context.code()
        if not recorder and _is_abort(exc) and code is not None:
            # grpc.server: abort() or abort_with_status() set the status; grpc sends it after us.
            fixed = self.translator.handler_status(
                exc, method, code, text_of(context.details()), context.trailing_metadata(),
                aborted=True, aio=False,
            )
            self._apply(context, fixed, text_of(context.details()))
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        kept = code if isinstance(code, grpc.StatusCode) and code is not _OK else None
        if kept is not None:
            fixed = self.translator.handler_status(
                exc, method, kept, text_of(context.details()) or kept.name, context.trailing_metadata(),
                aborted=False, aio=recorder,
            )
            self._send_sync(context, fixed.code, fixed.details, fixed.trailing_metadata)
            raise exc
        encoded = self.translator.translate(exc, method, context.trailing_metadata() or ())
        self._send_sync(context, encoded.code, encoded.message, encoded.trailing_metadata)
        raise exc

    @staticmethod
    def _send_sync(context: Any, code: grpc.StatusCode, details: str, trailers: tuple[Any, ...]) -> None:
        if isinstance(context, SyncRecorder):
            context.send(code, details, trailers)
            return
        context.set_trailing_metadata(trailers)
        context.abort(code, details)  # raises: grpc sends the status when it catches that

    @staticmethod
    def _apply(context: Any, fixed: HandlerStatus, details: str) -> None:
        """Put a fixed handler status on a context whose status is sent when the handler is done."""
        if fixed.masked:
            context.set_code(fixed.code)
        if fixed.changed:
            context.set_trailing_metadata(fixed.trailing_metadata)
            if fixed.details != details:
                context.set_details(fixed.details)

    def finished(self, context: Any, method: str, aio: bool) -> HandlerStatus | None:
        """After a handler returned: the status it set, made sendable; None when there is nothing to fix.

        On success only invalid trailing metadata is dropped (big trailers on a
        success are left to grpc, as without us).
        """
        code = context.code()
        trailers = context.trailing_metadata()
        if not _failed(code) and not trailers:
            return None
        details = text_of(context.details())
        if _failed(code):
            return self.translator.handler_status(
                None, method, code, details, trailers, aborted=False, aio=aio
            )
        message, cleaned, changed = self.translator.clean(_OK, details, trailers, fit=False)
        return HandlerStatus(_OK, message, cleaned, False, changed)

    def finish_sync(self, context: Any, method: str) -> None:
        """After a sync handler returned: :meth:`finished`, put on its context."""
        recorder = isinstance(context, SyncRecorder)
        if recorder and context.aborted:
            return
        fixed = self.finished(context, method, aio=recorder)
        if fixed is not None:
            self._apply(context, fixed, text_of(context.details()))

    def sync_unary(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        """A sync handler returning its response (or non-blocking: a third argument, the sender)."""

        def handler(request: Any, context: Any, *rest: Any) -> Any:
            ctx = self._sync_context(context, method)
            try:
                result = behavior(request, ctx, *rest)
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                self.fail_sync(exc, ctx, method)
            if not rest:  # a non-blocking handler is not done when it returns
                self.finish_sync(ctx, method)
            return result

        return _keep_attributes(handler, behavior)

    def sync_stream(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        def handler(request: Any, context: Any) -> Iterator[Any]:
            ctx = self._sync_context(context, method)
            try:
                yield from behavior(request, ctx)
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                self.fail_sync(exc, ctx, method)
            self.finish_sync(ctx, method)

        return _keep_attributes(handler, behavior)

    # -- the aio edge -------------------------------------------------------------

    async def fail_aio(self, exc: BaseException, context: Any, aborted: bool, method: str) -> NoReturn:
        """Send the status for ``exc`` from an async handler, then raise.

        grpc's ``AbortError`` goes up for an ``Exception`` (grpc expects it);
        any other ``BaseException`` is re-raised once the status is sent.
        """
        if aborted or isinstance(exc, grpc.aio.AbortError):
            raise _abort_error(exc)  # the status is already on its way
        kept = _set_code(context)
        if kept is not None:
            fixed = self.translator.handler_status(
                exc, method, kept, text_of(context.details()) or kept.name, context.trailing_metadata(),
                aborted=False, aio=True,
            )
            code, message, trailers = fixed.code, fixed.details, fixed.trailing_metadata
        else:
            encoded = self.translator.translate(exc, method, context.trailing_metadata() or ())
            code, message, trailers = encoded.code, encoded.message, encoded.trailing_metadata
        try:
            # grpc falls back to what the handler set when abort() gets none: replace it first.
            context.set_trailing_metadata(trailers)
            context.set_details(message)
            await context.abort(code, message, tuple(trailers))
        except grpc.aio.AbortError:
            if isinstance(exc, Exception):
                raise
        except grpc.aio.UsageError:
            pass  # aborted before: that first status stands
        raise exc

    def finish_aio(self, context: Any, aborted: bool, method: str) -> None:
        """After an async handler returned: :meth:`finished`, put on its context."""
        if aborted:
            return
        fixed = self.finished(context, method, aio=True)
        if fixed is not None:
            self._apply(context, fixed, text_of(context.details()))

    def aio_unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> Any:
            proxy = AioContext(context, self.translator, method)
            try:
                result = await behavior(request, proxy)
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await self.fail_aio(exc, context, proxy.aborted, method)
            self.finish_aio(context, proxy.aborted, method)
            return result

        return handler

    def aio_agen(self, behavior: Callable[..., AsyncIterator[Any]], method: str) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            proxy = AioContext(context, self.translator, method)
            try:
                async for response in behavior(request, proxy):
                    yield response
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await self.fail_aio(exc, context, proxy.aborted, method)
            self.finish_aio(context, proxy.aborted, method)

        return handler

    def aio_sync_stream(
        self, behavior: Callable[..., Iterator[Any]], method: str, request_streaming: bool
    ) -> Callable[..., Any]:
        """A sync response generator on an aio server, driven from the loop.

        grpcio runs such generators in a thread that runs ahead of the
        writes; aborting from that thread while a message is still being
        written fails with GRPC_CALL_ERROR_TOO_MANY_OPERATIONS. Pulling one
        item at a time (in :meth:`executor`'s threads, never the loop's
        default executor) keeps writes and the final status in order; the
        handler still gets grpcio's sync context.
        """
        sync_context = SYNC_CONTEXT

        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            executor = self.executor()
            end = object()
            ctx = SyncRecorder(sync_context(context), self.translator, method)
            try:
                if request_streaming:
                    request = _blocking_iter(request, loop)
                responses = behavior(request, ctx)
                while (item := await loop.run_in_executor(executor, next, responses, end)) is not end:
                    yield item
            except BaseException as exc:
                if _passes_through(exc):
                    raise
                await self.fail_aio(exc, context, ctx.aborted, method)
            self.finish_sync(ctx, method)

        return handler

    # -- wrapping a method handler ------------------------------------------------

    def wrap(
        self, handler: grpc.RpcMethodHandler[Any, Any], method: str, aio: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """``handler`` with its behaviour wrapped for its kind and style; all else kept."""
        # grpc-stubs type these builders' parameters as bare ``Callable`` (unknown): hence the casts.
        kinds: tuple[tuple[str, bool, _Build], ...] = (
            ("unary_unary", False, cast(_Build, grpc.unary_unary_rpc_method_handler)),  # pyright: ignore[reportUnknownMemberType]
            ("stream_unary", True, cast(_Build, grpc.stream_unary_rpc_method_handler)),  # pyright: ignore[reportUnknownMemberType]
            ("unary_stream", False, cast(_Build, grpc.unary_stream_rpc_method_handler)),  # pyright: ignore[reportUnknownMemberType]
            ("stream_stream", True, cast(_Build, grpc.stream_stream_rpc_method_handler)),  # pyright: ignore[reportUnknownMemberType]
        )
        for name, request_streaming, build in kinds:
            behavior = getattr(handler, name, None)
            if behavior is None:
                continue
            if self.validate is not None:
                checked = validating(behavior, self.validate, request_streaming)
                behavior = _keep_attributes(checked, behavior)
            if name.endswith("unary"):
                wrapped = self._unary(behavior, method, aio)
            else:
                wrapped = self._stream(behavior, method, aio, request_streaming)
            replace: _Build | None = getattr(handler, "_replace", None)
            if callable(replace):  # grpc's own handlers are namedtuples: keep every field
                result: grpc.RpcMethodHandler[Any, Any] = replace(**{name: wrapped})
                return result
            return build(
                wrapped,
                # grpc-stubs type both as bare ``Callable`` (unknown parameters).
                request_deserializer=handler.request_deserializer,  # pyright: ignore[reportUnknownMemberType]
                response_serializer=handler.response_serializer,  # pyright: ignore[reportUnknownMemberType]
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
        if aio and SYNC_CONTEXT is not None:
            return self.aio_sync_stream(behavior, method, request_streaming)
        if not aio and getattr(behavior, "experimental_non_blocking", False):
            return self.sync_unary(behavior, method)  # returns at once; responses go to the sender
        return self.sync_stream(behavior, method)
