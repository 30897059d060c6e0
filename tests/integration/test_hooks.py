"""Hooks compose: ``on_error``, ``on_retry`` and ``on_give_up`` take one callable or several.

Real loopback servers, sync and aio, and the client paths that go through
the interceptors: the sync blocking call, future and response stream, and
the aio interceptors (``policy.call`` and ``acall``: tests/unit/test_hooks.py).
A hook that raises is logged and never changes what the caller gets, nor
stops the hooks after it; each
give-up is reported once, with the history the error carries, in the
caller's context (grpc runs the sync future's callbacks on a thread of its own).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.testing import loopback_server

Msg = wrappers_pb2.StringValue
SERVICE = "test.Hooked"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT_CODEC: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString,
    "response_deserializer": Msg.FromString,
}
AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync-server", "aio-server"])

#: Set by the caller; a hook sees it only when it runs in the caller's context.
CALLER = contextvars.ContextVar("CALLER", default="(none)")


def _fail(value: str) -> None:
    if value == "suspended":
        raise gt.UserNotProvisionable("user 'bob' is SUSPENDED")
    if value == "busy":
        raise gt.Unavailable("upstream 503")


def _unary(request: Msg, context: Any) -> Msg:
    _fail(request.value)
    return Msg(value="ok")


def _stream(request: Msg, context: Any) -> Iterator[Msg]:
    _fail(request.value)
    yield Msg(value="ok")


async def _aunary(request: Msg, context: Any) -> Msg:
    _fail(request.value)
    return Msg(value="ok")


async def _astream(request: Msg, context: Any) -> AsyncIterator[Msg]:
    _fail(request.value)
    yield Msg(value="ok")


def handlers(aio: bool) -> grpc.GenericRpcHandler[Any, Any]:
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(_aunary if aio else _unary, **CODEC),
            "Stream": grpc.unary_stream_rpc_method_handler(_astream if aio else _stream, **CODEC),
        },
    )


class Calls:
    """Every hook call, by hook, with the caller's context variable as the hook saw it."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, tuple[Any, ...], str]] = []
        self._lock = threading.Lock()

    def hook(self, name: str) -> Any:
        def record(*args: Any) -> None:
            with self._lock:
                self.seen.append((name, args, CALLER.get()))

        return record

    def names(self) -> list[str]:
        return [name for name, _, _ in self.seen]


def broken(*_: object) -> None:
    raise RuntimeError("metrics backend down")


# -- server: on_error ---------------------------------------------------------------------


@AIO
def test_every_on_error_hook_sees_the_failure_and_a_raising_one_changes_nothing(
    aio: bool, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    hooks = [calls.hook("first"), broken, calls.hook("last")]
    with (
        caplog.at_level(logging.ERROR, logger="grpc_terminal"),
        loopback_server(handlers(aio), aio=aio, interceptor_options={"on_error": hooks}) as lb,
        pytest.raises(gt.UserNotProvisionable) as caught,
    ):
        lb.channel.unary_unary(UNARY, **CLIENT_CODEC)(Msg(value="suspended"), timeout=10)
    assert gt.is_terminal(caught.value)
    assert calls.names() == ["first", "last"]
    events = [args[0] for _, args, _ in calls.seen]
    assert events[0] is events[1]
    assert (events[0].reason, events[0].terminal) == ("USER_NOT_PROVISIONABLE", True)
    assert f"on_error hook failed: {broken!r}" in caplog.text


def test_on_error_list_is_kept_as_a_tuple_and_options_stay_hashable() -> None:
    calls = Calls()
    first, last = calls.hook("first"), calls.hook("last")
    options = gt.ServerOptions(on_error=[first, last])
    assert options.on_error == (first, last)
    assert hash(options) == hash(gt.ServerOptions(on_error=(first, last)))
    assert gt.ServerOptions(on_error=first).on_error is first


# -- client: on_retry and on_give_up on every path -------------------------------------------


def _policy(calls: Calls, **changes: Any) -> gt.RetryPolicy:
    return gt.RetryPolicy(
        max_attempts=3, initial_backoff=0.001, max_backoff=0.001, jitter=0,
        on_retry=[calls.hook("retry"), broken], on_give_up=(broken, calls.hook("give_up")),
    ).replace(**changes)


def _check_exhausted(calls: Calls, err: BaseException, caller: str) -> None:
    """Two retries then one give-up, in the caller's context, with the error's own history."""
    assert calls.names() == ["retry", "retry", "give_up"]
    assert [args[0] for _, args, _ in calls.seen[:2]] == [1, 2]
    assert all(args[2].code is grpc.StatusCode.UNAVAILABLE for _, args, _ in calls.seen[:2])
    history, error = calls.seen[2][1]
    assert error is err
    assert history is err.retry_history  # type: ignore[attr-defined]
    assert (history.stopped, history.count) == (gt.StopReason.EXHAUSTED, 3)
    assert {seen_by for _, _, seen_by in calls.seen} == {caller}


def _check_terminal(calls: Calls, err: BaseException) -> None:
    """No retry, one give-up: the first failure was terminal."""
    assert calls.names() == ["give_up"]
    history, error = calls.seen[0][1]
    assert error is err
    assert (history.stopped, history.count) == (gt.StopReason.TERMINAL, 1)


@pytest.mark.parametrize("how", ["blocking", "future", "stream"])
@pytest.mark.parametrize("value", ["busy", "suspended"])
def test_sync_interceptor_reports_in_the_callers_context(how: str, value: str) -> None:
    calls = Calls()
    with loopback_server(handlers(False), retry=_policy(calls)) as lb:
        token = CALLER.set(how)
        try:
            with pytest.raises(gt.StatusError) as caught:
                unary = lb.channel.unary_unary(UNARY, **CLIENT_CODEC)
                if how == "blocking":
                    unary(Msg(value=value), timeout=10)
                elif how == "future":
                    unary.future(Msg(value=value), timeout=10).result()
                else:
                    list(lb.channel.unary_stream(STREAM, **CLIENT_CODEC)(Msg(value=value), timeout=10))
        finally:
            CALLER.reset(token)
    if value == "busy":
        _check_exhausted(calls, caught.value, how)
    else:
        _check_terminal(calls, caught.value)


@pytest.mark.parametrize("kind", ["unary", "stream"])
@pytest.mark.parametrize("value", ["busy", "suspended"])
def test_aio_interceptors_report_each_retry_and_one_give_up(kind: str, value: str) -> None:
    calls = Calls()

    async def main(port: int) -> BaseException:
        CALLER.set(kind)
        interceptors = gt.aio_interceptors(retry=_policy(calls))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as channel:
            try:
                if kind == "unary":
                    await channel.unary_unary(UNARY, **CLIENT_CODEC)(Msg(value=value), timeout=10)
                else:
                    async for _ in channel.unary_stream(STREAM, **CLIENT_CODEC)(Msg(value=value), timeout=10):
                        pass
            except gt.StatusError as exc:
                return exc
        raise AssertionError("the call did not fail")

    with loopback_server(handlers(True), aio=True) as lb:
        err = asyncio.run(main(lb.port))
    if value == "busy":
        _check_exhausted(calls, err, kind)
    else:
        _check_terminal(calls, err)


def test_no_give_up_on_success() -> None:
    calls = Calls()
    with loopback_server(handlers(False), retry=_policy(calls)) as lb:
        assert lb.channel.unary_unary(UNARY, **CLIENT_CODEC)(Msg(value="fine"), timeout=10).value == "ok"
    assert calls.seen == []


# -- a hook raising a BaseException ----------------------------------------------------------------


class GreenTimeout(BaseException):
    """Like a green-thread library's timeout: a BaseException that is not an Exception."""


def raise_green(*_: object) -> None:
    raise GreenTimeout()


def raise_interrupt(*_: object) -> None:
    raise KeyboardInterrupt()


@AIO
def test_an_on_error_hook_raising_a_base_exception_changes_nothing(aio: bool) -> None:
    calls = Calls()
    options = {"on_error": [raise_green, calls.hook("after")]}
    with (
        loopback_server(handlers(aio), aio=aio, interceptor_options=options) as lb,
        pytest.raises(gt.UserNotProvisionable),  # not DEADLINE_EXCEEDED: the RPC ended at once
    ):
        lb.channel.unary_unary(UNARY, **CLIENT_CODEC)(Msg(value="suspended"), timeout=10)
    assert calls.names() == ["after"]


@pytest.mark.parametrize("how", ["blocking", "future"])
def test_a_client_hook_raising_off_the_main_thread_neither_hangs_nor_changes_the_outcome(how: str) -> None:
    # Off the main thread a KeyboardInterrupt cannot come from a signal: it is logged and skipped
    # like any other; a sync future's retry thread then still answers the caller.
    policy = gt.RetryPolicy(max_attempts=2, initial_backoff=0.001, max_backoff=0.001, jitter=0,
                            on_retry=raise_interrupt, on_give_up=[raise_green, raise_interrupt])
    with (
        loopback_server(handlers(False), retry=policy) as lb,
        concurrent.futures.ThreadPoolExecutor(1) as pool,
    ):
        unary = lb.channel.unary_unary(UNARY, **CLIENT_CODEC)

        def call() -> object:
            if how == "blocking":
                return unary(Msg(value="busy"), timeout=10)
            return unary.future(Msg(value="busy"), timeout=10).result(timeout=10)

        with pytest.raises(gt.Unavailable) as caught:
            pool.submit(call).result(timeout=20)
    assert caught.value.retry_history.count == 2  # type: ignore[attr-defined]
