"""Observability: ``on_error`` sees every failure once, with what a metric needs.

Real loopback servers, sync and aio. The hook is the supported way to build
metrics; the counter below is what a user would write with Prometheus or
OpenTelemetry, minus the dependency.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.testing import loopback_server

Msg = wrappers_pb2.StringValue
SERVICE = "test.Observed"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT_CODEC: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString,
    "response_deserializer": Msg.FromString,
}


class SeatsGone(Exception):
    """A domain exception mapped by the interceptor."""


def _fail(value: str) -> None:
    if value == "suspended":
        raise gt.UserNotProvisionable("user 'bob' is SUSPENDED")
    if value == "seats":
        raise SeatsGone("Jira: 100 of 100 seats used")
    if value == "busy":
        raise gt.Unavailable("upstream 503", retry_delay=0.5)
    if value == "bug":
        raise ZeroDivisionError("division by zero")


def _unary(request: Msg, context: Any) -> Msg:
    _fail(request.value)
    return Msg(value="ok")


def _stream(request: Msg, context: Any) -> Iterator[Msg]:
    yield Msg(value="first")
    yield Msg(value="second")
    _fail(request.value)  # after responses were sent


async def _aunary(request: Msg, context: Any) -> Msg:
    await asyncio.sleep(0)
    _fail(request.value)
    return Msg(value="ok")


async def _astream(request: Msg, context: Any) -> AsyncIterator[Msg]:
    yield Msg(value="first")
    yield Msg(value="second")
    _fail(request.value)


def handlers(aio: bool) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_aunary if aio else _unary, **CODEC),
            "Stream": grpc.unary_stream_rpc_method_handler(_astream if aio else _stream, **CODEC),
        },
    )


class Recorder:
    """``on_error``: keeps every event (thread-safe: sync servers call it from workers)."""

    def __init__(self) -> None:
        self.events: list[gt.ErrorEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: gt.ErrorEvent) -> None:
        with self._lock:
            self.events.append(event)


class FailureCounter:
    """A metrics counter tagged by (method, code, reason), fed by ``on_error``."""

    def __init__(self) -> None:
        self.counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def __call__(self, event: gt.ErrorEvent) -> None:
        with self._lock:
            self.counts[(event.method, event.code.name, event.reason)] += 1

    def by_reason(self) -> dict[str, int]:
        out: collections.Counter[str] = collections.Counter()
        for (_method, _code, reason), n in self.counts.items():
            out[reason] += n
        return dict(out)


def _unary_call(channel: grpc.Channel, value: str) -> BaseException | None:
    try:
        channel.unary_unary(UNARY, **CLIENT_CODEC)(Msg(value=value), timeout=10)
    except grpc.RpcError as exc:
        return exc
    return None


def _stream_call(channel: grpc.Channel, value: str) -> tuple[list[str], BaseException | None]:
    got: list[str] = []
    try:
        for response in channel.unary_stream(STREAM, **CLIENT_CODEC)(Msg(value=value), timeout=10):
            got.append(response.value)
    except grpc.RpcError as exc:
        return got, exc
    return got, None


AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync-server", "aio-server"])


@AIO
def test_on_error_once_per_failure_with_method_code_reason(aio: bool) -> None:
    rec = Recorder()
    options = {"errors": {SeatsGone: gt.LicenseExhausted}, "on_error": rec}
    with loopback_server(handlers(aio), aio=aio, interceptor_options=options) as (channel, _):
        assert _unary_call(channel, "fine") is None
        assert _stream_call(channel, "fine") == (["first", "second"], None)
        assert rec.events == []  # successes are not reported

        errors = {value: _unary_call(channel, value) for value in ("suspended", "seats", "busy", "bug")}
        got, mid_stream = _stream_call(channel, "seats")
    assert got == ["first", "second"]
    assert isinstance(mid_stream, gt.LicenseExhausted)
    assert len(rec.events) == 5, rec.events

    by_method = [(e.method, e.code, e.reason, e.expected) for e in rec.events]
    assert by_method == [
        (UNARY, grpc.StatusCode.FAILED_PRECONDITION, "USER_NOT_PROVISIONABLE", True),
        (UNARY, grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_EXHAUSTED", True),
        (UNARY, grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", True),
        (UNARY, grpc.StatusCode.UNKNOWN, "UNKNOWN", False),
        (STREAM, grpc.StatusCode.FAILED_PRECONDITION, "LICENSE_EXHAUSTED", True),
    ]
    # the event's code is what the client received
    for event, value in zip(rec.events[:4], ("suspended", "seats", "busy", "bug"), strict=True):
        err = errors[value]
        assert isinstance(err, gt.StatusError)
        assert err.code() == event.code
    # the original exception, not the translated one
    assert isinstance(rec.events[1].exception, SeatsGone)
    assert isinstance(rec.events[3].exception, ZeroDivisionError)


@AIO
def test_request_id_ties_the_event_to_what_the_client_saw(aio: bool) -> None:
    rec = Recorder()
    with loopback_server(handlers(aio), aio=aio, interceptor_options={"on_error": rec}) as (channel, _):
        first, second = _unary_call(channel, "bug"), _unary_call(channel, "bug")
        expected = _unary_call(channel, "suspended")
    assert isinstance(first, gt.Unknown) and isinstance(second, gt.Unknown)
    assert [e.request_id for e in rec.events[:2]] == [first.request_id, second.request_id]
    assert first.request_id and first.request_id != second.request_id
    assert first.request_id in first.details()
    # expected failures carry no request id unless the raiser attached one
    assert isinstance(expected, gt.UserNotProvisionable)
    assert rec.events[2].request_id is None


@AIO
def test_a_metrics_counter_tagged_by_reason(aio: bool) -> None:
    counter = FailureCounter()
    options = {"errors": {SeatsGone: gt.LicenseExhausted}, "on_error": counter}
    plan = {"suspended": 3, "seats": 2, "busy": 4, "bug": 1, "fine": 5}
    with loopback_server(handlers(aio), aio=aio, interceptor_options=options) as (channel, _):
        for value, times in plan.items():
            for _ in range(times):
                _unary_call(channel, value)
        _stream_call(channel, "seats")
    assert counter.by_reason() == {
        "USER_NOT_PROVISIONABLE": 3,
        "LICENSE_EXHAUSTED": 3,
        "UNAVAILABLE": 4,
        "UNKNOWN": 1,
    }
    assert counter.counts[(STREAM, "FAILED_PRECONDITION", "LICENSE_EXHAUSTED")] == 1
    assert counter.counts[(UNARY, "FAILED_PRECONDITION", "LICENSE_EXHAUSTED")] == 2


def test_on_error_is_thread_safe_under_concurrency() -> None:
    counter = FailureCounter()
    options = {"on_error": counter}
    with loopback_server(handlers(False), interceptor_options=options, workers=8) as (channel, _):
        threads = [threading.Thread(target=lambda: [_unary_call(channel, "busy") for _ in range(10)])
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert counter.by_reason() == {"UNAVAILABLE": 40}


@AIO
def test_a_failing_hook_does_not_change_the_status(aio: bool, caplog: pytest.LogCaptureFixture) -> None:
    def broken(event: gt.ErrorEvent) -> None:
        raise RuntimeError("metrics backend down")

    caplog.set_level(logging.ERROR, logger="grpc_terminal.server")
    with loopback_server(handlers(aio), aio=aio, interceptor_options={"on_error": broken}) as (channel, _):
        err = _unary_call(channel, "suspended")
    assert isinstance(err, gt.UserNotProvisionable)
    assert any("on_error hook failed" in r.getMessage() for r in caplog.records)


@AIO
def test_server_log_lines_carry_method_and_reason(aio: bool, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="grpc_terminal.server")
    with loopback_server(handlers(aio), aio=aio) as (channel, _):
        _unary_call(channel, "suspended")
        bug = _unary_call(channel, "bug")
    expected = [r for r in caplog.records if getattr(r, "reason", None) == "USER_NOT_PROVISIONABLE"]
    assert len(expected) == 1
    assert expected[0].levelno == logging.INFO
    assert getattr(expected[0], "grpc_method", None) == UNARY
    assert isinstance(bug, gt.Unknown)
    unexpected = [r for r in caplog.records if getattr(r, "request_id", None) == bug.request_id]
    assert len(unexpected) == 1
    assert unexpected[0].levelno == logging.ERROR
    assert unexpected[0].exc_info is not None  # the traceback stays on the server
