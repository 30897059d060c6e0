"""Client interceptors: failed calls raise typed errors (sync and aio edges).

Every typed error is still a ``grpc.RpcError`` and has the original
``grpc.RpcError`` / ``grpc.aio.AioRpcError`` as its ``__cause__``. It is also
the Call of the failed RPC, as grpc documents for the errors it raises: a
``grpc.Call`` and ``grpc.Future`` (a finished one), and a
``grpc.aio.AioRpcError``, answering ``initial_metadata()`` and
``debug_error_string()`` with what the real call received.
"""

from __future__ import annotations

import types
from collections.abc import AsyncIterator, Callable, Generator, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn

import grpc
import grpc.aio

from grpc_terminal._codec import from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._retry import RetryPolicy

__all__ = ["aio_intercept_channel", "aio_interceptors", "intercept_channel"]

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _Future = grpc.Future[Any]
    _UU = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.StreamStreamClientInterceptor[Any, Any]
    _AioUU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _AioUS = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _AioSU = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _AioSS = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _Future = grpc.Future
    _UU, _US = grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor
    _SU, _SS = grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor
    _AioUU, _AioUS = grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor
    _AioSU, _AioSS = grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor

#: The details grpc gives a call the application cancelled.
LOCAL_CANCELLATION_DETAILS = "Locally cancelled by application!"


# -- the Call surface of a typed error -------------------------------------------------


class _CallSurface(grpc.aio.AioRpcError, grpc.Call, _Future):  # type: ignore[misc]
    """What makes a :class:`StatusError` the Call of the RPC that failed with it.

    grpc documents the ``RpcError`` a failed call raises as also being the
    ``grpc.Call`` of that RPC, and its own raised errors are finished
    ``grpc.Future`` objects; grpc.aio documents ``grpc.aio.AioRpcError``.
    Code written for either keeps working with typed errors: they are all
    three, answer ``initial_metadata()`` and ``debug_error_string()`` with
    what the real call received (an error built locally has no initial
    metadata and describes itself), and behave as a finished call.
    """

    _initial_metadata: Any = None
    _debug_error_string: Any = None

    def __init__(self, *args: object) -> None:
        # AioRpcError.__init__ wants a code and metadata: a StatusError keeps
        # its message as its exception argument instead.
        Exception.__init__(self, *args)

    def initial_metadata(self) -> Any:
        """The initial metadata the server sent before failing (empty when none was received)."""
        return () if self._initial_metadata is None else self._initial_metadata

    def debug_error_string(self) -> str:
        """grpc's debug string of the failed call; a one-line description when not received."""
        debug = self._debug_error_string
        return debug if isinstance(debug, str) else repr(self)

    # grpc.RpcContext: the RPC is over.
    def is_active(self) -> bool:
        """Always False: the RPC has ended."""
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """Always None: an ended RPC has no deadline left to count."""
        return None

    def cancel(self) -> bool:
        """Always False: an ended RPC cannot be cancelled."""
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Always False (``callback`` is not called): the RPC has already ended."""
        return False

    # grpc.Future: finished, with this error.
    def cancelled(self) -> bool:
        """Always False, as for grpc's own raised errors."""
        return False

    def running(self) -> bool:
        """Always False: the call has finished."""
        return False

    def done(self) -> bool:
        """Always True: the call has finished."""
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        """Raise this error, the outcome of the call (``timeout`` is not needed)."""
        raise self

    def exception(self, timeout: float | None = None) -> Exception:
        """This error, the outcome of the call (``timeout`` is not needed)."""
        return self

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        """The traceback this error was raised with, if it was (``timeout`` is not needed)."""
        return self.__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn`` with this error at once: the call is done."""
        fn(self)


def _adopt_call_surface() -> None:
    """Make :class:`StatusError` a :class:`_CallSurface`, unless ``_errors`` already does.

    The surface belongs in ``_errors`` (``class StatusError(_CallSurface)``);
    until it is declared there it is grafted here, once, at import, which
    keeps ``type(err) is gt.NotFound`` true for every typed error.
    """
    if issubclass(StatusError, grpc.aio.AioRpcError):
        return
    setattr(StatusError, "__bases__", (_CallSurface,))  # noqa: B010 - mypy: __bases__ is read-only
    for name in ("initial_metadata", "debug_error_string"):
        if name in vars(StatusError):
            delattr(StatusError, name)


_adopt_call_surface()


class _AioMetadataPairs(tuple):  # type: ignore[type-arg]
    """Metadata pairs that also read like the ``grpc.aio.Metadata`` they came from.

    A typed error from an aio channel answers ``trailing_metadata()`` with
    these: a tuple of ``(key, value)`` pairs as on sync channels, on which
    ``key in md``, ``md[key]``, ``md.get(key)`` and ``md.get_all(key)`` also
    work as grpc.aio code expects.
    """

    __slots__ = ()

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return any(key == item for key, _ in self)
        return tuple.__contains__(self, item)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            for name, value in self:
                if name == key:
                    return value
            raise KeyError(key)
        return tuple.__getitem__(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The first value under ``key``, or ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    def get_all(self, key: str) -> list[Any]:
        """Every value under ``key``, in order."""
        return [value for name, value in self if name == key]


_MISSING = object()


class _Metadatum(NamedTuple):
    """One metadata entry, read like grpc's own (``.key``, ``.value``, or as a pair)."""

    key: str
    value: str | bytes


def _answer(raw: BaseException, name: str) -> Any:
    """What ``raw.<name>()`` answers, or None; never blocks, never raises.

    grpc's sync calls wait in these methods for a value that a cancelled call
    may never get (``debug_error_string()`` blocks forever there), so what
    they received is read from their state when they keep one.
    """
    state = getattr(raw, "_state", None)
    if state is not None:
        value = getattr(state, name, _MISSING)
        if value is not _MISSING:
            if isinstance(value, bytes):
                return value.decode("utf-8", "replace")
            return value if isinstance(value, (str, tuple)) else None
    method = getattr(raw, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:
        return None


def typed_error(err: BaseException) -> StatusError:
    """The typed error for a raw ``grpc.RpcError`` that a call raised; never raises.

    Like :func:`from_rpc_error`, and the result also answers the Call
    methods grpc's raw error answered: ``initial_metadata()``,
    ``debug_error_string()`` and, on aio, ``trailing_metadata()`` read like
    ``grpc.aio.Metadata``.
    """
    typed = from_rpc_error(err)
    if typed is err:
        return typed
    state = vars(typed)
    initial = _answer(err, "initial_metadata")
    if isinstance(initial, tuple):
        # grpc's sync metadatum class cannot be pickled; this one can, and reads the same
        initial = tuple(_Metadatum(k, v) for k, v in initial)
    if initial is not None:
        state["_initial_metadata"] = initial
    debug = _answer(err, "debug_error_string")
    if isinstance(debug, str):
        state["_debug_error_string"] = debug
    if isinstance(err, grpc.aio.AioRpcError):
        state["_trailing_metadata"] = _AioMetadataPairs(typed.trailing_metadata())
    return typed


def debug_string_of(call: Any) -> str:
    """``call.debug_error_string()``, also for the outcomes grpc's interceptor chain hands back.

    Those (a successful ``with_call`` through ``grpc.intercept_channel``) lack
    the method; the call they hold has it.
    """
    method = getattr(call, "debug_error_string", None)
    if method is None:
        method = getattr(getattr(call, "_call", None), "debug_error_string", None)
    if method is not None:
        return str(method())
    err = call.exception()
    return err.debug_error_string() if isinstance(err, StatusError) else ""


def _cause(err: BaseException) -> BaseException | None:
    """The raw error a typed one is raised from (a typed error keeps its own)."""
    return err.__cause__ if isinstance(err, StatusError) else err


class _Typed:
    """Turns the raw errors of one call into one typed error, made once."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._typed: StatusError | None = None

    def _convert(self, err: BaseException) -> BaseException:
        if isinstance(err, StatusError) or not isinstance(err, grpc.RpcError):
            return err
        if self._typed is None:
            self._typed = typed_error(err)
        return self._typed


class _SyncCall(_Typed, grpc.Call, _Future):
    """A sync call, future or response stream whose failures are typed."""

    # grpc.Future
    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)

    def exception(self, timeout: float | None = None) -> Exception | None:
        err = self._inner.exception(timeout)
        if err is None:
            return None
        converted = self._convert(err)
        return converted if isinstance(converted, Exception) else err

    def traceback(self, timeout: float | None = None) -> Any:
        return self._inner.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _inner: fn(self))

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def running(self) -> bool:
        return bool(self._inner.running())

    def done(self) -> bool:
        return bool(self._inner.done())

    # grpc.Call / grpc.RpcContext
    def initial_metadata(self) -> Any:
        return self._inner.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._inner.trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return self._inner.code()  # type: ignore[no-any-return]

    def details(self) -> str:
        return self._inner.details()  # type: ignore[no-any-return]

    def debug_error_string(self) -> str:
        return debug_string_of(self._inner)

    def is_active(self) -> bool:
        return bool(self._inner.is_active())

    def time_remaining(self) -> float:
        return self._inner.time_remaining()  # type: ignore[no-any-return]

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._inner.add_callback(callback))

    # response streams
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._inner)
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)


class _SyncInterceptor(
    _UU,
    _US,
    _SU,
    _SS,
):
    """Wraps every sync call kind in :class:`_SyncCall`."""

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return _SyncCall(continuation(details, request))

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _SyncCall(continuation(details, request))

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return _SyncCall(continuation(details, requests))

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return _SyncCall(continuation(details, requests))


def _raise_typed(err: grpc.RpcError) -> NoReturn:
    if isinstance(err, StatusError):
        raise err
    raise typed_error(err) from err


class _TypedResponse:
    """A unary-response multicallable whose failures raise typed errors."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._inner(*args, **kwargs)
        except grpc.RpcError as err:
            _raise_typed(err)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        try:
            response, call = self._inner.with_call(*args, **kwargs)
        except grpc.RpcError as err:
            _raise_typed(err)
        return response, _SyncCall(call)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return _SyncCall(self._inner.future(*args, **kwargs))


class _TypedStream:
    """A response-streaming multicallable whose iterator raises typed errors."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _SyncCall(self._inner(*args, **kwargs))


class _TypedChannel(grpc.Channel):
    """A channel whose multicallables raise typed errors.

    It wraps the multicallables themselves rather than going through
    ``grpc.intercept_channel``: grpc's interceptor machinery costs more per
    call than the conversion does (see the README's benchmarks).
    """

    def __init__(self, channel: grpc.Channel) -> None:
        self._channel = channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedResponse(self._channel.unary_unary(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedResponse(self._channel.stream_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedStream(self._channel.unary_stream(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedStream(self._channel.stream_stream(method, *args, **kwargs))

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Any) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> _TypedChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._channel.close()


def intercept_channel(channel: grpc.Channel, *, retry: RetryPolicy | None = None) -> grpc.Channel:
    """``channel`` whose calls raise typed :class:`StatusError` subclasses.

    ``channel`` is a sync ``grpc.Channel`` (a ``grpc.aio`` channel is refused
    with ``TypeError``: use :func:`aio_intercept_channel` or
    :func:`aio_interceptors` for those). ``__call__``, ``with_call``,
    ``future()`` and response iterators all raise the typed error, with the
    original ``grpc.RpcError`` as cause; the typed error is also the
    ``grpc.Call`` and ``grpc.Future`` of the failed RPC, as grpc's own errors are.

    ``retry`` (a :class:`RetryPolicy`; ``None``, the default, never retries)
    retries calls with a unary request; it sits outside the typed-error
    interceptor (grpc's first interceptor is the outermost), so it
    classifies typed errors and the caller gets the last typed error,
    carrying ``retry_history``, with the raw error as cause. A retried
    ``future()`` returns at once; ``cancel()`` on it, or on a retried
    response stream, also ends a wait between attempts at once.
    """
    if isinstance(channel, grpc.aio.Channel):
        raise TypeError(
            "intercept_channel() takes a sync grpc.Channel, not a grpc.aio channel: use "
            "gt.aio_intercept_channel(channel), or build the channel with "
            "grpc.aio.insecure_channel(target, interceptors=gt.aio_interceptors(retry=...))"
        )
    if retry is None:
        return _TypedChannel(channel)
    from grpc_terminal._retrying import sync_retry_interceptor

    return grpc.intercept_channel(channel, sync_retry_interceptor(retry), _SyncInterceptor())


# -- aio -------------------------------------------------------------------------


class _AioCall(_Typed):
    """Delegation shared by the four aio call wrappers."""

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
        self._inner.add_done_callback(lambda _inner: callback(self))

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
            return (yield from self._inner.__await__())
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)

    async def _iterate(self) -> AsyncIterator[Any]:
        try:
            async for response in self._inner:
                yield response
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)

    async def read(self) -> Any:
        try:
            return await self._inner.read()
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)

    async def write(self, request: Any) -> None:
        try:
            await self._inner.write(request)
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)

    async def done_writing(self) -> None:
        try:
            await self._inner.done_writing()
        except grpc.RpcError as err:
            raise self._convert(err) from _cause(err)


class _AioUnaryUnaryCall(_AioCall, grpc.aio.UnaryUnaryCall[Any, Any]):
    def __await__(self) -> Generator[Any, None, Any]:
        return self._await()


class _AioUnaryStreamCall(_AioCall, grpc.aio.UnaryStreamCall[Any, Any]):
    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()


class _AioStreamUnaryCall(_AioCall, grpc.aio.StreamUnaryCall[Any, Any]):
    def __await__(self) -> Generator[Any, None, Any]:
        return self._await()


class _AioStreamStreamCall(_AioCall, grpc.aio.StreamStreamCall[Any, Any]):
    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()


class _AioUnaryUnary(_AioUU):
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return _AioUnaryUnaryCall(await continuation(details, request))


class _AioUnaryStream(_AioUS):
    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return _AioUnaryStreamCall(await continuation(details, request))


class _AioStreamUnary(_AioSU):
    async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return _AioStreamUnaryCall(await continuation(details, requests))


class _AioStreamStream(_AioSS):
    async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return _AioStreamStreamCall(await continuation(details, requests))


class _TypedAioMultiCallable:
    """An aio multicallable whose calls come back wrapped in ``call_type``."""

    def __init__(self, inner: Any, call_type: Callable[[Any], _AioCall]) -> None:
        self._inner = inner
        self._call_type = call_type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_type(self._inner(*args, **kwargs))


class _TypedAioChannel(grpc.aio.Channel):
    """An aio channel whose calls raise typed errors, without grpc's interceptor chain."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel = channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.unary_unary(method, *args, **kwargs), _AioUnaryUnaryCall
        )

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.unary_stream(method, *args, **kwargs), _AioUnaryStreamCall
        )

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.stream_unary(method, *args, **kwargs), _AioStreamUnaryCall
        )

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.stream_stream(method, *args, **kwargs), _AioStreamStreamCall
        )

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        return self._channel.get_state(try_to_connect)

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()

    async def __aenter__(self) -> _TypedAioChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close(None)


def aio_intercept_channel(channel: grpc.aio.Channel) -> grpc.aio.Channel:
    """``channel`` (a ``grpc.aio`` channel) whose calls raise typed errors.

    The same calls and errors as a channel built with
    :func:`aio_interceptors`, at the cost of no interceptor at all: it wraps
    the multicallables instead of going through grpc's interceptor chain
    (see the README's benchmarks). Use :func:`aio_interceptors` when the
    channel needs other interceptors too, or for ``retry=``. A sync
    ``grpc.Channel`` is refused with ``TypeError``: use :func:`intercept_channel`.
    """
    if isinstance(channel, grpc.Channel):
        raise TypeError(
            "aio_intercept_channel() takes a grpc.aio channel, not a sync grpc.Channel: "
            "use gt.intercept_channel(channel) for a sync channel"
        )
    return _TypedAioChannel(channel)


def aio_interceptors(*, retry: RetryPolicy | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.*_channel(interceptors=...)``: one per RPC kind.

    grpcio registers an object that implements several kinds for the first
    kind only, so each kind gets its own instance. ``retry`` (a
    :class:`RetryPolicy`; ``None``, the default, never retries) retries
    calls with a unary request; its interceptors come first (outermost),
    outside the typed-error ones. They are for ``grpc.aio`` channels only
    (grpc refuses them on a sync channel; use :func:`intercept_channel`).
    """
    interceptors: list[grpc.aio.ClientInterceptor] = []
    if retry is not None:
        from grpc_terminal._retrying import aio_retry_interceptors

        interceptors.extend(aio_retry_interceptors(retry))
    typed: list[Any] = [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]
    interceptors.extend(typed)
    return interceptors
