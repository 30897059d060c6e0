"""Retry that stops at once on terminal failures and backs off on transient ones.

:class:`RetryPolicy` is a value: build it once, derive variants with
:meth:`RetryPolicy.replace`, and use it

* as a decorator: ``@policy`` on a sync or an ``async`` function;
* as a call wrapper: ``policy.call(fn, *args, **kwargs)``,
  ``await policy.acall(afn, *args, **kwargs)``;
* inside the client interceptors: ``intercept_channel(channel, retry=policy)``,
  ``grpc.aio.insecure_channel(..., interceptors=aio_interceptors(retry=policy))``;
* as gRPC's own retry: ``service_config(policy)`` (in ``_service_config``)
  for the ``grpc.service_config`` channel option.

Every decision comes from :func:`grpc_terminal.classify` (one precedence,
one code table). When retrying stops, the error raised is the last failure
(typed when it was a gRPC failure) with a :class:`RetryHistory` in its
``retry_history`` attribute and a one-line note (``exc.add_note``) saying how
many attempts were made, with which codes and waits, and why it stopped.

"Terminal" keeps the meaning of the ProvisionFailureDetail contract
(:func:`grpc_terminal.is_terminal`): :attr:`StopReason.TERMINAL` only for a
failure that carries one, :attr:`StopReason.NOT_RETRYABLE` for every other
failure the policy does not retry (``NOT_FOUND``, ``INVALID_ARGUMENT``, a
``ValueError`` ...).

Kept whole (over the ~400-line guide): the policy's fields, their validation and
their documentation are most of it, and the run of one call reads every field.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import logging
import math
import random as _random
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeAlias, TypedDict, TypeVar, Unpack, cast, overload

import grpc
import grpc.aio

from grpc_terminal._classify import RETRYABLE_CODES, classify, is_retryable
from grpc_terminal._decode import from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._history import NOTE_PREFIX, Attempt, RetryHistory, StopReason, Verdict
from grpc_terminal._hooks import checked, notify

__all__ = [
    "Attempt",
    "RetryBudget",
    "RetryHistory",
    "RetryPolicy",
    "StopReason",
]

_log = logging.getLogger("grpc_terminal")

P = ParamSpec("P")
T = TypeVar("T")

#: The longest duration a policy accepts, in seconds (10,000 years): the maximum of
#: ``google.protobuf.Duration``, which is also the longest duration gRPC's service
#: config accepts. Every duration field of :class:`RetryPolicy` is at most this.
MAX_DURATION = 315_576_000_000.0

#: The default :attr:`RetryPolicy.max_server_delay`: the longest server-suggested
#: wait (RetryInfo, ``grpc-retry-pushback-ms``) that is honoured, in seconds.
DEFAULT_MAX_SERVER_DELAY = 300.0

# ``time.sleep`` and ``threading.Event.wait`` overflow past about 292 years; a long
# wait is slept in pieces of at most this many seconds.
_SLEEP_PIECE = 86_400.0



class RetryBudget:
    """A token bucket shared by calls, in the spirit of gRPC's ``retryThrottling``.

    It starts full with ``max_tokens``. Every retryable failure takes one token,
    every success gives back ``token_ratio``. A retry is allowed only while more
    than half of ``max_tokens`` remain, so a backend that fails everything is
    hit about once per call instead of ``max_attempts`` times. Thread-safe.

    One budget per :class:`RetryPolicy` value: a policy used by several
    channels shares its budget between them; give each channel its own with
    ``policy.replace(budget=RetryBudget(...))``.
    """

    def __init__(self, max_tokens: float = 10, token_ratio: float = 0.1) -> None:
        if not 0 < max_tokens <= 1000 or not math.isfinite(max_tokens):
            raise ValueError(f"max_tokens must be in (0, 1000], got {max_tokens!r}")
        if not token_ratio > 0 or not math.isfinite(token_ratio):
            raise ValueError(f"token_ratio must be > 0, got {token_ratio!r}")
        self.max_tokens = float(max_tokens)
        self.token_ratio = float(token_ratio)
        self._tokens = self.max_tokens
        self._lock = threading.Lock()

    @property
    def tokens(self) -> float:
        """Tokens left now."""
        with self._lock:
            return self._tokens

    def record_failure(self) -> None:
        """A retryable failure: take one token."""
        with self._lock:
            self._tokens = max(0.0, self._tokens - 1)

    def record_success(self) -> None:
        """A success: give back ``token_ratio`` tokens."""
        with self._lock:
            self._tokens = min(self.max_tokens, self._tokens + self.token_ratio)

    def allows_retry(self) -> bool:
        """True while more than half of ``max_tokens`` remain."""
        with self._lock:
            return self._tokens > self.max_tokens / 2

    def __repr__(self) -> str:
        return (
            f"RetryBudget(max_tokens={self.max_tokens}, token_ratio={self.token_ratio}, "
            f"tokens={self.tokens})"
        )


#: A retry hook: ``(attempt, wait, verdict, error)``, called before each wait.
OnRetry: TypeAlias = Callable[[int, float, Verdict, BaseException], object]
#: A give-up hook: ``(history, error)``, called once when retrying stops with an error.
OnGiveUp: TypeAlias = Callable[[RetryHistory, BaseException], object]


def _sleep(seconds: float) -> None:
    """``time.sleep(seconds)`` for any finite wait: a long one is slept in pieces."""
    if seconds <= _SLEEP_PIECE:
        time.sleep(max(seconds, 0.0))
        return
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(left, _SLEEP_PIECE))


def _wait_event(event: threading.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event`` (any finite wait); True when it was set."""
    end = time.monotonic() + seconds
    while not event.is_set():
        left = end - time.monotonic()
        if left <= 0:
            break
        event.wait(min(left, _SLEEP_PIECE))
    return event.is_set()


def is_finite(value: object) -> bool:
    """An int or float (not a bool) that is a finite float: no NaN, no infinity, no 400-digit int."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def is_duration(value: object) -> bool:
    """A real number of seconds gRPC and protobuf can express."""
    return is_finite(value) and value <= MAX_DURATION  # type: ignore[operator]


def server_delay_too_long(delay: float | None, ceiling: float) -> bool:
    """True when a server-suggested ``delay`` is beyond ``ceiling`` seconds, or not a finite wait."""
    return delay is not None and not (is_finite(delay) and 0 <= delay <= ceiling)


def check_ceiling(value: float, name: str = "max_server_delay") -> float:
    """``value`` as a float when it is a valid ceiling on a server delay, else a ValueError."""
    if not is_duration(value) or value < 0:
        raise ValueError(f"{name} must be a number of seconds in [0, {MAX_DURATION:.0f}], got {value!r}")
    return float(value)


def safe_classify(
    exc: BaseException, retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES
) -> Verdict:
    """:func:`classify`, never raising.

    When classification cannot read the failure (a delay too large for a
    float, a broken subclass), the decision falls back on the code table:
    a retryable code gets an infinite delay (so a retrier gives up at once,
    the wait being unknowable), any other code is not retryable.
    """
    try:
        return classify(exc, retryable_codes=retryable_codes)
    except Exception:
        _log.debug("grpc_terminal: classification failed; deciding by code", exc_info=True)
    try:
        status = _status_of(exc)
        code = status.code() if status is not None else None
    except Exception:
        code = None
    if code is None:
        return Verdict(False, "not_grpc", None, None)
    retryable = code in retryable_codes
    return Verdict(retryable, "code", code, math.inf if retryable else None)


def _pending(result: object) -> bool:
    """True for a result whose work has not run yet: an awaitable, a grpc.aio call, an async iterator."""
    return (
        isinstance(result, grpc.aio.Call)
        or inspect.isawaitable(result)
        or inspect.isasyncgen(result)
        or callable(getattr(result, "__anext__", None))
    )


def _refuse_pending(fn: Callable[..., object], result: object) -> None:
    """Raise TypeError for a pending result, after cancelling it so nothing runs unretried."""
    if not _pending(result):
        return
    try:
        if inspect.iscoroutine(result):
            result.close()
        elif callable(getattr(result, "cancel", None)):
            result.cancel()  # type: ignore[attr-defined]
        # an async generator that never started needs no clean-up
    except Exception:
        _log.debug("grpc_terminal: cancelling a refused pending result failed", exc_info=True)
    name = getattr(fn, "__qualname__", None) or type(fn).__name__
    raise TypeError(
        f"{name} returned an awaitable or pending call ({type(result).__name__}), which would fail "
        "outside RetryPolicy: use `await policy.acall(fn, ...)`, or decorate an async def that awaits it"
    )


class PolicyChanges(TypedDict, total=False):
    """The fields :meth:`RetryPolicy.replace` may change (see :class:`RetryPolicy` for each)."""

    max_attempts: int | None
    initial_backoff: float
    max_backoff: float
    multiplier: float
    jitter: float
    timeout: float | None
    retryable: Callable[[BaseException], bool]
    retryable_codes: frozenset[grpc.StatusCode]
    budget: RetryBudget | None
    on_retry: OnRetry | Sequence[OnRetry] | None
    on_give_up: OnGiveUp | Sequence[OnGiveUp] | None
    sleep: Callable[[float], object]
    async_sleep: Callable[[float], Awaitable[object]]
    clock: Callable[[], float]
    random: Callable[[], float]
    max_server_delay: float


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter that stops at once on terminal failures.

    The n-th retry (n = 1, 2, ...) waits
    ``min(initial_backoff * multiplier ** (n - 1), max_backoff) * (1 - jitter * random())``,
    raised to the server's suggested delay (``RetryInfo``, else a non-negative
    ``grpc-retry-pushback-ms``) when there is one: that delay is a *floor*
    and may exceed ``max_backoff``, up to ``max_server_delay``. A server
    delay beyond that ceiling (or one that is not a finite number of seconds)
    ends retrying at once with :attr:`StopReason.SERVER_DELAY_TOO_LONG`, so a
    policy never sleeps for years, timeout or not. No wait ever reaches past
    the overall deadline: when the next wait would, retrying stops with
    :attr:`StopReason.DEADLINE` instead of sleeping into it.

    Fields and what 0 / None mean:

    * ``max_attempts``: attempts in all, the first included; ``1`` means no
      retry; ``None`` means no count limit (then ``timeout`` is required).
      ``0`` is rejected.
    * ``initial_backoff``, ``max_backoff`` (seconds): ``0`` means retry at
      once (still honouring a server's delay).
    * ``multiplier``: ``>= 1``; ``1`` gives a constant backoff. However
      many retries, the backoff never exceeds ``max_backoff``.
    * ``jitter``: fraction in [0, 1] of each backoff randomised away; ``0``
      is none, ``1`` is gRPC's "full jitter" (uniform between 0 and the backoff).
    * ``timeout`` (seconds): overall deadline from the first attempt, across
      attempts and waits; ``None`` means none. ``0`` is rejected. Inside the
      client interceptors the call's own ``timeout=`` is an overall deadline
      too: each attempt gets what is left of the earlier of the two.
    * ``max_server_delay`` (seconds, default 300): the ceiling on a
      server-suggested wait. A longer one is not slept: the policy gives up
      at once with the error (:attr:`StopReason.SERVER_DELAY_TOO_LONG`).
      ``0`` honours only zero delays.
    * ``retryable``: the predicate; by default :func:`is_retryable` with
      ``retryable_codes`` as the code table (which :func:`service_config`
      uses too). A custom predicate has the last word, even over a
      ProvisionFailureDetail.
    * ``budget``: an optional :class:`RetryBudget` shared by every call made
      with this policy.
    * ``on_retry(attempt, wait, verdict, error)``: called before each wait
      (for logs, traces and metrics) with the 1-based number of the attempt
      that failed, the seconds about to be waited, the policy's
      :class:`Verdict` and the error.
    * ``on_give_up(history, error)``: called once when retrying stops with
      an error, whatever the :class:`StopReason` (a terminal failure on the
      first attempt included), with the :class:`RetryHistory` already
      attached to the error about to be raised. Not called on success.
    * Both hooks take one callable or a list or tuple of them (kept as a
      tuple), called in order on the caller's thread or task; what one
      raises is logged and skipped, and never changes the call's outcome.
      An ``async def`` hook is refused (its coroutine would never run).
    * ``sleep``, ``async_sleep``, ``clock``, ``random``: injectable for tests.
      With the default ``time.sleep`` the policy sleeps a long wait in
      pieces (one ``time.sleep`` overflows past about 292 years).

    Every duration (``initial_backoff``, ``max_backoff``, ``timeout``,
    ``max_server_delay``) is a finite number of seconds of at most
    :data:`MAX_DURATION` (10,000 years, the longest duration gRPC's service
    config and ``google.protobuf.Duration`` accept); anything else is a
    :class:`ValueError`. A field of the wrong kind (a ``budget`` that is not
    a :class:`RetryBudget`, ``retryable_codes`` that are not
    ``grpc.StatusCode`` members, a hook, predicate or injected function that
    is not callable) is a :class:`TypeError`.

    When retrying is unsafe: a retry repeats the request. UNAVAILABLE before
    the request left the client is always safe, but DEADLINE_EXCEEDED,
    UNKNOWN, INTERNAL and ABORTED may come *after* the server acted, so only
    retry methods that are idempotent (or carry an idempotency key), or
    narrow ``retryable_codes``. The interceptors never re-send a call with a
    streaming request, and retry a server-streaming call only while no
    response has reached the caller.
    """

    max_attempts: int | None = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    timeout: float | None = None
    retryable: Callable[[BaseException], bool] = is_retryable
    retryable_codes: frozenset[grpc.StatusCode] = RETRYABLE_CODES
    budget: RetryBudget | None = None
    on_retry: OnRetry | Sequence[OnRetry] | None = None
    on_give_up: OnGiveUp | Sequence[OnGiveUp] | None = None
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=_random.random, repr=False)
    max_server_delay: float = DEFAULT_MAX_SERVER_DELAY

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        bad = isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        if attempts is not None and bad:
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff", "max_server_delay"):
            value = getattr(self, name)
            if not is_duration(value) or value < 0:
                raise ValueError(
                    f"{name} must be a number of seconds in [0, {MAX_DURATION:.0f}], got {value!r}"
                )
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must be >= initial_backoff")
        if not is_finite(self.multiplier) or self.multiplier < 1:
            raise ValueError(f"multiplier must be a finite number >= 1, got {self.multiplier!r}")
        if not is_finite(self.jitter) or not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")
        if self.timeout is not None and (not is_duration(self.timeout) or self.timeout <= 0):
            raise ValueError(
                f"timeout must be None or a number of seconds in (0, {MAX_DURATION:.0f}], "
                f"got {self.timeout!r}"
            )
        if self.max_attempts is None and self.timeout is None:
            raise ValueError("max_attempts=None needs a timeout: retrying would never stop")
        codes = self.retryable_codes
        if isinstance(codes, str | bytes) or not isinstance(codes, Collection) or not all(
            isinstance(code, grpc.StatusCode) for code in codes
        ):
            raise TypeError(f"retryable_codes must be a collection of grpc.StatusCode, got {codes!r}")
        object.__setattr__(self, "retryable_codes", frozenset(codes))
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {self.budget!r}")
        for name in ("retryable", "sleep", "async_sleep", "clock", "random"):
            if not callable(getattr(self, name)):
                raise TypeError(f"{name} must be callable, got {getattr(self, name)!r}")
        for name in ("on_retry", "on_give_up"):
            object.__setattr__(self, name, checked(getattr(self, name), name))

    def replace(self, **changes: Unpack[PolicyChanges]) -> RetryPolicy:
        """A copy with ``changes`` applied (validated like the original).

        Args:
            changes: any of the policy's fields, by name.
        """
        return dataclasses.replace(self, **changes)

    # -- decisions --------------------------------------------------------------

    def backoff(self, retry: int) -> float:
        """The backoff before retry number ``retry`` (1-based), before jitter and floor.

        Never more than ``max_backoff``, however large ``retry`` or ``multiplier``.
        """
        if self.initial_backoff == 0:
            return 0.0
        try:
            base = self.initial_backoff * float(self.multiplier) ** (retry - 1)
        except OverflowError:  # the power overflows a float, or ``retry`` does
            base = math.inf
        return float(min(base, self.max_backoff))

    def server_delay_too_long(self, delay: float | None) -> bool:
        """True when ``delay`` (a server-suggested wait) is beyond ``max_server_delay`` or unreadable."""
        return server_delay_too_long(delay, self.max_server_delay)

    def verdict(self, exc: BaseException) -> Verdict:
        """What this policy decides about ``exc``.

        Never raises for a failure classification cannot read (an absurd
        delay): a retryable code then gets an infinite delay, which the
        policy treats as too long to wait.
        """
        verdict = safe_classify(exc, self.retryable_codes)
        if self.retryable is is_retryable:
            return verdict
        decision = bool(self.retryable(exc))
        if decision == verdict.retryable:
            return verdict
        return Verdict(decision, "predicate", verdict.code, verdict.delay if decision else None)

    # -- use as a wrapper ---------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, retried as this policy says.

        ``fn`` must finish its work before it returns: a result that is still
        pending (a coroutine, a ``grpc.aio`` call, any awaitable) would fail
        outside the policy, so it is cancelled and a :class:`TypeError` raised
        instead; use ``await policy.acall(...)`` for those.
        """
        run = RetryRun(self)
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                wait = run.failed(exc)
                if wait is None:
                    final = run.give_up(exc)
                    if final is exc:
                        raise
                    raise final from exc
                run.sleep(wait)
                continue
            _refuse_pending(fn, result)
            run.succeeded()
            return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried as this policy says."""
        run = RetryRun(self)
        while True:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                wait = run.failed(exc)
                if wait is None:
                    final = run.give_up(exc)
                    if final is exc:
                        raise
                    raise final from exc
                await run.async_sleep(wait)
                continue
            run.succeeded()
            return result

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or ``async`` function so each call is retried.

        ``fn``: the function. An ``async def`` is retried with :meth:`acall`;
        any other function with :meth:`call`, so a sync function that returns
        something pending (a ``grpc.aio`` call, a coroutine) raises
        :class:`TypeError`: decorate an ``async def`` that awaits it instead.
        """
        if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError("RetryPolicy cannot decorate a generator: its calls cannot be repeated")
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                return await self.acall(fn, *args, **kwargs)

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            return self.call(fn, *args, **kwargs)

        return wrapper


class RetryRun:
    """The state of one retried call: attempts so far and the deadline."""

    def __init__(self, policy: RetryPolicy, call_timeout: float | None = None) -> None:
        self.policy = policy
        self.start = policy.clock()
        limits = [t for t in (policy.timeout, call_timeout) if t is not None]
        self.deadline = self.start + min(limits) if limits else None
        self.attempts: list[Attempt] = []
        self.stopped: StopReason | None = None

    @classmethod
    def resumed(cls, policy: RetryPolicy, attempts: Sequence[Attempt], elapsed: float) -> RetryRun:
        """A run that already made ``attempts`` and started ``elapsed`` seconds ago.

        For a call whose attempts run in separate processes (a Celery task's
        runs): the next failure is attempt ``len(attempts) + 1``, and the
        policy's ``timeout`` counts from the first attempt.

        Args:
            policy: the retry policy.
            attempts: the failed attempts so far, in order.
            elapsed: seconds since the first attempt started (at least 0).
        """
        run = cls(policy)
        run.attempts = list(attempts)
        run.start -= elapsed
        if run.deadline is not None:
            run.deadline -= elapsed
        return run

    def remaining(self) -> float | None:
        """Seconds left before the overall deadline, or None."""
        return None if self.deadline is None else self.deadline - self.policy.clock()

    def failed(self, exc: BaseException) -> float | None:
        """Record a failed attempt: the wait before the next, or None to stop."""
        policy = self.policy
        number = len(self.attempts) + 1
        verdict = policy.verdict(exc)
        code = _code_of(exc)
        wait: float | None = None
        if not verdict.retryable:
            terminal = verdict.rule == "provision_failure_detail"
            self.stopped = StopReason.TERMINAL if terminal else StopReason.NOT_RETRYABLE
        else:
            if policy.budget is not None:
                policy.budget.record_failure()
            remaining = self.remaining()
            if policy.max_attempts is not None and number >= policy.max_attempts:
                self.stopped = StopReason.EXHAUSTED
            elif policy.budget is not None and not policy.budget.allows_retry():
                self.stopped = StopReason.THROTTLED
            elif policy.server_delay_too_long(verdict.delay):
                self.stopped = StopReason.SERVER_DELAY_TOO_LONG
            else:
                wait = policy.backoff(number) * (1 - policy.jitter * policy.random())
                if verdict.delay is not None:
                    wait = max(wait, verdict.delay)
                if remaining is not None and wait >= remaining:
                    self.stopped = StopReason.DEADLINE
                    wait = None
        self.attempts.append(Attempt(number, code, type(exc).__name__, verdict, wait))
        if wait is not None:
            notify(policy.on_retry, _log, "on_retry", number, wait, verdict, exc)
        return wait

    def stop(self, exc: BaseException, reason: StopReason) -> None:
        """Record a failed attempt that may not be retried whatever it is, and attach the history."""
        verdict = self.policy.verdict(exc)
        code = _code_of(exc)
        self.attempts.append(Attempt(len(self.attempts) + 1, code, type(exc).__name__, verdict, None))
        self.stopped = reason
        self.end(exc)

    def succeeded(self) -> None:
        if self.policy.budget is not None:
            self.policy.budget.record_success()

    def sleep(self, wait: float, cancelled: threading.Event | None = None) -> bool:
        """Wait ``wait`` seconds before the next attempt; True when ``cancelled`` was set.

        With the policy's default ``sleep`` (``time.sleep``) the wait is an
        event wait, in pieces, so any finite wait works and a set ``cancelled``
        ends it at once; an injected ``sleep`` runs to its end and
        ``cancelled`` is checked before and after it.
        """
        policy = self.policy
        default = policy.sleep is time.sleep
        if cancelled is None:
            (_sleep if default else policy.sleep)(wait)
            return False
        if default:
            return _wait_event(cancelled, wait)
        if not cancelled.is_set():
            policy.sleep(wait)
        return cancelled.is_set()

    async def async_sleep(self, wait: float, cancelled: asyncio.Event | None = None) -> bool:
        """``await`` the policy's ``async_sleep(wait)``; True when ``cancelled`` was set.

        A set ``cancelled`` (an :class:`asyncio.Event` of the running loop)
        ends the wait at once, whatever ``async_sleep`` is.
        """
        if cancelled is None:
            await self.policy.async_sleep(wait)
            return False
        if cancelled.is_set():
            return True
        sleeper = asyncio.ensure_future(self.policy.async_sleep(wait))
        watcher = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait((sleeper, watcher), return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeper, watcher):
                task.cancel()
            await asyncio.gather(sleeper, watcher, return_exceptions=True)
        return cancelled.is_set()

    def history(self) -> RetryHistory:
        return RetryHistory(
            tuple(self.attempts),
            self.stopped or StopReason.NOT_RETRYABLE,
            max(0.0, self.policy.clock() - self.start),
        )

    def give_up(self, exc: BaseException, reason: StopReason | None = None) -> BaseException:
        """The error to raise, typed when it is a gRPC failure, with the history attached."""
        if reason is not None:
            self.stopped = reason
        final: BaseException = exc
        if isinstance(exc, grpc.RpcError) and not isinstance(exc, StatusError):
            final = from_rpc_error(exc)
        self.end(final)
        return final

    def end(self, error: BaseException) -> None:
        """Retrying stopped with ``error``: attach the history to it and call ``on_give_up``."""
        history = self.history()
        attach_history(error, history)
        notify(self.policy.on_give_up, _log, "on_give_up", history, error)

    def timeout(self) -> float | None:
        """The timeout for the next attempt: what is left of the deadline."""
        remaining = self.remaining()
        return None if remaining is None else max(remaining, 0.0)


def _status_of(exc: BaseException) -> StatusError | None:
    if isinstance(exc, StatusError):
        return exc
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        return from_rpc_error(exc)
    return None


def _code_of(exc: BaseException) -> grpc.StatusCode | None:
    try:
        status = _status_of(exc)
        return status.code() if status is not None else None
    except Exception:
        return None


def attach_history(exc: BaseException, history: RetryHistory) -> None:
    """Set ``exc.retry_history`` and replace our note on ``exc`` with a fresh one."""
    with contextlib.suppress(AttributeError, TypeError):
        exc.retry_history = history  # type: ignore[attr-defined]
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        entries = cast("list[object]", notes)  # isinstance leaves the item type unknown
        notes[:] = [n for n in entries if not (isinstance(n, str) and n.startswith(NOTE_PREFIX))]
    exc.add_note(history.describe())
