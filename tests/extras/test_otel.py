"""grpc_terminal.otel against the real OpenTelemetry SDK, its grpc instrumentation and loopback servers.

Nothing is installed globally: the spans go to an in-memory exporter of a
TracerProvider of this module's own, and the instrumentation's interceptors
are built from its factories with that provider, so no other test file sees
a tracer provider or an instrumented grpc.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest

pytest.importorskip("opentelemetry.sdk", reason="opentelemetry-sdk (a dev dependency) is not installed")
pytest.importorskip("opentelemetry.instrumentation.grpc", reason="the grpc instrumentation is not installed")

from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace
from opentelemetry.instrumentation.grpc import (
    aio_client_interceptors,
    aio_server_interceptor,
    client_interceptor,
    grpcext,
    server_interceptor,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import grpc_terminal as gt
from grpc_terminal import otel

from harness import LoopThread

Msg = wrappers_pb2.StringValue
SERVICE = "otel.Probe"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
SECRET = "db password hunter2"
TIMEOUT = 10

# -- telemetry ---------------------------------------------------------------------------

_provider = TracerProvider()
_exporter = InMemorySpanExporter()
_provider.add_span_processor(SimpleSpanProcessor(_exporter))
_tracer = _provider.get_tracer(__name__)


@pytest.fixture(autouse=True)
def spans() -> Iterator[InMemorySpanExporter]:
    _exporter.clear()
    yield _exporter
    _exporter.clear()


def finished(name: str, kind: trace.SpanKind | None = None) -> list[ReadableSpan]:
    return [s for s in _exporter.get_finished_spans() if s.name == name and (kind is None or s.kind == kind)]


def only(name: str, kind: trace.SpanKind | None = None) -> ReadableSpan:
    found = finished(name, kind)
    assert len(found) == 1, [(s.name, s.kind) for s in _exporter.get_finished_spans()]
    return found[0]


def retry_events(span: ReadableSpan) -> list[dict[str, Any]]:
    return [dict(e.attributes or {}) for e in span.events if e.name == "grpc_terminal.retry"]


# -- the service -------------------------------------------------------------------------

_keys = itertools.count()
_calls: dict[str, int] = {}
_lock = threading.Lock()
_release = threading.Event()


def key(kind: str) -> str:
    """A request value: ``kind`` (what the handler does) and a fresh key for its call count."""
    return f"{kind}:{next(_keys)}"


def behave(value: str) -> None:
    kind, _, name = value.partition(":")
    with _lock:
        _calls[name] = count = _calls.get(name, 0) + 1
    if kind == "terminal":
        raise gt.UserNotProvisionable("Okta E0000038: user 'jdoe' is SUSPENDED")
    if kind == "unexpected":
        raise RuntimeError(SECRET)
    if kind == "denied":
        raise gt.PermissionDenied("no access to tenant 42")
    if kind == "flaky" and count <= 2:
        raise gt.Unavailable("upstream 503", retry_delay=0.01)
    if kind == "down":
        raise gt.Unavailable("upstream 503")
    if kind == "hold":
        assert _release.wait(TIMEOUT), "never released"


def calls(value: str) -> int:
    return _calls.get(value.partition(":")[2], 0)


# What a hostile or broken peer (no grpc-terminal on it) may send: an ErrorInfo
# reason of 3,000 characters (under the 8 KiB trailer limit) with a newline and non-ASCII in it.
HOSTILE_REASON = "r" * 3_000 + "\n\u2603"


def _sync_unary(request: Msg, context: grpc.ServicerContext) -> Msg:
    if request.value.startswith("hostile:"):
        info = error_details_pb2.ErrorInfo(reason=HOSTILE_REASON, domain="evil.example")
        packed = any_pb2.Any()
        packed.Pack(info)
        context.abort_with_status(rpc_status.to_status(status_pb2.Status(
            code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="no", details=[packed],
        )))
    behave(request.value)
    return Msg(value="ok")


def _sync_stream(request: Msg, context: grpc.ServicerContext) -> Iterator[Msg]:
    behave(request.value)
    yield Msg(value="r0")
    yield Msg(value="r1")


async def _aio_unary(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> Msg:
    behave(request.value)
    return Msg(value="ok")


async def _aio_stream(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> AsyncIterator[Msg]:
    behave(request.value)
    yield Msg(value="r0")
    yield Msg(value="r1")


def _handlers(aio: bool) -> grpc.GenericRpcHandler:
    codec: dict[str, Any] = {
        "request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString,
    }
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(_aio_unary if aio else _sync_unary, **codec),
        "Stream": grpc.unary_stream_rpc_method_handler(_aio_stream if aio else _sync_stream, **codec),
    })


@contextlib.contextmanager
def sync_server(interceptors: Sequence[grpc.ServerInterceptor]) -> Iterator[int]:
    pool = futures.ThreadPoolExecutor(max_workers=4)
    server = grpc.server(pool, interceptors=list(interceptors))
    server.add_generic_rpc_handlers((_handlers(aio=False),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait(TIMEOUT)
        pool.shutdown(wait=True)


@contextlib.contextmanager
def aio_server(loop: LoopThread, interceptors: Sequence[grpc.aio.ServerInterceptor]) -> Iterator[int]:
    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server(interceptors=list(interceptors))
        server.add_generic_rpc_handlers((_handlers(aio=True),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = loop.run(start())
    try:
        yield port
    finally:
        loop.run(server.stop(None))


SERVER_KINDS = ["sync", "aio"]


@contextlib.contextmanager
def serve(kind: str, loop: LoopThread, *, instrumented: bool, **options: Any) -> Iterator[int]:
    """A server with ``otel.on_error``; ``instrumented``: the instrumentation's interceptor outside ours."""
    options.setdefault("on_error", otel.on_error)
    if kind == "sync":
        sync_chain: list[grpc.ServerInterceptor] = [gt.ServerInterceptor(**options)]
        if instrumented:
            sync_chain.insert(0, server_interceptor(tracer_provider=_provider))
        with sync_server(sync_chain) as port:
            yield port
    else:
        aio_chain: list[grpc.aio.ServerInterceptor] = [gt.AioServerInterceptor(**options)]
        if instrumented:
            aio_chain.insert(0, aio_server_interceptor(tracer_provider=_provider))
        with aio_server(loop, aio_chain) as port:
            yield port


@pytest.fixture(scope="module")
def plain_port() -> Iterator[int]:
    """A sync server without any telemetry of its own, for the client tests."""
    with sync_server([gt.ServerInterceptor()]) as port:
        yield port


def unary(channel: grpc.Channel) -> Any:
    return channel.unary_unary(
        UNARY, request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )


def stream(channel: grpc.Channel) -> Any:
    return channel.unary_stream(
        STREAM, request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )


def call_unary(port: int, value: str) -> BaseException | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        try:
            unary(gt.intercept_channel(raw))(Msg(value=value), timeout=TIMEOUT)
        except gt.StatusError as err:
            return err
    return None


def wait_for_span(name: str) -> ReadableSpan:
    """The server span of ``name``: the server may end it just after the client has its status."""
    done = threading.Event()
    for _ in range(200):
        found = finished(name, trace.SpanKind.SERVER)
        if found:
            return found[0]
        done.wait(0.01)
    raise AssertionError(f"no server span {name}: {[s.name for s in _exporter.get_finished_spans()]}")


# -- server: on_error --------------------------------------------------------------------


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_terminal_failure_is_on_the_instrumentation_server_span(kind: str, loop_thread: LoopThread) -> None:
    with serve(kind, loop_thread, instrumented=True) as port:
        err = call_unary(port, key("terminal"))
        span = wait_for_span(UNARY)
    assert isinstance(err, gt.UserNotProvisionable)
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"
    assert attrs["grpc_terminal.terminal"] is True
    assert attrs["grpc_terminal.retryable"] is False
    assert attrs["error.type"] == "FAILED_PRECONDITION"
    assert attrs["rpc.response.status_code"] == "FAILED_PRECONDITION"
    assert "grpc_terminal.request_id" not in attrs
    assert attrs["rpc.system"] == "grpc"  # the instrumentation's own attributes are still there
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "FAILED_PRECONDITION: USER_NOT_PROVISIONABLE"


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_unexpected_failure_has_request_id_and_leaks_nothing(kind: str, loop_thread: LoopThread) -> None:
    with serve(kind, loop_thread, instrumented=True) as port:
        err = call_unary(port, key("unexpected"))
        span = wait_for_span(UNARY)
    assert isinstance(err, gt.Unknown) and err.request_id
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.request_id"] == err.request_id
    assert attrs["grpc_terminal.reason"] == "UNKNOWN"
    assert attrs["grpc_terminal.terminal"] is False
    assert attrs["error.type"] == "UNKNOWN"
    assert span.status.status_code is StatusCode.ERROR
    assert SECRET not in (span.status.description or "")
    # what our hook wrote (attributes and status) holds nothing of the exception's text
    assert all(SECRET not in str(v) for v in attrs.values())


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_transient_failure_is_retryable_on_the_span(kind: str, loop_thread: LoopThread) -> None:
    with serve(kind, loop_thread, instrumented=True) as port:
        call_unary(port, key("down"))
        span = wait_for_span(UNARY)
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "UNAVAILABLE"
    assert (attrs["grpc_terminal.terminal"], attrs["grpc_terminal.retryable"]) == (False, True)
    assert attrs["rpc.response.status_code"] == "UNAVAILABLE"


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_masked_failure_keeps_the_real_code_and_the_sent_one(kind: str, loop_thread: LoopThread) -> None:
    with serve(kind, loop_thread, instrumented=True, mask_permission_denied=True) as port:
        err = call_unary(port, key("denied"))
        span = wait_for_span(UNARY)
    assert isinstance(err, gt.NotFound)
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "PERMISSION_DENIED"
    assert attrs["rpc.response.status_code"] == "NOT_FOUND"
    assert attrs["grpc_terminal.masked"] is True


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_failure_mid_stream_is_on_the_span(kind: str, loop_thread: LoopThread) -> None:
    with serve(kind, loop_thread, instrumented=True) as port:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as raw, pytest.raises(gt.UserNotProvisionable):
            list(stream(gt.intercept_channel(raw))(Msg(value=key("terminal")), timeout=TIMEOUT))
        span = wait_for_span(STREAM)
    assert dict(span.attributes or {})["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"
    assert span.status.status_code is StatusCode.ERROR




@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_a_user_span_around_our_interceptor(kind: str, loop_thread: LoopThread) -> None:
    """Without the instrumentation: a span the user's own interceptor opens gets the attributes."""
    if kind == "sync":
        class SyncSpans(grpc.ServerInterceptor):
            def intercept_service(self, continuation: Any, details: Any) -> Any:
                handler = continuation(details)

                def behavior(request: Any, context: Any) -> Any:
                    with _tracer.start_as_current_span("user-server", kind=trace.SpanKind.SERVER):
                        return handler.unary_unary(request, context)

                return grpc.unary_unary_rpc_method_handler(
                    behavior, handler.request_deserializer, handler.response_serializer
                ) if handler is not None and not handler.response_streaming else handler

        with sync_server([SyncSpans(), gt.ServerInterceptor(on_error=otel.on_error)]) as port:
            call_unary(port, key("terminal"))
    else:
        class AioSpans(grpc.aio.ServerInterceptor):
            async def intercept_service(self, continuation: Any, details: Any) -> Any:
                handler = await continuation(details)

                async def behavior(request: Any, context: Any) -> Any:
                    with _tracer.start_as_current_span("user-server", kind=trace.SpanKind.SERVER):
                        return await handler.unary_unary(request, context)

                return grpc.unary_unary_rpc_method_handler(
                    behavior, handler.request_deserializer, handler.response_serializer
                ) if handler is not None and not handler.response_streaming else handler

        with aio_server(loop_thread, [AioSpans(), gt.AioServerInterceptor(on_error=otel.on_error)]) as port:
            call_unary(port, key("terminal"))
    span = wait_for_span("user-server")
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"
    assert attrs["grpc_terminal.terminal"] is True
    assert span.status.status_code is StatusCode.ERROR


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_no_span_changes_nothing(kind: str, loop_thread: LoopThread) -> None:
    """Without any span the hook does nothing and the caller gets exactly what it got before."""
    with serve(kind, loop_thread, instrumented=False) as port:
        err = call_unary(port, key("terminal"))
        assert call_unary(port, key("ok")) is None
    assert isinstance(err, gt.UserNotProvisionable) and gt.is_terminal(err)
    assert _exporter.get_finished_spans() == ()


class _WatchedSpan(trace.NonRecordingSpan):
    """A span that is not recording (sampled out) and notes every write it gets."""

    def __init__(self) -> None:
        super().__init__(trace.INVALID_SPAN_CONTEXT)
        self.writes: list[str] = []

    def set_attributes(self, attributes: Any) -> None:
        self.writes.append("set_attributes")

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        self.writes.append("add_event")

    def set_status(self, status: Any, description: Any = None) -> None:
        self.writes.append("set_status")


def test_a_non_recording_span_is_left_alone() -> None:
    error = gt.Unavailable("x")
    event = gt.ErrorEvent("/a/B", grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", None, True, error)
    watched = _WatchedSpan()
    with trace.use_span(watched):
        otel.on_error(event)
        otel.on_retry(1, 0.1, gt.classify(error), error)
        otel.on_give_up(gt.RetryHistory((), gt.StopReason.EXHAUSTED, 0.0), error)
    assert watched.writes == []
    otel.on_error(event)  # no span at all
    with _tracer.start_as_current_span("sampled-out") as span:
        assert span.is_recording()
    assert [s.name for s in _exporter.get_finished_spans()] == ["sampled-out"]
    assert not finished("sampled-out")[0].attributes


# -- attacker's inputs ---------------------------------------------------------------------


class _Evil:
    """Raises on every attribute and conversion."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("evil")

    def __str__(self) -> str:
        raise RuntimeError("evil")


def test_wrong_kinds_never_raise(caplog: pytest.LogCaptureFixture) -> None:
    evil: Any = _Evil()
    with caplog.at_level(logging.DEBUG, "grpc_terminal.otel"), _tracer.start_as_current_span("s"):
        otel.on_error(evil)
        otel.on_error("not an event")  # type: ignore[arg-type]
        otel.on_retry(evil, evil, evil, evil)
        otel.on_retry("1", "x", None, None)  # type: ignore[arg-type]
        otel.on_retry(10**30, float("inf"), evil, gt.Unavailable("x"))
        otel.on_give_up(evil, evil)
        otel.on_give_up(None, gt.Unavailable("x"))  # type: ignore[arg-type]
        otel.on_give_up(evil, RuntimeError("boom"))
        otel.on_error(gt.ErrorEvent("/a/B", evil, evil, evil, True, evil))
    span = only("s")
    assert span.status.status_code is StatusCode.ERROR  # the well-formed calls were recorded


def test_hook_that_raises_next_to_ours(loop_thread: LoopThread) -> None:
    """A failing hook in the same on_error sequence does not stop ours, nor change the RPC's outcome."""
    def broken(event: gt.ErrorEvent) -> None:
        raise RuntimeError("broken hook")

    with serve("sync", loop_thread, instrumented=True, on_error=[broken, otel.on_error]) as port:
        err = call_unary(port, key("terminal"))
        span = wait_for_span(UNARY)
    assert isinstance(err, gt.UserNotProvisionable)
    assert dict(span.attributes or {})["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"


# -- client: on_retry and on_give_up -------------------------------------------------------


def policy(**kwargs: Any) -> gt.RetryPolicy:
    options: dict[str, Any] = {
        "max_attempts": 4, "initial_backoff": 0.001, "max_backoff": 0.001, "jitter": 0.0,
        "on_retry": otel.on_retry, "on_give_up": otel.on_give_up,
    }
    options.update(kwargs)
    return gt.RetryPolicy(**options)


def instrumented(channel: grpc.Channel) -> grpc.Channel:
    """``channel`` behind the instrumentation's client interceptor (outside ours)."""
    return grpcext.intercept_channel(channel, client_interceptor(tracer_provider=_provider))  # type: ignore[no-any-return]


def check_retried(span: ReadableSpan, retries: int = 2) -> None:
    events = retry_events(span)
    assert [e["grpc_terminal.attempt"] for e in events] == list(range(1, retries + 1)), span.events
    for event in events:
        assert event["rpc.response.status_code"] == "UNAVAILABLE"
        assert event["error.type"] == "UNAVAILABLE"
        assert event["grpc_terminal.rule"] == "retry_info"
        assert event["grpc_terminal.server_delay"] == pytest.approx(0.01)
        assert event["grpc_terminal.wait"] >= 0.01


def check_gave_up(span: ReadableSpan) -> None:
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"
    assert attrs["grpc_terminal.terminal"] is True
    assert attrs["grpc_terminal.retryable"] is False
    assert attrs["grpc_terminal.stop_reason"] == "terminal"
    assert attrs["grpc_terminal.attempt"] == 1
    assert attrs["error.type"] == "FAILED_PRECONDITION"
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "FAILED_PRECONDITION: USER_NOT_PROVISIONABLE"
    assert not retry_events(span)


SYNC_PATHS = ["policy.call", "channel-call", "channel-future", "channel-stream"]


def sync_attempt(path: str, port: int, value: str, retry: gt.RetryPolicy) -> Any:
    """One call along ``path``, in the calling thread; its result, or raises its error."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        if path == "policy.call":
            return retry.call(unary(gt.intercept_channel(raw)), Msg(value=value), timeout=TIMEOUT)
        channel = gt.intercept_channel(raw, retry=retry)
        if path == "channel-call":
            return unary(channel)(Msg(value=value), timeout=TIMEOUT)
        if path == "channel-future":
            return unary(channel).future(Msg(value=value), timeout=TIMEOUT).result(TIMEOUT)
        return list(stream(channel)(Msg(value=value), timeout=TIMEOUT))


@pytest.mark.parametrize("path", SYNC_PATHS)
def test_sync_retries_are_events_on_the_callers_span(path: str, plain_port: int) -> None:
    value = key("flaky")
    with _tracer.start_as_current_span("caller"):
        assert sync_attempt(path, plain_port, value, policy())
    assert calls(value) == 3
    span = only("caller")
    check_retried(span)
    assert span.status.status_code is StatusCode.UNSET  # it succeeded in the end


@pytest.mark.parametrize("path", SYNC_PATHS)
def test_sync_give_up_is_on_the_callers_span(path: str, plain_port: int) -> None:
    value = key("terminal")
    with _tracer.start_as_current_span("caller"), pytest.raises(gt.UserNotProvisionable):
        sync_attempt(path, plain_port, value, policy())
    assert calls(value) == 1
    check_gave_up(only("caller"))


def test_exhausted_transient_failure(plain_port: int) -> None:
    value = key("down")
    with _tracer.start_as_current_span("caller"), pytest.raises(gt.Unavailable):
        sync_attempt("channel-call", plain_port, value, policy(max_attempts=3))
    span = only("caller")
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.stop_reason"] == "exhausted"
    assert (attrs["grpc_terminal.terminal"], attrs["grpc_terminal.retryable"]) == (False, True)
    assert attrs["grpc_terminal.attempt"] == 3
    assert [e["grpc_terminal.attempt"] for e in retry_events(span)] == [1, 2]
    assert all("grpc_terminal.server_delay" not in e for e in retry_events(span))


def test_a_hostile_peers_reason_is_not_written() -> None:
    """A peer without grpc-terminal sends an ErrorInfo reason of 3,000 characters: free text."""
    failed = pytest.raises(gt.FailedPrecondition)
    with sync_server([]) as port, _tracer.start_as_current_span("caller"), failed:
        sync_attempt("channel-call", port, key("hostile"), policy())
    attrs = dict(only("caller").attributes or {})
    reason = attrs["grpc_terminal.reason"]
    assert reason == "OTHER"
    assert attrs["error.type"] == "FAILED_PRECONDITION"
    assert only("caller").status.description == "FAILED_PRECONDITION: OTHER"


def test_a_relayed_free_text_reason_is_not_written_on_the_server_span(loop_thread: LoopThread) -> None:
    # The handler relays a status whose ErrorInfo reason is free text (abort_with_status).
    with serve("sync", loop_thread, instrumented=True) as port:
        err = call_unary(port, key("hostile"))
        span = wait_for_span(UNARY)
    assert isinstance(err, gt.FailedPrecondition)
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "OTHER"
    assert "rrr" not in str(attrs) and "rrr" not in (span.status.description or "")


class _RaisingSpan(trace.NonRecordingSpan):
    """A recording span whose every write raises (a broken span implementation)."""

    def is_recording(self) -> bool:
        return True

    def set_attributes(self, attributes: Any) -> None:
        raise RuntimeError("broken span")

    def add_event(self, name: str, attributes: Any = None, timestamp: Any = None) -> None:
        raise RuntimeError("broken span")


def test_a_span_that_raises_is_survived(caplog: pytest.LogCaptureFixture) -> None:
    error = gt.UserNotProvisionable("jdoe")
    code = grpc.StatusCode.FAILED_PRECONDITION
    event = gt.ErrorEvent("/a/B", code, "USER_NOT_PROVISIONABLE", None, True, error)
    history = gt.RetryHistory((), gt.StopReason.TERMINAL, 0.0)
    broken = _RaisingSpan(trace.INVALID_SPAN_CONTEXT)
    with caplog.at_level(logging.DEBUG, "grpc_terminal.otel"), trace.use_span(broken):
        otel.on_error(event)
        otel.on_retry(1, 0.1, gt.classify(error), error)
        otel.on_give_up(history, error)
    assert len([r for r in caplog.records if r.name == "grpc_terminal.otel"]) == 3


def test_not_grpc_failure_names_its_class() -> None:
    attempts = iter([ConnectionResetError("peer 10.0.0.7 reset"), KeyError("user")])

    def flaky() -> None:
        raise next(attempts)

    retry = policy(retryable=lambda e: isinstance(e, ConnectionError))
    with _tracer.start_as_current_span("caller"), pytest.raises(KeyError):
        retry.call(flaky)
    span = only("caller")
    (event,) = retry_events(span)
    assert event["error.type"] == "ConnectionResetError" and "rpc.response.status_code" not in event
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "KeyError" and attrs["grpc_terminal.reason"] == "KeyError"
    assert "10.0.0.7" not in (span.status.description or "")


def test_instrumentation_client_span_around_the_retrying_channel(plain_port: int) -> None:
    """The instrumentation's client interceptor outside ours: its one span carries every retry."""
    for path, value in (("call", key("flaky")), ("future", key("flaky")), ("stream", key("flaky"))):
        _exporter.clear()
        with grpc.insecure_channel(f"127.0.0.1:{plain_port}") as raw:
            channel = instrumented(gt.intercept_channel(raw, retry=policy()))
            if path == "call":
                unary(channel)(Msg(value=value), timeout=TIMEOUT)
            elif path == "future":
                unary(channel).future(Msg(value=value), timeout=TIMEOUT).result(TIMEOUT)
            else:
                list(stream(channel)(Msg(value=value), timeout=TIMEOUT))
        method = STREAM if path == "stream" else UNARY
        check_retried(only(method, trace.SpanKind.CLIENT))


def test_instrumentation_client_span_gets_the_give_up(plain_port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{plain_port}") as raw:
        channel = instrumented(gt.intercept_channel(raw, retry=policy()))
        with pytest.raises(gt.UserNotProvisionable):
            unary(channel)(Msg(value=key("terminal")), timeout=TIMEOUT)
    span = only(UNARY, trace.SpanKind.CLIENT)
    attrs = dict(span.attributes or {})
    assert attrs["grpc_terminal.reason"] == "USER_NOT_PROVISIONABLE"
    assert attrs["grpc_terminal.terminal"] is True
    # the instrumentation's own attribute, untouched
    assert attrs["rpc.grpc.status_code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]


AIO_PATHS = ["policy.acall", "interceptor-unary", "interceptor-stream"]


async def aio_attempt(
    path: str, port: int, value: str, retry: gt.RetryPolicy, extra: Sequence[Any] = ()
) -> Any:
    interceptors = [*extra, *gt.aio_interceptors(retry=None if path == "policy.acall" else retry)]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors) as channel:
        if path == "policy.acall":
            return await retry.acall(unary(channel), Msg(value=value), timeout=TIMEOUT)
        if path == "interceptor-unary":
            return await unary(channel)(Msg(value=value), timeout=TIMEOUT)
        return [r async for r in stream(channel)(Msg(value=value), timeout=TIMEOUT)]


@pytest.mark.parametrize("path", AIO_PATHS)
def test_aio_retries_and_give_up_on_the_callers_span(
    path: str, plain_port: int, loop_thread: LoopThread
) -> None:
    async def go() -> None:
        with _tracer.start_as_current_span("retried"):
            assert await aio_attempt(path, plain_port, key("flaky"), policy())
        with _tracer.start_as_current_span("terminal"), pytest.raises(gt.UserNotProvisionable):
            await aio_attempt(path, plain_port, key("terminal"), policy())

    loop_thread.run(go())
    check_retried(only("retried"))
    check_gave_up(only("terminal"))


def test_aio_instrumentation_client_span_around_ours(plain_port: int, loop_thread: LoopThread) -> None:
    async def go(path: str) -> None:
        extra = aio_client_interceptors(tracer_provider=_provider)
        await aio_attempt(path, plain_port, key("flaky"), policy(), extra)

    for path, method in (("interceptor-unary", UNARY), ("interceptor-stream", STREAM)):
        _exporter.clear()
        loop_thread.run(go(path))
        check_retried(only(method, trace.SpanKind.CLIENT))


def test_events_of_concurrent_calls_stay_on_their_own_span(plain_port: int) -> None:
    """Two retried calls at once in two threads, each under its own span: no event crosses over."""
    retry = policy()

    def one(name: str) -> None:
        with _tracer.start_as_current_span(name):
            sync_attempt("channel-future", plain_port, key("flaky"), retry)

    threads = [threading.Thread(target=one, args=(f"t{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    for i in range(4):
        check_retried(only(f"t{i}"))


def test_events_stay_on_their_callers_span_on_a_shared_channel(plain_port: int) -> None:
    """A retried future() while another call holds the same channel busy: grpc runs the
    done callbacks of every call of a channel in one thread, started in the context of
    whichever call started it; the retry events must still land on the retried call's span."""
    _release.clear()
    with grpc.insecure_channel(f"127.0.0.1:{plain_port}") as raw:
        channel = gt.intercept_channel(raw, retry=policy())
        try:
            with _tracer.start_as_current_span("holder"):
                held = unary(channel).future(Msg(value=key("hold")), timeout=TIMEOUT)
            with _tracer.start_as_current_span("victim"):
                assert unary(channel).future(Msg(value=key("flaky")), timeout=TIMEOUT).result(TIMEOUT)
        finally:
            _release.set()
        assert held.result(TIMEOUT)
    check_retried(only("victim"))
    assert not retry_events(only("holder"))
