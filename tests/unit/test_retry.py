"""RetryPolicy, RetryBudget and RetryHistory: what a caller sees, pinned exactly.

Each group pins one behaviour down to the value: the history an error carries
(numbers, codes, class names, verdicts, the one-line note), the waits slept,
the messages of the errors a misuse raises. Time is injected (a fake clock
that moves only when the policy sleeps); where a server is involved it is a
real loopback server. The JSON service_config gives gRPC is pinned in
test_service_config.py.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal import RetryBudget, RetryHistory, RetryPolicy, StopReason, Verdict
from grpc_terminal._retry import MAX_DURATION, Attempt, RetryRun, check_ceiling
from grpc_terminal.testing import loopback_server

from fakes import Received

C = grpc.StatusCode
Msg = wrappers_pb2.StringValue
NOTE = "grpc-terminal retry:"


class FakeTime:
    """A clock that moves only when the policy sleeps."""

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
        kwargs.setdefault("jitter", 0.0)
        return RetryPolicy(clock=self.clock, sleep=self.sleep, async_sleep=self.async_sleep, **kwargs)


def failing(*errors: BaseException, then: object = "ok") -> Callable[..., object]:
    """A callable raising ``errors`` in turn, then returning ``then``."""
    queue = list(errors)

    def fn(*args: object, **kwargs: object) -> object:
        if queue:
            raise queue.pop(0)
        return then

    return fn


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def history_of(exc: BaseException) -> RetryHistory:
    history = getattr(exc, "retry_history", None)
    assert isinstance(history, RetryHistory)
    return history


def notes_of(exc: BaseException) -> list[str]:
    return list(getattr(exc, "__notes__", []))


# -- the history a failure carries -------------------------------------------------------


def test_history_records_each_attempt_number_code_and_class_of_a_raw_rpc_error() -> None:
    """A raw grpc failure is typed on the way out; each attempt keeps its number, code and class."""
    ft = FakeTime()
    fn = failing(Received(C.UNAVAILABLE), Received(C.UNAVAILABLE), Received(C.UNAVAILABLE))
    with pytest.raises(gt.Unavailable) as caught:
        ft.policy(max_attempts=2, initial_backoff=0.5).call(fn)
    history = history_of(caught.value)
    assert [a.number for a in history.attempts] == [1, 2]
    assert history.codes == (C.UNAVAILABLE, C.UNAVAILABLE)
    assert [a.error for a in history.attempts] == ["Received", "Received"]
    assert history.waits == (0.5,)
    assert history.stopped is StopReason.EXHAUSTED


def test_an_exception_with_a_code_method_but_no_grpc_status_has_no_code() -> None:
    """Only a grpc.RpcError (or StatusError) is read for a code; a look-alike is not gRPC."""

    class LooksLikeGrpc(Exception):
        def code(self) -> grpc.StatusCode:
            return C.UNAVAILABLE

    with pytest.raises(LooksLikeGrpc) as caught:
        RetryPolicy().call(failing(LooksLikeGrpc()))
    history = history_of(caught.value)
    assert history.codes == (None,)
    assert history.attempts[0].error == "LooksLikeGrpc"
    assert history.stopped is StopReason.NOT_RETRYABLE


def test_a_wait_that_would_end_exactly_at_the_deadline_is_not_slept() -> None:
    """A wait that would reach the overall deadline exactly is not slept: retrying stops."""
    ft = FakeTime()
    fn = failing(Received(C.UNAVAILABLE), Received(C.UNAVAILABLE))
    with pytest.raises(gt.Unavailable) as caught:
        ft.policy(max_attempts=5, initial_backoff=1.0, timeout=1.0).call(fn)
    assert history_of(caught.value).stopped is StopReason.DEADLINE
    assert ft.waits == []


def test_a_zero_server_delay_is_honoured_even_with_a_zero_ceiling() -> None:
    """``max_server_delay=0`` honours only zero delays: pushback 0 means retry now."""
    ft = FakeTime()
    now = Received(C.UNAVAILABLE, trailers=[("grpc-retry-pushback-ms", "0")])
    policy = ft.policy(initial_backoff=0.0, max_backoff=0.0, max_server_delay=0.0)
    assert policy.call(failing(now)) == "ok"
    assert ft.waits == [0.0]


def test_calls_pass_keyword_arguments_through() -> None:
    """``policy.call(fn, *args, **kwargs)`` and ``acall`` call ``fn`` with both."""

    def fn(a: int, *, b: int) -> int:
        return a + b

    async def afn(a: int, *, b: int) -> int:
        return a * b

    policy = RetryPolicy()
    assert policy.call(fn, 2, b=3) == 5
    assert asyncio.run(policy.acall(afn, 2, b=3)) == 6


# -- a classification that cannot read the failure ---------------------------------------


class UnreadableDelay(gt.Unavailable):
    """A retryable failure whose delay cannot be read (classification raises)."""

    @property
    def retry_delay(self) -> float | None:
        raise OverflowError("delay too large")


class UnreadableNotFound(gt.NotFound):
    """A non-retryable failure whose delay cannot be read."""

    @property
    def retry_delay(self) -> float | None:
        raise OverflowError("delay too large")


class NoCode(gt.Unavailable):
    """A failure whose code cannot be read at all."""

    def code(self) -> grpc.StatusCode:
        raise RuntimeError("no code")


def test_an_unreadable_retryable_failure_stops_at_once_as_an_unreadable_delay() -> None:
    """The code table decides, with an infinite delay: no wait, SERVER_DELAY_TOO_LONG."""
    ft = FakeTime()
    with pytest.raises(UnreadableDelay) as caught:
        ft.policy().call(failing(UnreadableDelay("x"), UnreadableDelay("x")))
    history = history_of(caught.value)
    assert history.stopped is StopReason.SERVER_DELAY_TOO_LONG
    assert history.attempts[0].verdict == Verdict(True, "code", C.UNAVAILABLE, math.inf)
    assert ft.waits == []
    assert "the server asked for an unreadable delay" in notes_of(caught.value)[-1]


def test_an_unreadable_non_retryable_failure_is_decided_by_code_with_no_delay() -> None:
    with pytest.raises(UnreadableNotFound) as caught:
        RetryPolicy().call(failing(UnreadableNotFound("x")))
    history = history_of(caught.value)
    assert history.stopped is StopReason.NOT_RETRYABLE
    assert history.attempts[0].verdict == Verdict(False, "code", C.NOT_FOUND, None)


def test_a_failure_whose_code_cannot_be_read_is_not_grpc_and_not_retried() -> None:
    ft = FakeTime()
    with pytest.raises(NoCode) as caught:
        ft.policy().call(failing(NoCode("x"), NoCode("x")))
    history = history_of(caught.value)
    verdict = history.attempts[0].verdict
    assert verdict == Verdict(False, "not_grpc", None, None)
    assert verdict.retryable is False
    assert history.count == 1
    assert history.stopped is StopReason.NOT_RETRYABLE
    assert ft.waits == []


# -- a custom predicate -------------------------------------------------------------------


def test_a_predicate_that_retries_keeps_the_code_in_its_verdict() -> None:
    ft = FakeTime()
    seen: list[Verdict] = []
    policy = ft.policy(retryable=lambda e: True, on_retry=lambda n, w, v, e: seen.append(v))
    assert policy.call(failing(Received(C.NOT_FOUND))) == "ok"
    assert seen == [Verdict(True, "predicate", C.NOT_FOUND, None)]


def test_a_predicate_that_refuses_drops_the_server_delay() -> None:
    """A refusal has no wait, so the verdict carries no delay even when the server sent one."""
    pushback = Received(C.UNAVAILABLE, trailers=[("grpc-retry-pushback-ms", "500")])
    with pytest.raises(gt.Unavailable) as caught:
        RetryPolicy(retryable=lambda e: False).call(failing(pushback))
    verdict = history_of(caught.value).attempts[0].verdict
    assert verdict == Verdict(False, "predicate", C.UNAVAILABLE, None)


# -- the note and retry_history on the raised error ----------------------------------------


def test_the_note_replaces_an_earlier_retry_note_and_keeps_the_callers_notes() -> None:
    """Nested policies: one fresh retry note; notes that are not ours stay."""
    error = ValueError("bad")
    error.add_note("the caller's own note")
    inner = RetryPolicy(max_attempts=1)
    with pytest.raises(ValueError, match=r"^bad\b") as caught:
        RetryPolicy().call(inner.call, failing(error))
    notes = notes_of(caught.value)
    assert notes[0] == "the caller's own note"
    assert len([n for n in notes if n.startswith(NOTE)]) == 1


class ReadOnlyHistory(Exception):
    @property
    def retry_history(self) -> None:
        return None


class TypedHistory(Exception):
    @property
    def retry_history(self) -> None:
        return None

    @retry_history.setter
    def retry_history(self, value: object) -> None:
        raise TypeError("no history here")


@pytest.mark.parametrize("kind", [ReadOnlyHistory, TypedHistory])
def test_an_error_that_refuses_retry_history_is_still_raised_with_the_note(kind: type[Exception]) -> None:
    with pytest.raises(kind) as caught:
        RetryPolicy().call(failing(kind("x")))
    assert notes_of(caught.value)[-1].startswith(f"{NOTE} stopped (not retryable) after 1 attempt")


# -- RetryHistory.describe ------------------------------------------------------------------


def _attempt(
    number: int, code: grpc.StatusCode | None, error: str, wait: float | None, delay: float | None = None
) -> Attempt:
    return Attempt(number, code, error, Verdict(code is not None, "code", code, delay), wait)


def test_describe_lists_codes_and_waits_comma_separated() -> None:
    history = RetryHistory(
        (
            _attempt(1, C.UNAVAILABLE, "Unavailable", 0.25),
            _attempt(2, C.UNAVAILABLE, "Unavailable", 0.5),
            _attempt(3, None, "ValueError", None),
        ),
        StopReason.NOT_RETRYABLE,
        0.75,
    )
    assert history.describe() == (
        "grpc-terminal retry: stopped (not retryable) after 3 attempts "
        "[UNAVAILABLE, UNAVAILABLE, ValueError]; waits: 0.25s, 0.5s; 0.75s elapsed"
    )


def test_describe_says_none_when_nothing_was_waited() -> None:
    history = RetryHistory((_attempt(1, C.NOT_FOUND, "NotFound", None),), StopReason.NOT_RETRYABLE, 0.0)
    assert history.describe() == (
        "grpc-terminal retry: stopped (not retryable) after 1 attempt [NOT_FOUND]; waits: none; 0s elapsed"
    )


@pytest.mark.parametrize(
    ("delay", "asked"), [(math.inf, "an unreadable delay"), (None, "an unreadable delay"), (600.0, "600s")]
)
def test_describe_names_the_delay_the_server_asked_for(delay: float | None, asked: str) -> None:
    history = RetryHistory(
        (_attempt(1, C.UNAVAILABLE, "Unavailable", None, delay),), StopReason.SERVER_DELAY_TOO_LONG, 0.0
    )
    assert history.describe() == (
        f"grpc-terminal retry: stopped (server delay too long: the server asked for {asked}) "
        "after 1 attempt [UNAVAILABLE]; waits: none; 0s elapsed"
    )


# -- refusing a pending result ---------------------------------------------------------------

PENDING_TAIL = (
    "which would fail outside RetryPolicy: use `await policy.acall(fn, ...)`, "
    "or decorate an async def that awaits it"
)


def test_a_returned_future_is_cancelled_and_refused_naming_the_function() -> None:
    loop = asyncio.new_event_loop()
    try:
        future = loop.create_future()

        def start_call() -> object:
            return future

        with pytest.raises(TypeError) as caught:
            RetryPolicy().call(start_call)
        assert future.cancelled()
        assert str(caught.value) == (
            "test_a_returned_future_is_cancelled_and_refused_naming_the_function.<locals>.start_call "
            f"returned an awaitable or pending call (Future), {PENDING_TAIL}"
        )
    finally:
        loop.close()


class Maker:
    """A callable object (no ``__qualname__`` of its own) returning a coroutine."""

    def __call__(self) -> object:
        async def work() -> None:
            return None

        return work()


def test_a_callable_object_is_named_by_its_class() -> None:
    with pytest.raises(TypeError) as caught:
        RetryPolicy().call(Maker())
    assert str(caught.value) == f"Maker returned an awaitable or pending call (coroutine), {PENDING_TAIL}"


class Ticker:
    """An async iterator that is not an async generator."""

    def __aiter__(self) -> Ticker:
        return self

    async def __anext__(self) -> int:
        raise StopAsyncIteration


class BadCancel:
    """An awaitable whose ``cancel`` fails."""

    def __await__(self) -> Iterator[None]:
        yield None

    def cancel(self) -> None:
        raise RuntimeError("cannot cancel")


def test_an_async_iterator_is_refused() -> None:
    with pytest.raises(TypeError, match=r"^Ticker returned an awaitable or pending call \(Ticker\)"):
        RetryPolicy().call(Ticker)


def test_a_failing_cancel_still_gives_the_refusal() -> None:
    with pytest.raises(TypeError, match=r"^BadCancel returned an awaitable or pending call \(BadCancel\)"):
        RetryPolicy().call(BadCancel)


# -- the decorator ------------------------------------------------------------------------

GENERATOR_REFUSAL = "^RetryPolicy cannot decorate a generator: its calls cannot be repeated$"


def test_an_async_generator_function_cannot_be_decorated() -> None:
    async def agen() -> AsyncIterator[int]:
        yield 1

    with pytest.raises(TypeError, match=GENERATOR_REFUSAL):
        RetryPolicy()(agen)


def test_a_generator_function_cannot_be_decorated() -> None:
    def gen() -> Iterator[int]:
        yield 1

    with pytest.raises(TypeError, match=GENERATOR_REFUSAL):
        RetryPolicy()(gen)


# -- validation of a policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initial_backoff": 2.0, "max_backoff": 1.0}, "max_backoff must be >= initial_backoff"),
        ({"multiplier": 0.5}, "multiplier must be a finite number >= 1, got 0.5"),
        ({"jitter": 1.5}, "jitter must be in [0, 1], got 1.5"),
        ({"max_attempts": None}, "max_attempts=None needs a timeout: retrying would never stop"),
    ],
)
def test_an_invalid_policy_says_what_is_wrong(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy(**changes)


def test_a_multiplier_of_one_gives_a_constant_backoff() -> None:
    ft = FakeTime()
    fn = failing(*[Received(C.UNAVAILABLE)] * 3)
    assert ft.policy(multiplier=1, initial_backoff=0.5).call(fn) == "ok"
    assert ft.waits == [0.5, 0.5, 0.5]


def test_retryable_codes_become_a_frozenset() -> None:
    policy = RetryPolicy(retryable_codes=[C.UNAVAILABLE, C.UNAVAILABLE])  # type: ignore[arg-type]
    assert policy.retryable_codes == frozenset({C.UNAVAILABLE})
    assert isinstance(policy.retryable_codes, frozenset)


# -- RetryBudget ---------------------------------------------------------------------------


def test_budget_defaults() -> None:
    budget = RetryBudget()
    assert (budget.max_tokens, budget.token_ratio, budget.tokens) == (10.0, 0.1, 10.0)


@pytest.mark.parametrize("max_tokens", [0.5, 1, 1000])
def test_budget_accepts_max_tokens_in_range(max_tokens: float) -> None:
    assert RetryBudget(max_tokens).tokens == max_tokens


@pytest.mark.parametrize("max_tokens", [0, -1, 1000.5, math.inf, math.nan])
def test_budget_refuses_max_tokens_out_of_range(max_tokens: float) -> None:
    with pytest.raises(ValueError, match=r"^max_tokens must be in \(0, 1000\], got "):
        RetryBudget(max_tokens)


@pytest.mark.parametrize("token_ratio", [0, -0.1, math.inf, math.nan])
def test_budget_refuses_a_token_ratio_not_above_zero(token_ratio: float) -> None:
    with pytest.raises(ValueError, match=r"^token_ratio must be > 0, got "):
        RetryBudget(token_ratio=token_ratio)


def test_budget_tokens_run_down_to_zero() -> None:
    budget = RetryBudget(max_tokens=2)
    for _ in range(3):
        budget.record_failure()
    assert budget.tokens == 0.0
    assert not budget.allows_retry()


# -- long waits with the default sleep -----------------------------------------------------


class PatchedTime:
    """Stands in for ``time.sleep``/``time.monotonic``; refuses to loop forever."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        if len(self.slept) > 20:
            raise RuntimeError("slept in too many pieces")
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize(
    ("wait", "pieces"),
    [(0.25, [0.25]), (2 * 86_400 + 0.5, [86_400.0, 86_400.0, 0.5])],
)
def test_the_default_sleep_sleeps_a_long_wait_in_pieces_of_a_day(
    monkeypatch: pytest.MonkeyPatch, wait: float, pieces: list[float]
) -> None:
    """One ``time.sleep`` overflows past about 292 years: the policy sleeps at most a day at a time."""
    fake = PatchedTime()
    monkeypatch.setattr(time, "sleep", fake.sleep)
    monkeypatch.setattr(time, "monotonic", fake.monotonic)
    policy = RetryPolicy(
        sleep=time.sleep, clock=fake.monotonic, jitter=0.0, initial_backoff=wait, max_backoff=wait
    )
    assert policy.call(failing(Received(C.UNAVAILABLE))) == "ok"
    assert fake.slept == pieces


# -- the ceiling on a server delay, as the adapters check it --------------------------------


@pytest.mark.parametrize("ceiling", [0, 0.5, 300])
def test_a_ceiling_from_zero_up_is_accepted(ceiling: float) -> None:
    # check_ceiling is what every adapter (tenacity, api-core, Temporal) runs on max_server_delay=.
    assert check_ceiling(ceiling) == ceiling


def test_a_negative_ceiling_names_max_server_delay() -> None:
    message = "max_server_delay must be a number of seconds in [0, 315576000000], got -1"
    with pytest.raises(ValueError, match=exactly(message)):
        check_ceiling(-1)


# -- inside the client interceptors (real loopback server) ---------------------------------

SERVICE = "test.RetryUnit"


def _handlers(sent_first: list[int]) -> grpc.GenericRpcHandler[Any, Any]:
    def remaining(request: Msg, context: grpc.ServicerContext) -> Msg:
        return Msg(value=repr(context.time_remaining()))

    def stream(request: Msg, context: grpc.ServicerContext) -> Iterator[Msg]:
        sent_first.append(1)
        yield Msg(value="first")
        raise gt.Unavailable("gone after the first response")

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Remaining": grpc.unary_unary_rpc_method_handler(
                remaining, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                stream, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString
            ),
        },
    )


def test_each_attempt_gets_what_is_left_of_the_policy_timeout() -> None:
    # 5 s, not less: on a loaded machine a shorter deadline may pass before the handler runs.
    with loopback_server(_handlers([]), retry=RetryPolicy(timeout=5.0)) as lb:
        call = lb.channel.unary_unary(
            f"/{SERVICE}/Remaining",
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        left = float(call(Msg()).value)
    # The server reads the deadline from the grpc-timeout header on its own clock, so it may
    # see a few ms more than the 5 s sent (measured: up to 9 ms, 5 runs in 40); half a second
    # of slack still tells a 5 s deadline from none (repr None) or a longer one.
    assert 0 < left <= 5.5


def test_an_aio_call_without_any_deadline_gets_none() -> None:
    """No policy timeout, no call timeout: the attempt has no deadline."""

    async def main(lb: Any) -> str:
        channel = lb.aio_channel(retry=RetryPolicy())
        try:
            call = channel.unary_unary(
                f"/{SERVICE}/Remaining",
                request_serializer=Msg.SerializeToString,
                response_deserializer=Msg.FromString,
            )
            reply = await asyncio.wait_for(call(Msg()), timeout=5)
            return str(reply.value)
        finally:
            await channel.close()

    with loopback_server(_handlers([])) as lb:
        assert float(asyncio.run(main(lb))) > 1e9  # grpc's "no deadline"


def test_a_stream_failing_after_a_response_is_committed_with_its_attempt_recorded() -> None:
    sent: list[int] = []
    with loopback_server(_handlers(sent), retry=RetryPolicy(initial_backoff=0.0, max_backoff=0.0)) as lb:
        call = lb.channel.unary_stream(
            f"/{SERVICE}/Stream",
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        received: list[str] = []
        with pytest.raises(gt.Unavailable) as caught:
            for reply in call(Msg(), timeout=5):
                received.append(reply.value)
    assert received == ["first"] and sent == [1]
    history = history_of(caught.value)
    assert history.stopped is StopReason.COMMITTED
    (attempt,) = history.attempts
    assert (attempt.number, attempt.code, attempt.wait) == (1, C.UNAVAILABLE, None)
    assert attempt.error == "Unavailable"
    assert attempt.verdict == Verdict(True, "code", C.UNAVAILABLE, None)
    assert notes_of(caught.value)[-1].startswith(f"{NOTE} stopped (committed) after 1 attempt [UNAVAILABLE]")


# -- acall raises what call raises ----------------------------------------------------------


def test_acall_types_a_raw_grpc_failure_and_chains_the_original() -> None:
    """``acall`` gives up like ``call``: a raw grpc failure comes out typed, caused by the raw one."""
    raw = Received(C.NOT_FOUND, "gone")

    async def afn() -> None:
        raise raw

    with pytest.raises(gt.NotFound) as caught:
        asyncio.run(RetryPolicy().acall(afn))
    assert caught.value.__cause__ is raw
    assert history_of(caught.value).stopped is StopReason.NOT_RETRYABLE


def test_acall_reraises_a_non_grpc_failure_itself_unchained() -> None:
    error = ValueError("bad")

    async def afn() -> None:
        raise error

    with pytest.raises(ValueError, match=r"^bad\b") as caught:
        asyncio.run(RetryPolicy().acall(afn))
    assert caught.value is error
    assert caught.value.__cause__ is None


# -- the waits of the client interceptors: a wake-up event ends them --------------------------
# The interceptors give RetryRun.sleep a threading.Event that cancelling the call sets; the
# coroutine twice takes an asyncio.Event. Both return True when the event ended the wait.


class WakeEvent(threading.Event):
    """A threading.Event whose waits move a PatchedTime clock instead of blocking."""

    def __init__(self, clock: PatchedTime, set_after: int | None = None) -> None:
        super().__init__()
        self.clock = clock
        self.set_after = set_after
        self.waited: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        if len(self.waited) > 20:
            raise RuntimeError("waited in too many pieces")
        self.waited.append(timeout)
        self.clock.now += timeout or 0.0
        if self.set_after is not None and len(self.waited) >= self.set_after:
            self.set()
        return self.is_set()


def _patched_run(monkeypatch: pytest.MonkeyPatch) -> tuple[PatchedTime, RetryRun]:
    fake = PatchedTime()
    monkeypatch.setattr(time, "sleep", fake.sleep)
    monkeypatch.setattr(time, "monotonic", fake.monotonic)
    return fake, RetryRun(RetryPolicy(sleep=time.sleep, clock=fake.monotonic))


def test_a_default_sleep_with_a_wake_event_waits_on_the_event_in_pieces(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake, run = _patched_run(monkeypatch)
    wake = WakeEvent(fake)
    assert run.sleep(2 * 86_400 + 0.5, wake) is False
    assert wake.waited == [86_400.0, 86_400.0, 0.5]
    assert fake.slept == []


def test_a_wait_ending_on_a_piece_boundary_takes_no_extra_zero_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, run = _patched_run(monkeypatch)
    wake = WakeEvent(fake)
    assert run.sleep(2 * 86_400.0, wake) is False
    assert wake.waited == [86_400.0, 86_400.0]


def test_a_set_wake_event_ends_a_default_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, run = _patched_run(monkeypatch)
    wake = WakeEvent(fake, set_after=1)
    assert run.sleep(3 * 86_400.0, wake) is True
    assert wake.waited == [86_400.0]


def test_an_already_set_wake_event_skips_a_default_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    fake, run = _patched_run(monkeypatch)
    wake = WakeEvent(fake)
    wake.set()
    assert run.sleep(5.0, wake) is True
    assert wake.waited == []


def test_an_injected_sleep_runs_to_its_end_and_the_event_is_checked_around_it() -> None:
    ft = FakeTime()
    run = RetryRun(ft.policy())
    wake = threading.Event()
    assert run.sleep(0.5, wake) is False
    assert ft.waits == [0.5]
    wake.set()
    assert run.sleep(0.5, wake) is True
    assert ft.waits == [0.5]  # not slept: the event was already set


def test_an_event_set_during_an_injected_sleep_is_reported() -> None:
    ft = FakeTime()
    wake = threading.Event()

    def sleep(seconds: float) -> None:
        ft.sleep(seconds)
        wake.set()

    run = RetryRun(RetryPolicy(clock=ft.clock, sleep=sleep))
    assert run.sleep(0.25, wake) is True
    assert ft.waits == [0.25]


def test_a_sleep_without_a_wake_event_is_never_woken() -> None:
    ft = FakeTime()
    assert RetryRun(ft.policy()).sleep(0.5) is False
    assert ft.waits == [0.5]


class AsyncSleeps:
    """An injectable ``async_sleep`` that records each wait and may never end on its own."""

    def __init__(self, forever: bool = False) -> None:
        self.forever = forever
        self.waits: list[float] = []
        self.cleaned = 0
        self.wake: asyncio.Event | None = None

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        try:
            if self.forever:
                if self.wake is not None:  # wake the waiter once this sleep is under way
                    asyncio.get_running_loop().call_soon(self.wake.set)
                await asyncio.get_running_loop().create_future()
        finally:
            await asyncio.sleep(0)  # a clean-up that takes turns of the loop
            await asyncio.sleep(0)
            self.cleaned += 1


class SlowEvent(asyncio.Event):
    """An asyncio.Event whose ``wait``, once cancelled, takes turns of the loop to clean up."""

    async def wait(self) -> Literal[True]:
        try:
            return await super().wait()
        finally:
            await asyncio.sleep(0)
            await asyncio.sleep(0)


def _other_tasks() -> set[asyncio.Task[Any]]:
    """The tasks of the running loop still pending, besides the current one."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def test_an_async_wait_without_an_event_awaits_the_policy_sleep() -> None:
    sleeps = AsyncSleeps()
    run = RetryRun(RetryPolicy(async_sleep=sleeps))
    assert asyncio.run(run.async_sleep(0.5)) is False
    assert sleeps.waits == [0.5]


def test_an_async_wait_that_ends_by_itself_is_not_woken() -> None:
    sleeps = AsyncSleeps()
    run = RetryRun(RetryPolicy(async_sleep=sleeps))

    async def main() -> tuple[bool, int]:
        woken = await run.async_sleep(0.5, SlowEvent())
        return woken, len(_other_tasks())

    assert asyncio.run(main()) == (False, 0)  # the watcher task is over too
    assert sleeps.waits == [0.5]


def test_an_already_set_event_skips_the_async_wait() -> None:
    sleeps = AsyncSleeps()
    run = RetryRun(RetryPolicy(async_sleep=sleeps))

    async def main() -> bool:
        woken = asyncio.Event()
        woken.set()
        return await run.async_sleep(0.5, woken)

    assert asyncio.run(main()) is True
    assert sleeps.waits == []


def test_setting_the_event_ends_an_endless_async_wait_and_cleans_it_up() -> None:
    sleeps = AsyncSleeps(forever=True)
    run = RetryRun(RetryPolicy(async_sleep=sleeps))

    async def main() -> tuple[bool, int, int]:
        woken = sleeps.wake = asyncio.Event()
        outer = asyncio.current_task()

        async def wait() -> tuple[bool, int, int]:
            result = await run.async_sleep(0.5, woken)
            return result, sleeps.cleaned, len(_other_tasks() - {outer})

        return await asyncio.wait_for(wait(), timeout=2)

    # the endless sleep was cancelled and its clean-up had finished when the wait returned
    assert asyncio.run(main()) == (True, 1, 0)
    assert sleeps.waits == [0.5]


# -- the debug log of a refused pending result ------------------------------------------------


def test_a_failing_cancel_is_logged_at_debug_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="grpc_terminal"), pytest.raises(TypeError):
        RetryPolicy().call(BadCancel)
    (record,) = [r for r in caplog.records if r.name == "grpc_terminal"]
    assert record.levelno == logging.DEBUG
    assert "cancel" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_a_pending_result_with_nothing_to_cancel_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    """An async iterator has no ``cancel``: nothing failed, so no failure is logged."""
    with caplog.at_level(logging.DEBUG, logger="grpc_terminal"), pytest.raises(TypeError):
        RetryPolicy().call(Ticker)
    assert [r for r in caplog.records if r.name == "grpc_terminal"] == []


# -- the deadline of each attempt inside the interceptors -----------------------------------
# The interceptors build a RetryRun with the call's own timeout and give each attempt
# RetryRun.timeout(): what is left of the earlier of the call's and the policy's deadlines.


@pytest.mark.parametrize(
    ("policy_timeout", "call_timeout", "left"),
    [(None, None, None), (5.0, None, 5.0), (None, 2.0, 2.0), (5.0, 2.0, 2.0), (2.0, 5.0, 2.0)],
)
def test_an_attempt_gets_what_is_left_of_the_earlier_deadline(
    policy_timeout: float | None, call_timeout: float | None, left: float | None
) -> None:
    ft = FakeTime()
    run = RetryRun(ft.policy(max_attempts=3, timeout=policy_timeout), call_timeout)
    assert run.timeout() == left
    ft.now += 1.5
    assert run.timeout() == (None if left is None else left - 1.5)


def test_an_attempt_past_the_deadline_gets_zero_not_a_negative_timeout() -> None:
    ft = FakeTime()
    run = RetryRun(ft.policy(timeout=1.0))
    ft.now += 3.0
    assert run.remaining() == -2.0
    assert run.timeout() == 0.0


# -- what counts as a number of seconds -------------------------------------------------------

CEILING_RANGE = "max_server_delay must be a number of seconds in [0, 315576000000], got "


@pytest.mark.parametrize("value", [True, "5", 10**400, math.inf])
def test_a_ceiling_that_is_not_a_finite_number_is_refused(value: object) -> None:
    with pytest.raises(ValueError, match=exactly(f"{CEILING_RANGE}{value!r}")):
        check_ceiling(value)  # type: ignore[arg-type]


@pytest.mark.parametrize("multiplier", [True, 10**400])
def test_a_multiplier_must_be_a_real_finite_number(multiplier: object) -> None:
    with pytest.raises(
        ValueError, match=exactly(f"multiplier must be a finite number >= 1, got {multiplier!r}")
    ):
        RetryPolicy(multiplier=multiplier)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"initial_backoff": -1}, "initial_backoff must be a number of seconds in [0, 315576000000], got -1"),
        (
            {"max_server_delay": "1"},
            "max_server_delay must be a number of seconds in [0, 315576000000], got '1'",
        ),
        ({"timeout": 0}, "timeout must be None or a number of seconds in (0, 315576000000], got 0"),
    ],
)
def test_an_invalid_duration_names_its_field_and_range(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy(**changes)


@pytest.mark.parametrize(("multiplier", "retry"), [(10.0, 400), (1e300, 3)])
def test_a_backoff_that_overflows_a_float_is_max_backoff(multiplier: float, retry: int) -> None:
    assert RetryPolicy(multiplier=multiplier, max_backoff=7.0).backoff(retry) == 7.0


def test_a_server_delay_above_the_ceiling_stops_at_once() -> None:
    ft = FakeTime()
    long = Received(C.UNAVAILABLE, trailers=[("grpc-retry-pushback-ms", "600000")])
    with pytest.raises(gt.Unavailable) as caught:
        ft.policy().call(failing(long))
    history = history_of(caught.value)
    assert history.stopped is StopReason.SERVER_DELAY_TOO_LONG
    assert history.attempts[0].verdict.delay == 600.0
    assert ft.waits == []


def test_on_retry_is_not_called_when_retrying_stops() -> None:
    calls: list[tuple[int, float]] = []
    policy = FakeTime().policy(on_retry=lambda n, w, v, e: calls.append((n, w)))
    with pytest.raises(gt.NotFound):
        policy.call(failing(Received(C.NOT_FOUND)))
    assert calls == []


def test_a_classification_failure_is_logged_at_debug_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.DEBUG, logger="grpc_terminal"), pytest.raises(UnreadableNotFound):
        RetryPolicy().call(failing(UnreadableNotFound("x")))
    records = [r for r in caplog.records if r.name == "grpc_terminal"]
    assert [r.levelno for r in records] == [logging.DEBUG]
    assert "classification failed" in records[0].getMessage()
    assert records[0].exc_info is not None and isinstance(records[0].exc_info[1], OverflowError)


def test_the_longest_protobuf_duration_is_a_valid_ceiling() -> None:
    """MAX_DURATION itself (10,000 years) is a valid duration everywhere."""
    assert check_ceiling(MAX_DURATION) == MAX_DURATION


def test_giving_up_with_a_reason_records_that_reason() -> None:
    """``RetryRun.give_up(exc, reason)`` stops with ``reason`` and attaches the history with it."""
    ft = FakeTime()
    run = RetryRun(ft.policy())
    error = Received(C.UNAVAILABLE)
    assert run.failed(error) == 0.1
    final = run.give_up(error, StopReason.COMMITTED)
    assert isinstance(final, gt.Unavailable)
    assert history_of(final).stopped is StopReason.COMMITTED
    assert notes_of(final)[-1].startswith(f"{NOTE} stopped (committed) after 1 attempt [UNAVAILABLE]")


# -- the budget's tokens, directly and through a policy -------------------------------------
# A retryable failure takes exactly one token, a success gives back token_ratio (never above
# max_tokens), and a retry needs strictly more than half of max_tokens left.


def test_a_failure_takes_one_token_and_a_success_gives_back_the_ratio() -> None:
    budget = RetryBudget(max_tokens=10, token_ratio=0.5)
    budget.record_failure()
    budget.record_failure()
    assert budget.tokens == 8.0
    budget.record_success()
    assert budget.tokens == 8.5


def test_a_success_never_fills_the_budget_past_max_tokens() -> None:
    budget = RetryBudget(max_tokens=4, token_ratio=3.0)
    budget.record_failure()
    budget.record_success()
    assert budget.tokens == 4.0


@pytest.mark.parametrize(
    ("failures", "allowed"),
    [(0, True), (1, True), (2, False), (3, False)],
    ids=["full", "above_half", "exactly_half", "below_half"],
)
def test_a_retry_needs_more_than_half_the_tokens(failures: int, allowed: bool) -> None:
    budget = RetryBudget(max_tokens=4)
    for _ in range(failures):
        budget.record_failure()
    assert budget.allows_retry() is allowed


def test_a_policy_call_spends_and_refunds_its_budget() -> None:
    """One retried call: a token for the failure, token_ratio back for the success."""
    budget = RetryBudget(max_tokens=10, token_ratio=0.25)
    assert FakeTime().policy(budget=budget).call(failing(Received(C.UNAVAILABLE))) == "ok"
    assert budget.tokens == 9.25


def test_an_exhausted_budget_stops_retrying_as_throttled() -> None:
    """With 4 tokens, the first failure leaves 3 (a retry), the second 2 (half: no retry)."""
    ft = FakeTime()
    policy = ft.policy(max_attempts=10, budget=RetryBudget(max_tokens=4))
    with pytest.raises(gt.Unavailable) as caught:
        policy.call(failing(*[Received(C.UNAVAILABLE)] * 5))
    history = history_of(caught.value)
    assert history.stopped is StopReason.THROTTLED
    assert history.count == 2
    assert ft.waits == [0.1]


# -- the policy's own code table and predicate decide ----------------------------------------


def test_the_policys_code_table_decides_what_is_retried() -> None:
    policy = RetryPolicy(retryable_codes=frozenset({C.NOT_FOUND}))
    assert policy.verdict(Received(C.NOT_FOUND)) == Verdict(True, "code", C.NOT_FOUND, None)
    assert policy.verdict(Received(C.UNAVAILABLE)) == Verdict(False, "code", C.UNAVAILABLE, None)


def test_the_code_table_decides_an_unreadable_failure_too() -> None:
    """The fallback when classification raises uses the policy's table, not the default one."""
    policy = RetryPolicy(retryable_codes=frozenset({C.NOT_FOUND}))
    assert policy.verdict(UnreadableNotFound("x")) == Verdict(True, "code", C.NOT_FOUND, math.inf)


def test_a_predicate_is_asked_about_the_failure_itself() -> None:
    seen: list[BaseException] = []

    def predicate(exc: BaseException) -> bool:
        seen.append(exc)
        return isinstance(exc, KeyError)

    error = KeyError("k")
    assert RetryPolicy(retryable=predicate).verdict(error) == Verdict(True, "predicate", None, None)
    assert seen == [error]


# -- a terminal failure stops as TERMINAL, every other refusal as NOT_RETRYABLE ----------------


def test_a_provision_failure_detail_stops_retrying_as_terminal() -> None:
    with pytest.raises(gt.UserNotProvisionable) as caught:
        RetryPolicy().call(failing(gt.UserNotProvisionable("suspended")))
    history = history_of(caught.value)
    assert history.stopped is StopReason.TERMINAL
    assert history.attempts[0].verdict.rule == "provision_failure_detail"


def test_a_failure_not_retried_for_its_code_stops_as_not_retryable() -> None:
    with pytest.raises(gt.NotFound) as caught:
        RetryPolicy().call(failing(Received(C.NOT_FOUND)))
    assert history_of(caught.value).stopped is StopReason.NOT_RETRYABLE


# -- backoff and jitter: the waits actually slept ---------------------------------------------


def test_the_backoff_grows_by_the_multiplier_up_to_max_backoff() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=3.0, max_backoff=2.0)
    assert [policy.backoff(n) for n in (1, 2, 3, 4)] == pytest.approx([0.1, 0.3, 0.9, 2.0])


def test_jitter_takes_its_random_fraction_off_the_backoff() -> None:
    """wait = backoff * (1 - jitter * random()): 0.2 * (1 - 0.5 * 0.5) = 0.15."""
    ft = FakeTime()
    policy = ft.policy(initial_backoff=0.2, jitter=0.5, random=lambda: 0.5)
    assert policy.call(failing(Received(C.UNAVAILABLE))) == "ok"
    assert ft.waits == pytest.approx([0.15])


def test_full_jitter_is_accepted() -> None:
    """jitter=1 is gRPC's full jitter: a wait anywhere from 0 to the backoff."""
    ft = FakeTime()
    policy = ft.policy(initial_backoff=0.2, jitter=1.0, random=lambda: 0.25)
    assert policy.call(failing(Received(C.UNAVAILABLE))) == "ok"
    assert ft.waits == pytest.approx([0.15])


# -- on_retry: its arguments, and its failure logged -------------------------------------------


def test_on_retry_gets_the_attempt_number_wait_verdict_and_error() -> None:
    calls: list[tuple[int, float, Verdict, BaseException]] = []
    first, second = Received(C.UNAVAILABLE), Received(C.ABORTED)
    policy = FakeTime().policy(on_retry=lambda n, w, v, e: calls.append((n, w, v, e)))
    assert policy.call(failing(first, second)) == "ok"
    assert calls == [
        (1, 0.1, Verdict(True, "code", C.UNAVAILABLE, None), first),
        (2, 0.2, Verdict(True, "code", C.ABORTED, None), second),
    ]


def test_an_on_retry_that_raises_is_logged_with_its_traceback_and_retrying_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def on_retry(number: int, wait: float, verdict: Verdict, error: BaseException) -> None:
        raise RuntimeError("metrics down")

    with caplog.at_level(logging.DEBUG, logger="grpc_terminal"):
        assert FakeTime().policy(on_retry=on_retry).call(failing(Received(C.UNAVAILABLE))) == "ok"
    (record,) = [r for r in caplog.records if r.name == "grpc_terminal"]
    assert record.levelno == logging.ERROR
    assert "on_retry" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


# -- the elapsed time a history reports --------------------------------------------------------


def test_the_history_reports_the_time_from_the_first_attempt() -> None:
    ft = FakeTime()
    with pytest.raises(gt.Unavailable) as caught:
        ft.policy(max_attempts=3, initial_backoff=0.25).call(failing(*[Received(C.UNAVAILABLE)] * 3))
    assert history_of(caught.value).elapsed == pytest.approx(0.75)


# -- acall and the async decorator retry like call ---------------------------------------------


def test_acall_retries_after_the_async_sleep() -> None:
    ft = FakeTime()
    errors = [Received(C.UNAVAILABLE), Received(C.UNAVAILABLE)]

    async def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert asyncio.run(ft.policy().acall(fn)) == "ok"
    assert ft.waits == pytest.approx([0.1, 0.2])


def test_a_decorated_async_function_is_retried_when_awaited() -> None:
    ft = FakeTime()
    errors = [Received(C.UNAVAILABLE)]

    @ft.policy()
    async def fn(value: int) -> int:
        if errors:
            raise errors.pop(0)
        return value * 2

    assert asyncio.run(fn(21)) == 42
    assert ft.waits == [0.1]


# -- a returned coroutine is closed, not left never awaited -------------------------------------


def test_a_returned_coroutine_is_closed_before_the_refusal() -> None:
    async def work() -> None:
        return None

    coroutine = work()

    def start() -> object:
        return coroutine

    with pytest.raises(TypeError, match=r"returned an awaitable or pending call \(coroutine\)"):
        RetryPolicy().call(start)
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


# -- replace and the validation of max_attempts ------------------------------------------------


def test_replace_changes_only_what_is_named() -> None:
    budget = RetryBudget()
    policy = RetryPolicy(max_attempts=3, initial_backoff=0.5, budget=budget)
    changed = policy.replace(max_attempts=7)
    assert changed == RetryPolicy(max_attempts=7, initial_backoff=0.5, budget=budget)
    assert policy.max_attempts == 3
    assert policy.replace() == policy


def test_replace_validates_like_the_constructor() -> None:
    with pytest.raises(ValueError, match=exactly("jitter must be in [0, 1], got 2")):
        RetryPolicy().replace(jitter=2)


@pytest.mark.parametrize(
    "max_attempts", [0, -1, True, 2.0, "3"], ids=["zero", "negative", "bool", "float", "str"]
)
def test_max_attempts_must_be_an_int_of_at_least_one(max_attempts: object) -> None:
    message = f"max_attempts must be an int >= 1 or None, got {max_attempts!r}"
    with pytest.raises(ValueError, match=exactly(message)):
        RetryPolicy(max_attempts=max_attempts)  # type: ignore[arg-type]


def test_a_resumed_run_counts_earlier_attempts_and_time() -> None:
    ft = FakeTime()
    policy = ft.policy(max_attempts=3, timeout=10.0, jitter=0)
    first = RetryRun(policy)
    assert first.failed(gt.Unavailable("one")) == 0.1
    ft.now += 4.0
    run = RetryRun.resumed(policy, first.attempts, elapsed=4.0)
    assert run.attempts == first.attempts and run.attempts is not first.attempts
    assert run.remaining() == pytest.approx(6.0)
    assert run.failed(gt.Unavailable("two")) == 0.2  # the second retry's backoff
    assert run.failed(gt.Unavailable("three")) is None  # the third attempt of three
    history = run.history()
    assert (history.count, history.stopped, history.elapsed) == (3, StopReason.EXHAUSTED, 4.0)


def test_a_resumed_run_without_a_timeout_has_no_deadline() -> None:
    ft = FakeTime()
    run = RetryRun.resumed(ft.policy(), [], elapsed=100.0)
    assert (run.remaining(), run.history().elapsed) == (None, 100.0)
