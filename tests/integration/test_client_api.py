"""Every way of making a call raises the typed error, with the raw error as cause."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import grpc
import grpc.aio
import pytest

import grpc_terminal as gt

from harness import SERVICE, AioServer, LoopThread, Msg, Scenario, SyncServer, register

CODEC = {"request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString}


@pytest.fixture(scope="module")
def sync_server() -> Iterator[SyncServer]:
    server = SyncServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def aio_server(loop_thread: LoopThread) -> Iterator[AioServer]:
    server = AioServer(loop_thread)
    yield server
    server.stop()


def _terminal() -> str:
    return register(Scenario(responses=1, raise_=gt.LicenseExhausted("seats: 100/100")))


def _check(err: BaseException) -> None:
    assert type(err) is gt.LicenseExhausted
    assert isinstance(err, grpc.RpcError)
    assert isinstance(err.__cause__, grpc.RpcError)
    assert err.detail == "seats: 100/100"


def test_sync_call_forms(sync_server: SyncServer) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{sync_server.port}") as raw:
        channel = gt.intercept_channel(raw)
        unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
        with pytest.raises(gt.LicenseExhausted) as info:
            unary(Msg(value=_terminal()), timeout=5)
        _check(info.value)
        with pytest.raises(gt.LicenseExhausted) as info:
            unary.with_call(Msg(value=_terminal()), timeout=5)
        _check(info.value)

        future = unary.future(Msg(value=_terminal()), timeout=5)
        with pytest.raises(gt.LicenseExhausted) as info:
            future.result()
        _check(info.value)
        _check(future.exception())  # type: ignore[arg-type]
        assert future.exception() is future.exception()  # converted once
        assert future.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert future.done()
        seen: list[object] = []
        future.add_done_callback(seen.append)
        assert seen == [future]

        ok, call = unary.with_call(Msg(value=register(Scenario())), timeout=5)
        assert ok.value == "ok"
        assert call.code() is grpc.StatusCode.OK

        stream = channel.unary_stream(f"/{SERVICE}/ServerStream", **CODEC)
        responses = stream(Msg(value=_terminal()), timeout=5)
        assert next(responses).value == "r0"
        with pytest.raises(gt.LicenseExhausted) as info:
            next(responses)
        _check(info.value)
        assert responses.code() is grpc.StatusCode.FAILED_PRECONDITION

        client_stream = channel.stream_unary(f"/{SERVICE}/ClientStream", **CODEC)
        future = client_stream.future(iter([Msg(value=_terminal())]), timeout=5)
        _check(future.exception())  # type: ignore[arg-type]


def _aio_channel(port: int, how: str) -> grpc.aio.Channel:
    target = f"127.0.0.1:{port}"
    if how == "aio_intercept_channel":
        return gt.aio_intercept_channel(grpc.aio.insecure_channel(target))
    return grpc.aio.insecure_channel(target, interceptors=gt.aio_interceptors())


AIO_CLIENTS = ["aio_interceptors", "aio_intercept_channel"]


@pytest.mark.parametrize("how", AIO_CLIENTS)
def test_aio_call_forms(aio_server: AioServer, loop_thread: LoopThread, how: str) -> None:
    async def scenario() -> None:
        async with _aio_channel(aio_server.port, how) as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
            call = unary(Msg(value=_terminal()), timeout=5)
            with pytest.raises(gt.LicenseExhausted) as info:
                await call
            _check(info.value)
            assert await call.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "seats" in await call.details()
            assert call.done()

            stream = channel.unary_stream(f"/{SERVICE}/ServerStream", **CODEC)
            call = stream(Msg(value=_terminal()), timeout=5)
            assert (await call.read()).value == "r0"
            with pytest.raises(gt.LicenseExhausted) as info:
                await call.read()
            _check(info.value)

            bidi = channel.stream_stream(f"/{SERVICE}/BidiStream", **CODEC)
            call = bidi(timeout=5)
            await call.write(Msg(value=_terminal()))
            await call.done_writing()
            assert (await call.read()).value == "r0"
            with pytest.raises(gt.LicenseExhausted) as info:
                await call.read()
            _check(info.value)

            client_stream = channel.stream_unary(f"/{SERVICE}/ClientStream", **CODEC)
            call = client_stream(timeout=5)
            await call.write(Msg(value=_terminal()))
            await call.done_writing()
            with pytest.raises(gt.LicenseExhausted) as info:
                await call
            _check(info.value)

    loop_thread.run(scenario())


def test_aio_interceptors_are_one_instance_per_kind() -> None:
    interceptors = gt.aio_interceptors()
    kinds = [
        grpc.aio.UnaryUnaryClientInterceptor,
        grpc.aio.UnaryStreamClientInterceptor,
        grpc.aio.StreamUnaryClientInterceptor,
        grpc.aio.StreamStreamClientInterceptor,
    ]
    for kind in kinds:
        assert sum(isinstance(i, kind) for i in interceptors) == 1
    assert len({id(i) for i in interceptors}) == len(interceptors)


@pytest.mark.parametrize("how", AIO_CLIENTS)
def test_aio_cancellation_by_client_passes_through(
    aio_server: AioServer, loop_thread: LoopThread, how: str
) -> None:
    key = register(Scenario(responses=1, sleep=0.0))

    async def scenario() -> None:
        async with _aio_channel(aio_server.port, how) as channel:
            slow = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
            call = slow(Msg(value=register(Scenario(sleep=2.0))), timeout=5)
            await asyncio.sleep(0.1)
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await call
            assert call.cancelled()
            assert await call.code() is grpc.StatusCode.CANCELLED
            # The channel still works afterwards.
            ok = await channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)(Msg(value=key), timeout=5)
            assert ok.value == "ok"

    loop_thread.run(scenario())


def test_aio_intercept_channel_delegates_the_channel_surface(
    aio_server: AioServer, loop_thread: LoopThread
) -> None:
    async def scenario() -> None:
        raw = grpc.aio.insecure_channel(f"127.0.0.1:{aio_server.port}")
        channel = gt.aio_intercept_channel(raw)
        assert isinstance(channel, grpc.aio.Channel)
        await asyncio.wait_for(channel.channel_ready(), 5)
        assert channel.get_state() is grpc.ChannelConnectivity.READY
        ok = await channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)(
            Msg(value=register(Scenario())), timeout=5
        )
        assert ok.value == "ok"
        await channel.close()
        assert raw.get_state() is grpc.ChannelConnectivity.SHUTDOWN

    loop_thread.run(scenario())
