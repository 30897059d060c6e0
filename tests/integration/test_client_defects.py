"""Issue 12, the client edge: cancelling a retry's wait (11), wrong-kind channels (15),
typed errors that are grpc's Calls, Futures and AioRpcErrors (26, 27, 28, 31) and the
``retry`` parameter's type (23).

The servers are plain grpc servers on loopback (:class:`PlainServer` of the
transparency tests): what the client sees comes from the client side only. The
transparency tests hold grpc's documented behaviour bare and wrapped with the same
assertions; these hold what grpc-terminal adds on top (the typed class) and the
exact defects the issue lists.
"""

from __future__ import annotations

import asyncio
import pickle
import threading
import time
import typing
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from test_transparency_client import (
    CODEC,
    DETAILS,
    INITIAL,
    SERVICE,
    TRAILING,
    Msg,
    PlainServer,
    Recorder,
    key,
    pairs,
)

import grpc_terminal as gt

C = grpc.StatusCode
#: What grpc says about a call the application cancelled.
LOCAL_CANCELLATION_DETAILS = "Locally cancelled by application!"
#: Would retry an UNAVAILABLE with a 20 s RetryInfo after waiting those 20 s.
POLICY = gt.RetryPolicy(max_attempts=3, initial_backoff=0.01, max_backoff=0.05)
#: How long after the cancel the reader must be back (the server asked for 20 s).
PROMPT = 2.0


@pytest.fixture(scope="module")
def server() -> Iterator[PlainServer]:
    s = PlainServer()
    yield s
    s.stop()


@pytest.fixture
def raw(server: PlainServer) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(server.target)
    yield channel
    channel.close()


def stream_of(channel: grpc.Channel) -> Any:
    return channel.unary_stream(f"/{SERVICE}/ServerStream", **CODEC)


def unary_of(channel: Any) -> Any:
    return channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)


# -- 11: cancel() ends the wait between attempts ----------------------------------------------------


class Reader(threading.Thread):
    """Reads a sync response stream to its end in a thread of its own."""

    def __init__(self, responses: Any) -> None:
        super().__init__(daemon=True)
        self.responses = responses
        self.error: BaseException | None = None
        self.ended_at = 0.0

    def run(self) -> None:
        try:
            list(self.responses)
        except BaseException as exc:
            self.error = exc
        self.ended_at = time.monotonic()


def cancel_sync_stream_in_its_backoff(server: PlainServer, responses: Any, value: str) -> Reader:
    reader = Reader(responses)
    reader.start()
    server.wait_for_calls(value)
    time.sleep(0.2)
    assert reader.is_alive(), f"the reader should be waiting out the server's 20 s, got {reader.error!r}"
    cancelled_at = time.monotonic()
    assert responses.cancel() is True
    reader.join(5)
    assert not reader.is_alive(), "cancel() did not end the wait"
    assert reader.ended_at - cancelled_at < PROMPT
    return reader


def check_local_cancellation(err: BaseException | None) -> None:
    """What grpc raises from a cancelled call's iterator: a CANCELLED RpcError that is a Call."""
    assert isinstance(err, gt.Cancelled), repr(err)
    assert isinstance(err, grpc.RpcError) and isinstance(err, grpc.Call)
    assert err.code() is C.CANCELLED
    assert err.details() == LOCAL_CANCELLATION_DETAILS


#: The wait a server asks for with ``forever``: past ``threading.TIMEOUT_MAX``.
FOREVER_POLICY = POLICY.replace(max_server_delay=10**11)
#: What the server asks for, and the policy that waits for it.
BACKOFFS = [("busy", POLICY), ("forever", FOREVER_POLICY)]


@pytest.mark.parametrize(("behaviour", "policy"), BACKOFFS, ids=["20 s", "1e10 s"])
def test_sync_stream_cancel_ends_the_backoff(
    server: PlainServer, raw: grpc.Channel, behaviour: str, policy: gt.RetryPolicy
) -> None:
    value = key(behaviour)
    responses = stream_of(gt.intercept_channel(raw, retry=policy))(Msg(value=value), timeout=None)
    reader = cancel_sync_stream_in_its_backoff(server, responses, value)
    check_local_cancellation(reader.error)
    assert responses.cancelled() and responses.done() and not responses.is_active()
    assert responses.code() is C.CANCELLED
    with pytest.raises(grpc.FutureCancelledError):
        responses.result()
    with pytest.raises(gt.Cancelled):  # it stays cancelled
        next(responses)
    assert responses.cancel() is False
    time.sleep(0.1)
    assert server.calls[value] == 1  # no attempt after the cancel


def test_sync_stream_cancel_with_an_injected_sleep(server: PlainServer, raw: grpc.Channel) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:  # a test's sleep: short, and deaf to cancel()
        slept.append(seconds)
        time.sleep(0.6)

    value = key("busy")
    channel = gt.intercept_channel(raw, retry=POLICY.replace(sleep=sleep))
    responses = stream_of(channel)(Msg(value=value), timeout=60)
    reader = Reader(responses)
    reader.start()
    server.wait_for_calls(value)
    time.sleep(0.2)
    assert responses.cancel() is True
    reader.join(5)
    assert not reader.is_alive()
    assert slept == [pytest.approx(20, abs=1)]
    # the injected sleep was called, and cancellation checked right after it
    check_local_cancellation(reader.error)
    assert server.calls[value] == 1


@pytest.mark.parametrize(("behaviour", "policy"), BACKOFFS, ids=["20 s", "1e10 s"])
def test_sync_future_returns_at_once_and_cancel_ends_the_backoff(
    server: PlainServer, raw: grpc.Channel, behaviour: str, policy: gt.RetryPolicy
) -> None:
    value = key(behaviour)
    stub = unary_of(gt.intercept_channel(raw, retry=policy))
    box: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: box.setdefault("future", stub.future(Msg(value=value), timeout=None)), daemon=True
    )
    caller.start()
    caller.join(PROMPT)
    assert not caller.is_alive(), "future() must return before the retry's 20 s wait"
    future = box["future"]
    server.wait_for_calls(value)
    time.sleep(0.2)
    assert future.running() and not future.done()
    fired = threading.Event()
    future.add_done_callback(lambda _f: fired.set())
    cancelled_at = time.monotonic()
    assert future.cancel() is True
    with pytest.raises(grpc.FutureCancelledError):
        future.result(timeout=5)
    assert time.monotonic() - cancelled_at < PROMPT
    assert future.cancelled() and future.done()
    assert future.code() is C.CANCELLED
    assert fired.wait(1)
    time.sleep(0.1)
    assert server.calls[value] == 1


@pytest.mark.asyncio
async def test_aio_stream_cancel_ends_the_backoff(server: PlainServer) -> None:
    value = key("busy")
    async with grpc.aio.insecure_channel(server.target, interceptors=gt.aio_interceptors(retry=POLICY)) as ch:
        call = stream_of(ch)(Msg(value=value), timeout=60)

        async def read() -> list[Any]:
            return [r async for r in call]

        reader = asyncio.ensure_future(read())
        await server.await_calls(value)
        await asyncio.sleep(0.2)
        assert not reader.done(), "the reader should be waiting out the server's 20 s"
        cancelled_at = time.monotonic()
        assert call.cancel() is True
        # grpc.aio raises CancelledError from a cancelled call being read
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - cancelled_at < PROMPT
        assert call.cancelled() and call.done()
        assert await call.code() is C.CANCELLED
        assert await call.details() == LOCAL_CANCELLATION_DETAILS
    assert server.calls[value] == 1


@pytest.mark.asyncio
async def test_aio_stream_read_cancel_ends_the_backoff(server: PlainServer) -> None:
    value = key("busy")
    async with grpc.aio.insecure_channel(server.target, interceptors=gt.aio_interceptors(retry=POLICY)) as ch:
        call = stream_of(ch)(Msg(value=value), timeout=60)
        reader = asyncio.ensure_future(call.read())
        await server.await_calls(value)
        await asyncio.sleep(0.2)
        assert not reader.done()
        cancelled_at = time.monotonic()
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(reader, 5)
        assert time.monotonic() - cancelled_at < PROMPT
        assert await call.code() is C.CANCELLED


@pytest.mark.asyncio
async def test_aio_unary_cancel_ends_the_backoff(server: PlainServer) -> None:
    value = key("busy")
    async with grpc.aio.insecure_channel(server.target, interceptors=gt.aio_interceptors(retry=POLICY)) as ch:
        call = unary_of(ch)(Msg(value=value), timeout=60)

        async def wait() -> Any:
            return await call

        waiter = asyncio.ensure_future(wait())
        await server.await_calls(value)
        await asyncio.sleep(0.2)
        assert not waiter.done()
        cancelled_at = time.monotonic()
        assert call.cancel() is True
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(waiter, 5)
        assert time.monotonic() - cancelled_at < PROMPT
        assert call.cancelled()
        assert await call.code() is C.CANCELLED
    assert server.calls[value] == 1


# -- 15: wrong-kind channels are refused --------------------------------------------------------------


@pytest.mark.asyncio
async def test_intercept_channel_refuses_an_aio_channel(server: PlainServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as aio_channel:
        with pytest.raises(TypeError, match="aio_intercept_channel"):
            gt.intercept_channel(aio_channel)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="aio_interceptors"):
            gt.intercept_channel(aio_channel, retry=POLICY)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="intercept_channel"):
            gt.intercept_channel(gt.aio_intercept_channel(aio_channel))  # type: ignore[arg-type]


def test_aio_intercept_channel_refuses_a_sync_channel(raw: grpc.Channel) -> None:
    with pytest.raises(TypeError, match=r"gt\.intercept_channel"):
        gt.aio_intercept_channel(raw)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"gt\.intercept_channel"):
        gt.aio_intercept_channel(gt.intercept_channel(raw))  # type: ignore[arg-type]


@pytest.mark.parametrize("thing", [None, "127.0.0.1:50051", 42, object()])
def test_what_is_not_a_channel_is_refused_when_wrapped_not_at_first_use(thing: object) -> None:
    with pytest.raises(TypeError, match=r"intercept_channel\(\) takes a sync grpc.Channel, got"):
        gt.intercept_channel(thing)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"intercept_channel\(\) takes a sync grpc.Channel, got"):
        gt.intercept_channel(thing, retry=POLICY)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"aio_intercept_channel\(\) takes a grpc.aio channel, got"):
        gt.aio_intercept_channel(thing)  # type: ignore[arg-type]


def test_aio_interceptors_on_a_sync_channel_are_refused(raw: grpc.Channel) -> None:
    # grpc itself refuses them (they implement only grpc.aio's interfaces)
    with pytest.raises(TypeError):
        grpc.intercept_channel(raw, *gt.aio_interceptors())
    with pytest.raises(TypeError):
        grpc.intercept_channel(raw, *gt.aio_interceptors(retry=POLICY))


# -- 26, 27, 28: a typed error on a sync channel is grpc's Call and Future ------------------------------

SYNC_WRAPPERS = {
    "intercept_channel": lambda raw: gt.intercept_channel(raw),
    "intercept_channel-retry": lambda raw: gt.intercept_channel(raw, retry=POLICY),
}


def check_sync_typed_call(err: BaseException) -> None:
    """The typed error is a grpc.Call answering from the real call, and a finished Future."""
    assert type(err) is gt.NotFound
    assert isinstance(err, grpc.Call) and isinstance(err, grpc.Future)
    raw_err = err.__cause__
    assert isinstance(raw_err, grpc.RpcError) and not isinstance(raw_err, gt.StatusError)
    assert err.code() is C.NOT_FOUND and err.details() == DETAILS
    assert INITIAL in pairs(err.initial_metadata())  # was always ()
    assert pairs(err.initial_metadata()) == pairs(raw_err.initial_metadata())  # type: ignore[attr-defined]
    assert TRAILING in pairs(err.trailing_metadata())
    # the core's string, not repr(err)
    assert err.debug_error_string() == raw_err.debug_error_string()  # type: ignore[attr-defined]
    assert err.debug_error_string() != repr(err)
    # the RpcContext methods of an ended RPC (grpc's own raised error has none of them)
    assert err.is_active() is False
    assert err.time_remaining() is None
    assert err.add_callback(lambda: None) is False
    assert err.cancel() is False
    # the Future methods grpc's raised errors carry
    assert err.done() and not err.running() and not err.cancelled()
    assert err.exception() is err
    with pytest.raises(gt.NotFound) as again:
        err.result()
    assert again.value is err
    assert err.traceback() is err.__traceback__ is not None
    seen: list[Any] = []
    err.add_done_callback(seen.append)
    assert seen == [err]


@pytest.mark.parametrize("wrap", SYNC_WRAPPERS)
def test_sync_typed_error_is_the_call(raw: grpc.Channel, wrap: str) -> None:
    stub = unary_of(SYNC_WRAPPERS[wrap](raw))
    with pytest.raises(gt.NotFound) as info:
        stub(Msg(value=key("fail")), timeout=5)
    check_sync_typed_call(info.value)
    with pytest.raises(gt.NotFound) as info:
        stub.with_call(Msg(value=key("fail")), timeout=5)
    check_sync_typed_call(info.value)
    future = stub.future(Msg(value=key("fail")), timeout=5)
    err = future.exception(timeout=5)
    assert isinstance(err, gt.NotFound)
    check_sync_typed_call(err)
    with pytest.raises(gt.NotFound) as info:
        list(stream_of(SYNC_WRAPPERS[wrap](raw))(Msg(value=key("fail")), timeout=5))
    check_sync_typed_call(info.value)


@pytest.mark.parametrize("wrap", SYNC_WRAPPERS)
def test_a_grpc_interceptor_stacked_on_a_wrapped_channel(raw: grpc.Channel, wrap: str) -> None:
    recorder = Recorder()  # its continuation result must be a Call-Future: .exception(), .code()
    stub = unary_of(grpc.intercept_channel(SYNC_WRAPPERS[wrap](raw), recorder))
    with pytest.raises(gt.NotFound) as info:  # was AttributeError: no attribute 'result'
        stub(Msg(value=key("fail")), timeout=5)
    check_sync_typed_call(info.value)
    with pytest.raises(gt.NotFound):
        stub.with_call(Msg(value=key("fail")), timeout=5)
    future = stub.future(Msg(value=key("fail")), timeout=5)
    with pytest.raises(gt.NotFound):
        future.result(timeout=5)
    assert stub(Msg(value=key("ok")), timeout=5).value == "ok"
    assert recorder.seen == [("unary_unary", C.NOT_FOUND)] * 3 + [("unary_unary", C.OK)]


@pytest.mark.parametrize("wrap", SYNC_WRAPPERS)
def test_sync_calls_have_debug_error_string(raw: grpc.Channel, wrap: str) -> None:
    channel = SYNC_WRAPPERS[wrap](raw)
    stub = unary_of(channel)
    _, call = stub.with_call(Msg(value=key("ok")), timeout=5)
    assert isinstance(call.debug_error_string(), str)
    future = stub.future(Msg(value=key("fail")), timeout=5)
    err = future.exception(timeout=5)
    assert future.debug_error_string() == err.debug_error_string() == err.__cause__.debug_error_string()
    responses = stream_of(channel)(Msg(value=key("fail")), timeout=5)
    with pytest.raises(gt.NotFound) as info:
        list(responses)
    assert responses.debug_error_string() == info.value.debug_error_string()
    assert "nothing here" in responses.debug_error_string()


def test_sync_typed_errors_pickle_with_what_the_call_received(raw: grpc.Channel) -> None:
    with pytest.raises(gt.NotFound) as info:
        unary_of(gt.intercept_channel(raw))(Msg(value=key("fail")), timeout=5)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is gt.NotFound
    assert INITIAL in pairs(clone.initial_metadata())
    assert clone.debug_error_string() == info.value.debug_error_string()
    assert clone.trailing_metadata() == info.value.trailing_metadata()
    assert isinstance(clone, grpc.Call) and clone.done()


def test_a_typed_error_built_locally_is_a_finished_call() -> None:
    err = gt.NotFound("user 7")
    assert isinstance(err, grpc.Call) and isinstance(err, grpc.Future)
    assert isinstance(err, grpc.aio.AioRpcError)
    assert err.initial_metadata() == ()
    assert err.debug_error_string() == repr(err)
    assert err.args == ("user 7",)
    assert err.traceback() is None and err.exception() is err
    assert type(pickle.loads(pickle.dumps(err))) is gt.NotFound


# -- 31: a typed error on an aio channel is an AioRpcError --------------------------------------------


def aio_wrapped(how: str, target: str) -> Any:
    if how == "aio_intercept_channel":
        return gt.aio_intercept_channel(grpc.aio.insecure_channel(target))
    retry = POLICY if how.endswith("-retry") else None
    return grpc.aio.insecure_channel(target, interceptors=gt.aio_interceptors(retry=retry))


AIO_WRAPPERS = ["aio_intercept_channel", "aio_interceptors", "aio_interceptors-retry"]


def check_aio_typed_error(err: BaseException) -> None:
    assert type(err) is gt.NotFound
    assert isinstance(err, grpc.aio.AioRpcError)
    raw_err = err.__cause__
    assert isinstance(raw_err, grpc.aio.AioRpcError) and not isinstance(raw_err, gt.StatusError)
    assert err.code() is raw_err.code() is C.NOT_FOUND
    assert err.details() == raw_err.details() == DETAILS
    assert err.initial_metadata() == raw_err.initial_metadata()
    assert err.initial_metadata()["x-init"] == "hello"
    assert err.trailing_metadata() == raw_err.trailing_metadata()
    assert "x-trail" in err.trailing_metadata() and err.trailing_metadata()["x-trail"] == "bye"
    assert err.debug_error_string() == raw_err.debug_error_string()


@pytest.mark.parametrize("how", AIO_WRAPPERS)
@pytest.mark.asyncio
async def test_aio_typed_errors_are_aio_rpc_errors(server: PlainServer, how: str) -> None:
    async with aio_wrapped(how, server.target) as channel:
        try:
            await unary_of(channel)(Msg(value=key("fail")), timeout=5)
        except grpc.aio.AioRpcError as err:  # the class grpc.aio documents
            check_aio_typed_error(err)
        else:
            pytest.fail("no error")
        try:
            async for _ in stream_of(channel)(Msg(value=key("fail")), timeout=5):
                pass
        except grpc.aio.AioRpcError as err:
            check_aio_typed_error(err)
        else:
            pytest.fail("no error")


@pytest.mark.asyncio
async def test_aio_typed_errors_pickle(server: PlainServer) -> None:
    async with aio_wrapped("aio_interceptors", server.target) as channel:
        with pytest.raises(gt.NotFound) as info:
            await unary_of(channel)(Msg(value=key("fail")), timeout=5)
    clone = pickle.loads(pickle.dumps(info.value))
    assert type(clone) is gt.NotFound and isinstance(clone, grpc.aio.AioRpcError)
    assert clone.initial_metadata()["x-init"] == "hello"
    assert clone.trailing_metadata()["x-trail"] == "bye"
    assert clone.debug_error_string() == info.value.debug_error_string()


# -- 23: retry is typed ------------------------------------------------------------------------------


@pytest.mark.parametrize("fn", [gt.intercept_channel, gt.aio_interceptors])
def test_retry_parameter_is_typed(fn: Any) -> None:
    assert typing.get_type_hints(fn)["retry"] == gt.RetryPolicy | None
