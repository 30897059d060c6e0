"""Interop with grpc-go (Debian's packages): rich statuses both ways.

* Go server -> our Python clients: ``status.New(code, msg).WithDetails(&ProvisionFailureDetail{...})``
  (and the same wrapped with ``fmt.Errorf("grant failed: %w", ...)``) becomes the right typed error.
* Our Python servers -> Go client: ``status.FromError(err).Details()`` yields our
  ProvisionFailureDetail and ErrorInfo, with the right code; grpc-go's own retry
  stops on terminal failures because of ``grpc-retry-pushback-ms: -1``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
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
GO_CODE_NAMES = {
    grpc.StatusCode.FAILED_PRECONDITION: "FailedPrecondition",
    grpc.StatusCode.PERMISSION_DENIED: "PermissionDenied",
    grpc.StatusCode.UNAVAILABLE: "Unavailable",
}
Msg = wrappers_pb2.StringValue


def go_detail(name: str) -> str:
    """What the Go server puts in the status message and the detail (see go/main.go)."""
    return f"Okta: user 'jdöe' is SUSPENDED ({name}, 100% sure)"


# -- Go server, Python clients -----------------------------------------------------------


def _call_sync(address: str, value: str) -> BaseException:
    with grpc.insecure_channel(address) as raw:
        fail = gt.intercept_channel(raw).unary_unary(
            "/gtinterop.GoPeer/Fail", request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            fail(Msg(value=value), timeout=10)
    return info.value


def _call_aio(loop: LoopThread, address: str, value: str) -> BaseException:
    async def run() -> BaseException:
        async with grpc.aio.insecure_channel(address, interceptors=gt.aio_interceptors()) as channel:
            fail = channel.unary_unary(
                "/gtinterop.GoPeer/Fail", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            try:
                await fail(Msg(value=value), timeout=10)
            except grpc.RpcError as err:
                return err
        raise AssertionError("the Go server should have failed the call")

    result = loop.run(run())
    assert isinstance(result, BaseException)
    return result


@pytest.mark.parametrize("client", ["sync", "aio"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["status", "wrapped"])
@pytest.mark.parametrize(("reason", "cls", "code"), TERMINAL, ids=[r.name for r, _, _ in TERMINAL])
def test_python_client_types_go_status(
    go_server: peers.Peer, loop_thread: LoopThread, client: str, wrapped: bool,
    reason: gt.Reason, cls: type[gt.TerminalError], code: grpc.StatusCode,
) -> None:
    value = f"wrapped:{reason.name}" if wrapped else reason.name
    if client == "sync":
        err = _call_sync(go_server.address, value)
    else:
        err = _call_aio(loop_thread, go_server.address, value)
    assert type(err) is cls, repr(err)
    assert isinstance(err, gt.TerminalError) and isinstance(err, grpc.RpcError)
    if reason is gt.Reason.OPERATION_NOT_PERMITTED:
        assert isinstance(err, gt.PermissionDenied)
    else:
        assert isinstance(err, gt.FailedPrecondition)
    assert err.code() is code
    assert err.reason is reason
    assert err.detail == go_detail(reason.name)
    if wrapped:
        # grpc-go's status.FromError on a wrapped status error: the code and the
        # details of the wrapped status, the message of the whole chain.
        assert err.details().startswith("grant failed: ")
        assert err.details().endswith(go_detail(reason.name))
    else:
        assert err.details() == go_detail(reason.name)
    assert gt.is_terminal(err)
    assert not gt.is_retryable(err)
    pfd = gt.failure_detail(err)
    assert pfd is not None and pfd.reason == reason and pfd.detail == go_detail(reason.name)


# -- Python servers, Go client ---------------------------------------------------------------


@pytest.fixture(scope="module", params=["sync", "aio"])
def py_server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Any]:
    server: Any = (
        SyncServer(domain=DOMAIN) if request.param == "sync" else AioServer(loop_thread, domain=DOMAIN)
    )
    yield server
    server.stop()


def _by_key(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {str(line["key"]): line for line in lines}


def _detail_of(result: dict[str, Any], type_name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [d for d in result["details"] if d["type"] == type_name]
    assert len(found) == 1, f"expected one {type_name} in {result}"
    return found[0]


def test_go_client_reads_python_terminal_status(go_peer: Path, py_server: Any) -> None:
    detail = "Okta E0000038: user 'jdöe' is SUSPENDED — 100% certain"
    keys: dict[str, tuple[gt.Reason, grpc.StatusCode, str, str]] = {}
    for reason, cls, code in TERMINAL:
        keys[register(Scenario(raise_=cls(detail)))] = (reason, code, detail, detail)
    # A message that differs from the detail (Go's fmt.Errorf-wrapping style) and terminal_error().
    wrapped = gt.LicenseExhausted(detail, message=f"grant failed: {detail}")
    keys[register(Scenario(raise_=wrapped))] = (
        gt.Reason.LICENSE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION, f"grant failed: {detail}", detail,
    )
    seats = "Jira: 100 of 100 seats used"
    formatted = gt.terminal_error(gt.Reason.VALIDATION_FAILURE, "Jira: %d of %d seats used", 100, 100)
    keys[register(Scenario(raise_=formatted))] = (
        gt.Reason.VALIDATION_FAILURE, grpc.StatusCode.FAILED_PRECONDITION, seats, seats,
    )

    argv = [str(go_peer), "client", "-addr", f"127.0.0.1:{py_server.port}", *keys]
    results = _by_key(peers.run_client(argv))
    assert set(results) == set(keys)
    for key, (reason, code, message, expected_detail) in keys.items():
        result = results[key]
        assert result["code"] == GO_CODE_NAMES[code], result
        assert result["code_num"] == code.value[0]
        assert result["message"] == message
        pfd = _detail_of(result, "c1.connector.v2.ProvisionFailureDetail")
        assert pfd["reason"] == f"REASON_{reason.name}"
        assert pfd["reason_num"] == int(reason)
        assert pfd["detail"] == expected_detail
        info = _detail_of(result, "google.rpc.ErrorInfo")
        assert info["reason"] == reason.name
        assert info["domain"] == DOMAIN
        assert result["pushback"] == ["-1"]
        assert not [d for d in result["details"] if d["type"] == "error"], result


def test_go_client_reads_python_transient_status(go_peer: Path, py_server: Any) -> None:
    key = register(Scenario(raise_=gt.Unavailable("upstream 503", retry_delay=2.5)))
    (result,) = peers.run_client([str(go_peer), "client", "-addr", f"127.0.0.1:{py_server.port}", key])
    assert result["code"] == "Unavailable"
    assert result["message"] == "upstream 503"
    assert not [d for d in result["details"] if d["type"] == "c1.connector.v2.ProvisionFailureDetail"]
    retry = _detail_of(result, "google.rpc.RetryInfo")
    assert (retry["seconds"], retry["nanos"]) == (2, 500_000_000)
    info = _detail_of(result, "google.rpc.ErrorInfo")
    assert info["reason"] == "UNAVAILABLE" and info["domain"] == DOMAIN
    assert result["pushback"] == ["2500"]


def test_go_retry_stops_on_terminal_pushback(go_peer: Path, py_server: Any) -> None:
    """grpc-go's service-config retry (gRFC A6) honours our pushback trailer.

    The Go client's service config retries FAILED_PRECONDITION, PERMISSION_DENIED
    and UNAVAILABLE up to 4 attempts: only the server's ``grpc-retry-pushback-ms: -1``
    can stop a terminal failure from being repeated; a transient one is retried.
    """
    terminal = Scenario(raise_=gt.UserNotProvisionable("suspended"))
    denied = Scenario(raise_=gt.OperationNotPermitted("policy says no"))
    transient = Scenario(raise_=gt.Unavailable("upstream 503", retry_delay=0.01))
    keys = [register(terminal), register(denied), register(transient)]
    env = dict(os.environ, GRPC_GO_RETRY="on")  # grpc-go < 1.40 keeps retry behind this switch
    results = _by_key(peers.run_client(
        [str(go_peer), "client", "-retry", "-addr", f"127.0.0.1:{py_server.port}", *keys], env=env,
    ))
    assert results[keys[0]]["code"] == "FailedPrecondition"
    assert results[keys[1]]["code"] == "PermissionDenied"
    assert results[keys[2]]["code"] == "Unavailable"
    assert len(terminal.calls) == 1
    assert len(denied.calls) == 1
    assert len(transient.calls) == 4  # the control: retry is really on
