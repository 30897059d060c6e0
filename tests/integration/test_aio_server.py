"""grpc.aio specifics: cancellation, deadlines and concurrency, against real servers."""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable

import grpc
import grpc.aio
import pytest

import grpc_terminal as gt

from harness import KINDS, SERVICE, LoopThread, Msg, Pair, Scenario, register

CODEC = {"request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString}


@pytest.mark.parametrize("kind", KINDS)
def test_server_side_deadline_exceeded(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(responses=0, sleep=1.0), timeout=0.2)
    assert type(out.error) is gt.DeadlineExceeded
    assert gt.is_retryable(out.error)


def test_client_cancellation_reaches_the_handler_untouched(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    started = threading.Event()

    async def endless(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> object:
        try:
            started.set()
            for i in range(1000):
                yield Msg(value=f"r{i}")
                await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    async def run() -> None:
        server = grpc.aio.server(interceptors=[gt.AioServerInterceptor()])
        handler = grpc.unary_stream_rpc_method_handler(
            endless, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"E": handler}),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", interceptors=gt.aio_interceptors()
            ) as channel:
                call = channel.unary_stream(f"/{SERVICE}/E", **CODEC)(Msg(value="x"), timeout=5)
                assert (await call.read()).value == "r0"
                call.cancel()
                for _ in range(100):
                    if seen:
                        break
                    await asyncio.sleep(0.02)
        finally:
            await server.stop(None)

    with caplog.at_level(logging.INFO, logger="grpc_terminal"):
        loop_thread.run(run())
    assert started.is_set()
    assert seen == ["cancelled"]
    assert not [r for r in caplog.records if r.name.startswith("grpc_terminal")]


OUTCOMES: list[tuple[Callable[[], Scenario], type[BaseException] | None]] = [
    (lambda: Scenario(responses=1), None),
    (lambda: Scenario(raise_=gt.UserNotProvisionable("suspended")), gt.UserNotProvisionable),
    (lambda: Scenario(raise_=gt.TargetManagedExternally("rule")), gt.TargetManagedExternally),
    (lambda: Scenario(raise_=gt.LicenseExhausted("seats")), gt.LicenseExhausted),
    (lambda: Scenario(raise_=gt.ValidationFailure("bad")), gt.ValidationFailure),
    (lambda: Scenario(raise_=gt.OperationNotPermitted("policy")), gt.OperationNotPermitted),
    (lambda: Scenario(raise_=gt.Unavailable("503", retry_delay=0.1)), gt.Unavailable),
    (lambda: Scenario(raise_=RuntimeError("bug")), gt.Unknown),
    (lambda: Scenario(abort=(grpc.StatusCode.NOT_FOUND, "nf")), gt.NotFound),
    (lambda: Scenario(responses=2, raise_=gt.Aborted("conflict")), gt.Aborted),
]


@pytest.mark.parametrize("server_kind", ["sync", "aio"])
def test_hundreds_of_concurrent_calls_each_get_their_own_class(
    server_kind: str, loop_thread: LoopThread
) -> None:
    options = {"workers": 32} if server_kind == "sync" else {}
    pair = Pair(server_kind, "aio", loop_thread, server_options=options)
    rng = random.Random(7)
    plan = [(rng.choice(KINDS), rng.randrange(len(OUTCOMES))) for _ in range(400)]
    keys = [register(OUTCOMES[i][0]()) for _, i in plan]

    async def all_calls() -> list[object]:
        return await asyncio.gather(
            *(pair.client.acall(kind, key, 20) for (kind, _), key in zip(plan, keys, strict=True))
        )

    try:
        outcomes = loop_thread.run(all_calls(), timeout=60)
    finally:
        pair.close()
    for (kind, i), out in zip(plan, outcomes, strict=True):
        expected = OUTCOMES[i][1]
        if expected is None:
            assert out.error is None, (kind, out.error)  # type: ignore[attr-defined]
        else:
            assert type(out.error) is expected, (kind, out.error)  # type: ignore[attr-defined]
