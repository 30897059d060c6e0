"""What a new user trips on (issue 12, 20, 23 and 25): the pytest fixture, the testing
helpers' types, a user's own service built from the README alone, and the
README's own examples (closed channels, pasteable ``decode`` commands with
their real output, the trailer value) and the LICENSE.

The service is ``examples/user_service`` (generated stubs, sync and aio
servers and clients, a domain exception mapped with ``errors=``); here its
servers run on loopback and its clients run against them, end to end.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import importlib
import inspect
import io
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal._cli import main as cli_main
from grpc_terminal._retry import RetryPolicy
from grpc_terminal.testing import Loopback, assert_terminal, loopback_server

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the examples package lives beside tests/, not in site-packages
user_client = importlib.import_module("examples.user_service.client")
user_service = importlib.import_module("examples.user_service.service")
seats_pb2 = importlib.import_module("examples.user_service.seats_pb2")
seats_pb2_grpc = importlib.import_module("examples.user_service.seats_pb2_grpc")
Msg = wrappers_pb2.StringValue


class Suspended(Exception):
    pass


def _grant(request: Msg, context: Any) -> Msg:
    if request.value == "bob":
        raise Suspended("bob is SUSPENDED")
    if request.value == "flaky":
        raise gt.Unavailable("upstream 503", retry_delay=0.01)
    return Msg(value="ok")


async def _agrant(request: Msg, context: Any) -> Msg:
    return _grant(request, context)


def _handlers(aio: bool) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        "user.Svc",
        {"Call": grpc.unary_unary_rpc_method_handler(
            _agrant if aio else _grant, request_deserializer=Msg.FromString,
            response_serializer=Msg.SerializeToString)},
    )


def _call(server: Loopback, value: str) -> Msg:
    stub = server.channel.unary_unary(
        "/user.Svc/Call", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )
    result: Msg = stub(Msg(value=value), timeout=5)
    return result


# -- 20: the fixture takes loopback_server's arguments ----------------------------------------------


def test_fixture_signature_is_loopback_servers(grpc_terminal_server: Callable[..., Loopback]) -> None:
    fixture = inspect.signature(grpc_terminal_server)
    helper = inspect.signature(loopback_server)
    extra = [p for p in fixture.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD]
    assert len(extra) == 1, "the fixture also takes the interceptor's options as keywords"
    same = [p for p in fixture.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    assert same == list(helper.parameters.values())
    assert fixture.return_annotation in ("Loopback", Loopback)


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
def test_fixture_takes_interceptor_options(grpc_terminal_server: Callable[..., Loopback], aio: bool) -> None:
    events: list[gt.ErrorEvent] = []
    options = {
        "errors": {Suspended: gt.UserNotProvisionable}, "on_error": events.append, "domain": "user.test"
    }
    server = grpc_terminal_server(_handlers(aio), aio=aio, interceptor_options=options)
    assert _call(server, "alice").value == "ok"
    err = assert_terminal(lambda: _call(server, "bob"), "USER_NOT_PROVISIONABLE")
    assert err.error_info is not None and err.error_info.domain == "user.test"
    assert [(e.method, e.reason) for e in events] == [("/user.Svc/Call", "USER_NOT_PROVISIONABLE")]


def test_fixture_still_takes_options_as_keywords(grpc_terminal_server: Callable[..., Loopback]) -> None:
    server = grpc_terminal_server(_handlers(False), errors={Suspended: gt.UserNotProvisionable})
    assert_terminal(lambda: _call(server, "bob"), "USER_NOT_PROVISIONABLE")


def test_fixture_refuses_both_ways_at_once(grpc_terminal_server: Callable[..., Loopback]) -> None:
    with pytest.raises(TypeError, match=r"either as interceptor_options= or as keywords, not both.*errors"):
        grpc_terminal_server(
            _handlers(False), interceptor_options={"domain": "x"}, errors={Suspended: gt.NotFound}
        )


def test_fixture_passes_retry_and_workers(grpc_terminal_server: Callable[..., Loopback]) -> None:
    retries: list[int] = []
    policy = gt.RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=0, timeout=5,
                            on_retry=lambda attempt, *_: retries.append(attempt))
    server = grpc_terminal_server(_handlers(False), retry=policy, workers=2)
    with pytest.raises(gt.Unavailable) as info:
        _call(server, "flaky")
    assert retries == [1, 2]
    assert info.value.retry_history is not None and len(info.value.retry_history.attempts) == 3


# -- 23: retry is typed -----------------------------------------------------------------------------


def test_retry_is_typed_as_a_policy() -> None:
    want = RetryPolicy | None
    assert inspect.signature(loopback_server, eval_str=True).parameters["retry"].annotation == want
    assert inspect.signature(Loopback.aio_channel, eval_str=True).parameters["retry"].annotation == want


# -- 23: a user's service, end to end ----------------------------------------------------------------


def _check_report(lines: list[str]) -> None:
    text = "\n".join(lines)
    assert re.search(r"^Reserve\(ann, jira\): seat jira-\d+$", text, re.MULTILINE), text
    assert re.search(r"^Reserve\(bob, jira\): seat jira-\d+$", text, re.MULTILINE), text
    full = next(line for line in lines if line.startswith("Reserve(cid, jira): "))
    assert full == (
        "Reserve(cid, jira): LicenseExhausted FAILED_PRECONDITION reason=LICENSE_EXHAUSTED "
        "detail='jira: 2 of 2 seats used' quota=['jira'] attempts=1 stopped=terminal "
        "terminal=True retryable=False"
    )
    missing = next(line for line in lines if line.startswith("Reserve(zed, jira): "))
    assert missing.startswith("Reserve(zed, jira): NotFound NOT_FOUND attempts=1 ")
    assert "terminal=False retryable=False" in missing
    # BackendBusy twice: two retries honouring the server's delay, then a seat.
    figma = lines.index(next(line for line in lines if line.startswith("Reserve(ann, figma)")))
    assert [line.split(",")[0] for line in lines[figma - 2 : figma]] == [
        "  attempt 1: Unavailable", "  attempt 2: Unavailable"
    ]
    assert re.fullmatch(r"Reserve\(ann, figma\): seat figma-\d+", lines[figma])
    assert "Watch(jira): ann holds seat 1 of 2" in lines
    assert "Watch(jira): bob holds seat 2 of 2" in lines
    assert any(line.startswith("Watch(slack): NotFound NOT_FOUND") for line in lines)
    # The trailer value the client printed is what the CLI decodes.
    value = next(line for line in lines if "grpc-status-details-bin: " in line).split(": ", 1)[1]
    out = io.StringIO()
    assert cli_main(["decode", value], stdout=out, stderr=io.StringIO()) == 0
    assert "LicenseExhausted" in out.getvalue()
    assert "domain: seats.example.com" in out.getvalue()
    assert "google.rpc.QuotaFailure" in out.getvalue()


def test_user_service_sync_server_and_client() -> None:
    server, port = user_service.serve(user_service.Inventory())
    try:
        lines = user_client.reserve_all(f"127.0.0.1:{port}")
    finally:
        server.stop(None).wait(10)
    _check_report(lines)


@pytest.mark.asyncio
async def test_user_service_aio_server_and_client() -> None:
    server, port = await user_service.serve_aio(user_service.Inventory())
    try:
        lines = await asyncio.wait_for(user_client.reserve_all_aio(f"127.0.0.1:{port}"), 30)
    finally:
        await server.stop(None)
    _check_report(lines)


def test_user_service_trailer_round_trips() -> None:
    # The user's trailer() helper returns the raw trailer, base64: what the server sent.
    server, port = user_service.serve(user_service.Inventory(totals={"jira": 0}))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
            stub = seats_pb2_grpc.SeatsStub(gt.intercept_channel(raw))
            with pytest.raises(gt.LicenseExhausted) as info:
                stub.Reserve(seats_pb2.ReserveRequest(user="ann", app="jira"), timeout=5)
    finally:
        server.stop(None).wait(10)
    value = user_client.trailer(info.value)
    assert base64.b64decode(value) == dict(info.value.trailing_metadata())[gt.STATUS_DETAILS_KEY]
    assert info.value.reason is gt.Reason.LICENSE_EXHAUSTED


# -- 25: the README's own examples, and the LICENSE --------------------------------------------------

# The README's and the site's examples run, print what they say and close their channels:
# tests/test_readme.py.


def test_license_is_the_apache_2_0_text() -> None:
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert hashlib.md5(text.encode("utf-8")).hexdigest() == "3b83ef96387f14655fc854ddc3c6bd57"
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
