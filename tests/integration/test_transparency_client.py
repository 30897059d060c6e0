"""Transparency of the client edge: code written for plain grpc keeps working.

Every test runs the SAME assertions on a plain grpc channel ("bare") and on
each wrapper grpc-terminal offers: sync ``intercept_channel`` with and without
``retry=``; aio ``aio_intercept_channel``, ``aio_interceptors()`` with and
without ``retry=``. The assertions are grpc's documented client behaviour:

* a failed call raises a ``grpc.RpcError`` that is also the ``grpc.Call`` of
  the RPC (sync: and a finished ``grpc.Future``); aio raises
  ``grpc.aio.AioRpcError``; code, details, initial and trailing metadata and
  ``debug_error_string()`` are the server's;
* ``with_call``, ``future()`` and response iterators are Call-Futures with the
  RpcContext methods (``is_active``, ``time_remaining``, ``add_callback``);
* cancelling gives ``cancelled()``, ``grpc.FutureCancelledError`` from
  ``result()``, ``CANCELLED`` from a sync iterator, ``asyncio.CancelledError``
  on aio;
* client interceptors of every kind stacked over (or under) the channel get
  Call-Futures from their continuations and see the same outcomes.

The server is a plain grpc server, so any difference comes from the client
side. What grpc-terminal adds (the error's class) is checked in
``test_client_defects.py``; only the checks grpc itself passes are here.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import grpc_terminal as gt

SERVICE = "gt.transparency.Probe"
Msg = wrappers_pb2.StringValue
INITIAL = ("x-init", "hello")
TRAILING = ("x-trail", "bye")
ADDED = ("x-added", "by-interceptor")
DETAILS = "nothing here"
#: UNAVAILABLE with a RetryInfo of 10**10 s, as a peer may send (ours caps RetryInfo at ten years).
FOREVER = status_pb2.Status(
    code=14,
    message="busy",
    details=[
        any_pb2.Any(
            type_url="type.googleapis.com/google.rpc.RetryInfo",
            value=error_details_pb2.RetryInfo(
                retry_delay=duration_pb2.Duration(seconds=10**10)
            ).SerializeToString(),
        )
    ],
)
CODEC: dict[str, Any] = {"request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString}
POLICY = gt.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
C = grpc.StatusCode

_keys = itertools.count()


def key(behaviour: str) -> str:
    """A fresh request value: ``behaviour:<n>`` (the server counts calls per value)."""
    return f"{behaviour}:{next(_keys)}"


def pairs(metadata: Any) -> list[tuple[str, Any]]:
    """Metadata of any of grpc's shapes as plain pairs."""
    return [(k, v) for k, v in metadata]


class PlainServer:
    """A plain ``grpc.server`` (no grpc-terminal) on loopback, the four RPC kinds.

    The request value ``behaviour:<n>`` decides what a handler does:
    ``ok`` answers (streams: ``r0``, ``r1``); ``fail`` (after ``r0``, ``r1`` on
    streams) aborts ``NOT_FOUND``; ``slow`` (after ``r0`` on streams) waits
    until the call ends (cancelled, deadline) and answers ``late``; ``busy``
    aborts ``UNAVAILABLE`` with a 20 s ``RetryInfo``, ``forever`` with a
    ``RetryInfo`` of 10**10 s (past what one ``threading.Event.wait`` takes). Every handler first sends
    :data:`INITIAL` and sets :data:`TRAILING`. ``calls`` counts calls per value,
    ``metadata`` keeps each value's invocation metadata.
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.metadata: dict[str, list[tuple[str, Any]]] = {}
        self._lock = threading.Lock()
        self._pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="plain-server")
        self.server = grpc.server(self._pool)
        self.server.add_generic_rpc_handlers((self._handlers(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.stop(None).wait(5)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wait_for_calls(self, value: str, count: int = 1, timeout: float = 5) -> None:
        """Block until the server has seen ``count`` calls of ``value``."""
        deadline = time.monotonic() + timeout
        while self.calls[value] < count:
            assert time.monotonic() < deadline, f"the server never saw {count} call(s) of {value!r}"
            time.sleep(0.005)

    async def await_calls(self, value: str, count: int = 1, timeout: float = 5) -> None:
        """:meth:`wait_for_calls` for a coroutine."""
        deadline = time.monotonic() + timeout
        while self.calls[value] < count:
            assert time.monotonic() < deadline, f"the server never saw {count} call(s) of {value!r}"
            await asyncio.sleep(0.005)

    # -- handlers ---------------------------------------------------------------------

    def _begin(self, value: str, context: grpc.ServicerContext) -> str:
        with self._lock:
            self.calls[value] += 1
            self.metadata[value] = pairs(context.invocation_metadata())
        context.send_initial_metadata((INITIAL,))
        context.set_trailing_metadata((TRAILING,))
        return value.split(":", 1)[0]

    @staticmethod
    def _end(behaviour: str, context: grpc.ServicerContext) -> Msg:
        if behaviour == "fail":
            context.abort(C.NOT_FOUND, DETAILS)
        if behaviour == "busy":
            context.abort_with_status(gt.to_status(gt.Unavailable("busy", retry_delay=20)))
        if behaviour == "forever":
            context.abort_with_status(rpc_status.to_status(FOREVER))
        if behaviour == "slow":
            deadline = time.monotonic() + 5
            while context.is_active() and time.monotonic() < deadline:
                time.sleep(0.01)
            return Msg(value="late")
        return Msg(value="ok")

    def _unary(self, request: Msg, context: grpc.ServicerContext) -> Msg:
        return self._end(self._begin(request.value, context), context)

    def _stream(self, request: Msg, context: grpc.ServicerContext) -> Iterator[Msg]:
        behaviour = self._begin(request.value, context)
        count = {"ok": 2, "fail": 2, "slow": 1}.get(behaviour, 0)
        for i in range(count):
            yield Msg(value=f"r{i}")
        if behaviour != "ok":
            yield self._end(behaviour, context)

    def _client_stream(self, requests: Iterator[Msg], context: grpc.ServicerContext) -> Msg:
        values = [r.value for r in requests]
        return self._end(self._begin(values[0], context), context)

    def _bidi(self, requests: Iterator[Msg], context: grpc.ServicerContext) -> Iterator[Msg]:
        values = [r.value for r in requests]
        yield from self._stream(Msg(value=values[0]), context)

    def _handlers(self) -> grpc.GenericRpcHandler:
        codec: dict[str, Any] = {
            "request_deserializer": Msg.FromString,
            "response_serializer": Msg.SerializeToString,
        }
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Unary": grpc.unary_unary_rpc_method_handler(self._unary, **codec),
                "ServerStream": grpc.unary_stream_rpc_method_handler(self._stream, **codec),
                "ClientStream": grpc.stream_unary_rpc_method_handler(self._client_stream, **codec),
                "BidiStream": grpc.stream_stream_rpc_method_handler(self._bidi, **codec),
            },
        )


@pytest.fixture(scope="module")
def server() -> Iterator[PlainServer]:
    s = PlainServer()
    yield s
    s.stop()


# -- sync ---------------------------------------------------------------------------------------

SYNC = ["bare", "intercept_channel", "intercept_channel-retry"]


def sync_channel(variant: str, raw: grpc.Channel) -> grpc.Channel:
    if variant == "bare":
        return raw
    if variant == "intercept_channel":
        return gt.intercept_channel(raw)
    return gt.intercept_channel(raw, retry=POLICY)


class SyncStubs:
    def __init__(self, channel: grpc.Channel) -> None:
        self.unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
        self.stream = channel.unary_stream(f"/{SERVICE}/ServerStream", **CODEC)
        self.client_stream = channel.stream_unary(f"/{SERVICE}/ClientStream", **CODEC)
        self.bidi = channel.stream_stream(f"/{SERVICE}/BidiStream", **CODEC)


@pytest.fixture(params=SYNC)
def sync(request: pytest.FixtureRequest, server: PlainServer) -> Iterator[SyncStubs]:
    raw = grpc.insecure_channel(server.target)
    try:
        yield SyncStubs(sync_channel(request.param, raw))
    finally:
        raw.close()


def check_failed_call(err: Any) -> None:
    """What grpc documents for the RpcError a failed call raises: it is the call."""
    assert isinstance(err, grpc.RpcError)
    assert isinstance(err, grpc.Call)
    assert err.code() is C.NOT_FOUND
    assert err.details() == DETAILS
    assert INITIAL in pairs(err.initial_metadata())
    assert TRAILING in pairs(err.trailing_metadata())
    debug = err.debug_error_string()
    assert isinstance(debug, str) and debug


def check_finished_future(err: Any) -> None:
    """grpc's raised errors of unary calls are finished Futures holding themselves."""
    assert isinstance(err, grpc.Future)
    assert err.done() and not err.running() and not err.cancelled()
    assert err.cancel() is False
    assert err.exception() is err
    with pytest.raises(grpc.RpcError) as again:
        err.result()
    assert again.value is err
    assert err.traceback() is not None
    seen: list[Any] = []
    err.add_done_callback(seen.append)
    assert seen == [err]


def test_blocking_failure_raises_the_call(sync: SyncStubs, server: PlainServer) -> None:
    value = key("fail")
    with pytest.raises(grpc.RpcError) as info:
        sync.unary(Msg(value=value), timeout=5)
    check_failed_call(info.value)
    check_finished_future(info.value)
    assert server.calls[value] == 1


def test_with_call_failure_raises_the_call(sync: SyncStubs) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sync.unary.with_call(Msg(value=key("fail")), timeout=5)
    check_failed_call(info.value)
    check_finished_future(info.value)


def test_with_call_success_returns_a_finished_call_future(sync: SyncStubs) -> None:
    response, call = sync.unary.with_call(Msg(value=key("ok")), timeout=5)
    assert response.value == "ok"
    assert isinstance(call, grpc.Call) and isinstance(call, grpc.Future)
    assert call.code() is C.OK
    assert INITIAL in pairs(call.initial_metadata())
    assert TRAILING in pairs(call.trailing_metadata())
    assert isinstance(call.debug_error_string(), str)
    assert call.result() == response
    assert call.exception() is None
    assert call.done() and not call.running() and not call.cancelled()
    assert not call.is_active()
    seen: list[Any] = []
    call.add_done_callback(seen.append)
    assert seen == [call]


def test_future_failure_is_a_call_future(sync: SyncStubs) -> None:
    future = sync.unary.future(Msg(value=key("fail")), timeout=5)
    assert isinstance(future, grpc.Call) and isinstance(future, grpc.Future)
    err = future.exception(timeout=5)
    check_failed_call(err)
    with pytest.raises(grpc.RpcError) as info:
        future.result(timeout=5)
    assert info.value is err
    assert future.code() is C.NOT_FOUND
    assert future.details() == DETAILS
    assert INITIAL in pairs(future.initial_metadata())
    assert TRAILING in pairs(future.trailing_metadata())
    assert isinstance(future.debug_error_string(), str) and future.debug_error_string()
    assert future.done() and not future.running() and not future.cancelled()
    assert future.traceback(timeout=5) is not None
    assert future.cancel() is False
    assert not future.is_active()
    seen: list[Any] = []
    future.add_done_callback(seen.append)
    assert seen == [future]


def test_future_success_and_done_callback(sync: SyncStubs) -> None:
    future = sync.unary.future(Msg(value=key("ok")), timeout=5)
    fired = threading.Event()
    seen: list[Any] = []

    def callback(f: Any) -> None:
        seen.append(f)
        fired.set()

    future.add_done_callback(callback)
    assert future.result(timeout=5).value == "ok"
    assert fired.wait(5)
    assert seen == [future]
    assert future.exception(timeout=5) is None
    assert future.code() is C.OK
    assert INITIAL in pairs(future.initial_metadata())


def test_future_cancel(sync: SyncStubs, server: PlainServer) -> None:
    value = key("slow")
    future = sync.unary.future(Msg(value=value), timeout=5)
    server.wait_for_calls(value)
    fired = threading.Event()
    future.add_done_callback(lambda _f: fired.set())
    assert future.cancel() is True
    assert future.cancelled() and future.done() and not future.running()
    with pytest.raises(grpc.FutureCancelledError):
        future.result(timeout=5)
    with pytest.raises(grpc.FutureCancelledError):
        future.exception(timeout=5)
    assert future.code() is C.CANCELLED
    assert fired.wait(5)
    assert future.cancel() is False


def test_deadline(sync: SyncStubs) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sync.unary(Msg(value=key("slow")), timeout=0.3)
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() is C.DEADLINE_EXCEEDED


def test_response_stream_failure(sync: SyncStubs) -> None:
    responses = sync.stream(Msg(value=key("fail")), timeout=5)
    assert isinstance(responses, grpc.Call) and isinstance(responses, grpc.Future)
    assert [next(responses).value, next(responses).value] == ["r0", "r1"]
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    check_failed_call(info.value)
    assert responses.code() is C.NOT_FOUND
    assert responses.details() == DETAILS
    assert INITIAL in pairs(responses.initial_metadata())
    assert TRAILING in pairs(responses.trailing_metadata())
    assert isinstance(responses.debug_error_string(), str) and responses.debug_error_string()
    assert not responses.is_active() and responses.done()
    assert responses.add_callback(lambda: None) is False
    remaining = responses.time_remaining()
    assert remaining is not None and 0 <= remaining <= 5
    with pytest.raises(grpc.RpcError):  # it stays failed
        next(responses)


def test_response_stream_success(sync: SyncStubs) -> None:
    responses = sync.stream(Msg(value=key("ok")), timeout=5)
    assert [r.value for r in responses] == ["r0", "r1"]
    with pytest.raises(StopIteration):
        next(responses)
    assert responses.code() is C.OK
    assert INITIAL in pairs(responses.initial_metadata())
    assert TRAILING in pairs(responses.trailing_metadata())
    assert not responses.is_active()


def test_response_stream_cancel(sync: SyncStubs) -> None:
    responses = sync.stream(Msg(value=key("slow")), timeout=5)
    assert next(responses).value == "r0"
    assert responses.is_active()
    ended = threading.Event()
    assert responses.add_callback(ended.set) is True
    assert responses.cancel() is True
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    assert isinstance(info.value, grpc.Call)
    assert info.value.code() is C.CANCELLED
    assert responses.cancelled() and responses.done()
    assert responses.code() is C.CANCELLED
    assert ended.wait(5)
    assert responses.cancel() is False


def test_client_streaming_failure(sync: SyncStubs) -> None:
    with pytest.raises(grpc.RpcError) as info:
        sync.client_stream(iter([Msg(value=key("fail")), Msg(value="more")]), timeout=5)
    check_failed_call(info.value)
    check_finished_future(info.value)
    with pytest.raises(grpc.RpcError) as info:
        sync.client_stream.with_call(iter([Msg(value=key("fail"))]), timeout=5)
    check_failed_call(info.value)
    future = sync.client_stream.future(iter([Msg(value=key("fail"))]), timeout=5)
    check_failed_call(future.exception(timeout=5))
    assert future.code() is C.NOT_FOUND
    response, call = sync.client_stream.with_call(iter([Msg(value=key("ok"))]), timeout=5)
    assert response.value == "ok" and call.code() is C.OK


def test_bidi_failure(sync: SyncStubs) -> None:
    responses = sync.bidi(iter([Msg(value=key("fail")), Msg(value="more")]), timeout=5)
    assert [next(responses).value, next(responses).value] == ["r0", "r1"]
    with pytest.raises(grpc.RpcError) as info:
        next(responses)
    check_failed_call(info.value)
    assert responses.code() is C.NOT_FOUND


class Recorder(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.StreamStreamClientInterceptor,  # type: ignore[type-arg]
):
    """A user's client interceptor: adds metadata and looks at what continuations return."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    @staticmethod
    def _details(details: Any) -> Any:
        metadata = [*(details.metadata or ()), ADDED]
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def _unary_outcome(self, kind: str, call: Any) -> Any:
        # grpc documents the continuation's result as a Call-Future.
        assert isinstance(call, grpc.Call) and isinstance(call, grpc.Future)
        err = call.exception()
        self.seen.append((kind, call.code() if err is None else err.code()))
        return call

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return self._unary_outcome("unary_unary", continuation(self._details(details), request))

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return self._unary_outcome("stream_unary", continuation(self._details(details), requests))

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        call = continuation(self._details(details), request)
        assert isinstance(call, grpc.Call) and isinstance(call, grpc.Future)
        self.seen.append(("unary_stream", None))
        return call

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        call = continuation(self._details(details), requests)
        assert isinstance(call, grpc.Call) and isinstance(call, grpc.Future)
        self.seen.append(("stream_stream", None))
        return call


class _Details(grpc.ClientCallDetails):
    def __init__(
        self,
        method: str,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: Any,
        compression: Any,
    ) -> None:
        self.method = method
        self.timeout = timeout
        self.metadata = metadata
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression


def exercise_every_kind(stubs: SyncStubs, server: PlainServer) -> None:
    """Failures of every call form through ``stubs``; the same outcome as bare."""
    values = [key("fail") for _ in range(6)]
    with pytest.raises(grpc.RpcError) as info:
        stubs.unary(Msg(value=values[0]), timeout=5)
    check_failed_call(info.value)
    with pytest.raises(grpc.RpcError) as info:
        stubs.unary.with_call(Msg(value=values[1]), timeout=5)
    check_failed_call(info.value)
    future = stubs.unary.future(Msg(value=values[2]), timeout=5)
    check_failed_call(future.exception(timeout=5))
    with pytest.raises(grpc.RpcError) as info:
        list(stubs.stream(Msg(value=values[3]), timeout=5))
    check_failed_call(info.value)
    with pytest.raises(grpc.RpcError) as info:
        stubs.client_stream(iter([Msg(value=values[4])]), timeout=5)
    check_failed_call(info.value)
    with pytest.raises(grpc.RpcError) as info:
        list(stubs.bidi(iter([Msg(value=values[5])]), timeout=5))
    check_failed_call(info.value)
    for value in values:
        assert server.calls[value] == 1
        assert ADDED in server.metadata[value]
    assert response_of(stubs) == "ok"


def response_of(stubs: SyncStubs) -> str:
    return str(stubs.unary(Msg(value=key("ok")), timeout=5).value)


@pytest.mark.parametrize("variant", SYNC)
def test_user_interceptor_stacked_over_the_channel(variant: str, server: PlainServer) -> None:
    recorder = Recorder()
    raw = grpc.insecure_channel(server.target)
    try:
        exercise_every_kind(SyncStubs(grpc.intercept_channel(sync_channel(variant, raw), recorder)), server)
    finally:
        raw.close()
    assert recorder.seen[:3] == [("unary_unary", C.NOT_FOUND)] * 3
    kinds = [kind for kind, _ in recorder.seen[3:]]
    assert kinds == ["unary_stream", "stream_unary", "stream_stream", "unary_unary"]
    assert recorder.seen[4] == ("stream_unary", C.NOT_FOUND)
    assert recorder.seen[6] == ("unary_unary", C.OK)


@pytest.mark.parametrize("variant", SYNC)
def test_user_interceptor_under_the_channel(variant: str, server: PlainServer) -> None:
    recorder = Recorder()
    raw = grpc.insecure_channel(server.target)
    try:
        exercise_every_kind(SyncStubs(sync_channel(variant, grpc.intercept_channel(raw, recorder))), server)
    finally:
        raw.close()
    assert recorder.seen[:3] == [("unary_unary", C.NOT_FOUND)] * 3
    assert recorder.seen[4] == ("stream_unary", C.NOT_FOUND)


@pytest.mark.parametrize("variant", SYNC)
def test_two_user_interceptors_around_the_channel(variant: str, server: PlainServer) -> None:
    outer, inner = Recorder(), Recorder()
    raw = grpc.insecure_channel(server.target)
    try:
        channel = grpc.intercept_channel(sync_channel(variant, grpc.intercept_channel(raw, inner)), outer)
        exercise_every_kind(SyncStubs(channel), server)
    finally:
        raw.close()
    assert outer.seen == inner.seen


# -- aio ------------------------------------------------------------------------------------------

AIO = ["bare", "aio_intercept_channel", "aio_interceptors", "aio_interceptors-retry"]


def aio_channel(variant: str, target: str, interceptors: Sequence[Any] = ()) -> Any:
    """A grpc.aio channel of ``variant``; the user's ``interceptors`` go first (outermost).

    ``aio_intercept_channel`` wraps a built channel, so there they are inside it.
    """
    user = list(interceptors)
    if variant == "bare":
        return grpc.aio.insecure_channel(target, interceptors=user)
    if variant == "aio_intercept_channel":
        return gt.aio_intercept_channel(grpc.aio.insecure_channel(target, interceptors=user))
    retry = POLICY if variant.endswith("-retry") else None
    return grpc.aio.insecure_channel(target, interceptors=[*user, *gt.aio_interceptors(retry=retry)])


class AioStubs:
    def __init__(self, channel: Any) -> None:
        self.channel = channel
        self.unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
        self.stream = channel.unary_stream(f"/{SERVICE}/ServerStream", **CODEC)
        self.client_stream = channel.stream_unary(f"/{SERVICE}/ClientStream", **CODEC)
        self.bidi = channel.stream_stream(f"/{SERVICE}/BidiStream", **CODEC)


def check_aio_error(err: Any) -> None:
    """What grpc.aio documents for the error of a failed call: an AioRpcError snapshot."""
    assert isinstance(err, grpc.aio.AioRpcError)
    assert isinstance(err, grpc.RpcError)
    assert err.code() is C.NOT_FOUND
    assert err.details() == DETAILS
    initial, trailing = err.initial_metadata(), err.trailing_metadata()
    assert INITIAL in pairs(initial) and TRAILING in pairs(trailing)
    # grpc.aio.Metadata reads by key, too
    assert "x-init" in initial and initial["x-init"] == "hello" and initial.get("x-init") == "hello"
    assert "x-trail" in trailing and trailing["x-trail"] == "bye" and trailing.get_all("x-trail") == ["bye"]
    assert "x-missing" not in trailing and trailing.get("x-missing") is None
    debug = err.debug_error_string()
    assert isinstance(debug, str) and debug


async def check_aio_call_failed(call: Any) -> None:
    assert call.done() and not call.cancelled()
    assert await call.code() is C.NOT_FOUND
    assert await call.details() == DETAILS
    assert (await call.initial_metadata())["x-init"] == "hello"
    assert (await call.trailing_metadata())["x-trail"] == "bye"
    assert isinstance(await call.debug_error_string(), str)


async def eventually(condition: Callable[[], bool], timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.005)


async def collect(responses: AsyncIterator[Any]) -> list[str]:
    return [r.value async for r in responses]


def aio_variants() -> Any:
    return pytest.mark.parametrize("variant", AIO)


@aio_variants()
@pytest.mark.asyncio
async def test_aio_unary_failure(variant: str, server: PlainServer) -> None:
    value = key("fail")
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).unary(Msg(value=value), timeout=5)
        seen: list[Any] = []
        call.add_done_callback(seen.append)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        check_aio_error(info.value)
        await check_aio_call_failed(call)
        await eventually(lambda: seen == [call])
    assert server.calls[value] == 1


@aio_variants()
@pytest.mark.asyncio
async def test_aio_unary_success(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).unary(Msg(value=key("ok")), timeout=5)
        assert (await call).value == "ok"
        assert call.done() and not call.cancelled()
        assert await call.code() is C.OK
        assert (await call.initial_metadata())["x-init"] == "hello"
        assert (await call.trailing_metadata())["x-trail"] == "bye"
        seen: list[Any] = []
        call.add_done_callback(seen.append)
        await eventually(lambda: seen == [call])


@aio_variants()
@pytest.mark.asyncio
async def test_aio_unary_cancel(variant: str, server: PlainServer) -> None:
    value = key("slow")
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).unary(Msg(value=value), timeout=5)
        await server.await_calls(value)
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await call
        assert call.cancelled() and call.done()
        assert await call.code() is C.CANCELLED


@aio_variants()
@pytest.mark.asyncio
async def test_aio_deadline(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await AioStubs(channel).unary(Msg(value=key("slow")), timeout=0.3)
        assert info.value.code() is C.DEADLINE_EXCEEDED


@aio_variants()
@pytest.mark.asyncio
async def test_aio_response_stream_failure(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).stream(Msg(value=key("fail")), timeout=5)
        got: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for response in call:
                got.append(response.value)
        assert got == ["r0", "r1"]
        check_aio_error(info.value)
        await check_aio_call_failed(call)


@aio_variants()
@pytest.mark.asyncio
async def test_aio_response_stream_read(variant: str, server: PlainServer) -> None:
    old_grpc = tuple(int(p) for p in grpc.__version__.split(".")[:2]) < (1, 62)
    if variant.startswith("aio_interceptors") and old_grpc:
        pytest.skip("grpcio before 1.62: read() through grpc.aio interceptors differs (the floor run)")
    async with aio_channel(variant, server.target) as channel:
        stubs = AioStubs(channel)
        call = stubs.stream(Msg(value=key("fail")), timeout=5)
        assert (await call.read()).value == "r0"
        assert (await call.read()).value == "r1"
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call.read()
        check_aio_error(info.value)
        call = stubs.stream(Msg(value=key("ok")), timeout=5)
        assert (await call.read()).value == "r0"
        assert (await call.read()).value == "r1"
        assert await call.read() is grpc.aio.EOF
        assert await call.code() is C.OK


@aio_variants()
@pytest.mark.asyncio
async def test_aio_response_stream_success(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).stream(Msg(value=key("ok")), timeout=5)
        assert await collect(call) == ["r0", "r1"]
        assert await call.code() is C.OK
        assert (await call.initial_metadata())["x-init"] == "hello"
        assert (await call.trailing_metadata())["x-trail"] == "bye"


@aio_variants()
@pytest.mark.asyncio
async def test_aio_response_stream_cancel(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        call = AioStubs(channel).stream(Msg(value=key("slow")), timeout=5)
        assert (await call.read()).value == "r0"
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await call.read()
        assert call.cancelled() and call.done()
        assert await call.code() is C.CANCELLED


@aio_variants()
@pytest.mark.asyncio
async def test_aio_client_streaming_and_bidi_failures(variant: str, server: PlainServer) -> None:
    async with aio_channel(variant, server.target) as channel:
        stubs = AioStubs(channel)
        call = stubs.client_stream(iter([Msg(value=key("fail")), Msg(value="more")]), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        check_aio_error(info.value)
        await check_aio_call_failed(call)
        call = stubs.bidi(iter([Msg(value=key("fail"))]), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(call)
        check_aio_error(info.value)
        await check_aio_call_failed(call)


class AioRecorder:
    """A user's aio client interceptors, one per kind (grpc.aio registers an object once)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []
        recorder = self

        class UU(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
            async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
                call = await continuation(recorder.details(details), request)
                try:
                    await call
                except grpc.aio.AioRpcError as err:  # the pattern grpc.aio documents
                    recorder.seen.append(("unary_unary", err.code()))
                else:
                    recorder.seen.append(("unary_unary", await call.code()))
                return call

        class US(grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
            async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
                call = await continuation(recorder.details(details), request)
                recorder.seen.append(("unary_stream", None))
                return call

        class SU(grpc.aio.StreamUnaryClientInterceptor):  # type: ignore[misc]
            async def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
                call = await continuation(recorder.details(details), requests)
                try:
                    await call
                except grpc.aio.AioRpcError as err:
                    recorder.seen.append(("stream_unary", err.code()))
                return call

        class SS(grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
            async def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
                call = await continuation(recorder.details(details), requests)
                recorder.seen.append(("stream_stream", None))
                return call

        self.interceptors = [UU(), US(), SU(), SS()]

    @staticmethod
    def details(details: Any) -> Any:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), ADDED)
        return details._replace(metadata=metadata)


@aio_variants()
@pytest.mark.asyncio
async def test_aio_user_interceptors_of_every_kind(variant: str, server: PlainServer) -> None:
    recorder = AioRecorder()
    values = [key("fail") for _ in range(4)]
    async with aio_channel(variant, server.target, recorder.interceptors) as channel:
        stubs = AioStubs(channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.unary(Msg(value=values[0]), timeout=5)
        check_aio_error(info.value)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(stubs.stream(Msg(value=values[1]), timeout=5))
        check_aio_error(info.value)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stubs.client_stream(iter([Msg(value=values[2])]), timeout=5)
        check_aio_error(info.value)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await collect(stubs.bidi(iter([Msg(value=values[3])]), timeout=5))
        check_aio_error(info.value)
        assert (await stubs.unary(Msg(value=key("ok")), timeout=5)).value == "ok"
    assert recorder.seen == [
        ("unary_unary", C.NOT_FOUND),
        ("unary_stream", None),
        ("stream_unary", C.NOT_FOUND),
        ("stream_stream", None),
        ("unary_unary", C.OK),
    ]
    for value in values:
        assert server.calls[value] == 1
        assert ADDED in server.metadata[value]
