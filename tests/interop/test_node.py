"""Interop with @grpc/grpc-js and protobufjs.

* Our Python servers -> Node client: the code, and ``grpc-status-details-bin``
  decoded by protobufjs (google/rpc/status.proto and error_details.proto from
  googleapis-common-protos, our proto/) to the same reason and detail.
* Node server (it sets ``grpc-status-details-bin`` itself) -> our Python
  clients: the right typed class, reason, detail and ErrorInfo.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import interop_peers as peers
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt

from harness import AioServer, LoopThread, Scenario, SyncServer, register

pytestmark = pytest.mark.timeout(300)

DOMAIN = "interop.example"
TERMINAL = [
    (gt.Reason.USER_NOT_PROVISIONABLE, gt.UserNotProvisionable, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.TARGET_MANAGED_EXTERNALLY, gt.TargetManagedExternally, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.LICENSE_EXHAUSTED, gt.LicenseExhausted, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.VALIDATION_FAILURE, gt.ValidationFailure, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.OPERATION_NOT_PERMITTED, gt.OperationNotPermitted, grpc.StatusCode.PERMISSION_DENIED),
]
IDS = [r.name for r, _, _ in TERMINAL]
Msg = wrappers_pb2.StringValue


def node_detail(name: str) -> str:
    """What the Node server puts in the status message and the detail (see node/peer.js)."""
    return f"Node: seat pool 'prod' is full ({name}, 100% used) — ünïcode"


# -- Python servers, Node client -----------------------------------------------------------


@pytest.fixture(scope="module", params=["sync", "aio"])
def py_server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Any]:
    server: Any = (
        SyncServer(domain=DOMAIN) if request.param == "sync" else AioServer(loop_thread, domain=DOMAIN)
    )
    yield server
    server.stop()


def test_node_client_decodes_python_status(node_peer: list[str], py_server: Any) -> None:
    detail = "Okta E0000038: user 'jdöe' is SUSPENDED — 100% certain"
    expected: dict[str, tuple[gt.Reason, grpc.StatusCode, str]] = {}
    for reason, cls, code in TERMINAL:
        expected[register(Scenario(raise_=cls(detail)))] = (reason, code, detail)
    wrapped = gt.UserNotProvisionable(detail, message=f"grant failed: {detail}")
    expected[register(Scenario(raise_=wrapped))] = (
        gt.Reason.USER_NOT_PROVISIONABLE, grpc.StatusCode.FAILED_PRECONDITION, f"grant failed: {detail}",
    )
    argv = [node_peer[0], node_peer[1], "client", *node_peer[2:], "--addr", f"127.0.0.1:{py_server.port}"]
    results = {line["key"]: line for line in peers.run_client([*argv, *expected])}
    assert set(results) == set(expected)
    for key, (reason, code, message) in expected.items():
        result = results[key]
        assert result["code"] == code.value[0], result
        assert result["message"] == message
        assert result["pushback"] == ["-1"]
        status = result["status"]
        assert status is not None, "no grpc-status-details-bin reached the Node client"
        assert status["code"] == code.value[0]
        assert status["message"] == message  # equals grpc-message, as grpcio-status requires
        by_type = {d["@type"]: d for d in status["details"]}
        assert len(by_type) == len(status["details"])  # each detail type at most once
        pfd = by_type["c1.connector.v2.ProvisionFailureDetail"]
        assert pfd["reason"] == f"REASON_{reason.name}"
        assert pfd["detail"] == detail
        info = by_type["google.rpc.ErrorInfo"]
        assert info["reason"] == reason.name
        assert info["domain"] == DOMAIN


def test_node_client_decodes_python_transient_status(node_peer: list[str], py_server: Any) -> None:
    key = register(Scenario(raise_=gt.Unavailable("upstream 503", retry_delay=0.25)))
    argv = [node_peer[0], node_peer[1], "client", *node_peer[2:], "--addr", f"127.0.0.1:{py_server.port}"]
    (result,) = peers.run_client([*argv, key])
    assert result["code"] == grpc.StatusCode.UNAVAILABLE.value[0]
    assert result["pushback"] == ["250"]
    by_type = {d["@type"]: d for d in result["status"]["details"]}
    assert "c1.connector.v2.ProvisionFailureDetail" not in by_type
    assert by_type["google.rpc.RetryInfo"]["retry_delay"] == {"seconds": 0, "nanos": 250_000_000}
    assert by_type["google.rpc.ErrorInfo"]["reason"] == "UNAVAILABLE"


# -- Node server, Python clients -------------------------------------------------------------


def _call(client: str, loop: LoopThread, address: str, value: str) -> BaseException:
    codec: dict[str, Any] = {
        "request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString,
    }
    if client == "sync":
        with grpc.insecure_channel(address) as raw:
            fail = gt.intercept_channel(raw).unary_unary("/gtinterop.NodePeer/Fail", **codec)
            with pytest.raises(grpc.RpcError) as info:
                fail(Msg(value=value), timeout=10)
        return info.value

    async def run() -> BaseException:
        async with grpc.aio.insecure_channel(address, interceptors=gt.aio_interceptors()) as channel:
            try:
                await channel.unary_unary("/gtinterop.NodePeer/Fail", **codec)(Msg(value=value), timeout=10)
            except grpc.RpcError as err:
                return err
        raise AssertionError("the Node server should have failed the call")

    result = loop.run(run())
    assert isinstance(result, BaseException)
    return result


@pytest.mark.parametrize("client", ["sync", "aio"])
@pytest.mark.parametrize(("reason", "cls", "code"), TERMINAL, ids=IDS)
def test_python_client_types_node_status(
    node_server: peers.Peer, loop_thread: LoopThread, client: str,
    reason: gt.Reason, cls: type[gt.TerminalError], code: grpc.StatusCode,
) -> None:
    err = _call(client, loop_thread, node_server.address, reason.name)
    assert type(err) is cls, repr(err)
    assert isinstance(err, grpc.RpcError)
    assert isinstance(err, gt.TerminalError)
    assert err.code() is code
    assert err.details() == node_detail(reason.name)
    assert err.reason is reason
    assert err.detail == node_detail(reason.name)
    assert err.error_info is not None
    assert err.error_info.reason == reason.name
    assert err.error_info.domain == "node.example"
    assert dict(err.error_info.metadata) == {"peer": "grpc-js"}
    assert gt.is_terminal(err) and not gt.is_retryable(err)
