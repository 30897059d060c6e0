"""grpc_terminal.testing: assertions, loopback servers and the pytest plugin."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.testing import (
    Loopback,
    assert_retryable,
    assert_terminal,
    loopback_server,
    raises_terminal,
)

Msg = wrappers_pb2.StringValue
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT_CODEC: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString,
    "response_deserializer": Msg.FromString,
}


class Suspended(Exception):
    """A domain exception the interceptor maps."""


def _behave(value: str) -> Msg:
    if value == "suspended":
        raise Suspended("Okta E0000038: user is SUSPENDED")
    if value == "seats":
        raise gt.LicenseExhausted("Jira: 100 of 100 seats used")
    if value == "busy":
        raise gt.Unavailable("upstream 503", retry_delay=0.01)
    return Msg(value=f"ok:{value}")


def sync_handler(request: Msg, context: Any) -> Msg:
    return _behave(request.value)


async def aio_handler(request: Msg, context: Any) -> Msg:
    await asyncio.sleep(0)
    return _behave(request.value)


def handlers(aio: bool = False) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        "test.Helpers",
        {"Call": grpc.unary_unary_rpc_method_handler(aio_handler if aio else sync_handler, **CODEC)},
    )


def call(channel: grpc.Channel, value: str) -> str:
    stub = channel.unary_unary("/test.Helpers/Call", **CLIENT_CODEC)
    return str(stub(Msg(value=value), timeout=10).value)


OPTIONS = {"errors": {Suspended: gt.UserNotProvisionable}}


# -- assert_terminal ------------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [
        gt.Reason.LICENSE_EXHAUSTED, 3, "LICENSE_EXHAUSTED", "REASON_LICENSE_EXHAUSTED",
        "license_exhausted", None,
    ],
)
def test_assert_terminal_accepts_every_reason_spelling(reason: Any) -> None:
    err = gt.LicenseExhausted("seats")
    assert assert_terminal(err, reason) is err
    typed = assert_terminal(lambda: _behave("seats"), reason)
    assert isinstance(typed, gt.LicenseExhausted)
    assert typed.reason == gt.Reason.LICENSE_EXHAUSTED


def test_assert_terminal_failures_say_what_was_wrong() -> None:
    with pytest.raises(AssertionError, match="got reason LICENSE_EXHAUSTED"):
        assert_terminal(gt.LicenseExhausted("seats"), "USER_NOT_PROVISIONABLE")
    with pytest.raises(AssertionError, match="not terminal"):
        assert_terminal(gt.Unavailable("503"), "USER_NOT_PROVISIONABLE")
    with pytest.raises(AssertionError, match="non-gRPC ValueError"):
        assert_terminal(ValueError("x"))
    with pytest.raises(AssertionError, match="the call returned 'fine'"):
        assert_terminal(lambda: "fine", gt.Reason.LICENSE_EXHAUSTED)
    with pytest.raises(ValueError, match="unknown reason"):
        assert_terminal(gt.LicenseExhausted("x"), "NO_SUCH_REASON")
    with pytest.raises(TypeError):
        assert_terminal(gt.LicenseExhausted("x"), True)


def test_assert_terminal_follows_causes() -> None:
    with pytest.raises(RuntimeError) as info:
        try:
            _behave("seats")
        except gt.StatusError as inner:
            raise RuntimeError("grant failed") from inner
    assert isinstance(assert_terminal(info.value, "LICENSE_EXHAUSTED"), gt.LicenseExhausted)


def test_assert_retryable() -> None:
    assert isinstance(assert_retryable(gt.Unavailable("503")), gt.Unavailable)
    with pytest.raises(AssertionError, match="retryable"):
        assert_retryable(gt.LicenseExhausted("seats"))
    with pytest.raises(AssertionError, match="retryable"):
        assert_retryable(KeyError("x"))


# -- raises_terminal ------------------------------------------------------------------


def test_raises_terminal_records_the_failure() -> None:
    with raises_terminal("LICENSE_EXHAUSTED") as caught:
        _behave("seats")
    assert isinstance(caught.error, gt.LicenseExhausted)
    assert caught.reason == gt.Reason.LICENSE_EXHAUSTED
    assert caught.exception is caught.error


def test_raises_terminal_fails_on_nothing_wrong_reason_and_transient() -> None:
    with pytest.raises(AssertionError, match="nothing was raised"), raises_terminal("LICENSE_EXHAUSTED"):
        _behave("fine")
    with pytest.raises(AssertionError, match="got reason LICENSE_EXHAUSTED"), raises_terminal(
        gt.Reason.USER_NOT_PROVISIONABLE
    ):
        _behave("seats")
    with pytest.raises(AssertionError, match="not terminal"), raises_terminal():
        _behave("busy")
    with pytest.raises(ValueError, match="unknown reason"), raises_terminal("NOPE"):
        pass


def test_raises_terminal_lets_base_exceptions_through() -> None:
    with pytest.raises(KeyboardInterrupt), raises_terminal():
        raise KeyboardInterrupt


# -- loopback_server --------------------------------------------------------------------


def _port_is_closed(port: int) -> bool:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        try:
            grpc.channel_ready_future(raw).result(timeout=0.5)
        except grpc.FutureTimeoutError:
            return True
    return False


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
def test_loopback_server_runs_maps_and_stops(aio: bool) -> None:
    with loopback_server(handlers(aio), aio=aio, interceptor_options=OPTIONS) as server:
        assert isinstance(server, Loopback)
        channel, port = server
        assert server.target == f"127.0.0.1:{port}"
        assert call(channel, "alice") == "ok:alice"
        with raises_terminal(gt.Reason.USER_NOT_PROVISIONABLE) as caught:
            call(channel, "suspended")
        assert isinstance(caught.error, gt.UserNotProvisionable)
        assert isinstance(caught.error, grpc.RpcError)
        assert_terminal(lambda: call(channel, "seats"), "LICENSE_EXHAUSTED")
    assert _port_is_closed(port)


def test_loopback_server_stops_when_the_block_raises() -> None:
    ports: list[int] = []
    with pytest.raises(RuntimeError, match="test body failed"), loopback_server(handlers()) as server:
        ports.append(server.port)
        raise RuntimeError("test body failed")
    assert ports and ports[0]
    assert _port_is_closed(ports[0])


def test_loopback_server_accepts_a_list_or_a_function() -> None:
    with loopback_server([handlers()]) as (channel, _):
        assert call(channel, "a") == "ok:a"
    with loopback_server(lambda server: server.add_generic_rpc_handlers((handlers(),))) as (channel, _):
        assert call(channel, "b") == "ok:b"
    with pytest.raises(TypeError, match="handlers"), loopback_server([]):
        pass


def test_loopback_aio_channel() -> None:
    with loopback_server(handlers(aio=True), aio=True, interceptor_options=OPTIONS) as server:

        async def scenario() -> tuple[str, BaseException | None]:
            channel = server.aio_channel()
            try:
                stub = channel.unary_unary("/test.Helpers/Call", **CLIENT_CODEC)
                ok = (await stub(Msg(value="carol"), timeout=10)).value
                try:
                    await stub(Msg(value="suspended"), timeout=10)
                except grpc.RpcError as exc:
                    return ok, exc
                return ok, None
            finally:
                await channel.close(None)

        ok, err = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert ok == "ok:carol"
    assert isinstance(err, gt.UserNotProvisionable)


# -- the pytest plugin (in a pytest of its own, as a user would run it) ----------------------


PLUGIN_TESTS = '''
    import grpc
    from google.protobuf import wrappers_pb2

    import grpc_terminal as gt
    from grpc_terminal.testing import assert_terminal

    Msg = wrappers_pb2.StringValue
    PORTS = []


    class Suspended(Exception):
        pass


    def handler(request, context):
        if request.value == "bob":
            raise Suspended("bob is SUSPENDED")
        return Msg(value="ok")


    HANDLERS = grpc.method_handlers_generic_handler(
        "user.Svc",
        {"Call": grpc.unary_unary_rpc_method_handler(
            handler, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString)},
    )


    def _stub(channel):
        return channel.unary_unary(
            "/user.Svc/Call", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString)


    def test_uses_the_fixture(grpc_terminal_server):
        server = grpc_terminal_server(HANDLERS, errors={Suspended: gt.UserNotProvisionable})
        aio_server = grpc_terminal_server(HANDLERS, aio=True, errors={Suspended: gt.UserNotProvisionable})
        PORTS.extend([server.port, aio_server.port])
        for s in (server, aio_server):
            assert _stub(s.channel)(Msg(value="alice"), timeout=10).value == "ok"
            assert_terminal(lambda: _stub(s.channel)(Msg(value="bob"), timeout=10), "USER_NOT_PROVISIONABLE")


    def test_servers_were_stopped_after_the_previous_test():
        assert len(PORTS) == 2
        for port in PORTS:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
                try:
                    grpc.channel_ready_future(raw).result(timeout=0.5)
                except grpc.FutureTimeoutError:
                    continue
            raise AssertionError(f"server on port {port} still running")
'''


def test_pytest_plugin_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_user_suite.py").write_text(textwrap.dedent(PLUGIN_TESTS))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "grpc_terminal.testing", "-p", "no:cacheprovider",
         "test_user_suite.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
