"""grpc_terminal.prometheus against the real prometheus_client, scraped over HTTP, fed by loopback servers."""

from __future__ import annotations

import collections
import contextlib
import logging
import math
import socket
import threading
import urllib.request
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest

pytest.importorskip("prometheus_client", reason="the prometheus extra is not installed")

import prometheus_client
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import grpc_terminal as gt
from grpc_terminal.prometheus import OTHER, WAIT_BUCKETS, Metrics
from grpc_terminal.testing import Loopback

from harness import LoopThread

Msg = wrappers_pb2.StringValue
SERVICE = "test.Prom"
GRANT = f"/{SERVICE}/Grant"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# -- the metrics endpoint ----------------------------------------------------------------


class Endpoint:
    """A real ``prometheus_client.start_http_server`` on 127.0.0.1, for one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        started: Any = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
        self.httpd, self.thread = started
        self.port: int = self.httpd.server_port

    def text(self) -> str:
        """The exposition text of one scrape."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            assert response.status == 200
            return str(response.read().decode("utf-8"))

    def samples(self) -> Samples:
        """One scrape, parsed: (sample name, labels) -> value."""
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(self.text())
            for sample in family.samples
        }

    def close(self) -> None:
        """Stop serving, close the socket and join the thread.

        ``serve_forever`` sees ``shutdown()`` only when its ``select`` wakes, by
        default every 0.5 s; a connection wakes it at once.
        """
        stopper = threading.Thread(target=self.httpd.shutdown)
        stopper.start()
        while stopper.is_alive():
            with contextlib.suppress(OSError):
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            stopper.join(0.01)
        self.httpd.server_close()
        self.thread.join(5)
        assert not self.thread.is_alive()


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def endpoint(registry: CollectorRegistry) -> Iterator[Endpoint]:
    served = Endpoint(registry)
    yield served
    served.close()


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """The samples called ``name``, by their labels."""
    return {labels: value for (sample, labels), value in samples.items() if sample == name}


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


# -- the servers -------------------------------------------------------------------------


def outcome(value: str) -> None:
    """What Grant does for a request: fail in the way the request names, or succeed."""
    if value == "terminal":
        raise gt.UserNotProvisionable("Okta: jdoe is SUSPENDED")
    if value == "transient":
        raise gt.Unavailable("upstream 503")
    if value == "invented":
        raise gt.FailedPrecondition("burst quota", error_reason="QUOTA_BURST")
    if value == "future-reason":
        raise gt.terminal_error(99, "a reason from a newer peer")
    if value == "boom":
        raise ValueError("a bug")


def handlers(aio: bool) -> grpc.GenericRpcHandler:
    def grant(request: Msg, context: grpc.ServicerContext) -> Msg:
        outcome(request.value)
        return Msg(value="ok")

    async def agrant(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> Msg:
        outcome(request.value)
        return Msg(value="ok")

    behaviour: Callable[..., Any] = agrant if aio else grant
    return grpc.method_handlers_generic_handler(SERVICE, {
        name: grpc.unary_unary_rpc_method_handler(
            behaviour, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString
        )
        for name in ("Grant", "Revoke")
    })


class CatchAll(grpc.GenericRpcHandler):
    """Serves every method name a peer sends (as a proxy would), failing each with NOT_FOUND."""

    def __init__(self, aio: bool) -> None:
        def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
            raise gt.NotFound("no such thing")

        async def afail(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
            raise gt.NotFound("no such thing")

        self.handler = grpc.unary_unary_rpc_method_handler(afail if aio else fail)

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        return self.handler


@pytest.fixture(params=["sync", "aio"])
def aio(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "aio")


def grant(loopback: Loopback, value: str, method: str = GRANT) -> None:
    """One Grant call on the typed sync channel; a failure is what the test wants."""
    call = loopback.channel.unary_unary(
        method, request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )
    with contextlib.suppress(gt.StatusError):
        call(Msg(value=value), timeout=10)


def made_up_calls(loopback: Loopback, count: int) -> set[grpc.StatusCode]:
    """``count`` calls, each to a method name nobody defined (100 in flight at a time); their codes."""
    codes: set[grpc.StatusCode] = set()
    with grpc.insecure_channel(loopback.target) as channel:
        for start in range(0, count, 100):
            pending = [channel.unary_unary(f"/evil.S{i}/M{i}").future(b"", timeout=20)
                       for i in range(start, min(count, start + 100))]
            for future in pending:
                error = future.exception(timeout=30)
                assert isinstance(error, grpc.Call)
                codes.add(error.code())
    return codes


# -- server failures ---------------------------------------------------------------------


DONE_WHEN = (
    'grpc_terminal_server_failures_total{grpc_code="FAILED_PRECONDITION",grpc_method="/test.Prom/Grant",'
    'reason="USER_NOT_PROVISIONABLE",terminal="true"} 1.0'
)


def test_terminal_and_transient_failures_are_scraped(
    aio: bool, registry: CollectorRegistry, endpoint: Endpoint, grpc_terminal_server: Callable[..., Loopback]
) -> None:
    metrics = Metrics(registry)
    loopback = grpc_terminal_server(handlers(aio), aio=aio, on_error=metrics.on_error)
    grant(loopback, "terminal")
    grant(loopback, "transient")
    grant(loopback, "fine")
    text = endpoint.text()
    assert DONE_WHEN in text.splitlines()
    assert series(endpoint.samples(), "grpc_terminal_server_failures_total") == {
        labels(grpc_method=GRANT, grpc_code="FAILED_PRECONDITION", reason="USER_NOT_PROVISIONABLE",
               terminal="true"): 1.0,
        labels(grpc_method=GRANT, grpc_code="UNAVAILABLE", reason="UNAVAILABLE", terminal="false"): 1.0,
    }


def test_reasons_come_from_a_closed_set(
    aio: bool, registry: CollectorRegistry, endpoint: Endpoint, grpc_terminal_server: Callable[..., Loopback]
) -> None:
    plain, admitting = Metrics(registry), Metrics(registry, reasons=["QUOTA_BURST"])
    for metrics, method in ((plain, "Grant"), (admitting, "Revoke")):
        loopback = grpc_terminal_server(handlers(aio), aio=aio, on_error=metrics.on_error)
        for value in ("invented", "future-reason", "boom"):
            grant(loopback, value, f"/{SERVICE}/{method}")
    failures = series(endpoint.samples(), "grpc_terminal_server_failures_total")
    revoke = f"/{SERVICE}/Revoke"
    assert failures == {
        # a reason the service invented: OTHER, unless admitted with reasons=
        labels(grpc_method=GRANT, grpc_code="FAILED_PRECONDITION", reason=OTHER, terminal="false"): 1.0,
        labels(grpc_method=revoke, grpc_code="FAILED_PRECONDITION", reason="QUOTA_BURST",
               terminal="false"): 1.0,
        # a reason number this version does not know (REASON_99): OTHER, still terminal
        labels(grpc_method=GRANT, grpc_code="FAILED_PRECONDITION", reason=OTHER, terminal="true"): 1.0,
        labels(grpc_method=revoke, grpc_code="FAILED_PRECONDITION", reason=OTHER, terminal="true"): 1.0,
        # an exception nobody mapped
        labels(grpc_method=GRANT, grpc_code="UNKNOWN", reason="UNKNOWN", terminal="false"): 1.0,
        labels(grpc_method=revoke, grpc_code="UNKNOWN", reason="UNKNOWN", terminal="false"): 1.0,
    }


# 10,000 names on the sync server; the aio server (the same hook, called on its event
# loop) gets 1,000, which keeps the file within seconds on two cores.
@pytest.mark.parametrize(("aio", "calls"), [(False, 10_000), (True, 1_000)], ids=["sync", "aio"])
def test_made_up_method_names_are_capped(
    aio: bool, calls: int, registry: CollectorRegistry, endpoint: Endpoint,
    grpc_terminal_server: Callable[..., Loopback], caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics(registry)
    loopback = grpc_terminal_server(CatchAll(aio), aio=aio, on_error=metrics.on_error)
    with caplog.at_level(logging.WARNING, logger="grpc_terminal.prometheus"):
        assert made_up_calls(loopback, calls) == {grpc.StatusCode.NOT_FOUND}
    failures = series(endpoint.samples(), "grpc_terminal_server_failures_total")
    methods = {dict(labelset)["grpc_method"]: value for labelset, value in failures.items()}
    assert len(methods) == 101 and methods[OTHER] == calls - 100
    assert all(value == 1.0 for name, value in methods.items() if name != OTHER)
    assert sum(methods.values()) == calls
    warnings = [r for r in caplog.records if r.name == "grpc_terminal.prometheus"]
    assert len(warnings) == 1 and "100 method names" in warnings[0].getMessage()


def test_methods_nobody_serves_are_not_counted(
    aio: bool, registry: CollectorRegistry, endpoint: Endpoint, grpc_terminal_server: Callable[..., Loopback]
) -> None:
    metrics = Metrics(registry)
    loopback = grpc_terminal_server(handlers(aio), aio=aio, on_error=metrics.on_error)
    assert made_up_calls(loopback, 1_000) == {grpc.StatusCode.UNIMPLEMENTED}
    grant(loopback, "terminal")
    failures = series(endpoint.samples(), "grpc_terminal_server_failures_total")
    assert {dict(labelset)["grpc_method"] for labelset in failures} == {GRANT}


def prom_service() -> Any:
    """A real protobuf ServiceDescriptor for test.Prom (Grant, Revoke), from a private pool."""
    file = descriptor_pb2.FileDescriptorProto(name="test_prom.proto", package="test", syntax="proto3")
    file.message_type.add(name="Msg")
    service = file.service.add(name="Prom")
    for name in ("Grant", "Revoke"):
        service.method.add(name=name, input_type=".test.Msg", output_type=".test.Msg")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return pool.FindServiceByName(SERVICE)


@pytest.mark.parametrize("methods", [[GRANT], "descriptor"], ids=["names", "descriptor"])
def test_a_closed_method_set(
    methods: Any, aio: bool, registry: CollectorRegistry, endpoint: Endpoint,
    grpc_terminal_server: Callable[..., Loopback],
) -> None:
    metrics = Metrics(registry, methods=[prom_service()] if methods == "descriptor" else methods)
    loopback = grpc_terminal_server(CatchAll(aio), aio=aio, on_error=metrics.on_error)
    assert made_up_calls(loopback, 50) == {grpc.StatusCode.NOT_FOUND}
    grant(loopback, "x")
    failures = series(endpoint.samples(), "grpc_terminal_server_failures_total")
    assert {dict(labelset)["grpc_method"]: value for labelset, value in failures.items()} == {
        GRANT: 1.0, OTHER: 50.0
    }


def test_masked_failures_count_the_real_code(
    registry: CollectorRegistry, endpoint: Endpoint, grpc_terminal_server: Callable[..., Loopback]
) -> None:
    def deny(request: Msg, context: grpc.ServicerContext) -> Msg:
        raise gt.OperationNotPermitted("admins only")

    handler = grpc.method_handlers_generic_handler(SERVICE, {"Grant": grpc.unary_unary_rpc_method_handler(
        deny, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString)})
    metrics = Metrics(registry)
    loopback = grpc_terminal_server(handler, on_error=metrics.on_error, mask_permission_denied=True)
    with pytest.raises(gt.NotFound):
        loopback.channel.unary_unary(GRANT, request_serializer=Msg.SerializeToString,
                                     response_deserializer=Msg.FromString)(Msg(), timeout=10)
    assert series(endpoint.samples(), "grpc_terminal_server_failures_total") == {
        # terminal says what the caller got: a bare NOT_FOUND, no ProvisionFailureDetail
        labels(grpc_method=GRANT, grpc_code="PERMISSION_DENIED", reason="OPERATION_NOT_PERMITTED",
               terminal="false"): 1.0,
    }


# -- client retries and give-ups ---------------------------------------------------------


class Flaky:
    """Grant fails with UNAVAILABLE (asking for ``delay`` seconds) the first ``failures`` times for
    each request value, then does what the value says: ``flaky`` succeeds, ``flaky-then-terminal``
    fails terminally, and any other value is an :func:`outcome` at once."""

    def __init__(self, failures: int, delay: float | None) -> None:
        self.failures, self.delay = failures, delay
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def step(self, value: str) -> None:
        with self.lock:
            self.calls[value] += 1
            failing = self.calls[value] <= self.failures
        if not value.startswith("flaky"):
            outcome(value)
        elif failing:
            raise gt.Unavailable("upstream 503", retry_delay=self.delay)
        elif value == "flaky-then-terminal":
            outcome("terminal")

    def handlers(self, aio: bool) -> grpc.GenericRpcHandler:
        def grant(request: Msg, context: grpc.ServicerContext) -> Msg:
            self.step(request.value)
            return Msg(value="ok")

        async def agrant(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> Msg:
            self.step(request.value)
            return Msg(value="ok")

        return grpc.method_handlers_generic_handler(SERVICE, {"Grant": grpc.unary_unary_rpc_method_handler(
            agrant if aio else grant, request_deserializer=Msg.FromString,
            response_serializer=Msg.SerializeToString)})


def policy(metrics: Metrics, waits: list[float], **changes: Any) -> gt.RetryPolicy:
    """A policy whose waits are recorded, not slept (both the sync and the async sleep)."""

    async def async_sleep(seconds: float) -> None:
        waits.append(seconds)

    return gt.RetryPolicy(sleep=waits.append, async_sleep=async_sleep, jitter=0,
                          on_retry=metrics.on_retry, on_give_up=metrics.on_give_up, **changes)


def call_through(loopback: Loopback, retry: gt.RetryPolicy, value: str, client: str,
                 loop_thread: LoopThread) -> BaseException | None:
    """One Grant through the client interceptors with ``retry``: the error raised, if any."""
    if client == "sync":
        channel = gt.intercept_channel(grpc.insecure_channel(loopback.target), retry=retry)
        try:
            channel.unary_unary(GRANT, request_serializer=Msg.SerializeToString,
                                response_deserializer=Msg.FromString)(Msg(value=value), timeout=10)
        except gt.StatusError as error:
            return error
        finally:
            channel.close()
        return None

    async def go() -> BaseException | None:
        async with loopback.aio_channel(retry=retry) as channel:
            try:
                await channel.unary_unary(GRANT, request_serializer=Msg.SerializeToString,
                                          response_deserializer=Msg.FromString)(Msg(value=value), timeout=10)
            except gt.StatusError as error:
                return error
        return None

    result: BaseException | None = loop_thread.run(go())
    return result


@pytest.fixture(params=["sync", "aio"])
def client(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_retried_call(
    aio: bool, client: str, registry: CollectorRegistry, endpoint: Endpoint,
    grpc_terminal_server: Callable[..., Loopback], loop_thread: LoopThread,
) -> None:
    waits: list[float] = []
    metrics, flaky = Metrics(registry), Flaky(failures=2, delay=3.0)
    loopback = grpc_terminal_server(flaky.handlers(aio), aio=aio, on_error=metrics.on_error)
    assert call_through(loopback, policy(metrics, waits), "flaky", client, loop_thread) is None
    assert flaky.calls["flaky"] == 3 and waits == [3.0, 3.0]
    samples = endpoint.samples()
    assert series(samples, "grpc_terminal_client_retries_total") == {labels(grpc_code="UNAVAILABLE"): 2.0}
    buckets = series(samples, "grpc_terminal_client_retry_wait_seconds_bucket")
    assert buckets[labels(le="2.5")] == 0.0 and buckets[labels(le="5.0")] == 2.0
    assert buckets[labels(le="+Inf")] == 2.0 and len(buckets) == len(WAIT_BUCKETS)
    assert series(samples, "grpc_terminal_client_retry_wait_seconds_sum") == {labels(): 6.0}
    assert series(samples, "grpc_terminal_client_give_ups_total") == {}
    # the server saw the two failures
    assert series(samples, "grpc_terminal_server_failures_total") == {
        labels(grpc_method=GRANT, grpc_code="UNAVAILABLE", reason="UNAVAILABLE", terminal="false"): 2.0,
    }


def test_give_ups_by_stop_reason(
    aio: bool, client: str, registry: CollectorRegistry, endpoint: Endpoint,
    grpc_terminal_server: Callable[..., Loopback], loop_thread: LoopThread,
) -> None:
    waits: list[float] = []
    metrics, flaky = Metrics(registry), Flaky(failures=3, delay=None)
    loopback = grpc_terminal_server(flaky.handlers(aio), aio=aio)
    retry = policy(metrics, waits, max_attempts=3, initial_backoff=0.5, multiplier=1)
    terminal = call_through(loopback, retry, "terminal", client, loop_thread)
    exhausted = call_through(loopback, retry, "flaky", client, loop_thread)
    late = call_through(loopback, retry.replace(max_attempts=5), "flaky-then-terminal", client, loop_thread)
    assert isinstance(terminal, gt.UserNotProvisionable) and isinstance(exhausted, gt.Unavailable)
    assert isinstance(late, gt.UserNotProvisionable) and flaky.calls["flaky-then-terminal"] == 4
    samples = endpoint.samples()
    assert series(samples, "grpc_terminal_client_give_ups_total") == {
        # the code of the last attempt: the first ones of the late give-up were UNAVAILABLE
        labels(stop_reason="terminal", grpc_code="FAILED_PRECONDITION"): 2.0,
        labels(stop_reason="exhausted", grpc_code="UNAVAILABLE"): 1.0,
    }
    assert series(samples, "grpc_terminal_client_retries_total") == {labels(grpc_code="UNAVAILABLE"): 5.0}
    assert waits == [0.5] * 5
    assert series(samples, "grpc_terminal_client_retry_wait_seconds_bucket")[labels(le="0.5")] == 5.0


# -- registries ----------------------------------------------------------------------------


def test_metrics_on_one_registry_share_its_series(registry: CollectorRegistry, endpoint: Endpoint) -> None:
    first, second = Metrics(registry), Metrics(registry, max_methods=0)
    assert first.server_failures is second.server_failures and first.retry_wait is second.retry_wait
    event = gt.ErrorEvent(GRANT, grpc.StatusCode.UNAVAILABLE, "UNAVAILABLE", None, True, gt.Unavailable())
    first.on_error(event)
    second.on_error(event)  # counts the same failure under its own method setting
    assert series(endpoint.samples(), "grpc_terminal_server_failures_total") == {
        labels(grpc_method=GRANT, grpc_code="UNAVAILABLE", reason="UNAVAILABLE", terminal="false"): 1.0,
        labels(grpc_method=OTHER, grpc_code="UNAVAILABLE", reason="UNAVAILABLE", terminal="false"): 1.0,
    }
    other = Metrics(CollectorRegistry())
    assert other.server_failures is not first.server_failures


def test_a_foreign_collector_of_the_same_name_is_a_clear_error(registry: CollectorRegistry) -> None:
    prometheus_client.Counter("grpc_terminal_client_give_ups", "someone else's", registry=registry)
    with pytest.raises(ValueError, match="did not register"):
        Metrics(registry)
    # nothing half-registered is left behind: the names registered before the clash are free again
    prometheus_client.Counter("grpc_terminal_server_failures", "still free", registry=registry)


def test_none_means_the_default_registry() -> None:
    metrics = Metrics()
    assert metrics.registry is prometheus_client.REGISTRY and Metrics(None).retries is metrics.retries
    before = prometheus_client.REGISTRY.get_sample_value(
        "grpc_terminal_client_retries_total", {"grpc_code": "ABORTED"}) or 0.0
    verdict = gt.Verdict(True, "code", grpc.StatusCode.ABORTED, None)
    metrics.on_retry(1, 0.1, verdict, gt.Aborted())
    after = prometheus_client.REGISTRY.get_sample_value("grpc_terminal_client_retries_total",
                                                        {"grpc_code": "ABORTED"})
    assert after == before + 1


# -- as an attacker would ------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"registry": "default"}, TypeError, "CollectorRegistry"),
    ({"registry": prometheus_client.Counter}, TypeError, "CollectorRegistry"),
    ({"reasons": "QUOTA_BURST"}, TypeError, "collection"),
    ({"reasons": [b"QUOTA_BURST"]}, TypeError, "not a str"),
    ({"reasons": ["quota_burst"]}, ValueError, "UPPER_SNAKE"),
    ({"reasons": ["A" * 64]}, ValueError, "UPPER_SNAKE"),
    ({"reasons": ['X"} 1\nevil{a="']}, ValueError, "UPPER_SNAKE"),
    ({"reasons": 7}, TypeError, "collection"),
    ({"methods": GRANT}, TypeError, "collection"),
    ({"methods": ["Grant"]}, ValueError, "full method name"),
    ({"methods": ["/test.Prom/Grant/"]}, ValueError, "full method name"),
    ({"methods": ["/" + "a" * 250 + "/" + "b" * 10]}, ValueError, "full method name"),
    ({"methods": [42]}, TypeError, "neither"),
    ({"methods": [GRANT], "max_methods": 5}, TypeError, "not both"),
    ({"max_methods": -1}, ValueError, "max_methods"),
    ({"max_methods": True}, ValueError, "max_methods"),
    ({"max_methods": 2.5}, ValueError, "max_methods"),
])
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    kwargs.setdefault("registry", CollectorRegistry())
    with pytest.raises(error, match=match):
        Metrics(**kwargs)


def test_hooks_count_what_they_cannot_read_as_other(registry: CollectorRegistry, endpoint: Endpoint) -> None:
    metrics = Metrics(registry)
    hostile = [
        gt.ErrorEvent('/a"b/c\n', grpc.StatusCode.INTERNAL, 'X"} 1\n', None, True, gt.Internal()),
        gt.ErrorEvent("/" + "a" * 300 + "/b", grpc.StatusCode.INTERNAL, "R" * 10_000, None, True,
                      gt.Internal()),
        gt.ErrorEvent(GRANT, None, None, None, True, gt.Internal(), terminal="yes"),  # type: ignore[arg-type]
        object(),
    ]
    for event in hostile:
        metrics.on_error(event)  # type: ignore[arg-type]
    metrics.on_retry(1, math.nan, object(), ValueError())  # type: ignore[arg-type]
    metrics.on_retry(1, -1.0, gt.Verdict(True, "code", None, None), ValueError())
    metrics.on_retry(1, math.inf, None, ValueError())  # type: ignore[arg-type]
    metrics.on_give_up(None, ValueError())  # type: ignore[arg-type]
    samples = endpoint.samples()
    failures = series(samples, "grpc_terminal_server_failures_total")
    assert failures == {
        labels(grpc_method=OTHER, grpc_code="INTERNAL", reason=OTHER, terminal="false"): 2.0,
        labels(grpc_method=GRANT, grpc_code=OTHER, reason=OTHER, terminal="false"): 1.0,
        labels(grpc_method=OTHER, grpc_code=OTHER, reason=OTHER, terminal="false"): 1.0,
    }
    assert series(samples, "grpc_terminal_client_retries_total") == {labels(grpc_code=OTHER): 3.0}
    # nan, a negative and an infinite wait are counted as retries but never observed
    assert series(samples, "grpc_terminal_client_retry_wait_seconds_count") == {labels(): 0.0}
    assert series(samples, "grpc_terminal_client_give_ups_total") == {
        labels(stop_reason=OTHER, grpc_code=OTHER): 1.0
    }


def test_beside_a_hook_that_raises(
    aio: bool, registry: CollectorRegistry, endpoint: Endpoint, grpc_terminal_server: Callable[..., Loopback],
    loop_thread: LoopThread,
) -> None:
    def explode(*args: object) -> None:
        raise RuntimeError("a broken hook")

    waits: list[float] = []
    metrics, flaky = Metrics(registry), Flaky(failures=1, delay=None)
    loopback = grpc_terminal_server(flaky.handlers(aio), aio=aio, on_error=[explode, metrics.on_error])
    retry = policy(metrics, waits).replace(on_retry=[explode, metrics.on_retry],
                                           on_give_up=[explode, metrics.on_give_up])
    assert call_through(loopback, retry, "flaky", "aio" if aio else "sync", loop_thread) is None
    assert isinstance(call_through(loopback, retry, "terminal", "sync", loop_thread), gt.UserNotProvisionable)
    samples = endpoint.samples()
    assert sum(series(samples, "grpc_terminal_server_failures_total").values()) == 2.0
    assert series(samples, "grpc_terminal_client_retries_total") == {labels(grpc_code="UNAVAILABLE"): 1.0}
    assert series(samples, "grpc_terminal_client_give_ups_total") == {
        labels(stop_reason="terminal", grpc_code="FAILED_PRECONDITION"): 1.0
    }


def test_a_broken_collector_never_changes_the_rpc(
    aio: bool, registry: CollectorRegistry, grpc_terminal_server: Callable[..., Loopback],
    caplog: pytest.LogCaptureFixture,
) -> None:
    broken = Metrics(registry)
    broken._collectors = None  # type: ignore[assignment]  # every update now fails
    loopback = grpc_terminal_server(handlers(aio), aio=aio, on_error=broken.on_error)
    with pytest.raises(gt.UserNotProvisionable):
        loopback.channel.unary_unary(GRANT, request_serializer=Msg.SerializeToString,
                                     response_deserializer=Msg.FromString)(Msg(value="terminal"), timeout=10)
    assert any("on_error could not count" in r.getMessage() for r in caplog.records)


def test_concurrent_hooks_lose_no_count(registry: CollectorRegistry, endpoint: Endpoint) -> None:
    metrics = Metrics(registry, max_methods=10)
    events = [gt.ErrorEvent(f"/s.S/M{i % 50}", grpc.StatusCode.ABORTED, "ABORTED", None, True, gt.Aborted())
              for i in range(4_000)]
    with futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(metrics.on_error, events))
    failures = series(endpoint.samples(), "grpc_terminal_server_failures_total")
    methods = {dict(labelset)["grpc_method"]: value for labelset, value in failures.items()}
    assert len(methods) == 11 and sum(methods.values()) == 4_000
