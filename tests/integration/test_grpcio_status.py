"""grpcio-status's ``rpc_status.from_call`` accepts our failures (no ValueError)."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2 as ed
from grpc_status import rpc_status

import grpc_terminal as gt

from harness import SERVICE, AioServer, LoopThread, Msg, Scenario, SyncServer, register

CODEC = {"request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString}
RAISED = gt.UserNotProvisionable("jdoe is SUSPENDED", message="grant failed: jdoe is SUSPENDED")


@pytest.fixture(scope="module", params=["sync", "aio"])
def port(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[int]:
    server = SyncServer() if request.param == "sync" else AioServer(loop_thread)
    yield server.port
    server.stop()


def _check(status: object) -> None:
    assert status is not None
    assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]  # type: ignore[attr-defined]
    assert status.message == "grant failed: jdoe is SUSPENDED"  # type: ignore[attr-defined]
    pfd = gt.ProvisionFailureDetail()
    assert status.details[0].Unpack(pfd)  # type: ignore[attr-defined]
    assert pfd.reason == gt.Reason.USER_NOT_PROVISIONABLE
    assert pfd.detail == "jdoe is SUSPENDED"
    info = ed.ErrorInfo()
    assert status.details[1].Unpack(info)  # type: ignore[attr-defined]
    assert info.reason == "USER_NOT_PROVISIONABLE"


def test_from_call_sync_client(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
        with pytest.raises(grpc.RpcError) as info:
            unary(Msg(value=register(Scenario(raise_=RAISED))), timeout=5)
        _check(rpc_status.from_call(info.value))  # type: ignore[arg-type]
        # And our own client, whose typed error is a grpc.Call look-alike.
        typed = gt.intercept_channel(channel).unary_unary(f"/{SERVICE}/Unary", **CODEC)
        with pytest.raises(gt.UserNotProvisionable) as typed_info:
            typed(Msg(value=register(Scenario(raise_=RAISED))), timeout=5)
        _check(rpc_status.from_call(typed_info.value))  # type: ignore[arg-type]


def test_from_call_aio_client(port: int, loop_thread: LoopThread) -> None:
    async def run() -> object:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)
            try:
                await unary(Msg(value=register(Scenario(raise_=RAISED))), timeout=5)
            except grpc.aio.AioRpcError as err:
                return err
            raise AssertionError("the call should fail")

    err = loop_thread.run(run())
    assert isinstance(err, grpc.aio.AioRpcError)
    # from_call reads trailing_metadata() and code(), which AioRpcError has.
    _check(rpc_status.from_call(err))  # type: ignore[arg-type]
