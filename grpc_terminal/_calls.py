"""Typed calls: the sync call proxy and the multicallables every client channel builds on.

:func:`typed_error` turns the raw ``grpc.RpcError`` a call raised into its
typed error, answering the Call methods as the raw error did.
:class:`SyncCall` wraps one sync call (a Call-Future, or a response stream)
so that its failures are typed; :class:`TypedUnary` and :class:`TypedStream`
wrap grpc's multicallables so that every call they make is one. The typed
channel hands them out as they are; the retrying channel (``_retrying``)
makes its attempts with them. :class:`Raised` and :class:`LocallyCancelled`
are the calls that end without an RPC to answer for them. The aio twins live
in ``_aio_calls``.

Kept whole (a little over the ~400-line guide): the typed error and the sync
proxy are one surface; the aio proxy is in ``_aio_calls``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, NoReturn, SupportsIndex, cast

import grpc
import grpc.aio

from grpc_terminal._decode import from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._surface import EndedCall

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future

__all__ = [
    "LOCAL_CANCELLATION_DETAILS",
    "LocallyCancelled",
    "Raised",
    "SyncCall",
    "TypedCall",
    "TypedStream",
    "TypedUnary",
    "cause_of",
    "debug_string_of",
    "raise_typed",
    "typed_error",
]

#: The details grpc gives a call the application cancelled.
LOCAL_CANCELLATION_DETAILS = "Locally cancelled by application!"


# -- the typed error of a raw one ---------------------------------------------------------


class _AioMetadataPairs(tuple[tuple[str, Any], ...]):
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
        return super().__contains__(item)

    def __getitem__(self, key: str | SupportsIndex | slice[Any, Any, Any]) -> Any:
        if isinstance(key, str):
            for name, value in self:
                if name == key:
                    return value
            raise KeyError(key)
        return super().__getitem__(key)

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
            if isinstance(value, str):
                return value
            return cast("tuple[object, ...]", value) if isinstance(value, tuple) else None
    method = getattr(raw, name, None)
    if not callable(method):
        return None
    try:
        return method()
    except Exception:
        return None


def typed_error(err: BaseException) -> StatusError:
    """The typed error for a raw ``grpc.RpcError`` that a call raised; never raises.

    Like :func:`~grpc_terminal.from_rpc_error`, and the result also answers
    the Call methods grpc's raw error answered: ``initial_metadata()``,
    ``debug_error_string()`` and, on aio, ``trailing_metadata()`` read like
    ``grpc.aio.Metadata``.

    Args:
        err: the error as the call raised it (a typed error is returned as it is).
    """
    typed = from_rpc_error(err)
    if typed is err:
        return typed
    state = vars(typed)
    initial = _answer(err, "initial_metadata")
    if isinstance(initial, tuple):
        # grpc's sync metadatum class cannot be pickled; this one can, and reads the same
        pairs = cast("tuple[tuple[str, str | bytes], ...]", initial)
        initial = tuple(_Metadatum(k, v) for k, v in pairs)
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

    Args:
        call: a sync Call-Future.
    """
    method = getattr(call, "debug_error_string", None)
    if method is None:
        method = getattr(getattr(call, "_call", None), "debug_error_string", None)
    if method is not None:
        return str(method())
    err = call.exception()
    return err.debug_error_string() if isinstance(err, StatusError) else ""


def cause_of(err: BaseException) -> BaseException | None:
    """The raw error a typed one is raised from (a typed error keeps its own).

    Args:
        err: the error a call raised, typed or raw.
    """
    return err.__cause__ if isinstance(err, StatusError) else err


def raise_typed(err: grpc.RpcError) -> NoReturn:
    """Raise the typed error for ``err``, from ``err`` (a typed ``err`` as it is).

    Args:
        err: the error a call raised.
    """
    if isinstance(err, StatusError):
        raise err
    raise typed_error(err) from err


class TypedCall:
    """Turns the raw errors of one call into one typed error, made once.

    Args:
        inner: the call whose errors are typed (sync or aio).
    """

    def __init__(self, inner: Any) -> None:
        self._inner: Any = inner
        self._typed: StatusError | None = None

    def _relay(self, callback: Callable[[Any], None]) -> Callable[[object], None]:
        """``callback`` as the inner call's done-callback: it is given this proxy, not the inner call."""

        def done(_inner: object) -> None:
            callback(self)

        return done

    def _convert(self, err: BaseException) -> BaseException:
        if isinstance(err, StatusError) or not isinstance(err, grpc.RpcError):
            return err
        if self._typed is None:
            self._typed = typed_error(err)
        return self._typed


# -- sync ------------------------------------------------------------------------------


class SyncCall(TypedCall, grpc.Call, _Future):
    """A sync call, future or response stream whose failures are typed.

    Args:
        inner: grpc's Call-Future (or response iterator) of the call.
    """

    # grpc.Future
    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        except grpc.RpcError as err:
            raise self._convert(err) from cause_of(err)

    def exception(self, timeout: float | None = None) -> Exception | None:
        err = self._inner.exception(timeout)
        if err is None:
            return None
        converted = self._convert(err)
        return converted if isinstance(converted, Exception) else err

    def traceback(self, timeout: float | None = None) -> Any:
        return self._inner.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(self._relay(fn))

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
            raise self._convert(err) from cause_of(err)


class TypedUnary:
    """A unary-response multicallable whose failures raise typed errors.

    Args:
        inner: grpc's ``unary_unary`` or ``stream_unary`` multicallable.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self._inner(*args, **kwargs)
        except grpc.RpcError as err:
            raise_typed(err)

    def with_call(self, *args: Any, **kwargs: Any) -> tuple[Any, SyncCall]:
        try:
            response, call = self._inner.with_call(*args, **kwargs)
        except grpc.RpcError as err:
            raise_typed(err)
        return response, SyncCall(call)

    def future(self, *args: Any, **kwargs: Any) -> SyncCall:
        return SyncCall(self._inner.future(*args, **kwargs))


class TypedStream:
    """A response-streaming multicallable whose iterator raises typed errors.

    Args:
        inner: grpc's ``unary_stream`` or ``stream_stream`` multicallable.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> SyncCall:
        return SyncCall(self._inner(*args, **kwargs))


# -- calls that end without an RPC -----------------------------------------------------


class Raised(EndedCall):
    """The outcome of an attempt that raised instead of returning a call (e.g. a predicate's error).

    It answers as grpc's interceptor chain does for an interceptor that
    raised: ``INTERNAL``, and ``error`` from ``result()`` and from iterating.

    Args:
        error: what was raised.
    """

    def __init__(self, error: Exception) -> None:
        self._error = error

    def _outcome(self) -> Exception:
        return self._error

    def initial_metadata(self) -> None:  # type: ignore[override]
        return None

    def trailing_metadata(self) -> None:  # type: ignore[override]
        return None

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.INTERNAL

    def details(self) -> str:
        return "Exception raised while intercepting the RPC"

    def debug_error_string(self) -> str:
        return repr(self._error)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> NoReturn:
        raise self._error


class LocallyCancelled(grpc.RpcError, EndedCall):
    """A retried call the application cancelled while no attempt was running.

    It answers as grpc's own cancelled calls do: ``CANCELLED`` with grpc's
    details, ``grpc.FutureCancelledError`` from ``result()``, and a typed
    ``CANCELLED`` error, :attr:`error` (a :class:`~grpc_terminal.Cancelled`),
    from a response iterator. Like grpc's calls it is also the raw
    ``grpc.RpcError`` that :attr:`error` is typed from.
    """

    def __init__(self) -> None:
        super().__init__()
        #: The typed error a reader gets.
        self.error = typed_error(self)

    def _outcome(self) -> NoReturn:
        raise grpc.FutureCancelledError()

    def cancelled(self) -> bool:
        return True

    def initial_metadata(self) -> tuple[()]:
        return ()

    def trailing_metadata(self) -> tuple[()]:
        return ()

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.CANCELLED

    def details(self) -> str:
        return LOCAL_CANCELLATION_DETAILS

    def debug_error_string(self) -> str:
        return f"CANCELLED:{LOCAL_CANCELLATION_DETAILS}"

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> NoReturn:
        raise self.error
