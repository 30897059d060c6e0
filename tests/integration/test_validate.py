"""``ServerOptions(validate=...)``: every request checked before the handler sees it.

Real loopback servers: every RPC kind, on a sync server and on an aio server
with async handlers, async generators and sync handlers. A bad unary request
never reaches the handler; a request stream is checked message by message
as the handler reads it; what the validator raises is translated like the
handler's own exception.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.testing import loopback_server

Msg = wrappers_pb2.StringValue
SERVICE = "test.Validated"
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString, "response_deserializer": Msg.FromString,
}


class Invalid(Exception):
    """What the validator raises; mapped to INVALID_ARGUMENT."""


def check(request: Msg) -> None:
    if request.value.startswith("bad"):
        raise Invalid(f"value {request.value!r} is not allowed")
    if request.value == "typed":
        raise gt.FailedPrecondition("checked by a validator that raises a StatusError")


class Seen:
    """What the handlers saw (thread-safe: sync servers call from workers)."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._lock = threading.Lock()

    def add(self, value: str) -> None:
        with self._lock:
            self.values.append(value)


def handlers(style: str, seen: Seen) -> grpc.GenericRpcHandler[Any, Any]:
    """One method per RPC kind; ``style``: "sync" functions/generators or "async" ones."""

    def uu(request: Msg, context: Any) -> Msg:
        seen.add(request.value)
        return Msg(value="ok")

    def us(request: Msg, context: Any) -> Iterator[Msg]:
        seen.add(request.value)
        yield Msg(value="ok")

    def su(requests: Iterator[Msg], context: Any) -> Msg:
        for request in requests:
            seen.add(request.value)
        return Msg(value="ok")

    def ss(requests: Iterator[Msg], context: Any) -> Iterator[Msg]:
        for request in requests:
            seen.add(request.value)
            yield Msg(value="ok")

    async def auu(request: Msg, context: Any) -> Msg:
        return uu(request, context)

    async def aus(request: Msg, context: Any) -> AsyncIterator[Msg]:
        seen.add(request.value)
        yield Msg(value="ok")

    async def asu(requests: AsyncIterator[Msg], context: Any) -> Msg:
        async for request in requests:
            seen.add(request.value)
        return Msg(value="ok")

    async def ass(requests: AsyncIterator[Msg], context: Any) -> AsyncIterator[Msg]:
        async for request in requests:
            seen.add(request.value)
            yield Msg(value="ok")

    sync = style == "sync"
    return grpc.method_handlers_generic_handler(SERVICE, {
        "UU": grpc.unary_unary_rpc_method_handler(uu if sync else auu, **CODEC),
        "US": grpc.unary_stream_rpc_method_handler(us if sync else aus, **CODEC),
        "SU": grpc.stream_unary_rpc_method_handler(su if sync else asu, **CODEC),
        "SS": grpc.stream_stream_rpc_method_handler(ss if sync else ass, **CODEC),
    })


SERVERS = pytest.mark.parametrize(("aio", "style"), [
    (False, "sync"), (True, "async"), (True, "sync"),
], ids=["sync-server", "aio-server", "aio-server-sync-handlers"])
OPTIONS: dict[str, Any] = {"validate": check, "errors": {Invalid: gt.InvalidArgument}}


def call(channel: grpc.Channel, kind: str, values: list[str]) -> list[str]:
    """Make one call of ``kind`` with ``values`` (one for a unary request); the responses."""
    path = f"/{SERVICE}/{kind}"
    requests = [Msg(value=v) for v in values]
    if kind == "UU":
        return [channel.unary_unary(path, **CLIENT)(requests[0], timeout=10).value]
    if kind == "US":
        return [r.value for r in channel.unary_stream(path, **CLIENT)(requests[0], timeout=10)]
    if kind == "SU":
        return [channel.stream_unary(path, **CLIENT)(iter(requests), timeout=10).value]
    return [r.value for r in channel.stream_stream(path, **CLIENT)(iter(requests), timeout=10)]


@SERVERS
@pytest.mark.parametrize("kind", ["UU", "US"])
def test_a_bad_unary_request_never_reaches_the_handler(aio: bool, style: str, kind: str) -> None:
    seen = Seen()
    with loopback_server(handlers(style, seen), aio=aio, interceptor_options=OPTIONS) as lb:
        with pytest.raises(gt.InvalidArgument) as caught:
            call(lb.channel, kind, ["bad one"])
        assert caught.value.message == "value 'bad one' is not allowed"
        assert call(lb.channel, kind, ["fine"]) == ["ok"]
    assert seen.values == ["fine"]


@SERVERS
@pytest.mark.parametrize("kind", ["SU", "SS"])
def test_a_request_stream_is_checked_as_the_handler_reads_it(aio: bool, style: str, kind: str) -> None:
    seen = Seen()
    with loopback_server(handlers(style, seen), aio=aio, interceptor_options=OPTIONS) as lb:
        with pytest.raises(gt.InvalidArgument):
            call(lb.channel, kind, ["one", "two", "bad three", "four"])
        assert call(lb.channel, kind, ["five", "six"]) in (["ok"], ["ok", "ok"])
    assert seen.values == ["one", "two", "five", "six"]


@SERVERS
def test_a_validator_may_raise_a_status_error(aio: bool, style: str) -> None:
    seen = Seen()
    with (
        loopback_server(handlers(style, seen), aio=aio, interceptor_options=OPTIONS) as lb,
        pytest.raises(gt.FailedPrecondition, match="checked by a validator"),
    ):
        call(lb.channel, "UU", ["typed"])
    assert seen.values == []


def test_a_validator_that_breaks_is_an_unexpected_error() -> None:
    def broken(request: Msg) -> None:
        raise KeyError(request.value)

    seen = Seen()
    with (
        loopback_server(handlers("sync", seen), interceptor_options={"validate": broken}) as lb,
        pytest.raises(gt.Unknown, match=r"^unexpected server error \(request id [0-9a-f]{32}\)$"),
    ):
        call(lb.channel, "UU", ["secret-value"])
    assert seen.values == []


def test_a_non_blocking_handler_keeps_its_attribute_and_is_checked() -> None:
    seen = Seen()

    def nb(request: Msg, context: Any, send: Any) -> None:
        seen.add(request.value)
        send(Msg(value="ok"))
        send(None)  # the end of the stream

    nb.experimental_non_blocking = True  # type: ignore[attr-defined]
    nb.experimental_thread_pool = None  # type: ignore[attr-defined]
    generic = grpc.method_handlers_generic_handler(SERVICE, {
        "US": grpc.unary_stream_rpc_method_handler(nb, **CODEC),
    })
    with loopback_server(generic, interceptor_options=OPTIONS) as lb:
        with pytest.raises(gt.InvalidArgument):
            call(lb.channel, "US", ["bad"])
        assert call(lb.channel, "US", ["fine"]) == ["ok"]
    assert seen.values == ["fine"]


@pytest.mark.parametrize("value", ["check", 3, [check]])
def test_validate_must_be_one_plain_callable(value: Any) -> None:
    with pytest.raises(TypeError, match=r"^validate must be a callable or None"):
        gt.ServerOptions(validate=value)


def test_an_async_validator_is_refused() -> None:
    async def later(request: Msg) -> None:
        pass

    with pytest.raises(TypeError, match=r"^validate is an async function"):
        gt.ServerInterceptor(validate=later)


@SERVERS
def test_a_validator_returning_an_awaitable_fails_closed(aio: bool, style: str) -> None:
    async def async_check(request: Msg) -> None:
        check(request)

    seen = Seen()
    options = {**OPTIONS, "validate": lambda request: async_check(request)}
    with loopback_server(handlers(style, seen), aio=aio, interceptor_options=options) as lb:
        for kind in ("UU", "SS"):
            with pytest.raises(gt.Unknown, match=r"^unexpected server error"):
                call(lb.channel, kind, ["bad but unchecked"])
    assert seen.values == []  # and no "never awaited" warning: the coroutine was closed


def test_an_async_generator_function_is_refused() -> None:
    async def later(request: Msg) -> AsyncIterator[None]:
        yield None

    with pytest.raises(TypeError, match=r"^validate is an async function"):
        gt.ServerOptions(validate=later)
