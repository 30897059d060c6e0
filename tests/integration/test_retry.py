"""RetryPolicy: exact backoff sequences (injected time), wrappers, interceptors, native retry."""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal._retry import (
    RetryBudget,
    RetryHistory,
    RetryPolicy,
    StopReason,
)
from grpc_terminal._service_config import service_config

from harness import SERVICE, AioServer, LoopThread, Pair, Scenario, SyncServer, register

C = grpc.StatusCode
Msg = wrappers_pb2.StringValue


class FakeTime:
    """A clock that only moves when the policy sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def policy(self, **kwargs: Any) -> RetryPolicy:
        kwargs.setdefault("random", lambda: 0.5)
        return RetryPolicy(clock=self.clock, sleep=self.sleep, async_sleep=self.async_sleep, **kwargs)


class Failing:
    """A callable failing with ``errors`` in turn (the last one forever), then maybe returning."""

    def __init__(self, *errors: BaseException, succeed_after: int | None = None, ft: FakeTime | None = None,
                 cost: float = 0.0) -> None:
        self.errors = errors
        self.succeed_after = succeed_after
        self.calls = 0
        self.ft, self.cost = ft, cost

    def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.ft is not None:
            self.ft.now += self.cost
        if self.succeed_after is not None and self.calls > self.succeed_after:
            return value
        raise self.errors[min(self.calls, len(self.errors)) - 1]


def history(exc: BaseException) -> RetryHistory:
    h = getattr(exc, "retry_history", None)
    assert isinstance(h, RetryHistory)
    return h


# -- exact backoff sequences -----------------------------------------------------------------


def test_backoff_sequence_exact_with_jitter() -> None:
    ft = FakeTime()
    policy = ft.policy(max_attempts=6, initial_backoff=0.1, multiplier=2, max_backoff=0.3, jitter=0.5)
    fn = Failing(gt.Unavailable("down"))
    with pytest.raises(gt.Unavailable) as info:
        policy.call(fn)
    # backoff 0.1, 0.2, 0.3 (capped), 0.3, 0.3; each times (1 - 0.5 * 0.5)
    assert ft.waits == pytest.approx([0.075, 0.15, 0.225, 0.225, 0.225])
    assert fn.calls == 6
    h = history(info.value)
    assert h.stopped is StopReason.EXHAUSTED and h.count == 6
    assert h.codes == (C.UNAVAILABLE,) * 6
    assert h.waits == pytest.approx(ft.waits)
    assert h.elapsed == pytest.approx(sum(ft.waits))
    assert info.value.__notes__[-1].startswith("grpc-terminal retry: stopped (exhausted) after 6 attempts")


@pytest.mark.parametrize(("rand", "expected"), [(0.0, [1.0, 3.0, 9.0]), (1.0, [0.0, 0.0, 0.0]),
                                                 (0.25, [0.75, 2.25, 6.75])])
def test_full_jitter_bounds(rand: float, expected: list[float]) -> None:
    ft = FakeTime()
    policy = ft.policy(max_attempts=4, initial_backoff=1, multiplier=3, max_backoff=100, jitter=1.0,
                       random=lambda: rand)
    with pytest.raises(gt.Aborted):
        policy.call(Failing(gt.Aborted("conflict")))
    assert ft.waits == pytest.approx(expected)


def test_retry_info_is_a_floor_not_capped_by_max_backoff() -> None:
    ft = FakeTime()
    policy = ft.policy(max_attempts=4, initial_backoff=0.1, max_backoff=0.4, multiplier=2, jitter=0)
    fn = Failing(
        gt.Unavailable("a", retry_delay=0.15), gt.Unavailable("b", retry_delay=2.0), gt.Unavailable("c")
    )
    with pytest.raises(gt.Unavailable):
        policy.call(fn)
    # 0.1 raised to 0.15; 0.2 raised to 2.0 (beyond max_backoff); 0.4 plain
    assert ft.waits == pytest.approx([0.15, 2.0, 0.4])


def test_waits_never_pass_the_deadline() -> None:
    ft = FakeTime()
    policy = ft.policy(
        max_attempts=None, timeout=1.0, initial_backoff=0.2, multiplier=2, max_backoff=10, jitter=0
    )
    fn = Failing(gt.Unavailable("down"), ft=ft, cost=0.05)
    with pytest.raises(gt.Unavailable) as info:
        policy.call(fn)
    # attempts at 0, 0.25, 0.70: the next wait (0.8) would pass the deadline at 1.0
    assert ft.waits == pytest.approx([0.2, 0.4])
    assert fn.calls == 3
    assert history(info.value).stopped is StopReason.DEADLINE


def test_server_delay_beyond_deadline_stops_without_sleeping() -> None:
    ft = FakeTime()
    policy = ft.policy(timeout=5.0)
    with pytest.raises(gt.Unavailable) as info:
        policy.call(Failing(gt.Unavailable("come back in a minute", retry_delay=60)))
    assert ft.waits == []
    assert history(info.value).stopped is StopReason.DEADLINE


def test_terminal_costs_one_attempt_and_no_wait() -> None:
    ft = FakeTime()
    fn = Failing(gt.UserNotProvisionable("jdoe is SUSPENDED"))
    with pytest.raises(gt.UserNotProvisionable) as info:
        ft.policy(max_attempts=5).call(fn)
    assert fn.calls == 1 and ft.waits == []
    h = history(info.value)
    assert h.stopped is StopReason.TERMINAL and h.count == 1
    assert h.attempts[0].verdict.rule == "provision_failure_detail"
    assert "stopped (terminal) after 1 attempt [FAILED_PRECONDITION]" in info.value.__notes__[-1]


def test_transient_then_success() -> None:
    ft = FakeTime()
    fn = Failing(gt.Unavailable("down"), succeed_after=2)
    assert ft.policy(jitter=0).call(fn, "value") == "value"
    assert fn.calls == 3 and ft.waits == pytest.approx([0.1, 0.2])


def test_non_grpc_errors_are_not_retried_unless_the_predicate_says_so() -> None:
    ft = FakeTime()
    fn = Failing(ConnectionError("reset"))
    with pytest.raises(ConnectionError) as info:
        ft.policy().call(fn)
    assert fn.calls == 1
    assert history(info.value).attempts[0].verdict.rule == "not_grpc"

    fn = Failing(ConnectionError("reset"), succeed_after=1)
    policy = ft.policy(retryable=lambda e: isinstance(e, ConnectionError) or gt.is_retryable(e))
    assert policy.call(fn) == "ok" and fn.calls == 2


def test_custom_predicate_has_the_last_word() -> None:
    ft = FakeTime()
    fn = Failing(gt.UserNotProvisionable("x"))
    with pytest.raises(gt.UserNotProvisionable) as info:
        ft.policy(max_attempts=3, retryable=lambda e: True).call(fn)
    assert fn.calls == 3
    assert history(info.value).attempts[0].verdict.rule == "predicate"


def test_retryable_codes_drive_the_default_predicate() -> None:
    ft = FakeTime()
    fn = Failing(gt.NotFound("not yet replicated"), succeed_after=1)
    assert ft.policy(retryable_codes=frozenset({C.NOT_FOUND})).call(fn) == "ok"
    fn = Failing(gt.Unavailable("down"))
    with pytest.raises(gt.Unavailable):
        ft.policy(retryable_codes=frozenset({C.NOT_FOUND})).call(fn)
    assert fn.calls == 1


def test_max_attempts_one_means_no_retry() -> None:
    ft = FakeTime()
    fn = Failing(gt.Unavailable("down"))
    with pytest.raises(gt.Unavailable) as info:
        ft.policy(max_attempts=1).call(fn)
    assert fn.calls == 1 and history(info.value).stopped is StopReason.EXHAUSTED


def test_raw_grpc_error_becomes_typed_with_cause(loop_thread: LoopThread) -> None:
    server = SyncServer(workers=2)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")  # no typed interceptor
    try:
        stub = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                                   response_deserializer=Msg.FromString)
        scenario = Scenario(raise_=gt.LicenseExhausted("100 of 100 seats"))
        with pytest.raises(gt.LicenseExhausted) as info:
            FakeTime().policy().call(stub, Msg(value=register(scenario)), timeout=10)
        assert len(scenario.calls) == 1
        raw = info.value.__cause__
        assert isinstance(raw, grpc.RpcError) and not isinstance(raw, gt.StatusError)
        assert history(info.value).stopped is StopReason.TERMINAL
    finally:
        channel.close()
        server.stop()


def test_history_survives_pickling() -> None:
    ft = FakeTime()
    with pytest.raises(gt.Unavailable) as info:
        ft.policy(max_attempts=2).call(Failing(gt.Unavailable("down")))
    clone = pickle.loads(pickle.dumps(info.value))
    assert clone.retry_history == info.value.retry_history
    assert gt.StatusError.retry_history is None


def test_note_is_replaced_not_stacked() -> None:
    ft = FakeTime()
    err = gt.Unavailable("shared instance")
    for _ in range(2):
        with pytest.raises(gt.Unavailable):
            ft.policy(max_attempts=2).call(Failing(err))
    assert len([n for n in err.__notes__ if n.startswith("grpc-terminal retry:")]) == 1


# -- on_retry and budget ---------------------------------------------------------------------


def test_on_retry_sees_every_retry() -> None:
    ft = FakeTime()
    seen: list[tuple[int, float, str, str]] = []

    def on_retry(attempt: int, wait: float, verdict: gt.Verdict, error: BaseException) -> None:
        seen.append((attempt, wait, verdict.rule, type(error).__name__))

    fn = Failing(gt.Unavailable("a", retry_delay=0.5), gt.Internal("b"), succeed_after=2)
    ft.policy(jitter=0, on_retry=on_retry).call(fn)
    assert seen == [(1, 0.5, "retry_info", "Unavailable"), (2, pytest.approx(0.2), "code", "Internal")]


def test_on_retry_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("metrics down")

    ft = FakeTime()
    with caplog.at_level(logging.ERROR, logger="grpc_terminal"):
        assert ft.policy(on_retry=broken).call(Failing(gt.Unavailable("x"), succeed_after=1)) == "ok"
    assert f"on_retry hook failed: {broken!r}" in caplog.text


def test_budget_throttles_and_is_shared() -> None:
    ft = FakeTime()
    budget = RetryBudget(max_tokens=4, token_ratio=1)
    policy = ft.policy(max_attempts=5, budget=budget)
    with pytest.raises(gt.Unavailable) as info:
        policy.call(Failing(gt.Unavailable("down")))
    # 4 -> 3 (> 2: retry) -> 2 (not > 2: stop)
    assert history(info.value).count == 2 and history(info.value).stopped is StopReason.THROTTLED
    fn = Failing(gt.Unavailable("down"))
    with pytest.raises(gt.Unavailable):
        policy.replace(max_attempts=3).call(fn)  # same budget object
    assert fn.calls == 1
    for _ in range(2):
        policy.call(lambda: "ok")  # successes give tokens back
    assert budget.tokens == pytest.approx(3.0)
    with pytest.raises(gt.UserNotProvisionable):
        policy.call(Failing(gt.UserNotProvisionable("x")))
    assert budget.tokens == pytest.approx(3.0)  # terminal failures do not drain it


# -- the value, decorator and async ------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [{"max_attempts": 0}, {"max_attempts": True}, {"max_attempts": None}, {"timeout": 0},
     {"jitter": 1.5}, {"multiplier": 0.5}, {"initial_backoff": -1}, {"initial_backoff": 2, "max_backoff": 1},
     {"timeout": float("inf")}],
)
def test_rejects_meaningless_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        RetryPolicy(**kwargs)


def test_replace_derives_a_validated_copy() -> None:
    base = RetryPolicy()
    changed = base.replace(max_attempts=2, timeout=3)
    assert (changed.max_attempts, changed.timeout) == (2, 3)
    assert (base.max_attempts, base.timeout) == (5, None)
    assert base == RetryPolicy() and changed != base
    with pytest.raises(ValueError, match="max_attempts"):
        base.replace(max_attempts=0)
    unlimited = base.replace(max_attempts=None, timeout=30)
    assert unlimited.max_attempts is None


def test_decorator_sync_and_async() -> None:
    ft = FakeTime()
    calls: list[int] = []

    @ft.policy(jitter=0)
    def sync_fn(x: int) -> int:
        calls.append(x)
        if len(calls) < 3:
            raise gt.Unavailable("down")
        return x * 2

    assert sync_fn(21) == 42 and calls == [21, 21, 21]

    @ft.policy(jitter=0)
    async def async_fn(x: int) -> int:
        calls.append(x)
        if len(calls) < 5:
            raise gt.Aborted("conflict")
        return x + 1

    assert asyncio.run(async_fn(1)) == 2
    assert ft.waits == pytest.approx([0.1, 0.2, 0.1])
    assert async_fn.__name__ == "async_fn"

    with pytest.raises(TypeError, match="generator"):
        ft.policy()(lambda: (yield))


def test_acall_terminal_and_exhausted() -> None:
    ft = FakeTime()

    async def run() -> None:
        fn = Failing(gt.OperationNotPermitted("policy"))

        async def afn() -> str:
            return fn()

        with pytest.raises(gt.OperationNotPermitted) as info:
            await ft.policy().acall(afn)
        assert fn.calls == 1 and history(info.value).stopped is StopReason.TERMINAL
        fn2 = Failing(gt.DeadlineExceeded("slow"))

        async def afn2() -> str:
            return fn2()

        with pytest.raises(gt.DeadlineExceeded) as info2:
            await ft.policy(max_attempts=3, jitter=0).acall(afn2)
        assert fn2.calls == 3 and history(info2.value).stopped is StopReason.EXHAUSTED

    asyncio.run(run())
    assert ft.waits == pytest.approx([0.1, 0.2])


# -- service config ----------------------------------------------------------------------------


def test_service_config_json() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.25, max_backoff=3, multiplier=1.5, timeout=20,
                         budget=RetryBudget(max_tokens=10, token_ratio=0.2))
    config = json.loads(service_config(policy, services=["c1.connector.v2.Grants"]))
    method = config["methodConfig"][0]
    assert method["name"] == [{"service": "c1.connector.v2.Grants"}]
    assert method["timeout"] == "20s"
    assert method["retryPolicy"] == {
        "maxAttempts": 4,
        "initialBackoff": "0.25s",
        "maxBackoff": "3s",
        "backoffMultiplier": 1.5,
        "retryableStatusCodes": sorted(c.name for c in gt.RETRYABLE_CODES),
    }
    assert config["retryThrottling"] == {"maxTokens": 10.0, "tokenRatio": 0.2}
    narrowed = json.loads(service_config(policy.replace(retryable_codes=frozenset({C.UNAVAILABLE}))))
    assert narrowed["methodConfig"][0]["retryPolicy"]["retryableStatusCodes"] == ["UNAVAILABLE"]
    assert narrowed["methodConfig"][0]["name"] == [{}]
    assert "retryPolicy" not in json.loads(service_config(RetryPolicy(max_attempts=1)))["methodConfig"][0]


def test_service_config_clamps_max_attempts_loudly() -> None:
    with pytest.warns(UserWarning, match="caps maxAttempts at 5"):
        config = json.loads(service_config(RetryPolicy(max_attempts=20)))
    assert config["methodConfig"][0]["retryPolicy"]["maxAttempts"] == 5
    with pytest.warns(UserWarning, match="caps maxAttempts at 5"):
        service_config(RetryPolicy(max_attempts=None, timeout=10))


# -- inside the client interceptors, against real servers ---------------------------------------

FAST = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05)
COMBOS = [("sync", "sync"), ("aio", "aio"), ("sync", "aio"), ("aio", "sync")]


@pytest.fixture(scope="module", params=COMBOS, ids=["-".join(c) for c in COMBOS])
def rpair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    server_kind, client_kind = request.param
    p = Pair(server_kind, client_kind, loop_thread, client_options={"retry": FAST})
    yield p
    p.close()


def fail_first(n: int, error: BaseException, scenario: Scenario) -> Callable[[], None]:
    def before() -> None:
        if len(scenario.calls) <= n:
            raise error

    return before


@pytest.mark.parametrize("kind", ["unary_unary", "unary_stream"])
def test_terminal_is_attempted_once(rpair: Pair, kind: str) -> None:
    scenario = Scenario(raise_=gt.UserNotProvisionable("Okta E0000038: jdoe is SUSPENDED"))
    out = rpair.run(kind, scenario)
    assert len(scenario.calls) == 1
    err = out.error
    assert isinstance(err, gt.UserNotProvisionable)
    cause = err.__cause__
    assert isinstance(cause, grpc.RpcError) and not isinstance(cause, gt.StatusError)
    h = history(err)
    assert (h.count, h.stopped, h.codes) == (1, StopReason.TERMINAL, (C.FAILED_PRECONDITION,))
    assert any("stopped (terminal) after 1 attempt" in n for n in err.__notes__)


@pytest.mark.parametrize("kind", ["unary_unary", "unary_stream"])
def test_transient_is_retried_then_succeeds(rpair: Pair, kind: str) -> None:
    scenario = Scenario(responses=2)
    scenario.before = fail_first(2, gt.Unavailable("upstream 503"), scenario)
    out = rpair.run(kind, scenario)
    assert out.error is None
    assert out.responses == (["ok"] if kind == "unary_unary" else ["r0", "r1"])
    assert len(scenario.calls) == 3


@pytest.mark.parametrize("kind", ["unary_unary", "unary_stream"])
def test_exhausted_reports_every_attempt(rpair: Pair, kind: str) -> None:
    scenario = Scenario(raise_=gt.Internal("boom"))
    out = rpair.run(kind, scenario)
    assert len(scenario.calls) == 5
    h = history(out.error) if out.error else None
    assert isinstance(out.error, gt.Internal) and h is not None
    assert (h.count, h.stopped, h.codes) == (5, StopReason.EXHAUSTED, (C.INTERNAL,) * 5)
    assert len(h.waits) == 4


def test_retry_info_delays_the_next_attempt(rpair: Pair) -> None:
    stamps: list[float] = []
    scenario = Scenario()

    def before() -> None:
        stamps.append(time.monotonic())
        if len(scenario.calls) == 1:
            raise gt.Unavailable("busy", retry_delay=0.2)

    scenario.before = before
    out = rpair.run("unary_unary", scenario)
    assert out.error is None and len(stamps) == 2
    assert stamps[1] - stamps[0] >= 0.2  # FAST would have waited at most 0.01 s


def test_server_stream_is_not_retried_after_a_response(rpair: Pair) -> None:
    scenario = Scenario(responses=1, raise_=gt.Unavailable("dropped mid-stream"))
    out = rpair.run("unary_stream", scenario)
    assert out.responses == ["r0"] and len(scenario.calls) == 1
    assert isinstance(out.error, gt.Unavailable)
    assert history(out.error).stopped is StopReason.COMMITTED


@pytest.mark.parametrize("kind", ["stream_unary", "stream_stream"])
def test_streaming_request_is_never_resent(rpair: Pair, kind: str) -> None:
    scenario = Scenario(raise_=gt.Unavailable("down"))
    out = rpair.run(kind, scenario)
    assert len(scenario.calls) == 1
    assert isinstance(out.error, gt.Unavailable)
    assert out.error.retry_history is None


def test_call_timeout_is_the_overall_deadline(rpair: Pair) -> None:
    scenario = Scenario(raise_=gt.Unavailable("later", retry_delay=5))
    started = time.monotonic()
    out = rpair.run("unary_unary", scenario, timeout=1.0)
    assert len(scenario.calls) == 1
    assert isinstance(out.error, gt.Unavailable)
    assert history(out.error).stopped is StopReason.DEADLINE
    assert time.monotonic() - started < 5  # it did not sleep the server's 5 s


def test_sync_future_and_with_call(loop_thread: LoopThread) -> None:
    server = SyncServer(workers=4)
    raw = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    channel = gt.intercept_channel(raw, retry=FAST)
    try:
        stub = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                                   response_deserializer=Msg.FromString)
        scenario = Scenario()
        scenario.before = fail_first(1, gt.Unavailable("503"), scenario)
        response, call = stub.with_call(Msg(value=register(scenario)), timeout=10)
        assert response.value == "ok" and call.code() is C.OK and len(scenario.calls) == 2
        terminal = Scenario(raise_=gt.ValidationFailure("bad email"))
        future = stub.future(Msg(value=register(terminal)), timeout=10)
        err = future.exception()
        assert isinstance(err, gt.ValidationFailure) and history(err).count == 1
        with pytest.raises(gt.ValidationFailure):
            future.result()
        assert len(terminal.calls) == 1
    finally:
        raw.close()
        server.stop()


# -- native gRPC retry from service_config -------------------------------------------------------

NATIVE = RetryPolicy(max_attempts=5, initial_backoff=0.01, max_backoff=0.05,
                     retryable_codes=frozenset(gt.RETRYABLE_CODES | {C.FAILED_PRECONDITION}))


def native_options() -> list[tuple[str, Any]]:
    return [("grpc.service_config", service_config(NATIVE)), ("grpc.enable_retries", 1)]


@pytest.fixture(scope="module", params=["sync", "aio"])
def native_server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Any]:
    server: Any = SyncServer(workers=4) if request.param == "sync" else AioServer(loop_thread)
    yield server
    server.stop()


def _native_call_sync(port: int, scenario: Scenario) -> BaseException | None:
    raw = grpc.insecure_channel(f"127.0.0.1:{port}", options=native_options())
    try:
        stub = gt.intercept_channel(raw).unary_unary(
            f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        stub(Msg(value=register(scenario)), timeout=10)
    except grpc.RpcError as exc:
        return exc
    finally:
        raw.close()
    return None


def _native_call_aio(loop: LoopThread, port: int, scenario: Scenario) -> BaseException | None:
    async def go() -> BaseException | None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=native_options(),
                                             interceptors=gt.aio_interceptors()) as ch:
            stub = ch.unary_unary(f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                                  response_deserializer=Msg.FromString)
            try:
                await stub(Msg(value=register(scenario)), timeout=10)
            except grpc.RpcError as exc:
                return exc
        return None

    result: BaseException | None = loop.run(go())
    return result


@pytest.mark.parametrize("client", ["sync", "aio"])
def test_native_retry_stops_on_terminal(native_server: Any, loop_thread: LoopThread, client: str) -> None:
    def call(scenario: Scenario) -> BaseException | None:
        if client == "sync":
            return _native_call_sync(native_server.port, scenario)
        return _native_call_aio(loop_thread, native_server.port, scenario)

    # control: FAILED_PRECONDITION is listed, so a plain one is retried to maxAttempts...
    plain = Scenario(raise_=gt.FailedPrecondition("not yet"))
    assert isinstance(call(plain), gt.FailedPrecondition)
    assert len(plain.calls) == 5
    # ...but a terminal one carries grpc-retry-pushback-ms: -1 and costs one attempt
    terminal = Scenario(raise_=gt.UserNotProvisionable("suspended"))
    err = call(terminal)
    assert isinstance(err, gt.UserNotProvisionable)
    assert len(terminal.calls) == 1
    # a transient failure is retried natively and then succeeds
    flaky = Scenario()
    flaky.before = fail_first(1, gt.Unavailable("503"), flaky)
    assert call(flaky) is None
    assert len(flaky.calls) == 2


def test_budget_shared_by_channel_calls(loop_thread: LoopThread) -> None:
    server = SyncServer(workers=4)
    raw = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    policy = FAST.replace(budget=RetryBudget(max_tokens=4, token_ratio=0.1))
    channel = gt.intercept_channel(raw, retry=policy)
    try:
        stub = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                                   response_deserializer=Msg.FromString)
        counts = []
        for _ in range(3):
            scenario = Scenario(raise_=gt.Unavailable("down"))
            with pytest.raises(gt.Unavailable):
                stub(Msg(value=register(scenario)), timeout=10)
            counts.append(len(scenario.calls))
        assert counts == [2, 1, 1]  # the failing backend is no longer hammered
    finally:
        raw.close()
        server.stop()


def test_concurrent_sync_calls_retry_independently(loop_thread: LoopThread) -> None:
    server = SyncServer(workers=8)
    raw = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    channel = gt.intercept_channel(raw, retry=FAST)
    lock = threading.Lock()
    try:
        stub = channel.unary_unary(f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                                   response_deserializer=Msg.FromString)
        scenarios = []
        for i in range(8):
            sc = Scenario(raise_=gt.UserNotProvisionable("x")) if i % 2 else Scenario()
            if not i % 2:
                sc.before = fail_first(1, gt.Unavailable("503"), sc)
            scenarios.append(sc)

        def one(sc: Scenario) -> str:
            try:
                return str(stub(Msg(value=register(sc)), timeout=10).value)
            except gt.StatusError as exc:
                with lock:
                    return type(exc).__name__

        with futures.ThreadPoolExecutor(4) as pool:
            results = list(pool.map(one, scenarios))
        assert results == ["ok", "UserNotProvisionable"] * 4
        assert [len(s.calls) for s in scenarios] == [2, 1] * 4
    finally:
        raw.close()
        server.stop()
