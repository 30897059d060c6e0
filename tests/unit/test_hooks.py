"""The hook arguments: what is accepted, what is refused, and how hooks are called."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from typing import Any

import grpc
import pytest

import grpc_terminal as gt
from grpc_terminal._hooks import checked, notify

LOG = logging.getLogger("test.hooks")


def plain(*_: object) -> None:
    pass


async def later(*_: object) -> None:
    pass


class AsyncCallable:
    async def __call__(self, *_: object) -> None:
        pass


class SyncCallable:
    def __call__(self, *_: object) -> None:
        pass


class AsyncMethods:
    async def hook(self, *_: object) -> None:
        pass


async def agen(*_: object) -> Any:
    yield None


def test_accepted_forms_and_what_is_kept() -> None:
    assert checked(None, "on_error") is None
    assert checked(plain, "on_error") is plain
    instance = SyncCallable()
    assert checked(instance, "on_error") is instance
    assert checked([plain, instance], "on_error") == (plain, instance)
    pair = (plain, instance)
    assert checked(pair, "on_error") is pair
    assert checked([], "on_error") == ()


@pytest.mark.parametrize("value", ["hook", b"x", {"a": plain}, 3, {plain}])
def test_not_a_callable_or_a_list_of_them(value: object) -> None:
    with pytest.raises(TypeError, match=r"^on_retry must be a callable or a list or tuple of callables"):
        checked(value, "on_retry")


def test_a_bad_member_is_named_by_its_index() -> None:
    with pytest.raises(TypeError, match=r"^on_error\[1\] must be callable, got 'x'"):
        checked([plain, "x"], "on_error")


@pytest.mark.parametrize(
    "hook",
    [later, AsyncCallable(), functools.partial(later, 1), AsyncMethods().hook, agen],
    ids=["async-def", "async-call", "partial", "method", "async-generator"],
)
def test_async_hooks_are_refused(hook: Any) -> None:
    refused = (r"^on_give_up is an async function .*: it is called synchronously, so its coroutine "
               r"would never run; pass a plain function \(it may schedule work itself\)$")
    with pytest.raises(TypeError, match=refused):
        checked(hook, "on_give_up")
    with pytest.raises(TypeError, match=r"^on_give_up\[0\] is an async function"):
        checked([hook], "on_give_up")


def test_options_and_policy_check_their_hooks() -> None:
    with pytest.raises(TypeError, match=r"^on_error\[0\] is an async function"):
        gt.ServerOptions(on_error=[later])
    with pytest.raises(TypeError, match=r"^on_retry must be callable|^on_retry must be a callable"):
        gt.RetryPolicy(on_retry="log")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^on_give_up\[1\] must be callable"):
        gt.RetryPolicy(on_give_up=[plain, None])  # type: ignore[list-item]
    policy = gt.RetryPolicy(on_retry=[plain], on_give_up=[plain, plain])
    assert (policy.on_retry, policy.on_give_up) == ((plain,), (plain, plain))
    assert hash(policy) == hash(policy.replace())


def test_notify_calls_each_in_order_and_logs_what_fails(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[str, tuple[object, ...]]] = []

    def first(*args: object) -> None:
        seen.append(("first", args))

    def broken(*args: object) -> None:
        raise ValueError("down")

    def last(*args: object) -> None:
        seen.append(("last", args))

    with caplog.at_level(logging.ERROR, logger=LOG.name):
        notify((first, broken, last), LOG, "on_error", 1, "two")
    assert seen == [("first", (1, "two")), ("last", (1, "two"))]
    assert [r.getMessage() for r in caplog.records] == [f"on_error hook failed: {broken!r}"]
    assert caplog.records[0].exc_info is not None


def test_notify_with_one_callable_and_with_none() -> None:
    seen: list[object] = []
    notify(seen.append, LOG, "on_retry", "event")
    notify(None, LOG, "on_retry", "ignored")
    assert seen == ["event"]


def test_a_coroutine_returned_anyway_is_closed_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    # A lambda is not an async function, so it passes the check; what it returns is a coroutine.
    sneaky = lambda *args: later(*args)  # noqa: E731
    with caplog.at_level(logging.ERROR, logger=LOG.name):
        notify(checked(sneaky, "on_error"), LOG, "on_error", 1)  # no "never awaited" warning (an error here)
    assert [r.getMessage() for r in caplog.records] == [
        f"on_error hook returned a coroutine, which was not run: {sneaky!r}"
    ]


def test_a_base_exception_from_a_hook_is_not_swallowed() -> None:
    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        notify(interrupt, LOG, "on_error")


# -- the policy's on_retry and on_give_up ------------------------------------------------------


class Busy:
    """Fails with UNAVAILABLE ``failures`` times (or with ``error`` every time), then returns "ok"."""

    def __init__(self, failures: int = 1_000, error: BaseException | None = None) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if self.calls <= self.failures:
            raise gt.Unavailable(f"busy {self.calls}")
        return "ok"

    async def acall(self) -> str:
        return self()


def _policy(seen: list[tuple[str, tuple[Any, ...]]], **changes: Any) -> gt.RetryPolicy:
    def retry(*args: Any) -> None:
        seen.append(("retry", args))

    def give_up(*args: Any) -> None:
        seen.append(("give_up", args))

    def broken(*_: Any) -> None:
        raise RuntimeError("metrics down")

    waits: list[float] = []
    policy = gt.RetryPolicy(
        max_attempts=3, initial_backoff=0.5, max_backoff=1.0, jitter=0, sleep=waits.append,
        on_retry=[retry, broken], on_give_up=(broken, give_up),
    )
    return policy.replace(**changes)


@pytest.mark.parametrize("run", ["call", "acall"])
def test_each_retry_then_one_give_up_with_the_errors_own_history(run: str) -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    policy, busy = _policy(seen, async_sleep=lambda _: asyncio.sleep(0)), Busy()
    with pytest.raises(gt.Unavailable) as caught:
        if run == "call":
            policy.call(busy)
        else:
            asyncio.run(policy.acall(busy.acall))
    assert busy.calls == 3
    assert [name for name, _ in seen] == ["retry", "retry", "give_up"]
    (n1, w1, v1, e1), (n2, w2, _, e2) = seen[0][1], seen[1][1]
    assert (n1, w1, n2, w2) == (1, 0.5, 2, 1.0)
    assert (v1.rule, v1.code) == ("code", grpc.StatusCode.UNAVAILABLE)
    assert [str(e1), str(e2)] == ["busy 1", "busy 2"]
    history, error = seen[2][1]
    assert error is caught.value
    assert history is caught.value.retry_history
    assert (history.stopped, history.count, history.waits) == (gt.StopReason.EXHAUSTED, 3, (0.5, 1.0))


def test_a_terminal_failure_gives_up_at_once_without_a_retry() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    busy = Busy(error=gt.UserNotProvisionable("user 'bob' is SUSPENDED"))
    with pytest.raises(gt.UserNotProvisionable):
        _policy(seen).call(busy)
    assert [name for name, _ in seen] == ["give_up"]
    assert seen[0][1][0].stopped is gt.StopReason.TERMINAL


def test_no_hook_call_on_success_after_a_retry() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    assert _policy(seen).call(Busy(failures=1)) == "ok"
    assert [name for name, _ in seen] == ["retry"]


def test_a_grpc_error_is_reported_as_the_typed_error_raised() -> None:
    seen: list[tuple[str, tuple[Any, ...]]] = []
    raw = gt.NotFound("gone")  # a StatusError is raised as it is
    with pytest.raises(gt.NotFound) as caught:
        _policy(seen).call(Busy(error=raw))
    assert seen[0][1][1] is caught.value is raw


# -- what a hook raises, BaseException included ---------------------------------------------------


class GreenTimeout(BaseException):
    """Like a green-thread library's timeout: a BaseException that is not an Exception."""


@pytest.mark.parametrize("raised", [GreenTimeout, GeneratorExit, asyncio.CancelledError])
def test_a_base_exception_from_a_hook_is_logged_and_skipped(
    raised: type[BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[object] = []

    def hook(*_: object) -> None:
        raise raised()

    with caplog.at_level(logging.ERROR, logger=LOG.name):
        notify((hook, seen.append), LOG, "on_error", "event")
    assert seen == ["event"]
    assert [r.getMessage() for r in caplog.records] == [f"on_error hook failed: {hook!r}"]


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit])
def test_stopping_the_program_goes_up_on_the_main_thread_only(raised: type[BaseException]) -> None:
    def hook(*_: object) -> None:
        raise raised()

    with pytest.raises(raised):
        notify(hook, LOG, "on_error")  # pytest runs tests on the main thread
    outcome: list[BaseException | None] = []

    def elsewhere() -> None:
        try:
            notify(hook, LOG, "on_error")
        except BaseException as exc:  # recorded for the assertion below
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(10)
    assert outcome == [None]


def test_a_policy_hook_raising_a_base_exception_keeps_the_outcome() -> None:
    def hook(*_: object) -> None:
        raise GreenTimeout()

    policy = gt.RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0, jitter=0,
                            sleep=lambda _: None, on_retry=hook, on_give_up=hook)
    with pytest.raises(gt.Unavailable) as caught:
        policy.call(Busy())
    assert caught.value.retry_history.count == 2


def test_policy_fields_of_the_wrong_kind_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^budget must be a RetryBudget or None"):
        gt.RetryPolicy(budget=3)  # type: ignore[arg-type]
    for codes in ({"x"}, "UNAVAILABLE", 14):
        with pytest.raises(TypeError, match=r"^retryable_codes must be a collection of grpc.StatusCode"):
            gt.RetryPolicy(retryable_codes=codes)  # type: ignore[arg-type]
    for name in ("retryable", "sleep", "async_sleep", "clock", "random"):
        with pytest.raises(TypeError, match=rf"^{name} must be callable"):
            gt.RetryPolicy(**{name: 5})
    assert gt.RetryPolicy(retryable_codes=[grpc.StatusCode.UNAVAILABLE]).retryable_codes == frozenset(
        {grpc.StatusCode.UNAVAILABLE}
    )


def test_a_failing_policy_hook_is_logged_under_its_own_name(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("metrics down")

    policy = gt.RetryPolicy(max_attempts=2, initial_backoff=0, max_backoff=0, jitter=0,
                            sleep=lambda _: None, on_retry=broken, on_give_up=broken)
    with caplog.at_level(logging.ERROR, logger="grpc_terminal"), pytest.raises(gt.Unavailable):
        policy.call(Busy())
    assert [r.getMessage() for r in caplog.records] == [
        f"on_retry hook failed: {broken!r}", f"on_give_up hook failed: {broken!r}",
    ]
