"""Client channels: failed calls raise typed errors (sync and aio edges).

Every typed error is still a ``grpc.RpcError`` and has the original
``grpc.RpcError`` / ``grpc.aio.AioRpcError`` as its ``__cause__``. It is also
the Call of the failed RPC, as grpc documents for the errors it raises: a
``grpc.Call`` and ``grpc.Future`` (a finished one), and a
``grpc.aio.AioRpcError``, answering ``initial_metadata()`` and
``debug_error_string()`` with what the real call received.

The channels wrap grpc's multicallables (``_calls``, ``_aio_calls``); a sync
channel with a retry policy hands out the retrying multicallables of
``_retrying`` and ``_retrying_stream`` for the calls with a unary request. ``grpc.aio`` channels
built with :func:`aio_interceptors` get the same through interceptors.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from grpc_terminal._aio_calls import (
    AioCall,
    AioStreamStreamCall,
    AioStreamUnaryCall,
    AioUnaryStreamCall,
    AioUnaryUnaryCall,
)
from grpc_terminal._aio_retrying import aio_retry_interceptors
from grpc_terminal._calls import SyncCall, TypedStream, TypedUnary
from grpc_terminal._retry import RetryPolicy
from grpc_terminal._retrying import RetryingUnary, checked_policy
from grpc_terminal._retrying_stream import RetryingUnaryStream

__all__ = ["SyncInterceptor", "aio_intercept_channel", "aio_interceptors", "intercept_channel"]

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _UU = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.StreamStreamClientInterceptor[Any, Any]
    _AioUU = grpc.aio.UnaryUnaryClientInterceptor[Any, Any]
    _AioUS = grpc.aio.UnaryStreamClientInterceptor[Any, Any]
    _AioSU = grpc.aio.StreamUnaryClientInterceptor[Any, Any]
    _AioSS = grpc.aio.StreamStreamClientInterceptor[Any, Any]
else:
    _UU, _US = grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor
    _SU, _SS = grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor
    _AioUU, _AioUS = grpc.aio.UnaryUnaryClientInterceptor, grpc.aio.UnaryStreamClientInterceptor
    _AioSU, _AioSS = grpc.aio.StreamUnaryClientInterceptor, grpc.aio.StreamStreamClientInterceptor


# -- sync ------------------------------------------------------------------------------


class _TypedChannel(grpc.Channel):
    """A channel whose multicallables raise typed errors, and retry when given a policy.

    It wraps the multicallables themselves rather than going through
    ``grpc.intercept_channel``: grpc's interceptor machinery costs more per
    call than the conversion does (see the Benchmarks page of the documentation).

    Args:
        channel: the sync channel wrapped.
        retry: the retry policy of the calls with a unary request, or None.
    """

    def __init__(self, channel: grpc.Channel, retry: RetryPolicy | None) -> None:
        # Any: the stubs leave the multicallables' message types unknown, and
        # this proxy forwards whatever the caller passes.
        self._channel: Any = channel
        self._retry = retry

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        typed = TypedUnary(self._channel.unary_unary(method, *args, **kwargs))
        return typed if self._retry is None else RetryingUnary(typed, self._retry)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        typed = TypedStream(self._channel.unary_stream(method, *args, **kwargs))
        return typed if self._retry is None else RetryingUnaryStream(typed, self._retry)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return TypedUnary(self._channel.stream_unary(method, *args, **kwargs))

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return TypedStream(self._channel.stream_stream(method, *args, **kwargs))

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

    ``__call__``, ``with_call``, ``future()`` and response iterators all
    raise the typed error, with the original ``grpc.RpcError`` as cause; the
    typed error is also the ``grpc.Call`` and ``grpc.Future`` of the failed
    RPC, as grpc's own errors are.

    Args:
        channel: a sync ``grpc.Channel`` (a ``grpc.aio`` channel is refused:
            use :func:`aio_intercept_channel` or :func:`aio_interceptors`).
        retry: retries the calls with a unary request under this policy
            (``None``, the default, never retries). Each attempt raises the
            typed error, so the policy classifies typed errors and the caller
            gets the last one, carrying ``retry_history``, with the raw error
            as cause. A retried ``future()`` returns at once; ``cancel()`` on
            it, or on a retried response stream, also ends a wait between
            attempts at once.

    Raises:
        TypeError: ``channel`` is a ``grpc.aio`` channel or not a channel at
            all (``None``, a target string), or ``retry`` is not a
            :class:`RetryPolicy`.
    """
    if isinstance(channel, grpc.aio.Channel):
        raise TypeError(
            "intercept_channel() takes a sync grpc.Channel, not a grpc.aio channel: use "
            "gt.aio_intercept_channel(channel), or build the channel with "
            "grpc.aio.insecure_channel(target, interceptors=gt.aio_interceptors(retry=...))"
        )
    _check_channel(channel, "intercept_channel", "a sync grpc.Channel")
    return _TypedChannel(channel, None if retry is None else checked_policy(retry))


def _check_channel(channel: object, function: str, expected: str) -> None:
    """Refuse what cannot be a channel (``None``, a target string...) when wrapping, not at first use."""
    if not callable(getattr(channel, "unary_unary", None)):
        raise TypeError(f"{function}() takes {expected}, got {type(channel).__name__}: {channel!r:.80}")


class SyncInterceptor(_UU, _US, _SU, _SS):
    """The typed-error conversion as a grpc interceptor: wraps every sync call kind in a :class:`SyncCall`.

    :func:`intercept_channel` does not need it (it wraps the multicallables);
    it is for stacking the conversion inside ``grpc.intercept_channel`` (the
    benchmarks measure that variant).
    """

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return SyncCall(continuation(client_call_details, request))

    def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return SyncCall(continuation(client_call_details, request))

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return SyncCall(continuation(client_call_details, request_iterator))

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return SyncCall(continuation(client_call_details, request_iterator))


# -- aio -------------------------------------------------------------------------------


class _AioUnaryUnary(_AioUU):
    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return AioUnaryUnaryCall(await continuation(client_call_details, request))


class _AioUnaryStream(_AioUS):
    async def intercept_unary_stream(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        return AioUnaryStreamCall(await continuation(client_call_details, request))


class _AioStreamUnary(_AioSU):
    async def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return AioStreamUnaryCall(await continuation(client_call_details, request_iterator))


class _AioStreamStream(_AioSS):
    async def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return AioStreamStreamCall(await continuation(client_call_details, request_iterator))


class _TypedAioMultiCallable:
    """An aio multicallable whose calls come back wrapped in ``call_type``."""

    def __init__(self, inner: Any, call_type: Callable[[Any], AioCall]) -> None:
        self._inner = inner
        self._call_type = call_type

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call_type(self._inner(*args, **kwargs))


class _TypedAioChannel(grpc.aio.Channel):
    """An aio channel whose calls raise typed errors, without grpc's interceptor chain.

    Args:
        channel: the ``grpc.aio`` channel wrapped.
    """

    def __init__(self, channel: grpc.aio.Channel) -> None:
        self._channel: Any = channel  # as for the sync channel: the stubs' types are unknown

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.unary_unary(method, *args, **kwargs), AioUnaryUnaryCall
        )

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.unary_stream(method, *args, **kwargs), AioUnaryStreamCall
        )

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.stream_unary(method, *args, **kwargs), AioStreamUnaryCall
        )

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return _TypedAioMultiCallable(
            self._channel.stream_stream(method, *args, **kwargs), AioStreamStreamCall
        )

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        state: grpc.ChannelConnectivity = self._channel.get_state(try_to_connect)
        return state

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
    (see the Benchmarks page of the documentation). Use :func:`aio_interceptors` when the
    channel needs other interceptors too, or for ``retry=``.

    Args:
        channel: a ``grpc.aio`` channel.

    Raises:
        TypeError: ``channel`` is a sync ``grpc.Channel`` (use :func:`intercept_channel`),
            or not a channel at all (``None``, a target string).
    """
    if isinstance(channel, grpc.Channel):
        raise TypeError(
            "aio_intercept_channel() takes a grpc.aio channel, not a sync grpc.Channel: "
            "use gt.intercept_channel(channel) for a sync channel"
        )
    _check_channel(channel, "aio_intercept_channel", "a grpc.aio channel")
    return _TypedAioChannel(channel)


def aio_interceptors(*, retry: RetryPolicy | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Interceptors for ``grpc.aio.*_channel(interceptors=...)``: one per RPC kind.

    grpcio registers an object that implements several kinds for the first
    kind only, so each kind gets its own instance. They are for ``grpc.aio``
    channels only (grpc refuses them on a sync channel; use
    :func:`intercept_channel`).

    Args:
        retry: retries the calls with a unary request under this policy
            (``None``, the default, never retries); its interceptors come
            first (outermost), outside the typed-error ones.

    Raises:
        TypeError: ``retry`` is not a :class:`RetryPolicy`.
    """
    interceptors: list[grpc.aio.ClientInterceptor] = []
    if retry is not None:
        interceptors.extend(aio_retry_interceptors(retry))
    typed: list[Any] = [_AioUnaryUnary(), _AioUnaryStream(), _AioStreamUnary(), _AioStreamStream()]
    interceptors.extend(typed)
    return interceptors
