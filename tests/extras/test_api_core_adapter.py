"""grpc_terminal.api_core against the real google-api-core and real loopback servers."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

pytest.importorskip("google.api_core", reason="the api-core extra is not installed")

from google.api_core import exceptions as api_exceptions
from google.api_core import grpc_helpers
from google.api_core.retry import Retry
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.api_core import failure_detail, from_api_core, if_retryable, retryable_predicate

from harness import SERVICE, AioServer, LoopThread, Scenario, SyncServer, register

Msg = wrappers_pb2.StringValue


@pytest.fixture(scope="module", params=["sync", "aio"])
def server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Any]:
    srv: Any = SyncServer(workers=4) if request.param == "sync" else AioServer(loop_thread)
    yield srv
    srv.stop()


@pytest.fixture(params=["raw-grpc", "gapic-wrapped"])
def stub(request: pytest.FixtureRequest, server: Any) -> Iterator[Callable[..., Any]]:
    """A plain stub (raises grpc.RpcError) or one wrapped like GAPIC clients (GoogleAPICallError)."""
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    method = channel.unary_unary(
        f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )
    yield method if request.param == "raw-grpc" else grpc_helpers.wrap_errors(method)  # type: ignore[no-untyped-call]
    channel.close()


RETRY = Retry(predicate=if_retryable, initial=0.01, maximum=0.05, multiplier=2, timeout=20)


def test_terminal_is_attempted_once(stub: Callable[..., Any]) -> None:
    scenario = Scenario(raise_=gt.UserNotProvisionable("jdoe is SUSPENDED"))
    with pytest.raises((grpc.RpcError, api_exceptions.GoogleAPICallError)) as info:
        RETRY(stub)(Msg(value=register(scenario)), timeout=10)
    assert len(scenario.calls) == 1
    typed = from_api_core(info.value)
    assert isinstance(typed, gt.UserNotProvisionable)
    assert typed.reason is gt.Reason.USER_NOT_PROVISIONABLE and typed.detail == "jdoe is SUSPENDED"
    if isinstance(info.value, api_exceptions.GoogleAPICallError):
        assert info.value.reason == "USER_NOT_PROVISIONABLE"  # api-core reads our ErrorInfo
        assert isinstance(info.value, api_exceptions.FailedPrecondition)


def test_transient_is_retried_then_succeeds(stub: Callable[..., Any]) -> None:
    scenario = Scenario()

    def before() -> None:
        if len(scenario.calls) <= 2:
            raise gt.Unavailable("upstream 503")

    scenario.before = before
    assert RETRY(stub)(Msg(value=register(scenario)), timeout=10).value == "ok"
    assert len(scenario.calls) == 3


def test_rebuilt_from_details_without_the_grpc_error(stub: Callable[..., Any]) -> None:
    scenario = Scenario(raise_=gt.LicenseExhausted("100 of 100 seats"))
    with pytest.raises((grpc.RpcError, api_exceptions.GoogleAPICallError)) as info:
        stub(Msg(value=register(scenario)), timeout=10)
    original = info.value
    if not isinstance(original, api_exceptions.GoogleAPICallError):
        original = api_exceptions.from_grpc_error(original)  # type: ignore[no-untyped-call]
    # what a caller that only kept the api-core fields has: code, message, parsed details
    bare = api_exceptions.from_grpc_status(  # type: ignore[no-untyped-call]
        original.grpc_status_code, original.message, details=original.details
    )
    typed = from_api_core(bare)
    assert isinstance(typed, gt.LicenseExhausted)
    pfd = failure_detail(bare)
    assert pfd is not None and pfd.detail == "100 of 100 seats"
    assert not if_retryable(bare)


def test_predicate_table_and_foreign_errors() -> None:
    unavailable = api_exceptions.ServiceUnavailable("down")  # type: ignore[no-untyped-call]
    not_found = api_exceptions.NotFound("later")  # type: ignore[no-untyped-call]
    assert if_retryable(unavailable) and not if_retryable(not_found)
    assert retryable_predicate({grpc.StatusCode.NOT_FOUND})(not_found)
    assert not if_retryable(ValueError("not an API error"))
    assert from_api_core(ValueError("x")) is None
