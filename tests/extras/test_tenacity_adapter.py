"""grpc_terminal.tenacity against the real tenacity and real loopback servers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

pytest.importorskip("tenacity", reason="the tenacity extra is not installed")

import tenacity
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.tenacity import retry_if_retryable, wait_retry_info

from harness import SERVICE, AioServer, LoopThread, Scenario, SyncServer, register

Msg = wrappers_pb2.StringValue


@pytest.fixture(scope="module", params=["sync", "aio"])
def server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Any]:
    srv: Any = SyncServer(workers=4) if request.param == "sync" else AioServer(loop_thread)
    yield srv
    srv.stop()


@pytest.fixture
def stub(server: Any) -> Iterator[Callable[..., Any]]:
    raw = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield gt.intercept_channel(raw).unary_unary(
        f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )
    raw.close()


def fail_first(n: int, error: BaseException, scenario: Scenario) -> Callable[[], None]:
    def before() -> None:
        if len(scenario.calls) <= n:
            raise error

    return before


def retrying(waits: list[float] | None = None, **kwargs: Any) -> tenacity.Retrying:
    options: dict[str, Any] = {
        "retry": retry_if_retryable(),
        "wait": wait_retry_info(tenacity.wait_fixed(0.01)),
        "stop": tenacity.stop_after_attempt(5),
        "reraise": True,
    }
    if waits is not None:
        options["sleep"] = waits.append
    options.update(kwargs)
    return tenacity.Retrying(**options)


def test_terminal_is_attempted_once(stub: Callable[..., Any]) -> None:
    scenario = Scenario(raise_=gt.UserNotProvisionable("jdoe is SUSPENDED"))
    waits: list[float] = []
    with pytest.raises(gt.UserNotProvisionable):
        retrying(waits)(stub, Msg(value=register(scenario)), timeout=10)
    assert len(scenario.calls) == 1 and waits == []


def test_transient_is_retried_then_succeeds(stub: Callable[..., Any]) -> None:
    scenario = Scenario()
    scenario.before = fail_first(2, gt.Unavailable("503"), scenario)
    waits: list[float] = []
    assert retrying(waits)(stub, Msg(value=register(scenario)), timeout=10).value == "ok"
    assert len(scenario.calls) == 3 and waits == pytest.approx([0.01, 0.01])


def test_exhausted_transient_is_reraised_typed(stub: Callable[..., Any]) -> None:
    scenario = Scenario(raise_=gt.Internal("boom"))
    with pytest.raises(gt.Internal):
        retrying([], stop=tenacity.stop_after_attempt(3))(stub, Msg(value=register(scenario)), timeout=10)
    assert len(scenario.calls) == 3


def test_retry_info_is_a_floor(stub: Callable[..., Any]) -> None:
    stamps: list[float] = []
    scenario = Scenario()

    def before() -> None:
        stamps.append(time.monotonic())
        if len(scenario.calls) == 1:
            raise gt.Unavailable("busy", retry_delay=0.2)

    scenario.before = before
    assert retrying()(stub, Msg(value=register(scenario)), timeout=10).value == "ok"
    assert len(stamps) == 2 and stamps[1] - stamps[0] >= 0.2


def test_custom_code_table_and_composition() -> None:
    state = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    state.set_exception((gt.NotFound, gt.NotFound("later"), None))
    assert not retry_if_retryable()(state)
    assert retry_if_retryable(retryable_codes={grpc.StatusCode.NOT_FOUND})(state)
    either = retry_if_retryable() | tenacity.retry_if_exception_type(gt.NotFound)
    assert either(state)
    ok = tenacity.RetryCallState(retry_object=tenacity.Retrying(), fn=None, args=(), kwargs={})
    ok.set_result("fine")
    assert not retry_if_retryable()(ok)


def test_async_retrying(server: Any, loop_thread: LoopThread) -> None:
    async def go() -> tuple[int, int]:
        async with grpc.aio.insecure_channel(
            f"127.0.0.1:{server.port}", interceptors=gt.aio_interceptors()
        ) as channel:
            method = channel.unary_unary(
                f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            terminal = Scenario(raise_=gt.LicenseExhausted("100 of 100"))
            with pytest.raises(gt.LicenseExhausted):
                async for attempt in tenacity.AsyncRetrying(
                    retry=retry_if_retryable(), wait=wait_retry_info(tenacity.wait_fixed(0.01)),
                    stop=tenacity.stop_after_attempt(5), reraise=True,
                ):
                    with attempt:
                        await method(Msg(value=register(terminal)), timeout=10)
            flaky = Scenario()
            flaky.before = fail_first(1, gt.Aborted("conflict"), flaky)
            async for attempt in tenacity.AsyncRetrying(
                retry=retry_if_retryable(), wait=tenacity.wait_fixed(0.01),
                stop=tenacity.stop_after_attempt(5), reraise=True,
            ):
                with attempt:
                    await method(Msg(value=register(flaky)), timeout=10)
            await asyncio.sleep(0)
            return len(terminal.calls), len(flaky.calls)

    assert loop_thread.run(go()) == (1, 2)
