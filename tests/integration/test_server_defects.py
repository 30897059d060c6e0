"""The server edge's defects of issue 12, each against real loopback servers.

Servers are ``sync`` (``grpc.server`` + ServerInterceptor), ``aio``
(``grpc.aio.server`` + AioServerInterceptor, async handlers) and
``aio-sync`` (the same aio server with plain-function handlers). The client
is a plain grpc channel, so what is asserted is what goes on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2
from grpc_status import rpc_status

import grpc_terminal as gt

from harness import LoopThread

Msg = wrappers_pb2.StringValue
SERVICE = "defects.Probe"
CODEC: dict[str, Any] = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
CLIENT: dict[str, Any] = {
    "request_serializer": Msg.SerializeToString,
    "response_deserializer": Msg.FromString,
}
TIMEOUT = 5.0
SECRET = "SECRET-bob-secret-project-42"
KINDS = ["sync", "aio", "aio-sync"]
ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def serve(
    unary: Callable[..., Any] | None,
    kind: str,
    loop: LoopThread,
    *,
    stream: Callable[..., Any] | None = None,
    interceptors: list[Any] | None = None,
    **options: Any,
) -> Iterator[grpc.Channel]:
    """A real server on 127.0.0.1 (our interceptor with ``options``, unless ``interceptors``)."""
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    if unary is not None:
        handlers["Unary"] = grpc.unary_unary_rpc_method_handler(unary, **CODEC)
    if stream is not None:
        handlers["Stream"] = grpc.unary_stream_rpc_method_handler(stream, **CODEC)
    generic = grpc.method_handlers_generic_handler(SERVICE, handlers)
    pool = futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="defects")
    if kind == "sync":
        chosen = interceptors if interceptors is not None else [gt.ServerInterceptor(**options)]
        server = grpc.server(pool, interceptors=chosen)
        server.add_generic_rpc_handlers((generic,))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        stop: Callable[[], object] = lambda: server.stop(None).wait(5)  # noqa: E731
    else:

        async def start() -> tuple[grpc.aio.Server, int]:
            chosen = interceptors if interceptors is not None else [gt.AioServerInterceptor(**options)]
            aio_server = grpc.aio.server(migration_thread_pool=pool, interceptors=chosen)
            aio_server.add_generic_rpc_handlers((generic,))
            bound = aio_server.add_insecure_port("127.0.0.1:0")
            await aio_server.start()
            return aio_server, bound

        aio_server, port = loop.run(start())
        stop = lambda: loop.run(aio_server.stop(None))  # noqa: E731
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel
    finally:
        channel.close()
        stop()
        pool.shutdown(wait=False, cancel_futures=True)


def pick(kind: str, sync: Callable[..., Any], aio: Callable[..., Any]) -> Callable[..., Any]:
    return aio if kind == "aio" else sync


def call(channel: grpc.Channel, value: str = "x", timeout: float = TIMEOUT) -> grpc.RpcError:
    """Call Unary; return the error (the call must fail)."""
    stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
    try:
        response = stub(Msg(value=value), timeout=timeout)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError(f"the call succeeded: {response!r}")


def trailing(err: Any) -> dict[str, Any]:
    """The trailing metadata of a call or error, as a dict."""
    return dict(err.trailing_metadata() or ())


def wire(err: grpc.RpcError) -> str:
    """Everything of ``err`` a caller can read."""
    typed = gt.from_rpc_error(err)
    return f"{err.details()!r} {err.trailing_metadata()!r} {typed!r}"


class Events:
    """``on_error``: keeps every event."""

    def __init__(self) -> None:
        self.events: list[gt.ErrorEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: gt.ErrorEvent) -> None:
        with self._lock:
            self.events.append(event)


class SeatsFull(Exception):
    """A domain exception mapped by a function typed with it."""


def seats(exc: SeatsFull) -> gt.StatusError:
    return gt.LicenseExhausted(str(exc))


class GreenTimeout(BaseException):
    """Like gevent.Timeout: a BaseException that is not an Exception."""


# -- 1: exception groups ------------------------------------------------------------------


def _deep_group() -> BaseException:
    group: Exception = gt.UserNotProvisionable("at the bottom")
    for depth in range(100):
        group = ExceptionGroup(f"level {depth}", [ValueError(SECRET), group])
    return group


GROUPS: dict[str, tuple[Callable[[], BaseException], grpc.StatusCode, type[gt.StatusError], str | None]] = {
    "terminal-after-unexpected": (
        lambda: ExceptionGroup("g", [ValueError(SECRET), gt.UserNotProvisionable("suspended")]),
        grpc.StatusCode.FAILED_PRECONDITION, gt.UserNotProvisionable, "suspended",
    ),
    "mapped-terminal-beats-status": (
        lambda: ExceptionGroup("g", [gt.Unavailable("busy"), SeatsFull("100 of 100 seats")]),
        grpc.StatusCode.FAILED_PRECONDITION, gt.LicenseExhausted, "100 of 100 seats",
    ),
    "most-specific-mapping-nested": (
        lambda: ExceptionGroup("g", [IndexError("i"), ExceptionGroup("inner", [KeyError("alice")])]),
        grpc.StatusCode.NOT_FOUND, gt.NotFound, "alice",
    ),
    "status-before-mapped": (
        lambda: ExceptionGroup("g", [IndexError("i"), gt.Unavailable("busy")]),
        grpc.StatusCode.UNAVAILABLE, gt.Unavailable, "busy",
    ),
    "first-on-ties": (
        lambda: ExceptionGroup("g", [gt.Aborted("first"), gt.Unavailable("second")]),
        grpc.StatusCode.ABORTED, gt.Aborted, "first",
    ),
    "hundred-terminal-last": (
        lambda: ExceptionGroup("g", [ValueError(str(i)) for i in range(99)] + [gt.LicenseExhausted("last")]),
        grpc.StatusCode.FAILED_PRECONDITION, gt.LicenseExhausted, "last",
    ),
    "deep-nesting": (
        _deep_group, grpc.StatusCode.FAILED_PRECONDITION, gt.UserNotProvisionable, "at the bottom",
    ),
    "base-group": (
        lambda: BaseExceptionGroup("g", [GreenTimeout(), gt.ValidationFailure("bad field")]),
        grpc.StatusCode.FAILED_PRECONDITION, gt.ValidationFailure, "bad field",
    ),
    "nothing-expected": (
        lambda: ExceptionGroup("g", [ValueError(SECRET), RuntimeError(SECRET)]),
        grpc.StatusCode.UNKNOWN, gt.Unknown, None,
    ),
}
GROUP_ERRORS: dict[type[BaseException], Any] = {
    SeatsFull: seats, LookupError: gt.InvalidArgument, KeyError: gt.NotFound,
}


def _raise_group_sync(request: Msg, context: Any) -> Msg:
    raise GROUPS[request.value][0]()


async def _raise_group_aio(request: Msg, context: Any) -> Msg:
    await asyncio.sleep(0)
    raise GROUPS[request.value][0]()


def _check_group(err: grpc.RpcError, name: str) -> None:
    _make, code, cls, detail = GROUPS[name]
    typed = gt.from_rpc_error(err)
    assert err.code() is code, (name, err.details())
    assert type(typed) is cls, (name, typed)
    if detail is None:
        assert typed.request_id and typed.request_id in (err.details() or "")
        assert SECRET not in wire(err) and "ValueError" not in wire(err)
    elif isinstance(typed, gt.TerminalError):
        assert typed.detail == detail
        assert gt.is_terminal(typed) and not gt.is_retryable(typed)
    else:
        assert err.details() == detail


@pytest.mark.parametrize("name", list(GROUPS))
@pytest.mark.parametrize("kind", KINDS)
def test_exception_group_is_sent_as_the_member_that_matters_most(
    kind: str, name: str, loop_thread: LoopThread
) -> None:
    handler = pick(kind, _raise_group_sync, _raise_group_aio)
    with serve(handler, kind, loop_thread, errors=GROUP_ERRORS) as channel:
        err = call(channel, name)
    _check_group(err, name)


async def _task_group(request: Msg, context: Any) -> Msg:
    async def fails(exc: BaseException, delay: float) -> None:
        await asyncio.sleep(delay)
        raise exc

    async with asyncio.TaskGroup() as group:
        group.create_task(fails(ValueError(SECRET), 0))
        if request.value == "terminal":
            group.create_task(fails(gt.UserNotProvisionable("suspended"), 0))
        else:
            group.create_task(fails(SeatsFull("seats gone"), 0))
        group.create_task(asyncio.sleep(TIMEOUT))  # cancelled by the failures
    return Msg(value="not reached")


@pytest.mark.parametrize("value", ["terminal", "mapped"])
def test_task_group_failure_stays_terminal(value: str, loop_thread: LoopThread) -> None:
    with serve(_task_group, "aio", loop_thread, errors={SeatsFull: seats}) as channel:
        err = call(channel, value)
    typed = gt.from_rpc_error(err)
    expected = gt.UserNotProvisionable if value == "terminal" else gt.LicenseExhausted
    assert type(typed) is expected
    assert gt.is_terminal(typed) and not gt.is_retryable(typed)
    assert SECRET not in wire(err)


def test_group_walk_takes_every_member_once_cycle_safe() -> None:
    from grpc_terminal._translate import group_leaves

    shared = ValueError("shared")
    inner = ExceptionGroup("inner", [shared, KeyError("k")])
    outer = ExceptionGroup("outer", [inner, shared, inner, TypeError("t")])
    leaves = list(group_leaves(outer))
    assert [type(x) for x in leaves] == [ValueError, KeyError, TypeError]

    class Cyclic(ExceptionGroup[Exception]):
        members: tuple[BaseException, ...] = ()

        @property
        def exceptions(self) -> tuple[BaseException, ...]:  # type: ignore[override]
            return tuple(self.members)

    cyclic = Cyclic("c", [ValueError("v")])
    cyclic.members = (cyclic, ValueError("v2"))
    assert [str(x) for x in group_leaves(cyclic)] == ["v2"]


# -- 4: a status the handler set goes out cleaned and within the budget ---------------------

BAD_TRAILERS: dict[str, tuple[tuple[str, Any], ...]] = {
    "upper-case-key": (("X-Upper", "v"), ("x-ok", "kept")),
    "str-under-bin": (("x-data-bin", "text, not bytes"), ("x-ok", "kept")),
    "200kb": (("x-big", "a" * 200_000), ("x-ok", "kept")),
    "reserved-key": (("grpc-status", "0"), ("x-ok", "kept")),
}
HOWS = ["set-code-then-raise", "abort", "set-code-then-return"]


def _bad_status_sync(request: Msg, context: Any) -> Msg:
    how, trailers = request.value.split("/")
    context.set_trailing_metadata(BAD_TRAILERS[trailers])
    if how == "abort":
        context.abort(grpc.StatusCode.NOT_FOUND, "gone")
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("gone")
    if how == "set-code-then-raise":
        raise RuntimeError(SECRET)
    return Msg(value="ignored")


async def _bad_status_aio(request: Msg, context: Any) -> Msg:
    how, trailers = request.value.split("/")
    context.set_trailing_metadata(BAD_TRAILERS[trailers])
    if how == "abort":
        await context.abort(grpc.StatusCode.NOT_FOUND, "gone")
    context.set_code(grpc.StatusCode.NOT_FOUND)
    context.set_details("gone")
    if how == "set-code-then-raise":
        raise RuntimeError(SECRET)
    return Msg(value="ignored")


@pytest.mark.parametrize("trailers", list(BAD_TRAILERS))
@pytest.mark.parametrize("how", HOWS)
@pytest.mark.parametrize("kind", KINDS)
def test_handler_status_is_sent_with_clean_metadata_within_budget(
    kind: str, how: str, trailers: str, loop_thread: LoopThread
) -> None:
    with serve(pick(kind, _bad_status_sync, _bad_status_aio), kind, loop_thread) as channel:
        started = time.monotonic()
        err = call(channel, f"{how}/{trailers}")
    assert time.monotonic() - started < TIMEOUT - 1  # no hang to the deadline
    assert err.code() is grpc.StatusCode.NOT_FOUND, err.details()
    assert err.details() == "gone"
    md = trailing(err)
    assert md.get("x-ok") == "kept"
    assert "x-big" not in md and "X-Upper" not in md and "x-upper" not in md and "x-data-bin" not in md
    size = sum(len(k) + len(v) + 32 for k, v in md.items())
    assert size <= gt.TRAILER_BUDGET
    assert SECRET not in wire(err)


def _bad_trailers_ok_sync(request: Msg, context: Any) -> Msg:
    context.set_trailing_metadata(BAD_TRAILERS[request.value])
    return Msg(value="fine")


async def _bad_trailers_ok_aio(request: Msg, context: Any) -> Msg:
    context.set_trailing_metadata(BAD_TRAILERS[request.value])
    return Msg(value="fine")


# Big trailers on a success are left to grpc, as without the interceptor (the
# client's metadata limit then fails the call, classified terminal).
@pytest.mark.parametrize("trailers", ["upper-case-key", "str-under-bin", "reserved-key"])
@pytest.mark.parametrize("kind", KINDS)
def test_success_is_sent_with_clean_trailing_metadata(
    kind: str, trailers: str, loop_thread: LoopThread
) -> None:
    with serve(pick(kind, _bad_trailers_ok_sync, _bad_trailers_ok_aio), kind, loop_thread) as channel:
        stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
        response, rpc = stub.with_call(Msg(value=trailers), timeout=TIMEOUT)
    assert response.value == "fine"
    md = trailing(rpc)
    assert md.get("x-ok") == "kept" and "x-big" not in md


def _oversized_status() -> grpc.Status:
    """Our status for a terminal error plus 1,000 help links, far over grpc's 16 KiB limit.

    Built by hand as a service without this library would (grpcio-status):
    ``budget`` caps what to_status itself can build at 8 KiB.
    """
    sent = gt.to_status(gt.UserNotProvisionable("suspended"))
    status = status_pb2.Status.FromString(dict(sent.trailing_metadata)[gt.STATUS_DETAILS_KEY])
    links = [ed.Help.Link(description=f"link {i}", url=f"https://help.example.invalid/{i}")
             for i in range(1000)]
    status.details.add().Pack(ed.Help(links=links))
    return rpc_status.to_status(status)


def _oversized_sync(request: Msg, context: Any) -> Msg:
    context.abort_with_status(_oversized_status())
    return Msg(value="not reached")


async def _oversized_aio(request: Msg, context: Any) -> Msg:
    await context.abort_with_status(_oversized_status())
    return Msg(value="not reached")


@pytest.mark.parametrize("kind", ["sync", "aio"])
def test_oversized_rich_status_from_abort_with_status_is_fitted(kind: str, loop_thread: LoopThread) -> None:
    assert sum(len(k) + len(v) for k, v in _oversized_status().trailing_metadata) > 16 * 1024
    with serve(pick(kind, _oversized_sync, _oversized_aio), kind, loop_thread) as channel:
        err = call(channel)
    typed = gt.from_rpc_error(err)
    assert type(typed) is gt.UserNotProvisionable and typed.detail == "suspended", err.details()
    assert trailing(err)[gt.PUSHBACK_KEY] == "-1"


# -- 6, 7, 8: masking ------------------------------------------------------------------------

MASK_HOWS = ["raise", "abort", "set-code-then-raise", "set-code-then-return", "abort-with-status"]


def _denied_sync(request: Msg, context: Any) -> Msg:
    context.set_trailing_metadata((("x-why", SECRET),))
    how = request.value
    if how == "raise":
        raise gt.OperationNotPermitted(
            f"user bob may not read {SECRET}",
            extra_details=[ed.RequestInfo(request_id="rid-7", serving_data=f"acl deny: {SECRET}")],
        )
    if how == "abort":
        context.abort(grpc.StatusCode.PERMISSION_DENIED, f"user bob may not read {SECRET}")
    if how == "abort-with-status":
        context.abort_with_status(gt.to_status(gt.OperationNotPermitted(f"may not: {SECRET}")))
    context.set_code(grpc.StatusCode.PERMISSION_DENIED)
    context.set_details(f"user bob may not read {SECRET}")
    if how == "set-code-then-raise":
        raise RuntimeError(SECRET)
    return Msg(value="ignored")


async def _denied_aio(request: Msg, context: Any) -> Msg:
    context.set_trailing_metadata((("x-why", SECRET),))
    how = request.value
    if how == "raise":
        raise gt.OperationNotPermitted(
            f"user bob may not read {SECRET}",
            extra_details=[ed.RequestInfo(request_id="rid-7", serving_data=f"acl deny: {SECRET}")],
        )
    if how == "abort":
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"user bob may not read {SECRET}")
    if how == "abort-with-status":
        await context.abort_with_status(gt.to_status(gt.OperationNotPermitted(f"may not: {SECRET}")))
    context.set_code(grpc.StatusCode.PERMISSION_DENIED)
    context.set_details(f"user bob may not read {SECRET}")
    if how == "set-code-then-raise":
        raise RuntimeError(SECRET)
    return Msg(value="ignored")


def _mask_cases() -> list[tuple[str, str]]:
    # grpc.aio's context for sync handlers has no abort_with_status.
    return [(k, h) for k in KINDS for h in MASK_HOWS if not (k == "aio-sync" and h == "abort-with-status")]


@pytest.mark.parametrize(("kind", "how"), _mask_cases())
def test_masking_covers_every_way_permission_denied_leaves(
    kind: str, how: str, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    events = Events()
    with caplog.at_level(logging.INFO, logger="grpc_terminal"):
        handler = pick(kind, _denied_sync, _denied_aio)
        with serve(handler, kind, loop_thread, mask_permission_denied=True, on_error=events) as channel:
            err = call(channel, how)
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert err.details() == "not found"
    seen = wire(err)
    assert SECRET not in seen and "PERMISSION" not in seen and "NOT_PERMITTED" not in seen
    typed = gt.from_rpc_error(err)
    assert typed.error_info is not None and typed.error_info.reason == "NOT_FOUND"
    # 7: only the request id survives, when there was one.
    if how == "raise":
        assert typed.request_info is not None and typed.request_info.request_id == "rid-7"
        assert typed.request_info.serving_data == ""
    else:
        assert typed.request_info is None
    # 8: the operator sees the real code and reason, and that it was masked.
    [event] = events.events
    assert event.code is grpc.StatusCode.PERMISSION_DENIED
    assert event.masked and event.sent_code is grpc.StatusCode.NOT_FOUND
    rich = how in ("raise", "abort-with-status")
    assert event.reason == ("OPERATION_NOT_PERMITTED" if rich else "PERMISSION_DENIED")
    lines = [r.getMessage() for r in caplog.records if "masked" in r.getMessage()]
    assert any("PERMISSION_DENIED" in line and "NOT_FOUND" in line for line in lines), lines


def test_masked_failure_keeps_only_the_request_id(loop_thread: LoopThread) -> None:
    def relay(request: Msg, context: Any) -> Msg:
        info = ed.RequestInfo(request_id="rid-9", serving_data=SECRET)
        raise gt.PermissionDenied(SECRET, extra_details=[info])

    with serve(relay, "sync", loop_thread, mask_permission_denied=True) as channel:
        err = call(channel)
    typed = gt.from_rpc_error(err)
    assert typed.request_info == ed.RequestInfo(request_id="rid-9")
    assert SECRET not in wire(err)


def test_error_event_stays_backwards_compatible() -> None:
    event = gt.ErrorEvent("/m", grpc.StatusCode.NOT_FOUND, "NOT_FOUND", None, True, ValueError())
    assert event.masked is False and event.sent_code is grpc.StatusCode.NOT_FOUND
    positional = gt.ErrorEvent("/m", grpc.StatusCode.INTERNAL, "R", "id", False, ValueError(), True, True)
    assert positional.terminal and positional.retryable and positional.sent_code is grpc.StatusCode.INTERNAL


# -- 9: relaying what a peer said, never what our own transport said ------------------------------


@pytest.fixture(scope="module")
def downstream() -> Iterator[int]:
    """A peer behind ServerInterceptor: plain aborts and rich typed errors."""

    def handler(request: Msg, context: Any) -> Msg:
        if request.value == "plain-unauthenticated":
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "token for svc-backend@corp.internal expired")
        if request.value == "rich-unauthenticated":
            raise gt.Unauthenticated("token for svc-backend@corp.internal expired")
        if request.value == "plain-not-found":
            context.abort(grpc.StatusCode.NOT_FOUND, "no such user")
        if request.value == "plain-unavailable":
            context.abort(grpc.StatusCode.UNAVAILABLE, "backend db-7.corp.internal down")
        raise gt.Unavailable("peer is draining", retry_delay=1.5)

    pool = futures.ThreadPoolExecutor(max_workers=4)
    server = grpc.server(pool, interceptors=[gt.ServerInterceptor()])
    method = grpc.unary_unary_rpc_method_handler(handler, **CODEC)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Unary": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield port
    server.stop(None).wait(5)
    pool.shutdown(wait=False)


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _target(plan: str, downstream: int, closed: int) -> tuple[str, str]:
    if plan.endswith("refused"):
        return f"127.0.0.1:{closed}", "x"
    if plan == "dns":
        return "svc-backend.name.invalid:50051", "x"
    return f"127.0.0.1:{downstream}", plan


def _relay_sync(targets: dict[str, tuple[str, str]]) -> Callable[..., Msg]:
    def handler(request: Msg, context: Any) -> Msg:
        target, value = targets[request.value]
        with grpc.insecure_channel(target) as raw:
            channel = gt.intercept_channel(raw) if request.value.startswith("typed") else raw
            stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
            return stub(Msg(value=value), timeout=2)  # type: ignore[no-any-return]

    return handler


def _relay_aio(targets: dict[str, tuple[str, str]]) -> Callable[..., Any]:
    async def handler(request: Msg, context: Any) -> Msg:
        target, value = targets[request.value]
        interceptors = gt.aio_interceptors() if request.value.startswith("typed") else None
        async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
            stub = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
            return await stub(Msg(value=value), timeout=2)  # type: ignore[no-any-return]

    return handler


RELAY_PLANS = [
    "refused", "typed-refused", "dns", "plain-unauthenticated", "rich-unauthenticated",
    "plain-not-found", "plain-unavailable", "rich-unavailable",
]


@pytest.mark.parametrize("plan", RELAY_PLANS)
@pytest.mark.parametrize("kind", KINDS)
def test_relay_keeps_what_the_peer_said_and_drops_what_our_transport_said(
    kind: str, plan: str, downstream: int, loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    closed = _closed_port()
    targets = {p: _target(p, downstream, closed) for p in RELAY_PLANS}
    handler = _relay_aio(targets) if kind == "aio" else _relay_sync(targets)
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"), serve(
        handler, kind, loop_thread
    ) as channel:
        err = call(channel, plan)
    typed = gt.from_rpc_error(err)
    seen = wire(err)
    assert "corp.internal" not in seen and "name.invalid" not in seen and str(closed) not in seen
    assert "127.0.0.1" not in seen and "refused" not in seen.lower() and "DNS" not in seen
    if plan in ("refused", "typed-refused", "dns", "plain-unavailable"):
        code = err.code()
        allowed = {grpc.StatusCode.UNAVAILABLE}
        if plan == "dns":  # a resolver without network may not answer before the deadline
            allowed.add(grpc.StatusCode.DEADLINE_EXCEEDED)
        assert code in allowed, (code, err.details())
        assert err.details() == f"upstream call failed: {code.name}"
        assert typed.request_id, "a request id ties the caller's error to the server's log line"
        logged = " ".join(r.getMessage() for r in caplog.records)
        assert typed.request_id in logged
        assert gt.is_retryable(typed)
    elif plan.endswith("unauthenticated"):
        assert err.code() is grpc.StatusCode.INTERNAL
        assert err.details() == "upstream rejected this server's credentials"
        assert gt.exit_code(typed) != gt.exit_code(gt.Unauthenticated("x"))
    elif plan == "plain-not-found":
        assert err.code() is grpc.StatusCode.NOT_FOUND and err.details() == "no such user"
    else:  # rich-unavailable: a peer's own status is relayed whole
        assert err.code() is grpc.StatusCode.UNAVAILABLE and err.details() == "peer is draining"
        assert typed.retry_delay == 1.5


# -- 12: sync streaming handlers on an aio server use threads of their own ---------------------------


def _executor_roundtrip(thread_pool: futures.Executor | None) -> list[str]:
    lt = LoopThread()
    app_default = futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="app-default")
    lt.loop.call_soon_threadsafe(lt.loop.set_default_executor, app_default)
    entered, release = threading.Event(), threading.Event()
    names: list[str] = []

    def blocking_stream(request: Msg, context: Any) -> Iterator[Msg]:
        names.append(threading.current_thread().name)
        entered.set()
        release.wait(TIMEOUT)
        yield Msg(value="done")

    async def to_thread(request: Msg, context: Any) -> Msg:
        return Msg(value=await asyncio.to_thread(lambda: "ok"))

    options: dict[str, Any] = {} if thread_pool is None else {"thread_pool": thread_pool}
    streamed: list[str] = []
    try:
        with serve(to_thread, "aio", lt, stream=blocking_stream, **options) as channel:
            stream = channel.unary_stream(f"/{SERVICE}/Stream", **CLIENT)(Msg(value="s"), timeout=TIMEOUT)
            reader = threading.Thread(target=lambda: streamed.extend(m.value for m in stream))
            reader.start()
            try:
                assert entered.wait(3), "the streaming handler never started"
                unary = channel.unary_unary(f"/{SERVICE}/Unary", **CLIENT)
                assert unary(Msg(value="u"), timeout=2).value == "ok"
            finally:
                release.set()
                reader.join(TIMEOUT)
    finally:
        lt.close()
        app_default.shutdown(wait=False)
    assert streamed == ["done"]
    return names


def test_sync_stream_on_aio_server_leaves_the_default_executor_alone() -> None:
    names = _executor_roundtrip(None)
    assert names and names[0].startswith("grpc-terminal"), names


def test_sync_stream_on_aio_server_uses_the_given_thread_pool() -> None:
    pool = futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="mine")
    try:
        names = _executor_roundtrip(pool)
    finally:
        pool.shutdown(wait=False)
    assert names and names[0].startswith("mine"), names
    with pytest.raises(TypeError, match="thread_pool"):
        gt.AioServerInterceptor(thread_pool="many")  # type: ignore[arg-type]


# -- 15: the wrong kind of interceptor ------------------------------------------------------------


def _ok_sync(request: Msg, context: Any) -> Msg:
    return Msg(value="ok")


def test_async_interceptor_on_a_sync_server_fails_at_once(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    interceptors = [gt.AioServerInterceptor()]
    with caplog.at_level(logging.ERROR), serve(
        _ok_sync, "sync", loop_thread, interceptors=interceptors
    ) as channel:
        started = time.monotonic()
        err = call(channel)
        elapsed = time.monotonic() - started
    assert err.code() is grpc.StatusCode.UNKNOWN
    assert elapsed < 2, f"the caller waited {elapsed:.1f}s"
    ours = [r for r in caplog.records if r.name.startswith("grpc_terminal")]
    assert any("use grpc_terminal.ServerInterceptor" in r.getMessage() for r in ours)


def test_sync_interceptor_on_an_aio_server_is_refused_by_grpc(loop_thread: LoopThread) -> None:
    async def build() -> None:
        grpc.aio.server(interceptors=[gt.ServerInterceptor()])  # type: ignore[list-item]

    with pytest.raises(ValueError, match="ServerInterceptor"):
        loop_thread.run(build())


# -- 16: a BaseException that is not an Exception ----------------------------------------------------


def _green_sync(request: Msg, context: Any) -> Msg:
    raise GreenTimeout(SECRET)


async def _green_aio(request: Msg, context: Any) -> Msg:
    raise GreenTimeout(SECRET)


@pytest.mark.parametrize("kind", KINDS)
def test_base_exception_is_sent_as_unknown_at_once(kind: str, loop_thread: LoopThread) -> None:
    events = Events()
    with serve(pick(kind, _green_sync, _green_aio), kind, loop_thread, on_error=events) as channel:
        started = time.monotonic()
        err = call(channel)
        elapsed = time.monotonic() - started
    assert elapsed < 2, f"the caller waited {elapsed:.1f}s"
    typed = gt.from_rpc_error(err)
    assert err.code() is grpc.StatusCode.UNKNOWN
    assert typed.request_id and typed.request_id in (err.details() or "")
    assert SECRET not in wire(err) and "GreenTimeout" not in wire(err)
    assert [type(e.exception) for e in events.events] == [GreenTimeout]


class _Watch(grpc.aio.ServerInterceptor):  # type: ignore[type-arg]
    """Outside ours: records what escapes our wrapped handler; swallows a GreenTimeout."""

    def __init__(self) -> None:
        self.escaped: list[BaseException] = []

    async def intercept_service(self, continuation: Any, details: Any) -> Any:
        handler = await continuation(details)
        inner = handler.unary_unary

        async def watch(request: Msg, context: Any) -> Any:
            try:
                return await inner(request, context)
            except BaseException as exc:
                self.escaped.append(exc)
                if isinstance(exc, GreenTimeout):  # the status is out: end the RPC quietly
                    return Msg(value="swallowed")
                raise

        return handler._replace(unary_unary=watch)


def test_base_exception_is_reraised_after_the_status_on_aio(loop_thread: LoopThread) -> None:
    watch = _Watch()
    with serve(_green_aio, "aio", loop_thread, interceptors=[watch, gt.AioServerInterceptor()]) as channel:
        err = call(channel)
    assert err.code() is grpc.StatusCode.UNKNOWN
    assert [type(e) for e in watch.escaped] == [GreenTimeout]


def test_cancelled_error_passes_through_untouched(loop_thread: LoopThread) -> None:
    events = Events()

    async def cancelled(request: Msg, context: Any) -> Msg:
        raise asyncio.CancelledError()

    watch = _Watch()
    interceptors = [watch, gt.AioServerInterceptor(on_error=events)]
    with serve(cancelled, "aio", loop_thread, interceptors=interceptors) as channel:
        call(channel, timeout=0.5)
    assert [type(e) for e in watch.escaped] == [asyncio.CancelledError]
    assert events.events == []


# -- 23: the errors= mapping type, under mypy --strict -----------------------------------------------------

TYPED_USER_CODE = '''
from __future__ import annotations

import grpc_terminal as gt
from grpc_terminal import ErrorMapping


class SeatsFull(Exception):
    pass


def seats(exc: SeatsFull) -> gt.StatusError:
    return gt.LicenseExhausted(f"{exc}")


def quota(exc: SeatsFull) -> gt.ResourceExhausted:
    return gt.ResourceExhausted(str(exc), retry_delay=1.0)


errors: ErrorMapping = {KeyError: gt.NotFound, SeatsFull: seats, LookupError: quota}
sync_interceptor = gt.ServerInterceptor(errors=errors)
aio_interceptor = gt.AioServerInterceptor(errors=errors, mask_permission_denied=True)
'''


def test_errors_mapping_alias_passes_mypy_strict(tmp_path: Path) -> None:
    pytest.importorskip("mypy", reason="mypy is a dev dependency (make test installs it)")
    source = tmp_path / "user_service_types.py"
    source.write_text(textwrap.dedent(TYPED_USER_CODE))
    env = {**os.environ, "MYPYPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--no-incremental",
         "--cache-dir", str(tmp_path / "cache"), str(source)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120, check=False,
    )
    mine = [line for line in result.stdout.splitlines() if line.startswith(str(source))]
    assert not mine, result.stdout
    assert "Success" in result.stdout or result.returncode == 0, result.stdout + result.stderr


# -- 24: help() documents every constructor argument --------------------------------------------------------


@pytest.mark.parametrize("cls", [gt.ServerInterceptor, gt.AioServerInterceptor])
def test_interceptor_help_documents_every_argument(cls: type) -> None:
    doc = inspect.getdoc(cls) or ""
    params = [p for p in inspect.signature(cls).parameters if p != "self"]
    assert params[0] == "errors" and "budget" in params and "logger" in params
    for name in params:
        assert f"{name}:" in doc, f"{cls.__name__} does not document {name}"
    assert "_Configured" not in doc
    assert ("thread_pool" in params) is (cls is gt.AioServerInterceptor)


# -- 25: a mapped exception with one str argument is sent as that argument ----------------------------


class Tagged(Exception):
    def __str__(self) -> str:
        return f"tagged: {self.args[0]}"


@pytest.mark.parametrize(
    ("raised", "message"),
    [(KeyError("alice"), "alice"), (LookupError("bob"), "bob"), (Tagged("x"), "tagged: x"),
     (KeyError("a", "b"), "('a', 'b')")],
)
def test_mapped_exception_message_is_its_argument(
    raised: BaseException, message: str, loop_thread: LoopThread
) -> None:
    def handler(request: Msg, context: Any) -> Msg:
        raise raised

    errors = {LookupError: gt.NotFound, Tagged: gt.NotFound}
    with serve(handler, "sync", loop_thread, errors=errors) as channel:
        err = call(channel)
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert err.details() == message


# -- 30: abort with an int code is grpc's, not an unexpected error -----------------------------------


def test_abort_with_int_code_is_not_logged_as_unexpected(
    loop_thread: LoopThread, caplog: pytest.LogCaptureFixture
) -> None:
    def handler(request: Msg, context: Any) -> Msg:
        context.abort(5, "int details")
        return Msg(value="not reached")

    events = Events()
    with caplog.at_level(logging.INFO, logger="grpc_terminal"), serve(
        handler, "sync", loop_thread, on_error=events
    ) as channel:
        err = call(channel)
    assert err.code() is grpc.StatusCode.UNKNOWN and err.details() == "int details"
    ours = [r for r in caplog.records if r.name.startswith("grpc_terminal")]
    assert not [r for r in ours if r.levelno >= logging.ERROR]
    [event] = events.events
    assert event.expected and event.code is grpc.StatusCode.UNKNOWN
