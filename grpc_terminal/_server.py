"""Server interceptors: the sync and aio edges around one Translator.

Both interceptors wrap every RPC kind. What differs is only how a status is
sent: the sync edge (``grpc.server``) sets it on the context and lets grpc
send it when the handler's ``abort`` exception reaches grpc; the aio edge
(and sync handlers on an aio server) send it at once with ``abort``.

Every way out of a wrapped handler goes through here: a raised exception
(:meth:`Translator.translate`), a status the handler set itself with
``abort``/``abort_with_status``/``set_code`` (:meth:`Translator.handler_status`:
metadata cleaned, trailers fitted into the budget, ``PERMISSION_DENIED``
masked when asked), and a normal return (trailing metadata cleaned).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, cast

import grpc
import grpc.aio

from grpc_terminal._options import ServerOptions
from grpc_terminal._translate import HandlerStatus, Translator, group_leaves, is_group

__all__ = ["AioServerInterceptor", "AsyncServerInterceptor", "ServerInterceptor"]

_OK = grpc.StatusCode.OK

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _SyncBase = grpc.ServerInterceptor[Any, Any]
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _SyncBase, _AioBase = grpc.ServerInterceptor, grpc.aio.ServerInterceptor

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


def _text(details: object) -> str:
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details if isinstance(details, str) else ""


def _set_code(context: Any) -> grpc.StatusCode | None:
    code = context.code()
    return code if isinstance(code, grpc.StatusCode) and code is not _OK else None


def _failed(code: object) -> bool:
    """A code the handler set that makes grpc send a failure."""
    return code is not None and code is not _OK and code != 0


class _Recorder:
    """A sync handler's context on an aio server (grpcio's ``_SyncServicerContext``).

    That context has setters but no getters: this remembers what the handler
    set. Its ``abort`` sends at once, so masking and cleaning happen here,
    before it is called.
    """

    def __init__(self, context: Any, core: _Core, method: str) -> None:
        self._context = context
        self._core = core
        self._method = method
        self._code: object = None
        self._details: str | None = None
        self._trailers: tuple[Any, ...] = ()
        self.aborted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_code(self, code: Any) -> None:
        self._code = code
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._details = details
        self._context.set_details(details)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailers = tuple(trailing_metadata)
        self._context.set_trailing_metadata(trailing_metadata)

    def abort(self, code: Any, details: str = "", trailing_metadata: tuple[Any, ...] = ()) -> None:
        if self.aborted or not isinstance(details, str) or not isinstance(trailing_metadata, tuple):
            self._context.abort(code, details, trailing_metadata)  # grpc's own outcome
            return
        details = details or self._details or ""
        trailers = trailing_metadata or self._trailers
        fixed = self._core.translator.handler_status(
            None, self._method, code, details, trailers, aborted=True, aio=True
        )
        self.send(fixed.code if fixed.masked else code, fixed.details, fixed.trailing_metadata)

    def send(self, code: Any, details: str, trailing_metadata: tuple[Any, ...]) -> None:
        """Send this status now (grpc's ``abort``, which does not raise here)."""
        self.aborted = True
        self._code, self._details, self._trailers = code, details, trailing_metadata
        self._context.set_trailing_metadata(trailing_metadata)
        self._context.abort(code, details, trailing_metadata)

    def code(self) -> Any:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._trailers


class _AioContext:
    """The ``grpc.aio`` context an async handler gets: grpc's own, but ``abort`` goes through us.

    grpc's ``abort`` sends the status at once, so its masking and cleaning
    must happen before; every other attribute is grpc's context itself.
    """

    __slots__ = ("_context", "_core", "_method", "aborted")

    def __init__(self, context: Any, core: _Core, method: str) -> None:
        self._context = context
        self._core = core
        self._method = method
        self.aborted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: Any, details: str = "", trailing_metadata: tuple[Any, ...] = ()) -> NoReturn:
        """Send ``code`` and ``details`` now and raise ``grpc.aio.AbortError`` (see grpc.aio)."""
        context = self._context
        if self.aborted or not isinstance(details, str) or not isinstance(trailing_metadata, tuple):
            await context.abort(code, details, trailing_metadata)  # grpc's own outcome
            raise AssertionError("grpc.aio abort returned")  # pragma: no cover - abort always raises
        self.aborted = True
        details = details or _text(context.details())
        trailers = trailing_metadata or tuple(context.trailing_metadata() or ())
        fixed = self._core.translator.handler_status(
            None, self._method, code, details, trailers, aborted=True, aio=True
        )
        context.set_trailing_metadata(fixed.trailing_metadata)
        context.set_details(fixed.details)
        await context.abort(fixed.code if fixed.masked else code, fixed.details, fixed.trailing_metadata)
        raise AssertionError("grpc.aio abort returned")  # pragma: no cover - abort always raises

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """``abort`` with a ``grpc.Status``'s code, details and trailing metadata."""
        await self.abort(status.code, status.details, status.trailing_metadata)


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


def _keep_attributes(wrapper: Callable[..., Any], behavior: Callable[..., Any]) -> Callable[..., Any]:
    """Give ``wrapper`` the attributes grpc reads from ``behavior`` (non-blocking, thread pool)."""
    for name in _HANDLER_ATTRIBUTES:
        try:
            if hasattr(behavior, name):
                setattr(wrapper, name, getattr(behavior, name))
        except Exception:  # an object that refuses: grpc reads nothing from ours then
            pass
    return wrapper


class _Core:
    """What both interceptors share: the translator and the per-kind wrapping."""

    def __init__(self, options: ServerOptions) -> None:
        self.translator = Translator(options)
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
        return _Recorder(context, self, method)

    def fail_sync(self, exc: BaseException, context: Any, method: str) -> NoReturn:
        """Send the status for ``exc`` from a sync handler; always raises.

        On ``grpc.server`` the status goes out when grpc catches the
        exception ``context.abort`` raises, so a ``BaseException`` that is
        not an ``Exception`` is replaced by it (re-raising it would leave the
        RPC open); on an aio server the status is sent at once and ``exc``
        re-raised.
        """
        recorder = isinstance(context, _Recorder)
        if recorder and context.aborted:
            raise exc  # the handler's abort already sent the status
        code = context.code()
        if not recorder and _is_abort(exc) and code is not None:
            # grpc.server: abort() or abort_with_status() set the status; grpc sends it after us.
            fixed = self.translator.handler_status(
                exc, method, code, _text(context.details()), context.trailing_metadata(),
                aborted=True, aio=False,
            )
            self._apply_sync(context, fixed, _text(context.details()))
            raise exc
        if isinstance(exc, grpc.aio.AbortError):
            raise exc
        kept = code if isinstance(code, grpc.StatusCode) and code is not _OK else None
        if kept is not None:
            fixed = self.translator.handler_status(
                exc, method, kept, _text(context.details()) or kept.name, context.trailing_metadata(),
                aborted=False, aio=recorder,
            )
            self._send_sync(context, fixed.code, fixed.details, fixed.trailing_metadata)
            raise exc
        encoded = self.translator.translate(exc, method, context.trailing_metadata() or ())
        self._send_sync(context, encoded.code, encoded.message, encoded.trailing_metadata)
        raise exc

    @staticmethod
    def _send_sync(context: Any, code: grpc.StatusCode, details: str, trailers: tuple[Any, ...]) -> None:
        if isinstance(context, _Recorder):
            context.send(code, details, trailers)
            return
        context.set_trailing_metadata(trailers)
        context.abort(code, details)  # raises: grpc sends the status when it catches that

    @staticmethod
    def _apply_sync(context: Any, fixed: HandlerStatus, details: str) -> None:
        """Put a fixed handler status on a ``grpc.server`` context (sent when the handler is done)."""
        if fixed.masked:
            context.set_code(fixed.code)
        if fixed.changed:
            context.set_trailing_metadata(fixed.trailing_metadata)
            if fixed.details != details:
                context.set_details(fixed.details)

    def finish_sync(self, context: Any, method: str) -> None:
        """After a sync handler returned: a status it set, made sendable; on success, invalid
        trailing metadata dropped (big trailers on a success are left to grpc, as without us)."""
        recorder = isinstance(context, _Recorder)
        if recorder and context.aborted:
            return
        code = context.code()
        trailers = context.trailing_metadata()
        if not _failed(code) and not trailers:
            return
        details = _text(context.details())
        if _failed(code):
            fixed = self.translator.handler_status(
                None, method, code, details, trailers, aborted=False, aio=recorder
            )
        else:
            message, cleaned, changed = self.translator.clean(_OK, details, trailers, fit=False)
            fixed = HandlerStatus(_OK, message, cleaned, False, changed)
        self._apply_sync(context, fixed, details)

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
                exc, method, kept, _text(context.details()) or kept.name, context.trailing_metadata(),
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
        """After an async handler returned: as :meth:`finish_sync`."""
        if aborted:
            return
        code = context.code()
        trailers = context.trailing_metadata()
        if not _failed(code) and not trailers:
            return
        details = _text(context.details())
        if _failed(code):
            fixed = self.translator.handler_status(
                None, method, code, details, trailers, aborted=False, aio=True
            )
        else:
            message, cleaned, changed = self.translator.clean(_OK, details, trailers, fit=False)
            fixed = HandlerStatus(_OK, message, cleaned, False, changed)
        if fixed.masked:
            context.set_code(fixed.code)
        if fixed.changed:
            context.set_trailing_metadata(fixed.trailing_metadata)
            if fixed.details != details:
                context.set_details(fixed.details)

    def aio_unary(self, behavior: Callable[..., Awaitable[Any]], method: str) -> Callable[..., Any]:
        async def handler(request: Any, context: Any) -> Any:
            proxy = _AioContext(context, self, method)
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
            proxy = _AioContext(context, self, method)
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
        sync_context = _SYNC_CONTEXT

        async def handler(request: Any, context: Any) -> AsyncIterator[Any]:
            loop = asyncio.get_running_loop()
            executor = self.executor()
            end = object()
            ctx = _Recorder(sync_context(context), self, method)
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
        if aio and _SYNC_CONTEXT is not None:
            return self.aio_sync_stream(behavior, method, request_streaming)
        if not aio and getattr(behavior, "experimental_non_blocking", False):
            return self.sync_unary(behavior, method)  # returns at once; responses go to the sender
        return self.sync_stream(behavior, method)


def _options_args() -> str:
    """The ``Args:`` section of :class:`ServerOptions`, written once, shown by both interceptors."""
    doc = ServerOptions.__doc__ or ""
    return "\n" + doc[doc.index("    Args:") : doc.index("    Raises:")].rstrip() + "\n"


_OPTIONS = _options_args()

_POOL_ARG = """        thread_pool: the executor whose threads drive sync streaming
            handlers on the aio server (pass the one you gave
            ``grpc.aio.server(migration_thread_pool=...)`` to share it). By
            default the interceptor creates its own, on first use, with
            ``DEFAULT_WORKERS`` threads named ``grpc-terminal-*``; the event
            loop's default executor is never used.
"""

_RULES = """
    What is sent (the full rules are under Guarantees in the README):

    * a raised :class:`StatusError` as it is; a mapped exception (``errors``)
      as its mapping gives; anything else as ``UNKNOWN`` with a generic
      message and a request id, the traceback logged under that id;
    * an exception group (``ExceptionGroup``, ``asyncio.TaskGroup``) as its
      member that matters most, nested groups included: the first terminal
      member, else the first StatusError or relayed ``grpc.RpcError``, else
      the mapped member with the most specific mapped class; ``UNKNOWN`` when
      no member is expected;
    * a failure received from a downstream call as what the peer said (its
      code, message and details) when it carries a rich status or a code our
      own transport never produces; otherwise its code with the message
      "upstream call failed: <CODE>" and a request id (our own grpc's text,
      naming hosts and addresses, is only logged); a downstream
      ``UNAUTHENTICATED`` is about this server's credentials: it is sent as
      ``INTERNAL`` "upstream rejected this server's credentials" (raise your
      own ``Unauthenticated`` to blame the caller);
    * a status the handler set itself (``abort``, ``abort_with_status``,
      ``set_code``, also when it returns normally) as set, with invalid
      trailing metadata dropped and the trailers kept within ``budget``.

    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` and
    ``asyncio.CancelledError`` (or a group holding one) pass through
    untouched; any other ``BaseException`` is sent as ``UNKNOWN`` (generic
    message and request id), then re-raised where grpc allows it.
"""


def _same_object(self: object, other: object) -> bool:
    return self is other


def _identity_hash(self: object) -> int:
    return id(self) >> 4


@dataclass(frozen=True, eq=False)
class ServerInterceptor(ServerOptions, _SyncBase):
    __doc__ = (
        "Interceptor for sync servers (``grpc.server``): raised exceptions become rich statuses.\n"
        + _RULES
        + """
    On ``grpc.server`` a ``BaseException`` is replaced by the exception
    grpc's ``abort`` raises (grpc would leave the RPC open otherwise); it is
    logged with its traceback. For ``grpc.aio`` servers use
    :class:`AioServerInterceptor` (grpc.aio refuses this class with a
    ``ValueError``).
"""
        + _OPTIONS
    )

    # An interceptor is an object with a life of its own, not a value: equal
    # only to itself (its options compare with ``ServerOptions(...)``).
    __eq__ = _same_object
    __hash__ = _identity_hash
    _core: _Core = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_core", _Core(self))

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler grpc found for this call, wrapped (called by grpc for each call)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=False)


@dataclass(frozen=True, eq=False)
class AioServerInterceptor(ServerOptions, _AioBase):
    __doc__ = (
        "Interceptor for ``grpc.aio`` servers: raised exceptions become rich statuses.\n"
        + _RULES
        + """
    Async handlers get grpc's context with ``abort`` and ``abort_with_status``
    going through the interceptor (masking, metadata); sync handlers on the
    aio server are served too. On a sync ``grpc.server`` every call fails at
    once with ``UNKNOWN`` and a logged ``TypeError``: use
    :class:`ServerInterceptor` there.
"""
        + _OPTIONS
        + _POOL_ARG
    )

    thread_pool: futures.Executor | None = field(default=None, kw_only=True)

    __eq__ = _same_object
    __hash__ = _identity_hash
    _core: _Core = field(init=False, repr=False, compare=False)
    _warned_sync_server: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.thread_pool is not None and not isinstance(self.thread_pool, futures.Executor):
            raise TypeError(f"thread_pool must be a concurrent.futures.Executor, got {self.thread_pool!r}")
        core = _Core(self)
        core.thread_pool = self.thread_pool
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_warned_sync_server", False)

    def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Coroutine[Any, Any, grpc.RpcMethodHandler[Any, Any] | None]:
        """The handler grpc.aio found for this call, wrapped (awaited by grpc.aio for each call).

        Raises ``TypeError`` when called outside an event loop, i.e. by a
        sync ``grpc.server`` (which then fails the call with ``UNKNOWN``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            error = TypeError(
                "grpc_terminal.AioServerInterceptor is for grpc.aio servers; this is a sync "
                "grpc.server: use grpc_terminal.ServerInterceptor there"
            )
            if not self._warned_sync_server:
                object.__setattr__(self, "_warned_sync_server", True)
                self._core.translator.log.error("%s", error)
            raise error from None
        return self._intercept(continuation, handler_call_details)

    async def _intercept(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=True)


#: The design document's name for :class:`AioServerInterceptor` (the same class):
#: the client side says ``aio_`` everywhere, so the class says ``Aio`` too.
AsyncServerInterceptor = AioServerInterceptor
