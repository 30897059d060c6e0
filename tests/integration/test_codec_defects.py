"""Issue 12, codec, classification and errors: each test failed before its fix.

* 2: the cause/group walk visits every exception once, with no count limit;
* 3: details with unknown fields (relayed from a newer peer) never push the
  trailers over the budget;
* 5: faults of the client's own configuration or code are terminal;
* 10: absurd server delays never crash classification;
* 22, 23: reasons by name, printed as names, ``TerminalError.reason`` always
  a :class:`~grpc_terminal.Reason`;
* 24: every argument of the error classes is documented.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import math
import re
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import duration_pb2, wrappers_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpc_terminal as gt
from grpc_terminal._classify import MAX_SERVER_DELAY, _walk, find_status
from grpc_terminal._decode import decode
from grpc_terminal._encode import encode
from grpc_terminal._errors import StatusOptions, class_for
from grpc_terminal._problem import exit_code, problem
from grpc_terminal._reason import ProvisionFailureDetail, Reason, is_known_reason
from grpc_terminal._trailers import MIN_BUDGET, PUSHBACK_KEY, STATUS_DETAILS_KEY, TRAILER_BUDGET, trailer_size
from grpc_terminal.testing import loopback_server

from fakes import Received, varint
from strategies import status_errors

C = grpc.StatusCode
Msg = wrappers_pb2.StringValue
PFD_URL = "type.googleapis.com/c1.connector.v2.ProvisionFailureDetail"


def unknown_field(number: int, size: int) -> bytes:
    """A well-formed length-delimited field ``number`` of ``size`` bytes (unknown to every detail)."""
    return varint(number << 3 | 2) + varint(size) + b"\x07" * size


class FakeSleep:
    """A sleep that only records: retrying tests take no time."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def async_sleep(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(sleep: FakeSleep, attempts: int = 5) -> gt.RetryPolicy:
    return gt.RetryPolicy(
        max_attempts=attempts, initial_backoff=0.001, sleep=sleep, async_sleep=sleep.async_sleep
    )


# -- 2: walk every exception once, no count limit -----------------------------------------


def chain(depth: int, bottom: BaseException) -> BaseException:
    """``bottom`` under ``depth`` wrappers, each the ``__cause__`` of the next."""
    exc = bottom
    for i in range(depth):
        outer = RuntimeError(f"level {i}")
        outer.__cause__ = exc
        exc = outer
    return exc


def test_a_group_of_100_with_the_terminal_member_last_is_terminal() -> None:
    members: list[Exception] = [gt.Unavailable(f"shard {i}") for i in range(99)]
    members.append(gt.UserNotProvisionable("jdoe is SUSPENDED"))
    group = ExceptionGroup("tasks", members)
    verdict = gt.classify(group)
    assert (verdict.retryable, verdict.rule) == (False, "provision_failure_detail")
    assert gt.is_terminal(group) and not gt.is_retryable(group)
    pfd = gt.failure_detail(group)
    assert pfd is not None and pfd.detail == "jdoe is SUSPENDED"


@pytest.mark.asyncio
async def test_a_real_task_group_of_100_is_not_retried() -> None:
    sleep = FakeSleep()
    runs: list[int] = []

    async def work() -> None:
        runs.append(1)

        async def fail(i: int) -> None:
            if i == 99:
                raise gt.UserNotProvisionable("jdoe is SUSPENDED")
            raise gt.Unavailable(f"shard {i}")

        async with asyncio.TaskGroup() as tg:
            for i in range(100):
                tg.create_task(fail(i))

    with pytest.raises(BaseExceptionGroup) as info:
        await asyncio.wait_for(policy(sleep).acall(work), 10)
    assert len(info.value.exceptions) == 100
    assert gt.is_terminal(info.value)
    assert runs == [1] and sleep.waits == []  # one attempt, no wait


def test_a_70_deep_cause_chain_keeps_the_detail() -> None:
    err = chain(70, gt.LicenseExhausted("Jira: 100 of 100 seats"))
    pfd = gt.failure_detail(err)
    assert pfd is not None and pfd.detail == "Jira: 100 of 100 seats"
    assert gt.classify(err).rule == "provision_failure_detail"
    assert gt.exit_code(err) == gt.EXIT_CODES["LICENSE_EXHAUSTED"]


def test_a_100000_deep_chain_and_nesting_need_no_recursion() -> None:
    deep = chain(100_000, gt.ValidationFailure("bad"))
    assert gt.is_terminal(deep)
    assert type(find_status(deep)) is gt.ValidationFailure
    nested: Exception = gt.Unavailable("down", retry_delay=2)
    for _ in range(100_000):
        nested = ExceptionGroup("g", [nested])
    verdict = gt.classify(nested)
    assert (verdict.retryable, verdict.rule, verdict.delay) == (True, "retry_info", 2.0)


def test_precedence_holds_however_deep_the_detail_is() -> None:
    # A retryable failure first, the detail under a cause of a member of a nested group.
    group = BaseExceptionGroup(
        "outer",
        [gt.Unavailable("first"), *[ValueError(i) for i in range(200)],
         BaseExceptionGroup("inner", [chain(150, gt.OperationNotPermitted("policy"))])],
    )
    assert gt.classify(group).rule == "provision_failure_detail"
    assert type(find_status(group)) is gt.Unavailable  # the first gRPC failure, breadth first


def test_the_walk_visits_each_exception_once_and_ends_on_cycles() -> None:
    shared = gt.Unavailable("shared")
    members = []
    for i in range(5000):
        member = ValueError(i)
        member.__cause__ = shared
        members.append(member)
    group = ExceptionGroup("g", members + members[:10])  # repeated members too
    seen = [id(e) for e in _walk(group)]
    assert len(seen) == len(set(seen)) == 1 + 5000 + 1
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__context__, b.__context__ = b, a
    assert [str(e) for e in _walk(a)] == ["a", "b"]
    assert not gt.is_terminal(a) and gt.classify(a).rule == "not_grpc"
    b.__cause__ = gt.UserNotProvisionable("x")
    assert gt.is_terminal(a)


def test_a_raw_rpc_error_deep_in_a_chain_is_decoded() -> None:
    pfd = ProvisionFailureDetail(reason=ProvisionFailureDetail.REASON_USER_NOT_PROVISIONABLE, detail="d")
    status = status_pb2.Status(code=C.FAILED_PRECONDITION.value[0], message="m")
    status.details.add().Pack(pfd)
    raw = Received(C.FAILED_PRECONDITION, "m", ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    err = chain(500, raw)
    assert gt.is_terminal(err)
    assert type(find_status(err)) is gt.UserNotProvisionable


# -- 3: unknown fields never push the trailers over the budget ----------------------------


def relayed_pfd_status(unknown_bytes: int) -> status_pb2.Status:
    """What a newer peer sends: a ProvisionFailureDetail (and ErrorInfo) with fields we do not know."""
    pfd = ProvisionFailureDetail(
        reason=ProvisionFailureDetail.REASON_USER_NOT_PROVISIONABLE, detail="jdoe is SUSPENDED"
    )
    status = status_pb2.Status(code=C.FAILED_PRECONDITION.value[0], message="jdoe is SUSPENDED")
    packed = status.details.add()
    packed.type_url = PFD_URL
    packed.value = pfd.SerializeToString() + unknown_field(17, unknown_bytes)
    info = status.details.add()
    info.Pack(ed.ErrorInfo(reason="USER_NOT_PROVISIONABLE", domain="upstream.example"))
    info.value += unknown_field(40, 200)
    return status


@contextlib.contextmanager
def plain_server(handler: Callable[[Any, grpc.ServicerContext], Any], service: str = "t.Up") -> Iterator[str]:
    """A plain grpc server (no grpc-terminal) with one unary method ``/<service>/Call``."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((_generic(service, handler),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None).wait(5)


def _generic(
    service: str, handler: Callable[[Any, grpc.ServicerContext], Any]
) -> grpc.GenericRpcHandler[Any, Any]:
    method = grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString
    )
    return grpc.method_handlers_generic_handler(service, {"Call": method})


def _unary(channel: Any, service: str, **codec: Any) -> Any:
    codec.setdefault("request_serializer", Msg.SerializeToString)
    codec.setdefault("response_deserializer", Msg.FromString)
    return channel.unary_unary(f"/{service}/Call", **codec)


@pytest.mark.parametrize("aio", [False, True], ids=["sync-relay", "aio-relay"])
def test_a_relayed_detail_with_unknown_fields_arrives_terminal_and_within_budget(aio: bool) -> None:
    # 13 KB of a newer peer's field: 17 KB base64, over grpc's 16 KiB hard limit if re-sent.
    status = relayed_pfd_status(13_000)

    def upstream(request: Msg, context: grpc.ServicerContext) -> Msg:
        context.abort_with_status(rpc_status.to_status(status))
        raise AssertionError("unreachable")

    relayed: list[gt.StatusError] = []
    with plain_server(upstream) as target:
        # The relay accepts big trailers from its upstream; its own callers keep grpc's defaults.
        up_raw = grpc.insecure_channel(
            target,
            options=[("grpc.max_metadata_size", 1 << 20), ("grpc.absolute_max_metadata_size", 1 << 20)],
        )
        up = _unary(gt.intercept_channel(up_raw), "t.Up")

        def relay(request: Msg, context: grpc.ServicerContext) -> Msg:
            try:
                return up(request, timeout=5)  # type: ignore[no-any-return]
            except gt.StatusError as err:
                relayed.append(err)
                raise

        try:
            with (
                loopback_server(_generic("t.Relay", relay), aio=aio) as lb,
                pytest.raises(gt.StatusError) as info,
            ):
                _unary(lb.channel, "t.Relay")(Msg(value="grant"), timeout=5)
        finally:
            up_raw.close()
    (seen,) = relayed
    # the peer's field reached the relay
    assert seen.failure_detail is not None and seen.failure_detail.ByteSize() > 13_000
    err = info.value
    assert type(err) is gt.UserNotProvisionable, err
    assert err.detail == "jdoe is SUSPENDED"
    assert err.error_info is not None and err.error_info.reason == "USER_NOT_PROVISIONABLE"
    assert trailer_size(err.code(), err.details(), err.trailing_metadata()) <= TRAILER_BUDGET


def _with_unknown_fields(
    err: gt.StatusError, sizes: list[int], hostile_reason: str | None
) -> gt.StatusError:
    """``err`` as a client decodes it from a peer that added unknown fields to every detail."""
    whole = encode(err, debug=True, budget=10**9)
    trailers = dict(whole.trailing_metadata)
    raw = trailers[STATUS_DETAILS_KEY]
    assert isinstance(raw, bytes)
    status = status_pb2.Status.FromString(raw)
    for i, packed in enumerate(status.details):
        if packed.type_url.endswith("ErrorInfo") and hostile_reason is not None:
            info = ed.ErrorInfo()
            packed.Unpack(info)
            info.reason = hostile_reason
            packed.Pack(info)
        size = sizes[i % len(sizes)] if sizes else 0
        packed.value += unknown_field(16 + i, size) + varint(30 + i << 3) + varint(2**63)
    md = [(k, v) for k, v in whole.trailing_metadata if k != STATUS_DETAILS_KEY]
    md.append((STATUS_DETAILS_KEY, status.SerializeToString()))
    return decode(whole.code, whole.message, tuple(md))


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    err=status_errors(max_items=30, max_text=400),
    sizes=st.lists(st.integers(0, 30_000), max_size=4),
    hostile_reason=st.none() | st.text(max_size=300),
    metadata=st.lists(
        st.tuples(
            st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.from_regex(r"[ -~]{0,2000}", fullmatch=True)
        ),
        max_size=5,
    ),
    debug=st.booleans(),
    budget=st.sampled_from([TRAILER_BUDGET, 2048, MIN_BUDGET]),
)
def test_encode_never_exceeds_the_budget_even_with_unknown_fields(
    err: gt.StatusError,
    sizes: list[int],
    hostile_reason: str | None,
    metadata: list[tuple[str, str]],
    debug: bool,
    budget: int,
) -> None:
    hostile = _with_unknown_fields(err, sizes, hostile_reason)
    out = encode(hostile, debug=debug, metadata=metadata, budget=budget)
    assert out.size() <= budget
    back = decode(out.code, out.message, out.trailing_metadata)
    assert back.code() is err.code()
    if isinstance(err, gt.TerminalError):
        assert isinstance(back, gt.TerminalError) and back.reason == err.reason
    assert back.error_info is not None
    want = err.error_info.reason if err.error_info is not None and hostile_reason is None else hostile_reason
    assert want is not None and want.startswith(back.error_info.reason)


def test_the_worst_irreducible_status_fits_the_minimum_budget() -> None:
    # Everything as long as a peer can make it, in characters that cost the most.
    wide = "😀\u0000%" * 3000
    status = status_pb2.Status(code=C.PERMISSION_DENIED.value[0], message=wide)
    pfd = status.details.add()
    pfd.type_url = PFD_URL
    pfd.value = (
        ProvisionFailureDetail(detail=wide).SerializeToString()
        + b"\x08" + varint(2**64 - 1)  # reason -1 as a 10-byte varint
        + unknown_field(99, 20_000)
    )
    info = ed.ErrorInfo(reason="😀" * 500, domain="😀" * 500, metadata={f"k{i}": wide for i in range(5)})
    status.details.add().Pack(info)
    status.details.add().Pack(ed.RetryInfo(retry_delay=duration_pb2.Duration(seconds=INT64_MAX, nanos=-1)))
    status.details.add().Pack(ed.RequestInfo(request_id=wide, serving_data=wide))
    received = decode(C.PERMISSION_DENIED, wide, ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    assert isinstance(received, gt.TerminalError)
    for budget in (MIN_BUDGET, TRAILER_BUDGET):
        out = encode(received, budget=budget, metadata=[("x-big", "v" * 10_000)])
        assert out.size() <= budget
        back = decode(out.code, out.message, out.trailing_metadata)
        assert isinstance(back, gt.TerminalError) and back.reason == -1
        assert back.error_info is not None and back.error_info.reason.startswith("😀")


# -- 5: faults of the client's own configuration or code are terminal ----------------------


def _big_reply(calls: list[int]) -> Callable[[Msg, grpc.ServicerContext], Msg]:
    def handler(request: Msg, context: grpc.ServicerContext) -> Msg:
        calls.append(1)
        return Msg(value="y" * 2000)

    return handler


def _raise(data: object) -> Any:
    raise ValueError("this client cannot (de)serialize")


# (id, channel options, request, codec, expected code, rule, server handler runs)
CLIENT_FAULTS: list[tuple[str, list[tuple[str, int]], Msg, dict[str, Any], grpc.StatusCode, str, int]] = [
    ("max-receive", [("grpc.max_receive_message_length", 100)], Msg(value="a"), {},
     C.RESOURCE_EXHAUSTED, "client_message_limit", 1),
    ("max-send", [("grpc.max_send_message_length", 100)], Msg(value="a" * 500), {},
     C.RESOURCE_EXHAUSTED, "client_message_limit", 0),
    ("deserializer", [], Msg(value="a"), {"response_deserializer": _raise},
     C.INTERNAL, "client_serialization", 1),
    ("serializer", [], Msg(value="a"), {"request_serializer": _raise},
     C.INTERNAL, "client_serialization", 0),
]


@pytest.mark.parametrize(
    ("options", "request_", "codec", "code", "rule", "runs"),
    [c[1:] for c in CLIENT_FAULTS],
    ids=[c[0] for c in CLIENT_FAULTS],
)
def test_a_client_side_fault_is_not_retried(
    options: list[tuple[str, int]], request_: Msg, codec: dict[str, Any], code: grpc.StatusCode, rule: str,
    runs: int,
) -> None:
    calls: list[int] = []
    sleep = FakeSleep()
    with loopback_server(_generic("t.Big", _big_reply(calls))) as lb:
        raw = grpc.insecure_channel(lb.target, options=options)
        try:
            stub = _unary(gt.intercept_channel(raw, retry=policy(sleep)), "t.Big", **codec)
            with pytest.raises(gt.StatusError) as info:
                stub(request_, timeout=5)
        finally:
            raw.close()
    err = info.value
    assert err.code() is code
    verdict = gt.classify(err)
    assert (verdict.retryable, verdict.rule) == (False, rule)
    assert len(calls) == runs and sleep.waits == []
    assert err.retry_history is not None and len(err.retry_history.attempts) == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("options", "request_", "runs"),
    [([("grpc.max_receive_message_length", 100)], Msg(value="a"), 1),
     ([("grpc.max_send_message_length", 100)], Msg(value="a" * 500), 0)],
    ids=["max-receive", "max-send"],
)
async def test_a_client_message_limit_is_not_retried_on_aio(
    options: list[tuple[str, int]], request_: Msg, runs: int
) -> None:
    calls: list[int] = []
    sleep = FakeSleep()
    with loopback_server(_generic("t.Big", _big_reply(calls))) as lb:
        channel = grpc.aio.insecure_channel(
            lb.target, options=options, interceptors=gt.aio_interceptors(retry=policy(sleep))
        )
        try:
            with pytest.raises(gt.ResourceExhausted) as info:
                await _unary(channel, "t.Big")(request_, timeout=5)
        finally:
            await channel.close()  # type: ignore[call-arg]
    assert gt.classify(info.value).rule == "client_message_limit"
    assert len(calls) == runs and sleep.waits == []


def test_a_peer_that_explains_its_resource_exhausted_is_still_retried() -> None:
    calls: list[int] = []

    def handler(request: Msg, context: grpc.ServicerContext) -> Msg:
        calls.append(1)
        raise gt.ResourceExhausted("Received message larger than max (9 vs. 8)", retry_delay=0.001)

    sleep = FakeSleep()
    quota = _generic("t.Quota", handler)
    with (
        loopback_server(quota, retry=policy(sleep, attempts=3)) as lb,
        pytest.raises(gt.ResourceExhausted) as info,
    ):
        _unary(lb.channel, "t.Quota")(Msg(value="a"), timeout=5)
    assert gt.classify(info.value).rule == "retry_info"
    assert len(calls) == 3


def test_client_fault_rules_need_a_bare_received_status() -> None:
    message = "Stream removed (CLIENT: Received message larger than max (2003 vs. 100))"
    assert gt.classify(decode(C.RESOURCE_EXHAUSTED, message, ())).rule == "client_message_limit"
    local = decode(C.INTERNAL, "Exception deserializing response!", ())
    assert gt.classify(local).rule == "client_serialization"
    # built by a program, not received: an ordinary retryable code
    assert gt.classify(gt.ResourceExhausted(message)).rule == "code"
    assert gt.classify(gt.Internal("Exception serializing request!")).rule == "code"
    # a peer's rich status: what the peer says counts
    status = status_pb2.Status(code=C.RESOURCE_EXHAUSTED.value[0], message=message)
    received = decode(C.RESOURCE_EXHAUSTED, message, ((STATUS_DETAILS_KEY, status.SerializeToString()),))
    assert gt.classify(received).rule == "code" and gt.is_retryable(received)
    # another code with the same words is not a client fault
    assert gt.classify(decode(C.UNAVAILABLE, message, ())).rule == "code"
    relayed = decode(C.INTERNAL, "server said: Exception deserializing response!", ())
    assert gt.classify(relayed).rule == "code"


# -- 10: absurd server delays never crash and are clamped -----------------------------------


def _received(
    code: grpc.StatusCode, *, pushback: str | None = None, retry_info: duration_pb2.Duration | None = None
) -> Received:
    status = status_pb2.Status(code=code.value[0], message="later")
    if retry_info is not None:
        status.details.add().Pack(ed.RetryInfo(retry_delay=retry_info))
    trailers: list[tuple[str, str | bytes]] = [(STATUS_DETAILS_KEY, status.SerializeToString())]
    if pushback is not None:
        trailers.append((PUSHBACK_KEY, pushback))
    return Received(code, "later", tuple(trailers))


INT64_MAX = 2**63 - 1
# (id, raw error, retryable, expected delay)
ABSURD: list[tuple[str, Received, bool, float | None]] = [
    ("pushback-1e13", _received(C.UNAVAILABLE, pushback=str(10**13)), True, 10**10),
    ("pushback-400-digits", _received(C.UNAVAILABLE, pushback="9" * 400), True, MAX_SERVER_DELAY),
    ("pushback-5000-digits", _received(C.UNAVAILABLE, pushback="7" * 5000), True, MAX_SERVER_DELAY),
    ("pushback-int64-max", _received(C.UNAVAILABLE, pushback=str(INT64_MAX)), True, MAX_SERVER_DELAY),
    ("negative-400-digits", _received(C.UNAVAILABLE, pushback="-" + "9" * 400), False, None),
    ("retry-info-1e11", _received(C.UNAVAILABLE, retry_info=duration_pb2.Duration(seconds=10**11)), True,
     1e11),
    ("retry-info-int64-max",
     _received(C.UNAVAILABLE, retry_info=duration_pb2.Duration(seconds=INT64_MAX, nanos=999_999_999)), True,
     MAX_SERVER_DELAY),
    ("both", _received(C.RESOURCE_EXHAUSTED, pushback="9" * 400,
                       retry_info=duration_pb2.Duration(seconds=INT64_MAX)), True, MAX_SERVER_DELAY),
    ("pushback-zero", _received(C.UNAVAILABLE, pushback="0"), True, 0.0),
    ("pushback-zero-padded", _received(C.UNAVAILABLE, pushback="000"), True, 0.0),
]


@pytest.mark.parametrize(("raw", "retryable", "delay"), [a[1:] for a in ABSURD], ids=[a[0] for a in ABSURD])
def test_absurd_delays_never_raise_and_are_clamped(
    raw: Received, retryable: bool, delay: float | None
) -> None:
    typed = gt.from_rpc_error(raw)
    for err in (raw, typed, chain(3, raw)):
        verdict = gt.classify(err)
        assert verdict.retryable is retryable and gt.is_retryable(err) is retryable
        got = gt.retry_delay(err)
        if delay is None:
            assert got is None and verdict.delay is None
        else:
            assert got is not None and math.isfinite(got) and 0 <= got <= MAX_SERVER_DELAY
            assert got == pytest.approx(delay) and verdict.delay == pytest.approx(delay)
        body = problem(err)
        json.dumps(body, allow_nan=False)
        assert body["retryable"] is retryable
        assert isinstance(exit_code(err), int)
        repr(typed)
    # the relayed error re-encodes to a sane pushback
    out = encode(typed)
    pushback = dict(out.trailing_metadata).get(PUSHBACK_KEY)
    assert pushback is None or (isinstance(pushback, str) and int(pushback) <= 2**31 - 1)


def test_a_zero_pushback_means_retry_at_once() -> None:
    err = gt.from_rpc_error(_received(C.UNAVAILABLE, pushback="0"))
    assert gt.classify(err) == gt.Verdict(True, "code", C.UNAVAILABLE, 0.0)
    assert gt.retry_delay(err) == 0.0
    # ...and is only a delay: a terminal code stays terminal
    assert not gt.is_retryable(gt.from_rpc_error(_received(C.NOT_FOUND, pushback="0")))
    assert gt.classify(gt.from_rpc_error(_received(C.UNAVAILABLE, pushback="-0"))).delay == 0.0


def test_malformed_pushbacks_are_ignored() -> None:
    for text in ("1e5", "1_000", "٣", "0x10", "", "+", "12 ms"):
        err = gt.from_rpc_error(_received(C.UNAVAILABLE, pushback=text))
        assert gt.classify(err) == gt.Verdict(True, "code", C.UNAVAILABLE, None), text


# grpc's core reads the pushback as an int64: 10^13 arrives as sent, a 400-digit
# value as INT64_MIN (so: negative, terminal). Measured on grpcio 1.85.
REAL_PUSHBACKS = [
    (str(10**13), gt.Verdict(True, "code", C.UNAVAILABLE, 1e10)),
    ("9" * 400, None),
    (str(2**63 - 1), gt.Verdict(True, "code", C.UNAVAILABLE, MAX_SERVER_DELAY)),
]


@pytest.mark.parametrize(("pushback", "verdict"), REAL_PUSHBACKS, ids=["1e13", "400-digits", "int64-max"])
def test_an_absurd_pushback_from_a_real_server_is_classified(
    pushback: str, verdict: gt.Verdict | None
) -> None:
    def handler(request: Msg, context: grpc.ServicerContext) -> Msg:
        context.set_trailing_metadata(((PUSHBACK_KEY, pushback),))
        context.abort(C.UNAVAILABLE, "busy")
        raise AssertionError("unreachable")

    with (
        plain_server(handler) as target,
        grpc.insecure_channel(target) as raw,
        pytest.raises(gt.Unavailable) as info,
    ):
        _unary(gt.intercept_channel(raw), "t.Up")(Msg(value="a"), timeout=5)
    got = gt.classify(info.value)
    if verdict is not None:
        assert got == verdict
    delay = gt.retry_delay(info.value)
    assert delay is None or (math.isfinite(delay) and delay <= MAX_SERVER_DELAY)
    json.dumps(problem(info.value), allow_nan=False)


def test_max_server_delay_is_the_protobuf_duration_maximum() -> None:
    assert MAX_SERVER_DELAY == 315_576_000_000.0
    assert gt.from_rpc_error(
        _received(C.UNAVAILABLE, retry_info=duration_pb2.Duration(seconds=315_576_000_000))
    ).retry_delay == MAX_SERVER_DELAY


# -- 22, 23: reasons by name, printed as names, always a Reason ------------------------------


@pytest.mark.parametrize(
    "reason",
    ["LICENSE_EXHAUSTED", "REASON_LICENSE_EXHAUSTED", "license_exhausted", " reason_license_exhausted ",
     Reason.LICENSE_EXHAUSTED, 3],
)
def test_terminal_error_accepts_names_members_and_numbers(reason: str | int) -> None:
    err = gt.terminal_error(reason, "Jira: %d of %d seats used", 100, 100)
    assert type(err) is gt.LicenseExhausted
    assert err.detail == "Jira: 100 of 100 seats used"
    assert err.reason is Reason.LICENSE_EXHAUSTED
    assert type(gt.TerminalError("x", reason=reason)) is gt.TerminalError
    assert gt.TerminalError("x", reason=reason).reason is Reason.LICENSE_EXHAUSTED
    assert gt.LicenseExhausted("x", reason=reason).reason is Reason.LICENSE_EXHAUSTED


def test_a_bad_reason_name_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="unknown reason name 'SEATS_FULL'") as info:
        gt.terminal_error("SEATS_FULL", "x")
    for name in Reason.__members__:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="valid names"):
        gt.TerminalError("x", reason="NOPE")
    with pytest.raises(TypeError, match="non-negative int32"):
        gt.terminal_error(-1, "x")
    with pytest.raises(TypeError, match="reason"):
        gt.terminal_error(3.0, "x")  # type: ignore[arg-type]
    assert type(gt.terminal_error("unspecified", "x")) is gt.Internal


def test_a_reason_prints_as_its_name_and_is_still_a_number() -> None:
    err = gt.terminal_error("LICENSE_EXHAUSTED", "seats")
    assert isinstance(err, gt.TerminalError)
    assert str(err.reason) == "LICENSE_EXHAUSTED"
    assert f"{err.reason}" == "LICENSE_EXHAUSTED"
    assert f"{err.reason:>20}" == "   LICENSE_EXHAUSTED"
    assert "%s" % err.reason == "LICENSE_EXHAUSTED"  # noqa: UP031
    assert int(err.reason) == 3 and "%d" % err.reason == "3" and f"{err.reason:d}" == "3"  # noqa: UP031
    assert f"{err.reason:03d}" == "003"
    assert err.reason == 3 and repr(err.reason) == "<Reason.LICENSE_EXHAUSTED: 3>"
    assert [str(r) for r in Reason] == list(Reason.__members__)


def test_an_unknown_reason_is_a_reason_named_after_its_number() -> None:
    future = gt.terminal_error(7, "a newer peer's reason")
    assert type(future) is gt.TerminalError
    assert type(future.reason) is Reason
    assert future.reason == 7 and future.reason.name == "REASON_7" and str(future.reason) == "REASON_7"
    assert Reason(7) == Reason(7) and not is_known_reason(Reason(7)) and is_known_reason(Reason(3))
    assert len(list(Reason)) == 6 and Reason(7) not in list(Reason)
    assert Reason(3) is Reason.LICENSE_EXHAUSTED
    with pytest.raises(ValueError, match="not a valid Reason"):
        Reason(2**31)
    with pytest.raises(ValueError, match="not a valid Reason"):
        Reason("LICENSE_EXHAUSTED")  # type: ignore[arg-type]  # names go through Reason[...] or terminal_error
    # what the decoder needs: an unknown reason from the wire gives a plain TerminalError
    assert class_for(C.FAILED_PRECONDITION, 7) is gt.TerminalError
    assert class_for(C.FAILED_PRECONDITION, 3) is gt.LicenseExhausted
    wire = encode(future)
    decoded = decode(wire.code, wire.message, wire.trailing_metadata)
    assert type(decoded) is gt.TerminalError and type(decoded.reason) is Reason
    assert decoded.reason.name == "REASON_7"
    import pickle

    assert pickle.loads(pickle.dumps(decoded)).reason == 7


def test_the_public_attributes_have_real_types() -> None:
    import typing

    from grpc_terminal import _errors

    def hints(obj: Any) -> dict[str, Any]:
        return typing.get_type_hints(obj, vars(_errors), {"RetryHistory": object})

    assert hints(vars(gt.TerminalError)["reason"].fget)["return"] is Reason
    fields = hints(gt.StatusError)
    for attr, cls in {
        "error_info": ed.ErrorInfo, "request_info": ed.RequestInfo, "bad_request": ed.BadRequest,
        "localized_message": ed.LocalizedMessage, "debug_info": ed.DebugInfo, "help": ed.Help,
        "precondition_failure": ed.PreconditionFailure, "quota_failure": ed.QuotaFailure,
        "resource_info": ed.ResourceInfo,
    }.items():
        assert fields[attr] == cls | None, attr


# -- 24: every argument documented ---------------------------------------------------------


def _documented(obj: Any) -> str:
    docs = [inspect.getdoc(obj) or ""]
    if isinstance(obj, type):
        init: Any = obj.__init__  # type: ignore[misc]  # what help() shows, inherited or not
        docs.append(inspect.getdoc(init) or "")
    return "\n".join(docs)


ERROR_CLASSES = [
    cls for cls in vars(gt).values() if isinstance(cls, type) and issubclass(cls, gt.StatusError)
]


@pytest.mark.parametrize("obj", [*ERROR_CLASSES, gt.terminal_error], ids=lambda o: o.__name__)
def test_every_argument_of_the_error_api_is_documented(obj: Any) -> None:
    doc = _documented(obj)
    for name in inspect.signature(obj).parameters:
        assert re.search(rf"^\s+{name}: \S", doc, re.MULTILINE), f"{obj.__name__}: {name} undocumented"
    options = set(StatusOptions.__annotations__)
    assert len(options) == 12
    for name in options:
        assert f"{name}" in doc, f"{obj.__name__}: option {name} not named"


def test_status_error_documents_each_option_in_its_own_entry() -> None:
    doc = _documented(gt.StatusError)
    for name in StatusOptions.__annotations__:
        assert re.search(rf"^\s+{name}: \S", doc, re.MULTILINE), name
    parameters = set(inspect.signature(gt.StatusError).parameters)
    assert set(StatusOptions.__annotations__) == parameters - {"message"}


PUBLIC_FUNCTIONS = [
    gt.classify, gt.failure_detail, gt.is_retryable, gt.is_terminal, gt.retry_delay, gt.from_rpc_error,
    gt.code_for_reason, gt.exit_code, gt.problem, gt.http_status, gt.terminal_error,
]


@pytest.mark.parametrize("fn", PUBLIC_FUNCTIONS, ids=lambda f: f.__name__)
def test_every_argument_of_the_public_functions_is_documented(fn: Callable[..., Any]) -> None:
    doc = inspect.getdoc(fn) or ""
    for name in inspect.signature(fn).parameters:
        assert re.search(rf"^\s+{name}: \S", doc, re.MULTILINE), f"{fn.__name__}: {name} undocumented"


def test_help_shows_the_options() -> None:
    import pydoc

    for obj in (gt.StatusError, gt.NotFound, gt.TerminalError, gt.UserNotProvisionable, gt.terminal_error):
        text = pydoc.render_doc(obj, renderer=pydoc.plaintext)  # type: ignore[attr-defined]
        assert "retry_delay:" in text or "``retry_delay``" in text
        assert "trailing_metadata" in text

