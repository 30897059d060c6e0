"""google-api-core and grpcio-status read our failures (Python only: no Go or Node needed).

* ``google.api_core.exceptions.from_grpc_error`` gives ``.reason``, ``.domain`` and
  ``.metadata`` from our ErrorInfo, and our ProvisionFailureDetail in ``.details``;
* ``grpc_status.rpc_status.from_call`` (and its aio twin) returns our status with
  no ``ValueError``, and ``to_status`` round-trips it;

for sync and aio servers, sync and aio clients, raw channels and our typed ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from google.api_core import exceptions as core_exceptions
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

import grpc_terminal as gt

from harness import SERVICE, AioServer, LoopThread, Msg, Scenario, SyncServer, register

DOMAIN = "interop.example"
CODEC: dict[str, Any] = {"request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString}
DETAIL = "Okta E0000038: user 'jdöe' is SUSPENDED — 100% certain"


@dataclass(frozen=True)
class Case:
    exc: gt.StatusError
    core_class: type[core_exceptions.GoogleAPICallError]
    reason: str
    pfd_reason: gt.Reason | None


CASES = {
    "user-not-provisionable": Case(
        gt.UserNotProvisionable(DETAIL, message=f"grant failed: {DETAIL}", metadata={"userId": "jdoe"}),
        core_exceptions.FailedPrecondition, "USER_NOT_PROVISIONABLE", gt.Reason.USER_NOT_PROVISIONABLE,
    ),
    "operation-not-permitted": Case(
        gt.OperationNotPermitted(DETAIL, metadata={"userId": "jdoe"}),
        core_exceptions.PermissionDenied, "OPERATION_NOT_PERMITTED", gt.Reason.OPERATION_NOT_PERMITTED,
    ),
    "unavailable": Case(
        gt.Unavailable("upstream 503", retry_delay=1.5, metadata={"userId": "jdoe"}),
        core_exceptions.ServiceUnavailable, "UNAVAILABLE", None,
    ),
}
CLIENTS = ["sync-raw", "sync-typed", "aio-raw", "aio-typed"]


@pytest.fixture(scope="module", params=["sync", "aio"])
def port(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[int]:
    server: Any = (
        SyncServer(domain=DOMAIN) if request.param == "sync" else AioServer(loop_thread, domain=DOMAIN)
    )
    yield server.port
    server.stop()


def _fail(client: str, loop: LoopThread, port: int, key: str) -> BaseException:
    """Call the harness Unary method from ``client``; the error it raised."""
    address = f"127.0.0.1:{port}"
    if client.startswith("sync"):
        with grpc.insecure_channel(address) as raw:
            channel = gt.intercept_channel(raw) if client == "sync-typed" else raw
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)(Msg(value=key), timeout=10)
        return info.value

    async def run() -> BaseException:
        interceptors = gt.aio_interceptors() if client == "aio-typed" else None
        async with grpc.aio.insecure_channel(address, interceptors=interceptors) as channel:
            try:
                await channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)(Msg(value=key), timeout=10)
            except grpc.RpcError as err:
                return err
        raise AssertionError("the call should have failed")

    result = loop.run(run())
    assert isinstance(result, BaseException)
    return result


def _check_status(status: status_pb2.Status | None, case: Case) -> None:
    assert status is not None
    assert status.code == case.exc.code().value[0]
    assert status.message == case.exc.details()
    types = [d.TypeName() for d in status.details]
    assert len(types) == len(set(types))  # each detail type at most once
    info = error_details_pb2.ErrorInfo()
    assert [d for d in status.details if d.Unpack(info)]
    assert (info.reason, info.domain) == (case.reason, DOMAIN)
    pfds = [d for d in status.details if d.Is(gt.ProvisionFailureDetail.DESCRIPTOR)]
    if case.pfd_reason is None:
        assert not pfds
    else:
        pfd = gt.ProvisionFailureDetail()
        assert len(pfds) == 1 and pfds[0].Unpack(pfd)
        assert (pfd.reason, pfd.detail) == (case.pfd_reason, DETAIL)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", list(CASES))
def test_api_core_from_grpc_error(port: int, loop_thread: LoopThread, client: str, name: str) -> None:
    case = CASES[name]
    err = _fail(client, loop_thread, port, register(Scenario(raise_=case.exc)))
    if client.endswith("typed"):
        assert isinstance(err, type(case.exc))
    exc = core_exceptions.from_grpc_error(err)  # type: ignore[no-untyped-call]
    assert type(exc) is case.core_class
    assert exc.grpc_status_code == case.exc.code()
    assert exc.message == case.exc.details()
    assert exc.reason == case.reason
    assert exc.domain == DOMAIN
    assert exc.metadata == {"userId": "jdoe"}
    assert exc.response is err
    # api-core unpacks the standard details and keeps unknown ones as Any.
    packed = [d for d in exc.details if isinstance(d, any_pb2.Any)]
    if case.pfd_reason is None:
        assert not packed
        retry = [d for d in exc.details if isinstance(d, error_details_pb2.RetryInfo)]
        assert len(retry) == 1 and retry[0].retry_delay.ToTimedelta().total_seconds() == 1.5
    else:
        pfd = gt.ProvisionFailureDetail()
        assert len(packed) == 1 and packed[0].Unpack(pfd)
        assert (pfd.reason, pfd.detail) == (case.pfd_reason, DETAIL)


@pytest.mark.parametrize("client", CLIENTS)
@pytest.mark.parametrize("name", list(CASES))
def test_rpc_status_from_call_and_to_status(
    port: int, loop_thread: LoopThread, client: str, name: str,
) -> None:
    case = CASES[name]
    err = _fail(client, loop_thread, port, register(Scenario(raise_=case.exc)))
    status = rpc_status.from_call(err)  # type: ignore[arg-type]  # raises ValueError on any mismatch
    _check_status(status, case)
    assert status is not None
    sent = [v for k, v in err.trailing_metadata() if k == gt.STATUS_DETAILS_KEY]  # type: ignore[attr-defined]
    assert len(sent) == 1 and status_pb2.Status.FromString(sent[0]) == status

    back = rpc_status.to_status(status)
    assert back.code is case.exc.code()
    assert back.details == case.exc.details()
    assert list(back.trailing_metadata) == [(gt.STATUS_DETAILS_KEY, status.SerializeToString())]

    # Our own to_status relays a received failure unchanged in what matters.
    relayed = gt.to_status(err)
    assert relayed.code is case.exc.code() and relayed.details == case.exc.details()
    relayed_bin = [v for k, v in relayed.trailing_metadata if k == gt.STATUS_DETAILS_KEY]
    assert len(relayed_bin) == 1
    _check_status(status_pb2.Status.FromString(relayed_bin[0]), case)


@pytest.mark.parametrize("client", ["aio-raw", "aio-typed"])
@pytest.mark.parametrize("name", list(CASES))
def test_rpc_status_aio_from_call(port: int, loop_thread: LoopThread, client: str, name: str) -> None:
    """``grpc_status.rpc_status.aio.from_call`` on the call object itself, not the error."""
    case = CASES[name]
    key = register(Scenario(raise_=case.exc))

    async def run() -> status_pb2.Status | None:
        interceptors = gt.aio_interceptors() if client == "aio-typed" else None
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as channel:
            call = channel.unary_unary(f"/{SERVICE}/Unary", **CODEC)(Msg(value=key), timeout=10)
            with pytest.raises(grpc.RpcError):
                await call
            return await rpc_status.aio.from_call(call)  # type: ignore[attr-defined]

    _check_status(loop_thread.run(run()), case)
