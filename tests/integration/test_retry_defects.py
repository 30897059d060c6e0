"""Issue 12, the retry policy's defects: absurd server delays (10), service_config (13),
pending aio calls (14), the meaning of "terminal" (21), and an interruptible wait for 11.

The servers here are plain grpc servers on loopback (sync and aio) that send the
trailers a hostile or broken peer would: a ``grpc-retry-pushback-ms`` of 10**13 or
int64's maximum, and a RetryInfo of 10**11 s; grpc passes them through to the
client. (A pushback past int64 reaches the client as int64's minimum, a negative
pushback: grpc itself makes it "never retry". A 400-digit one is therefore built
locally, as a relaying proxy or a hand-made error would carry it.)
"""

from __future__ import annotations

import asyncio
import datetime
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2

import grpc_terminal as gt
from grpc_terminal._retry import (
    MAX_DURATION,
    RetryBudget,
    RetryHistory,
    RetryPolicy,
    RetryRun,
    StopReason,
)
from grpc_terminal._service_config import service_config

from harness import LoopThread, Pair, Scenario

C = grpc.StatusCode
Msg = wrappers_pb2.StringValue
SERVICE = "test.Delays"
DETAILS_KEY = "grpc-status-details-bin"

PUSHBACK_13 = f"pushback:{10**13}"  # 10**10 s: time.sleep overflows
PUSHBACK_INT64 = f"pushback:{2**63 - 1}"  # timedelta overflows
PUSHBACK_400 = "pushback:" + "9" * 400  # grpc turns it into int64's minimum on the way
INFO_11 = f"info:{10**11}"  # RetryInfo of 10**11 s
ABSURD = [PUSHBACK_13, PUSHBACK_INT64, INFO_11]


class Relayed(gt.Unavailable):
    """An UNAVAILABLE carrying a 400-digit pushback, as a relaying proxy could hand it on."""

    def trailing_metadata(self) -> Any:
        return (("grpc-retry-pushback-ms", "9" * 400),)


class Unreadable(gt.Unavailable):
    """A failure whose delay cannot be read: what a 400-digit pushback did to classify()."""

    @property
    def retry_delay(self) -> float | None:
        raise OverflowError("integer division result too large for a float")


# -- a plain grpc server sending what the request names ---------------------------------------------


class Calls:
    """How many times the server saw each request value."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def seen(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


CALLS = Calls()


def _trailers(key: str) -> tuple[tuple[str, str | bytes], ...]:
    """``pushback:<ms>`` sends that pushback, ``info:<seconds>`` a RetryInfo; both with UNAVAILABLE."""
    kind, _, value = key.partition(":")
    if kind == "pushback":
        return (("grpc-retry-pushback-ms", value),)
    if kind == "info":
        status = status_pb2.Status(code=C.UNAVAILABLE.value[0], message="later")
        packed = any_pb2.Any()
        packed.Pack(error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=int(value))))
        status.details.append(packed)
        return ((DETAILS_KEY, status.SerializeToString()),)
    return ()


def _sync_unary(request: Msg, context: grpc.ServicerContext) -> Msg:
    key = request.value.split("#")[0]
    CALLS.seen(request.value)
    if key in ("ok", ""):
        return Msg(value="ok")
    if key == "not_found":
        context.abort(C.NOT_FOUND, "no such user")
    context.set_trailing_metadata(_trailers(key))
    context.abort(C.UNAVAILABLE, "later")
    raise AssertionError("abort returned")  # pragma: no cover


async def _aio_unary(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> Msg:
    key = request.value.split("#")[0]
    CALLS.seen(request.value)
    if key == "slow":
        await asyncio.sleep(5)
        return Msg(value="late")
    if key in ("ok", ""):
        return Msg(value="ok")
    if key == "not_found":
        await context.abort(C.NOT_FOUND, "no such user")
    await context.abort(C.UNAVAILABLE, "later", trailing_metadata=_trailers(key))
    raise AssertionError("abort returned")  # pragma: no cover


async def _aio_stream(request: Msg, context: grpc.aio.ServicerContext[Msg, Msg]) -> Any:
    CALLS.seen(request.value)
    yield Msg(value="r0")


def _handler(aio: bool) -> Any:
    codec: dict[str, Any] = {
        "request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString,
    }
    methods = {"Unary": grpc.unary_unary_rpc_method_handler(_aio_unary if aio else _sync_unary, **codec)}
    if aio:
        methods["Stream"] = grpc.unary_stream_rpc_method_handler(_aio_stream, **codec)
    return grpc.method_handlers_generic_handler(SERVICE, methods)


class RawServer:
    """A plain grpc server (no grpc_terminal interceptor): only what the handler sends goes out."""

    def __init__(self, kind: str, loop: LoopThread) -> None:
        self.kind, self.loop = kind, loop
        if kind == "sync":
            self.server: Any = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            self.server.add_generic_rpc_handlers((_handler(aio=False),))
            self.port = self.server.add_insecure_port("127.0.0.1:0")
            self.server.start()
        else:

            async def start() -> tuple[Any, int]:
                server = grpc.aio.server()
                server.add_generic_rpc_handlers((_handler(aio=True),))
                port = server.add_insecure_port("127.0.0.1:0")
                await server.start()
                return server, port

            self.server, self.port = loop.run(start())

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.kind == "sync":
            self.server.stop(None)
        else:
            self.loop.run(self.server.stop(None))


@pytest.fixture(scope="module", params=["sync", "aio"])
def raw_server(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[RawServer]:
    server = RawServer(request.param, loop_thread)
    yield server
    server.stop()


_serial = iter(range(10**9))


def fresh(key: str) -> str:
    """``key`` made unique, so each test counts its own calls."""
    return f"{key}#{next(_serial)}"


def sync_stub(channel: grpc.Channel) -> Any:
    return channel.unary_unary(
        f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString
    )


def history(exc: BaseException) -> RetryHistory:
    h = getattr(exc, "retry_history", None)
    assert isinstance(h, RetryHistory), exc
    return h


def policy(**kwargs: Any) -> RetryPolicy:
    kwargs.setdefault("initial_backoff", 0.01)
    kwargs.setdefault("max_backoff", 0.05)
    return RetryPolicy(**kwargs)


def assert_gave_up(err: BaseException, key: str, started: float) -> None:
    assert isinstance(err, gt.Unavailable), repr(err)
    h = history(err)
    assert (h.count, h.stopped, h.waits) == (1, StopReason.SERVER_DELAY_TOO_LONG, ())
    assert "stopped (server delay too long" in err.__notes__[-1]
    assert CALLS.counts[key] == 1
    assert time.monotonic() - started < 5


# -- 10: an absurd server delay: the policy gives up at once, it never crashes nor sleeps for years ---


@pytest.mark.parametrize("kind", ABSURD)
def test_call_gives_up_at_once_on_an_absurd_delay(raw_server: RawServer, kind: str) -> None:
    key = fresh(kind)
    with grpc.insecure_channel(raw_server.target) as channel:
        started = time.monotonic()
        with pytest.raises(gt.Unavailable) as info:
            policy().call(sync_stub(channel), Msg(value=key), timeout=5)
    assert_gave_up(info.value, key, started)


@pytest.mark.parametrize("kind", [PUSHBACK_13, INFO_11])
def test_decorator_gives_up_at_once_on_an_absurd_delay(raw_server: RawServer, kind: str) -> None:
    key = fresh(kind)
    with grpc.insecure_channel(raw_server.target) as channel:
        stub = sync_stub(channel)

        @policy()
        def grant(value: str) -> Msg:
            return stub(Msg(value=value), timeout=5)  # type: ignore[no-any-return]

        started = time.monotonic()
        with pytest.raises(gt.Unavailable) as info:
            grant(key)
    assert_gave_up(info.value, key, started)


@pytest.mark.parametrize("kind", ABSURD)
def test_acall_and_async_decorator_give_up_at_once(
    raw_server: RawServer, loop_thread: LoopThread, kind: str
) -> None:
    keys = [fresh(kind), fresh(kind)]

    async def go() -> list[BaseException]:
        errors: list[BaseException] = []
        async with grpc.aio.insecure_channel(raw_server.target) as channel:
            stub = channel.unary_unary(
                f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )

            @policy()
            async def grant(value: str) -> Msg:
                return await stub(Msg(value=value), timeout=5)  # type: ignore[no-any-return]

            for attempt in (policy().acall(stub, Msg(value=keys[0]), timeout=5), grant(keys[1])):
                try:
                    await asyncio.wait_for(attempt, 5)
                except Exception as exc:
                    errors.append(exc)
        return errors

    started = time.monotonic()
    errors = loop_thread.run(go(), timeout=15)
    assert len(errors) == 2
    for err, key in zip(errors, keys, strict=True):
        assert_gave_up(err, key, started)


@pytest.mark.parametrize("kind", ABSURD)
def test_interceptors_give_up_at_once(raw_server: RawServer, loop_thread: LoopThread, kind: str) -> None:
    sync_key, aio_key = fresh(kind), fresh(kind)
    started = time.monotonic()
    with grpc.insecure_channel(raw_server.target) as raw:
        channel = gt.intercept_channel(raw, retry=policy())
        with pytest.raises(gt.Unavailable) as info:
            sync_stub(channel)(Msg(value=sync_key), timeout=5)
    assert_gave_up(info.value, sync_key, started)

    async def go() -> BaseException | None:
        async with grpc.aio.insecure_channel(
            raw_server.target, interceptors=gt.aio_interceptors(retry=policy())
        ) as channel:
            stub = channel.unary_unary(
                f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            try:
                await asyncio.wait_for(stub(Msg(value=aio_key), timeout=5), 5)
            except Exception as exc:
                return exc
        return None

    started = time.monotonic()
    err = loop_thread.run(go(), timeout=15)
    assert err is not None
    assert_gave_up(err, aio_key, started)


def test_a_pushback_past_int64_from_a_real_server_is_one_attempt(raw_server: RawServer) -> None:
    key = fresh(PUSHBACK_400)
    with grpc.insecure_channel(raw_server.target) as channel, pytest.raises(gt.Unavailable) as info:
        policy().call(sync_stub(channel), Msg(value=key), timeout=5)
    assert history(info.value).count == 1 and CALLS.counts[key] == 1


def test_a_400_digit_pushback_never_crashes_the_policy() -> None:
    error = Relayed("proxied")
    waits: list[float] = []
    with pytest.raises(type(error)) as info:
        RetryPolicy(sleep=waits.append).call(_raiser(error))
    assert history(info.value).stopped is StopReason.SERVER_DELAY_TOO_LONG and waits == []

    async def go() -> None:
        with pytest.raises(type(error)):
            await RetryPolicy(async_sleep=_no_async_sleep).acall(_araiser(error))

    asyncio.run(go())


async def _no_async_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}")


def _araiser(err: BaseException) -> Callable[[], Any]:
    async def fn() -> None:
        raise err

    return fn


def test_ceiling_is_the_policy_field_and_a_delay_under_it_is_a_floor(raw_server: RawServer) -> None:
    waits: list[float] = []
    with grpc.insecure_channel(raw_server.target) as channel:
        stub = sync_stub(channel)
        # 2 s is over a 1 s ceiling: one attempt, no wait
        key = fresh("info:2")
        with pytest.raises(gt.Unavailable) as info:
            policy(max_server_delay=1, sleep=waits.append).call(stub, Msg(value=key), timeout=5)
        assert history(info.value).stopped is StopReason.SERVER_DELAY_TOO_LONG and waits == []
        assert "the server asked for 2s" in info.value.__notes__[-1]
        # at the ceiling exactly: honoured, as a floor over the 0.01 s backoff
        key = fresh("info:2")
        with pytest.raises(gt.Unavailable) as info:
            at_ceiling = policy(max_server_delay=2, max_attempts=2, sleep=waits.append)
            at_ceiling.call(stub, Msg(value=key), timeout=5)
        assert history(info.value).stopped is StopReason.EXHAUSTED
        assert waits == [2.0] and CALLS.counts[key] == 2
    assert RetryPolicy().max_server_delay == 300.0


def test_a_classification_that_raises_never_escapes_the_policy() -> None:
    err = Unreadable("broken")
    verdict = RetryPolicy().verdict(err)
    assert verdict.retryable and verdict.code is C.UNAVAILABLE
    waits: list[float] = []
    with pytest.raises(Unreadable) as info:
        RetryPolicy(max_attempts=2, sleep=waits.append).call(_raiser(err))
    # an unknowable wait is too long; a classifier that shrugs it off gives an ordinary retry
    assert history(info.value).stopped in (StopReason.SERVER_DELAY_TOO_LONG, StopReason.EXHAUSTED)
    assert all(w < 1 for w in waits)


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"slept {seconds}")


def _raiser(err: BaseException) -> Callable[[], None]:
    def fn() -> None:
        raise err

    return fn


@pytest.mark.parametrize(
    "kwargs",
    [{"max_backoff": 1e300}, {"timeout": 1e300}, {"timeout": 1e12}, {"max_backoff": 1e12},
     {"initial_backoff": 10**400, "max_backoff": 10**400}, {"multiplier": 10**400},
     {"max_server_delay": -1}, {"max_server_delay": float("nan")}, {"max_server_delay": float("inf")},
     {"max_server_delay": 1e300}, {"max_server_delay": True}, {"jitter": float("nan")}],
)
def test_durations_past_grpcs_maximum_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each field has its own message
        RetryPolicy(**kwargs)


def test_backoff_never_overflows_and_stays_under_max_backoff() -> None:
    p = RetryPolicy(initial_backoff=1, max_backoff=MAX_DURATION, multiplier=10)
    started = time.monotonic()
    for retry in (1, 2, 400, 10**6, 10**9, 10**400):
        assert 0 < p.backoff(retry) <= MAX_DURATION
    assert p.backoff(10**400) == MAX_DURATION
    assert RetryPolicy(multiplier=1e300, max_backoff=7).backoff(3) == 7
    assert RetryPolicy(initial_backoff=0, max_backoff=0).backoff(10**9) == 0
    assert time.monotonic() - started < 1  # no giant integer powers


def test_the_longest_policy_runs_with_the_default_sleep() -> None:
    # every wait the longest valid policy can ask for is sleepable (the default sleep is piecewise)
    p = RetryPolicy(initial_backoff=MAX_DURATION, max_backoff=MAX_DURATION, max_server_delay=MAX_DURATION)
    run = RetryRun(p)
    assert run.failed(gt.Unavailable("down")) == pytest.approx(MAX_DURATION * (1 - p.jitter), rel=0.25)
    cancelled = threading.Event()
    threading.Timer(0.05, cancelled.set).start()
    started = time.monotonic()
    assert run.sleep(MAX_DURATION, cancelled) is True  # time.sleep alone would raise OverflowError
    assert time.monotonic() - started < 2


# -- tenacity, api-core, Temporal: the real packages, the same absurd delays -------------------------


def _raw_error(raw_server: RawServer, kind: str) -> grpc.RpcError:
    with grpc.insecure_channel(raw_server.target) as channel:
        try:
            sync_stub(channel)(Msg(value=fresh(kind)), timeout=5)
        except grpc.RpcError as exc:
            return exc
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("kind", ABSURD)
def test_tenacity_gives_up_at_once(raw_server: RawServer, loop_thread: LoopThread, kind: str) -> None:
    tenacity = pytest.importorskip("tenacity")
    from grpc_terminal.tenacity import retry_if_retryable, wait_retry_info

    key = fresh(kind)
    with grpc.insecure_channel(raw_server.target) as raw:
        stub = sync_stub(gt.intercept_channel(raw))
        retrying = tenacity.Retrying(
            retry=retry_if_retryable(), wait=wait_retry_info(tenacity.wait_fixed(0.01)),
            stop=tenacity.stop_after_attempt(5), reraise=True,
        )
        with pytest.raises(gt.Unavailable):
            retrying(stub, Msg(value=key), timeout=5)
    assert CALLS.counts[key] == 1

    # a retry predicate of the user's own: the wait is the ceiling, never the server's years
    waits: list[float] = []
    key = fresh(kind)
    with grpc.insecure_channel(raw_server.target) as raw:
        stub = sync_stub(gt.intercept_channel(raw))
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(gt.Unavailable),
            wait=wait_retry_info(tenacity.wait_fixed(0.01), max_server_delay=30), sleep=waits.append,
            stop=tenacity.stop_after_attempt(2), reraise=True,
        )
        with pytest.raises(gt.Unavailable):
            retrying(stub, Msg(value=key), timeout=5)
    assert waits == [30.0] and CALLS.counts[key] == 2

    async def go() -> int:
        key = fresh(kind)
        async with grpc.aio.insecure_channel(raw_server.target, interceptors=gt.aio_interceptors()) as ch:
            method = ch.unary_unary(
                f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            retrying = tenacity.AsyncRetrying(
                retry=retry_if_retryable(), wait=wait_retry_info(), stop=tenacity.stop_after_attempt(5),
                reraise=True,
            )

            async def grant(value: str) -> Msg:
                # an async def: given the stub itself, AsyncRetrying calls it like a sync function
                return await method(Msg(value=value), timeout=5)  # type: ignore[no-any-return]

            with pytest.raises(gt.Unavailable):
                await asyncio.wait_for(retrying(grant, key), 5)
        return CALLS.counts[key]

    assert loop_thread.run(go(), timeout=15) == 1


def test_tenacity_ceiling_is_validated_and_a_short_delay_is_kept() -> None:
    pytest.importorskip("tenacity")
    from grpc_terminal.tenacity import retry_if_retryable, wait_retry_info

    with pytest.raises(ValueError, match="max_server_delay"):
        wait_retry_info(max_server_delay=float("inf"))
    with pytest.raises(ValueError, match="max_server_delay"):
        retry_if_retryable(max_server_delay=-1)
    assert wait_retry_info().max_server_delay == retry_if_retryable().max_server_delay == 300.0


@pytest.mark.parametrize("kind", ABSURD)
def test_temporal_marks_an_absurd_delay_non_retryable(raw_server: RawServer, kind: str) -> None:
    pytest.importorskip("temporalio")
    from grpc_terminal.temporal import TerminalErrorInterceptor, to_application_error

    raw = _raw_error(raw_server, kind)
    for exc in (raw, gt.from_rpc_error(raw)):
        app = to_application_error(exc)
        assert app is not None and app.non_retryable and app.type == "UNAVAILABLE"
        assert app.next_retry_delay is None
        detail = app.details[0]
        assert detail["stopped"] == "server_delay_too_long" and detail["code"] == "UNAVAILABLE"
        if kind in (PUSHBACK_13, INFO_11):
            assert detail["retry_delay"] == pytest.approx(1e10 if kind == PUSHBACK_13 else 1e11)
    # under the ceiling the delay is Temporal's next_retry_delay
    short = to_application_error(gt.Unavailable("later", retry_delay=2))
    assert short is not None and short.next_retry_delay == datetime.timedelta(seconds=2)
    assert not short.non_retryable
    longer = to_application_error(gt.Unavailable("later", retry_delay=400), max_server_delay=3600)
    assert longer is not None and longer.next_retry_delay == datetime.timedelta(seconds=400)
    with pytest.raises(ValueError, match="max_server_delay"):
        TerminalErrorInterceptor(max_server_delay=float("nan"))


@pytest.mark.parametrize("kind", ABSURD)
def test_api_core_predicate_never_raises(raw_server: RawServer, kind: str) -> None:
    pytest.importorskip("google.api_core")
    from google.api_core import exceptions as api_exceptions

    from grpc_terminal.api_core import if_retryable, retryable_predicate

    raw = _raw_error(raw_server, kind)
    wrapped = api_exceptions.from_grpc_error(raw)  # type: ignore[no-untyped-call]
    for exc in (raw, wrapped, gt.from_rpc_error(raw)):
        assert if_retryable(exc) is False  # retrying sooner than the server asked goes against it
    assert retryable_predicate(max_server_delay=MAX_DURATION)(gt.Unavailable("x", retry_delay=400)) is True
    assert if_retryable(gt.Unavailable("x", retry_delay=400)) is False
    assert if_retryable(gt.Unavailable("x", retry_delay=4)) is True


# -- 13: service_config emits only what grpc accepts, or refuses -----------------------------------


def _call_through(raw_server: RawServer, config: str) -> str:
    options = [("grpc.service_config", config), ("grpc.enable_retries", 1)]
    with grpc.insecure_channel(raw_server.target, options=options) as channel:
        return str(sync_stub(channel)(Msg(value=fresh("ok")), timeout=5).value)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: RetryPolicy(budget=RetryBudget(token_ratio=0.0004)), "token_ratio"),
        (lambda: RetryPolicy(budget=RetryBudget(max_tokens=2.5)), "max_tokens"),
        (lambda: RetryPolicy(budget=RetryBudget(max_tokens=0.5)), "max_tokens"),
    ],
    ids=["ratio-0.0004", "tokens-2.5", "tokens-0.5"],
)
def test_service_config_refuses_what_grpc_cannot_express(make: Callable[[], RetryPolicy], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        service_config(make())


@pytest.mark.parametrize(
    "kwargs",
    [{"max_backoff": 1e12}, {"timeout": 1e12}, {"initial_backoff": 1e12, "max_backoff": 1e12}],
)
def test_policies_past_grpcs_longest_duration_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=str(int(MAX_DURATION))):
        RetryPolicy(**kwargs)


EDGE_POLICIES = {
    "longest-durations": RetryPolicy(
        max_attempts=4, initial_backoff=MAX_DURATION, max_backoff=MAX_DURATION, timeout=MAX_DURATION,
    ),
    "huge-multiplier": RetryPolicy(max_attempts=3, multiplier=1e300),
    "tiny-backoffs": RetryPolicy(max_attempts=3, initial_backoff=1e-12, max_backoff=1e-10, timeout=1e-3 + 5),
    "zero-backoffs": RetryPolicy(max_attempts=3, initial_backoff=0, max_backoff=0),
    "ratio-3-decimals": RetryPolicy(budget=RetryBudget(max_tokens=1, token_ratio=0.0015)),
    "ratio-over-tokens": RetryPolicy(budget=RetryBudget(max_tokens=1000, token_ratio=1e20)),
    "ratio-exponent": RetryPolicy(budget=RetryBudget(max_tokens=3, token_ratio=1e-3)),
    "no-retryable-code": RetryPolicy(max_attempts=3, retryable_codes=frozenset()),
}


@pytest.mark.parametrize("name", list(EDGE_POLICIES))
def test_service_config_of_edge_policies_is_accepted_by_grpc(raw_server: RawServer, name: str) -> None:
    # duplicate names too: gRPC rejects a config naming one path twice
    config = service_config(
        EDGE_POLICIES[name], services=["a.B", "a.B", SERVICE], methods=[(SERVICE, "Unary")] * 2
    )
    assert _call_through(raw_server, config) == "ok"


def test_service_config_values() -> None:
    config = json.loads(service_config(EDGE_POLICIES["longest-durations"]))
    retry = config["methodConfig"][0]["retryPolicy"]
    assert retry["initialBackoff"] == retry["maxBackoff"] == "315576000000s"
    assert config["methodConfig"][0]["timeout"] == "315576000000s"
    tiny = json.loads(service_config(EDGE_POLICIES["tiny-backoffs"]))["methodConfig"][0]
    assert tiny["retryPolicy"]["initialBackoff"] == "0.01s" and tiny["timeout"] == "5.001s"
    assert json.loads(service_config(EDGE_POLICIES["ratio-3-decimals"]))["retryThrottling"] == {
        "maxTokens": 1, "tokenRatio": 0.001,
    }
    assert json.loads(service_config(EDGE_POLICIES["ratio-over-tokens"]))["retryThrottling"] == {
        "maxTokens": 1000, "tokenRatio": 1000.0,
    }
    no_codes = json.loads(service_config(EDGE_POLICIES["no-retryable-code"]))
    assert "retryPolicy" not in no_codes["methodConfig"][0]
    names = json.loads(service_config(RetryPolicy(), services=["a.B", "a.B"], methods=[("a.B", "M")] * 2))
    assert names["methodConfig"][0]["name"] == [{"service": "a.B"}, {"service": "a.B", "method": "M"}]
    with pytest.raises(TypeError, match="not one str"):
        service_config(RetryPolicy(), services="a.B")
    with pytest.raises(ValueError, match="service name"):
        service_config(RetryPolicy(), services=[""])


def test_a_config_grpc_rejects_fails_every_call(raw_server: RawServer) -> None:
    # the control: what the old service_config wrote for token_ratio=0.0004 breaks the channel
    throttling = {"maxTokens": 10, "tokenRatio": 0.0}
    bad = json.dumps({"methodConfig": [{"name": [{}]}], "retryThrottling": throttling})
    with pytest.raises(grpc.RpcError) as info:
        _call_through(raw_server, bad)
    assert info.value.code() is C.INVALID_ARGUMENT


# -- 14: a pending aio call is refused with a TypeError naming acall, and cancelled -----------------


@pytest.fixture(scope="module")
def aio_server(loop_thread: LoopThread) -> Iterator[RawServer]:
    server = RawServer("aio", loop_thread)
    yield server
    server.stop()


def test_call_refuses_an_aio_call_and_cancels_it(aio_server: RawServer, loop_thread: LoopThread) -> None:
    raw_server = aio_server

    async def go() -> tuple[list[Any], list[str]]:
        made: list[Any] = []
        messages: list[str] = []
        async with grpc.aio.insecure_channel(raw_server.target) as channel:
            unary = channel.unary_unary(
                f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            stream = channel.unary_stream(
                f"/{SERVICE}/Stream", request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )

            def start(value: str) -> Any:
                call = unary(Msg(value=value), timeout=5)
                made.append(call)
                return call

            def start_stream(value: str) -> Any:
                call = stream(Msg(value=value), timeout=5)
                made.append(call)
                return call

            @policy()
            def decorated(value: str) -> object:
                return start(value)

            async def coroutine_fn() -> str:
                return "never run"

            attempts: list[Callable[[], object]] = [
                lambda: policy().call(start, fresh("slow")),
                lambda: policy().call(unary, Msg(value=fresh("slow")), timeout=5),
                lambda: decorated(fresh("slow")),
                lambda: policy().call(start_stream, fresh("ok")),
                lambda: policy().call(coroutine_fn),
            ]
            for attempt in attempts:
                with pytest.raises(TypeError, match="acall") as info:
                    attempt()
                messages.append(str(info.value))
            await asyncio.sleep(0.05)
        return made, messages

    made, messages = loop_thread.run(go(), timeout=15)
    assert len(made) == 3 and all(call.cancelled() for call in made)
    assert "returned an awaitable" in messages[0]


# -- 21: "terminal" is the ProvisionFailureDetail contract; the rest is "not retryable" ---------------


@pytest.mark.parametrize(
    "error",
    [gt.NotFound("gone"), gt.InvalidArgument("bad"), ValueError("not grpc"), gt.PermissionDenied("no"),
     gt.UserNotProvisionable("suspended"), gt.OperationNotPermitted("policy"),
     gt.terminal_error(gt.Reason.LICENSE_EXHAUSTED, "100 of 100")],
    ids=lambda e: type(e).__name__,
)
def test_stop_reason_terminal_iff_is_terminal(error: BaseException) -> None:
    with pytest.raises(type(error)) as info:
        RetryPolicy(sleep=_no_sleep).call(_raiser(error))
    h = history(info.value)
    terminal = gt.is_terminal(info.value)
    assert h.stopped is (StopReason.TERMINAL if terminal else StopReason.NOT_RETRYABLE)
    note = info.value.__notes__[-1]
    assert ("stopped (terminal)" in note) is terminal
    assert ("stopped (not retryable)" in note) is not terminal


@pytest.mark.parametrize("combo", [("sync", "sync"), ("aio", "aio")], ids=["sync", "aio"])
def test_not_found_through_the_interceptors_is_not_retryable(
    loop_thread: LoopThread, combo: tuple[str, str]
) -> None:
    p = Pair(*combo, loop_thread, client_options={"retry": policy()})
    try:
        for raised, stopped in ((gt.NotFound("no such user"), StopReason.NOT_RETRYABLE),
                                (gt.UserNotProvisionable("suspended"), StopReason.TERMINAL)):
            scenario = Scenario(raise_=raised)
            out = p.run("unary_unary", scenario)
            assert out.error is not None and len(scenario.calls) == 1
            assert history(out.error).stopped is stopped
            assert gt.is_terminal(out.error) is (stopped is StopReason.TERMINAL)
    finally:
        p.close()


def test_custom_predicate_saying_no_is_not_terminal() -> None:
    with pytest.raises(gt.Unavailable) as info:
        RetryPolicy(retryable=lambda e: False, sleep=_no_sleep).call(_raiser(gt.Unavailable("down")))
    assert history(info.value).stopped is StopReason.NOT_RETRYABLE


# -- for 11: a wait the interceptors can cut short ---------------------------------------------------


def test_run_sleep_is_cut_short_by_cancel() -> None:
    run = RetryRun(RetryPolicy())
    cancelled = threading.Event()
    threading.Timer(0.05, cancelled.set).start()
    started = time.monotonic()
    assert run.sleep(20, cancelled) is True
    assert time.monotonic() - started < 2
    assert run.sleep(0.01, threading.Event()) is False
    waits: list[float] = []
    injected = RetryRun(RetryPolicy(sleep=waits.append))
    assert injected.sleep(3, threading.Event()) is False and waits == [3]
    done = threading.Event()
    done.set()
    assert injected.sleep(3, done) is True and waits == [3]  # already cancelled: no wait at all


@pytest.mark.asyncio
async def test_run_async_sleep_is_cut_short_by_cancel() -> None:
    run = RetryRun(RetryPolicy())
    cancelled = asyncio.Event()
    asyncio.get_running_loop().call_later(0.05, cancelled.set)
    started = time.monotonic()
    assert await asyncio.wait_for(run.async_sleep(1e10, cancelled), 5) is True
    assert time.monotonic() - started < 2
    assert await run.async_sleep(0.01, asyncio.Event()) is False
    assert await run.async_sleep(0.01) is False


# -- attacker trial: a zero backoff must not make grpc's own retry hang ---------------------------------


def test_a_zero_backoff_service_config_never_leaves_calls_waiting_out_their_deadline() -> None:
    import json

    from google.protobuf import wrappers_pb2

    from grpc_terminal.testing import loopback_server

    text = wrappers_pb2.StringValue

    def fail(request: wrappers_pb2.StringValue, context: grpc.ServicerContext) -> wrappers_pb2.StringValue:
        raise gt.Unavailable("down")

    handlers = grpc.method_handlers_generic_handler("t.Zero", {"M": grpc.unary_unary_rpc_method_handler(
        fail, request_deserializer=text.FromString, response_serializer=text.SerializeToString)})
    config = gt.service_config(gt.RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0))
    assert json.loads(config)["methodConfig"][0]["retryPolicy"]["initialBackoff"] == "0.01s"
    with loopback_server(handlers) as lb, grpc.insecure_channel(
        lb.target, options=[("grpc.service_config", config), ("grpc.enable_retries", 1)]
    ) as channel:
        call = channel.unary_unary("/t.Zero/M", request_serializer=text.SerializeToString,
                                   response_deserializer=text.FromString)
        codes = []
        for _ in range(10):
            try:
                call(text(value="x"), timeout=3)
            except grpc.RpcError as err:
                codes.append(err.code())
    assert codes == [grpc.StatusCode.UNAVAILABLE] * 10  # not DEADLINE_EXCEEDED
