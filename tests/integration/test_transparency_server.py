"""Server-side transparency: what grpc documents for handlers holds behind our interceptors.

Every test runs the same handler on a real loopback server twice, bare and
behind :class:`grpc_terminal.ServerInterceptor` / :class:`AioServerInterceptor`,
and makes the same assertions on what a plain grpc client receives: the code,
the details, initial and trailing metadata, the responses. Server kinds:
``sync`` (``grpc.server``), ``aio`` (``grpc.aio.server`` with async
handlers) and ``aio-sync`` (``grpc.aio.server`` with plain functions).

Only grpc's own documented outcomes are here (``abort``,
``abort_with_status``, ``set_code``/``set_details``/``set_trailing_metadata``,
``send_initial_metadata``, non-blocking handlers, ``abort`` with an int
code). Where the library deliberately differs (an unexpected exception gets a
generic message) there is no test here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt

from harness import LoopThread

Msg = wrappers_pb2.StringValue
SERVICE = "transparency.Probe"
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString,
    "response_deserializer": Msg.FromString,
}
TIMEOUT = 5.0

SERVERS = ["sync", "aio", "aio-sync"]
MODES = ["bare", "wrapped"]


@contextlib.contextmanager
def serve(
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]], server: str, mode: str, loop: LoopThread
) -> Iterator[grpc.Channel]:
    """A real server on 127.0.0.1 with ``handlers`` under SERVICE; yields a plain grpc channel."""
    generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
    pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="transparency")
    if server == "sync":
        interceptors: list[Any] = [gt.ServerInterceptor()] if mode == "wrapped" else []
        sync_server = grpc.server(pool, interceptors=interceptors)
        sync_server.add_generic_rpc_handlers((generic,))
        port = sync_server.add_insecure_port("127.0.0.1:0")
        sync_server.start()
        stop: Callable[[], object] = lambda: sync_server.stop(None).wait(5)  # noqa: E731
    else:

        async def start() -> tuple[grpc.aio.Server, int]:
            aio_interceptors: list[Any] = [gt.AioServerInterceptor()] if mode == "wrapped" else []
            aio_server = grpc.aio.server(migration_thread_pool=pool, interceptors=aio_interceptors)
            aio_server.add_generic_rpc_handlers((generic,))
            bound = aio_server.add_insecure_port("127.0.0.1:0")
            await aio_server.start()
            return aio_server, bound

        aio_server, port = loop.run(start())
        stop = lambda: loop.run(aio_server.stop(None))  # noqa: E731
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        stop()
        pool.shutdown(wait=False, cancel_futures=True)


def _unary(channel: grpc.Channel, value: str = "x", metadata: Any = None) -> tuple[Any, grpc.Call]:
    stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
    response, call = stub.with_call(Msg(value=value), timeout=TIMEOUT, metadata=metadata)
    return response, call


def _unary_error(channel: grpc.Channel, value: str = "x") -> grpc.RpcError:
    stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
    with pytest.raises(grpc.RpcError) as caught:
        stub(Msg(value=value), timeout=TIMEOUT)
    return caught.value


def _stream(channel: grpc.Channel, value: str = "x") -> tuple[list[str], grpc.RpcError | None, Any]:
    call = channel.unary_stream(f"/{SERVICE}/Stream", **CLIENT)(Msg(value=value), timeout=TIMEOUT)
    got: list[str] = []
    try:
        for response in call:
            got.append(response.value)
    except grpc.RpcError as exc:
        return got, exc, call
    return got, None, call


def _md(pairs: Any) -> dict[str, Any]:
    return dict(pairs or ())


def _handlers(sync_unary: Any, aio_unary: Any, server: str,
              sync_stream: Any = None, aio_stream: Any = None) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
    unary = aio_unary if server == "aio" else sync_unary
    out = {"Unary": grpc.unary_unary_rpc_method_handler(unary, **CODEC)}
    stream = aio_stream if server == "aio" else sync_stream
    if stream is not None:
        out["Stream"] = grpc.unary_stream_rpc_method_handler(stream, **CODEC)
    return out


# -- abort ------------------------------------------------------------------------------


def _abort_sync(request: Msg, context: Any) -> Msg:
    context.send_initial_metadata((("x-initial", "i1"),))
    context.set_trailing_metadata((("x-trailing", "t1"), ("x-blob-bin", b"\x00\x01")))
    context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
    return Msg(value="not reached")


async def _abort_aio(request: Msg, context: Any) -> Msg:
    await context.send_initial_metadata((("x-initial", "i1"),))
    context.set_trailing_metadata((("x-trailing", "t1"), ("x-blob-bin", b"\x00\x01")))
    await context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
    raise AssertionError("not reached")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_abort_sends_code_details_and_metadata(server: str, mode: str, loop_thread: LoopThread) -> None:
    with serve(_handlers(_abort_sync, _abort_aio, server), server, mode, loop_thread) as channel:
        err = _unary_error(channel)
    assert isinstance(err, grpc.Call)
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert err.details() == "no such user"
    assert _md(err.initial_metadata())["x-initial"] == "i1"
    trailing = _md(err.trailing_metadata())
    assert trailing["x-trailing"] == "t1" and trailing["x-blob-bin"] == b"\x00\x01"
    assert gt.STATUS_DETAILS_KEY not in trailing


def _abort_args_sync(request: Msg, context: Any) -> Msg:
    context.abort(grpc.StatusCode.FAILED_PRECONDITION, request.value)
    return Msg(value="not reached")


async def _abort_args_aio(request: Msg, context: Any) -> Msg:
    await context.abort(grpc.StatusCode.FAILED_PRECONDITION, request.value, (("x-passed", "p"),))
    raise AssertionError("not reached")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", ["sync", "aio"])
def test_abort_with_unicode_details(server: str, mode: str, loop_thread: LoopThread) -> None:
    text = "état: überfällig ✓"
    with serve(_handlers(_abort_args_sync, _abort_args_aio, server), server, mode, loop_thread) as channel:
        err = _unary_error(channel, text)
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == text
    if server == "aio":  # grpc.aio's abort takes trailing metadata as its third argument
        assert _md(err.trailing_metadata())["x-passed"] == "p"


def _abort_with_status_sync(request: Msg, context: Any) -> Msg:
    context.set_trailing_metadata((("x-earlier", "e"),))
    context.abort_with_status(_Status(grpc.StatusCode.ALREADY_EXISTS, "exists", (("x-status", "s"),)))
    return Msg(value="not reached")


async def _abort_with_status_aio(request: Msg, context: Any) -> Msg:
    await context.abort_with_status(_Status(grpc.StatusCode.ALREADY_EXISTS, "exists", (("x-status", "s"),)))
    raise AssertionError("not reached")


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", ["sync", "aio"])  # no abort_with_status on grpc.aio's sync context
def test_abort_with_status(server: str, mode: str, loop_thread: LoopThread) -> None:
    handlers = _handlers(_abort_with_status_sync, _abort_with_status_aio, server)
    with serve(handlers, server, mode, loop_thread) as channel:
        err = _unary_error(channel)
    assert err.code() is grpc.StatusCode.ALREADY_EXISTS
    assert err.details() == "exists"
    trailing = _md(err.trailing_metadata())
    assert trailing["x-status"] == "s"
    assert "x-earlier" not in trailing  # abort_with_status replaces what was set before


def _abort_int_sync(request: Msg, context: Any) -> Msg:
    context.abort(5, "int details")
    return Msg(value="not reached")


async def _abort_int_aio(request: Msg, context: Any) -> Msg:
    await context.abort(5, "int details")
    raise AssertionError("not reached")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_abort_with_an_int_code_keeps_grpcs_outcome(server: str, mode: str, loop_thread: LoopThread) -> None:
    with serve(_handlers(_abort_int_sync, _abort_int_aio, server), server, mode, loop_thread) as channel:
        err = _unary_error(channel)
    # grpc.server sends UNKNOWN for a code that is not a StatusCode; grpc.aio takes the number.
    expected = grpc.StatusCode.UNKNOWN if server == "sync" else grpc.StatusCode.NOT_FOUND
    assert err.code() is expected
    assert err.details() == "int details"


def _abort_in_group_sync(request: Msg, context: Any) -> Msg:
    try:
        context.abort(grpc.StatusCode.NOT_FOUND, "gone")
    except Exception as exc:  # grpc.server's abort raises; a helper thread or a group may carry it
        raise ExceptionGroup("workers", [exc]) from None
    return Msg(value="not reached")


async def _abort_in_group_aio(request: Msg, context: Any) -> Msg:
    async def worker() -> None:
        await context.abort(grpc.StatusCode.NOT_FOUND, "gone")

    async with asyncio.TaskGroup() as group:
        group.create_task(worker())
    return Msg(value="not reached")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_abort_carried_by_an_exception_group(server: str, mode: str, loop_thread: LoopThread) -> None:
    handlers = _handlers(_abort_in_group_sync, _abort_in_group_aio, server)
    with serve(handlers, server, mode, loop_thread) as channel:
        err = _unary_error(channel)
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert err.details() == "gone"


def _abort_stream_sync(request: Msg, context: Any) -> Iterator[Msg]:
    yield Msg(value="r0")
    yield Msg(value="r1")
    context.set_trailing_metadata((("x-after", "a"),))
    context.abort(grpc.StatusCode.ABORTED, "conflict")


async def _abort_stream_aio(request: Msg, context: Any) -> Any:
    yield Msg(value="r0")
    yield Msg(value="r1")
    context.set_trailing_metadata((("x-after", "a"),))
    await context.abort(grpc.StatusCode.ABORTED, "conflict")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", ["sync", "aio"])
def test_abort_mid_stream_after_responses(server: str, mode: str, loop_thread: LoopThread) -> None:
    handlers = _handlers(_abort_sync, _abort_aio, server, _abort_stream_sync, _abort_stream_aio)
    with serve(handlers, server, mode, loop_thread) as channel:
        got, err, _call = _stream(channel)
    assert got == ["r0", "r1"]
    assert err is not None and err.code() is grpc.StatusCode.ABORTED and err.details() == "conflict"
    assert _md(err.trailing_metadata())["x-after"] == "a"


async def _write_style_aio(request: Msg, context: Any) -> None:
    await context.write(Msg(value="w0"))
    await context.abort(grpc.StatusCode.OUT_OF_RANGE, "past the end")


@pytest.mark.parametrize("mode", MODES)
def test_aio_write_style_stream_then_abort(mode: str, loop_thread: LoopThread) -> None:
    handlers = {"Stream": grpc.unary_stream_rpc_method_handler(_write_style_aio, **CODEC)}
    with serve(handlers, "aio", mode, loop_thread) as channel:
        got, err, _call = _stream(channel)
    assert got == ["w0"]
    assert err is not None and err.code() is grpc.StatusCode.OUT_OF_RANGE and err.details() == "past the end"


# -- set_code / set_details / set_trailing_metadata ------------------------------------------


def _set_status_sync(request: Msg, context: Any) -> Msg:
    context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
    context.set_details("quota used up")
    context.set_trailing_metadata((("x-quota", "0"),))
    return Msg(value="ignored")


async def _set_status_aio(request: Msg, context: Any) -> Msg:
    context.set_code(grpc.StatusCode.RESOURCE_EXHAUSTED)
    context.set_details("quota used up")
    context.set_trailing_metadata((("x-quota", "0"),))
    return Msg(value="ignored")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_set_code_then_return_sends_that_status(server: str, mode: str, loop_thread: LoopThread) -> None:
    with serve(_handlers(_set_status_sync, _set_status_aio, server), server, mode, loop_thread) as channel:
        err = _unary_error(channel)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.details() == "quota used up"
    assert _md(err.trailing_metadata())["x-quota"] == "0"


def _set_details_then_raise_sync(request: Msg, context: Any) -> Msg:
    context.set_code(grpc.StatusCode.UNAVAILABLE)
    context.set_details("try later")
    raise RuntimeError("internal text")


@pytest.mark.parametrize("mode", MODES)
def test_sync_set_code_and_details_then_raise_sends_them(mode: str, loop_thread: LoopThread) -> None:
    # grpc.server keeps a status set before the raise; grpc.aio replaces its
    # details with the exception's text, which the library deliberately never sends.
    with serve(_handlers(_set_details_then_raise_sync, None, "sync"), "sync", mode, loop_thread) as channel:
        err = _unary_error(channel)
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert err.details() == "try later"


def _success_sync(request: Msg, context: Any) -> Msg:
    seen = _md(context.invocation_metadata()).get("x-request", "")
    context.send_initial_metadata((("x-initial", "i2"),))
    context.set_trailing_metadata((("x-trailing", "t2"), ("x-bytes-bin", b"\xff")))
    remaining = context.time_remaining()
    return Msg(value=f"{request.value}|{seen}|{remaining is not None and 0 < remaining <= TIMEOUT + 1}")


async def _success_aio(request: Msg, context: Any) -> Msg:
    seen = _md(context.invocation_metadata()).get("x-request", "")
    await context.send_initial_metadata((("x-initial", "i2"),))
    context.set_trailing_metadata((("x-trailing", "t2"), ("x-bytes-bin", b"\xff")))
    remaining = context.time_remaining()
    return Msg(value=f"{request.value}|{seen}|{remaining is not None and 0 < remaining <= TIMEOUT + 1}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_success_with_metadata_both_ways(server: str, mode: str, loop_thread: LoopThread) -> None:
    with serve(_handlers(_success_sync, _success_aio, server), server, mode, loop_thread) as channel:
        response, call = _unary(channel, "hello", metadata=(("x-request", "r1"),))
    assert response.value == "hello|r1|True"
    assert call.code() is grpc.StatusCode.OK
    assert _md(call.initial_metadata())["x-initial"] == "i2"
    trailing = _md(call.trailing_metadata())
    assert trailing["x-trailing"] == "t2" and trailing["x-bytes-bin"] == b"\xff"


def _peer_sync(request: Msg, context: Any) -> Msg:
    peer_ok = context.peer().startswith("ipv4:127.0.0.1:")
    return Msg(value=f"{peer_ok}|{isinstance(context.auth_context(), dict)}")


async def _peer_aio(request: Msg, context: Any) -> Msg:
    peer_ok = context.peer().startswith("ipv4:127.0.0.1:")
    return Msg(value=f"{peer_ok}|{isinstance(context.auth_context(), dict)}")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("server", SERVERS)
def test_context_queries_answer_as_grpcs(server: str, mode: str, loop_thread: LoopThread) -> None:
    with serve(_handlers(_peer_sync, _peer_aio, server), server, mode, loop_thread) as channel:
        response, _call = _unary(channel)
    assert response.value == "True|True"


# -- non-blocking handlers (grpc.server) ------------------------------------------------------

_NON_BLOCKING_POOL = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="nonblocking-pool")


def _non_blocking_stream(request: Msg, context: Any, send_response: Callable[[Any], None]) -> None:
    def produce() -> None:
        name = threading.current_thread().name
        for i in range(3):
            send_response(Msg(value=f"{request.value}{i}"))
        send_response(Msg(value=name.split("_")[0]))
        send_response(None)

    _NON_BLOCKING_POOL.submit(produce)


def _handler_thread(request: Msg, context: Any) -> Msg:
    return Msg(value=threading.current_thread().name.split("_")[0])


_non_blocking_stream.experimental_non_blocking = True  # type: ignore[attr-defined]
_non_blocking_stream.experimental_thread_pool = _NON_BLOCKING_POOL  # type: ignore[attr-defined]
_handler_thread.experimental_thread_pool = _NON_BLOCKING_POOL  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", MODES)
def test_non_blocking_stream_handler(mode: str, loop_thread: LoopThread) -> None:
    handlers = {"Stream": grpc.unary_stream_rpc_method_handler(_non_blocking_stream, **CODEC)}
    with serve(handlers, "sync", mode, loop_thread) as channel:
        got, err, _call = _stream(channel, "n")
    assert err is None
    assert got == ["n0", "n1", "n2", "nonblocking-pool"]


@pytest.mark.parametrize("mode", MODES)
def test_experimental_thread_pool_runs_the_handler(mode: str, loop_thread: LoopThread) -> None:
    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(_handler_thread, **CODEC)}
    with serve(handlers, "sync", mode, loop_thread) as channel:
        response, _call = _unary(channel)
    assert response.value == "nonblocking-pool"


# -- cancellation reaches an aio handler --------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_aio_handler_sees_client_cancellation(mode: str, loop_thread: LoopThread) -> None:
    started, cancelled = threading.Event(), threading.Event()

    async def slow(request: Msg, context: Any) -> Msg:
        started.set()
        try:
            await asyncio.sleep(TIMEOUT)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return Msg(value="late")

    handlers = {"Unary": grpc.unary_unary_rpc_method_handler(slow, **CODEC)}
    with serve(handlers, "aio", mode, loop_thread) as channel:
        future = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT).future(Msg(value="x"), timeout=TIMEOUT)
        assert started.wait(TIMEOUT)
        future.cancel()  # type: ignore[no-untyped-call]
        assert cancelled.wait(TIMEOUT)
    assert future.cancelled()
