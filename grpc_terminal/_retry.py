"""Retry that stops at once on terminal failures and backs off on transient ones.

:class:`RetryPolicy` is a value: build it once, derive variants with
:meth:`RetryPolicy.replace`, and use it

* as a decorator: ``@policy`` on a sync or an ``async`` function;
* as a call wrapper: ``policy.call(fn, *args, **kwargs)``,
  ``await policy.acall(afn, *args, **kwargs)``;
* inside the client interceptors: ``intercept_channel(channel, retry=policy)``,
  ``grpc.aio.insecure_channel(..., interceptors=aio_interceptors(retry=policy))``;
* as gRPC's own retry: ``service_config(policy)`` for the
  ``grpc.service_config`` channel option.

Every decision comes from :func:`grpc_terminal.classify` (one precedence,
one code table). When retrying stops, the error raised is the last failure
(typed when it was a gRPC failure) with a :class:`RetryHistory` in its
``retry_history`` attribute and a one-line note (``exc.add_note``) saying how
many attempts were made, with which codes and waits, and why it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import inspect
import json
import logging
import math
import random as _random
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar, overload

import grpc
import grpc.aio

from grpc_terminal._classify import RETRYABLE_CODES, Verdict, classify, is_retryable
from grpc_terminal._codec import from_rpc_error
from grpc_terminal._errors import StatusError

__all__ = [
    "Attempt",
    "RetryBudget",
    "RetryHistory",
    "RetryPolicy",
    "StopReason",
    "service_config",
]

_log = logging.getLogger("grpc_terminal")

P = ParamSpec("P")
T = TypeVar("T")

#: gRPC's retry implementations clamp ``maxAttempts`` to this (gRFC A6).
NATIVE_MAX_ATTEMPTS = 5

_NOTE_PREFIX = "grpc-terminal retry:"


class StopReason(enum.StrEnum):
    """Why retrying stopped."""

    #: The failure is not retryable (terminal by classification or predicate).
    TERMINAL = "terminal"
    #: ``max_attempts`` attempts were made.
    EXHAUSTED = "exhausted"
    #: The next wait would reach the overall deadline (policy ``timeout`` or the call's).
    DEADLINE = "deadline"
    #: The retry budget (:class:`RetryBudget`) has too few tokens left.
    THROTTLED = "throttled"
    #: A response already reached the caller; the call cannot be repeated.
    COMMITTED = "committed"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt."""

    #: 1 for the first attempt.
    number: int
    #: The gRPC code, or None for an exception that carries no gRPC status.
    code: grpc.StatusCode | None
    #: The exception's class name.
    error: str
    #: What the policy decided about this failure.
    verdict: Verdict
    #: Seconds waited before the next attempt; None for the last one.
    wait: float | None


@dataclass(frozen=True, slots=True)
class RetryHistory:
    """Every failed attempt of one retried call, and why retrying stopped."""

    attempts: tuple[Attempt, ...]
    stopped: StopReason
    #: Seconds from the first attempt until retrying stopped (policy clock).
    elapsed: float

    @property
    def count(self) -> int:
        """How many attempts were made."""
        return len(self.attempts)

    @property
    def codes(self) -> tuple[grpc.StatusCode | None, ...]:
        """The code of each attempt, in order."""
        return tuple(a.code for a in self.attempts)

    @property
    def waits(self) -> tuple[float, ...]:
        """The waits between attempts, in order (one fewer than attempts)."""
        return tuple(a.wait for a in self.attempts if a.wait is not None)

    def describe(self) -> str:
        """One line: attempts, codes, waits and the stop reason."""
        codes = ", ".join(a.code.name if a.code is not None else a.error for a in self.attempts)
        waits = ", ".join(f"{w:.3g}s" for w in self.waits) or "none"
        plural = "attempt" if self.count == 1 else "attempts"
        return (
            f"{_NOTE_PREFIX} stopped ({self.stopped.value}) after {self.count} {plural}"
            f" [{codes}]; waits: {waits}; {self.elapsed:.3g}s elapsed"
        )


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


OnRetry = Callable[[int, float, Verdict, BaseException], object]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter that stops at once on terminal failures.

    The n-th retry (n = 1, 2, ...) waits
    ``min(initial_backoff * multiplier ** (n - 1), max_backoff) * (1 - jitter * random())``,
    raised to the server's suggested delay (``RetryInfo``, else a non-negative
    ``grpc-retry-pushback-ms``) when there is one: that delay is a *floor*
    and may exceed ``max_backoff``. No wait ever reaches past the overall
    deadline: when the next wait would, retrying stops with
    :attr:`StopReason.DEADLINE` instead of sleeping into it.

    Fields and what 0 / None mean:

    * ``max_attempts``: attempts in all, the first included; ``1`` means no
      retry; ``None`` means no count limit (then ``timeout`` is required).
      ``0`` is rejected.
    * ``initial_backoff``, ``max_backoff`` (seconds): ``0`` means retry at
      once (still honouring a server's delay).
    * ``multiplier``: ``>= 1``; ``1`` gives a constant backoff.
    * ``jitter``: fraction in [0, 1] of each backoff randomised away; ``0``
      is none, ``1`` is gRPC's "full jitter" (uniform between 0 and the backoff).
    * ``timeout`` (seconds): overall deadline from the first attempt, across
      attempts and waits; ``None`` means none. ``0`` is rejected. Inside the
      client interceptors the call's own ``timeout=`` is an overall deadline
      too: each attempt gets what is left of the earlier of the two.
    * ``retryable``: the predicate; by default :func:`is_retryable` with
      ``retryable_codes`` as the code table (which :func:`service_config`
      uses too). A custom predicate has the last word, even over a
      ProvisionFailureDetail.
    * ``budget``: an optional :class:`RetryBudget` shared by every call made
      with this policy.
    * ``on_retry(attempt, wait, verdict, error)``: called before each wait
      (for logs and metrics); what it raises is logged and ignored.
    * ``sleep``, ``async_sleep``, ``clock``, ``random``: injectable for tests.

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
    on_retry: OnRetry | None = None
    sleep: Callable[[float], object] = field(default=time.sleep, repr=False)
    async_sleep: Callable[[float], Awaitable[object]] = field(default=asyncio.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=_random.random, repr=False)

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        bad = isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
        if attempts is not None and bad:
            raise ValueError(f"max_attempts must be an int >= 1 or None, got {self.max_attempts!r}")
        for name in ("initial_backoff", "max_backoff"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_backoff < self.initial_backoff:
            raise ValueError("max_backoff must be >= initial_backoff")
        if not math.isfinite(self.multiplier) or self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {self.jitter!r}")
        if self.timeout is not None and (not math.isfinite(self.timeout) or self.timeout <= 0):
            raise ValueError(f"timeout must be > 0 or None, got {self.timeout!r}")
        if self.max_attempts is None and self.timeout is None:
            raise ValueError("max_attempts=None needs a timeout: retrying would never stop")
        object.__setattr__(self, "retryable_codes", frozenset(self.retryable_codes))

    def replace(self, **changes: Any) -> RetryPolicy:
        """A copy with ``changes`` applied (validated like the original)."""
        return dataclasses.replace(self, **changes)

    # -- decisions --------------------------------------------------------------

    def backoff(self, retry: int) -> float:
        """The backoff before retry number ``retry`` (1-based), before jitter and floor."""
        try:
            base = self.initial_backoff * self.multiplier ** (retry - 1)
        except OverflowError:
            base = self.max_backoff
        return min(base, self.max_backoff)

    def verdict(self, exc: BaseException) -> Verdict:
        """What this policy decides about ``exc``."""
        verdict = classify(exc, retryable_codes=self.retryable_codes)
        if self.retryable is is_retryable:
            return verdict
        decision = bool(self.retryable(exc))
        if decision == verdict.retryable:
            return verdict
        return Verdict(decision, "predicate", verdict.code, verdict.delay if decision else None)

    # -- use as a wrapper ---------------------------------------------------------

    def call(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)``, retried as this policy says."""
        run = _Run(self)
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
                self.sleep(wait)
                continue
            run.succeeded()
            return result

    async def acall(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """``await fn(*args, **kwargs)``, retried as this policy says."""
        run = _Run(self)
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
                await self.async_sleep(wait)
                continue
            run.succeeded()
            return result

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...

    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a sync or ``async`` function so each call is retried."""
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


class _Run:
    """The state of one retried call: attempts so far and the deadline."""

    def __init__(self, policy: RetryPolicy, call_timeout: float | None = None) -> None:
        self.policy = policy
        self.start = policy.clock()
        limits = [t for t in (policy.timeout, call_timeout) if t is not None]
        self.deadline = self.start + min(limits) if limits else None
        self.attempts: list[Attempt] = []
        self.stopped: StopReason | None = None

    def remaining(self) -> float | None:
        """Seconds left before the overall deadline, or None."""
        return None if self.deadline is None else self.deadline - self.policy.clock()

    def failed(self, exc: BaseException) -> float | None:
        """Record a failed attempt: the wait before the next, or None to stop."""
        policy = self.policy
        number = len(self.attempts) + 1
        verdict = policy.verdict(exc)
        status = _status_of(exc)
        code = status.code() if status is not None else None
        wait: float | None = None
        if not verdict.retryable:
            self.stopped = StopReason.TERMINAL
        else:
            if policy.budget is not None:
                policy.budget.record_failure()
            remaining = self.remaining()
            if policy.max_attempts is not None and number >= policy.max_attempts:
                self.stopped = StopReason.EXHAUSTED
            elif policy.budget is not None and not policy.budget.allows_retry():
                self.stopped = StopReason.THROTTLED
            else:
                wait = policy.backoff(number) * (1 - policy.jitter * policy.random())
                if verdict.delay is not None:
                    wait = max(wait, verdict.delay)
                if remaining is not None and wait >= remaining:
                    self.stopped = StopReason.DEADLINE
                    wait = None
        self.attempts.append(Attempt(number, code, type(exc).__name__, verdict, wait))
        if wait is not None and policy.on_retry is not None:
            try:
                policy.on_retry(number, wait, verdict, exc)
            except Exception:
                _log.exception("grpc_terminal: on_retry callback failed")
        return wait

    def stop(self, exc: BaseException, reason: StopReason) -> None:
        """Record a failed attempt that may not be retried whatever it is, and attach the history."""
        verdict = self.policy.verdict(exc)
        status = _status_of(exc)
        code = status.code() if status is not None else None
        self.attempts.append(Attempt(len(self.attempts) + 1, code, type(exc).__name__, verdict, None))
        self.stopped = reason
        attach_history(exc, self.history())

    def succeeded(self) -> None:
        if self.policy.budget is not None:
            self.policy.budget.record_success()

    def history(self) -> RetryHistory:
        return RetryHistory(
            tuple(self.attempts),
            self.stopped or StopReason.TERMINAL,
            max(0.0, self.policy.clock() - self.start),
        )

    def give_up(self, exc: BaseException, reason: StopReason | None = None) -> BaseException:
        """The error to raise, typed when it is a gRPC failure, with the history attached."""
        if reason is not None:
            self.stopped = reason
        final: BaseException = exc
        if isinstance(exc, grpc.RpcError) and not isinstance(exc, StatusError):
            final = from_rpc_error(exc)
        attach_history(final, self.history())
        return final

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


def attach_history(exc: BaseException, history: RetryHistory) -> None:
    """Set ``exc.retry_history`` and replace our note on ``exc`` with a fresh one."""
    with contextlib.suppress(AttributeError, TypeError):
        exc.retry_history = history  # type: ignore[attr-defined]
    notes = getattr(exc, "__notes__", None)
    if isinstance(notes, list):
        notes[:] = [n for n in notes if not (isinstance(n, str) and n.startswith(_NOTE_PREFIX))]
    exc.add_note(history.describe())


# -- native gRPC retry ------------------------------------------------------------------


def _duration(seconds: float) -> str:
    return f"{max(seconds, 0.001):.3f}".rstrip("0").rstrip(".") + "s"


def service_config(
    policy: RetryPolicy,
    *,
    services: Collection[str] = (),
    methods: Collection[tuple[str, str]] = (),
    retryable_codes: Collection[grpc.StatusCode] | None = None,
) -> str:
    """The JSON for the ``grpc.service_config`` channel option: gRPC's own retry.

    ``retryableStatusCodes`` come from ``retryable_codes`` (default: the
    policy's code table, the one :func:`is_retryable` uses). The config
    applies to every method unless ``services`` (``"pkg.Service"``) or
    ``methods`` (``("pkg.Service", "Method")``) narrow it.

    gRPC caps ``maxAttempts`` at 5 (gRFC A6): a policy allowing more (or no
    limit) gets 5 here, with a :class:`UserWarning`. gRPC always uses full
    jitter and needs backoffs > 0, so ``jitter`` is not expressed and a zero
    backoff becomes 1 ms. ``timeout`` becomes the per-call ``timeout``, and a
    :class:`RetryBudget` becomes ``retryThrottling``. A policy with
    ``max_attempts=1`` gives no ``retryPolicy``. Predicates cannot travel:
    gRPC decides by code alone, except that it stops at once when the server
    sends ``grpc-retry-pushback-ms: -1``, as our servers do for every terminal
    failure, so a terminal failure costs one attempt even when its code is
    listed. Native retry needs ``grpc.enable_retries`` (on by default in
    current grpcio).
    """
    codes = sorted(
        (c.name for c in (policy.retryable_codes if retryable_codes is None else retryable_codes)),
    )
    attempts = policy.max_attempts
    if attempts is None or attempts > NATIVE_MAX_ATTEMPTS:
        warnings.warn(
            f"gRPC caps maxAttempts at {NATIVE_MAX_ATTEMPTS}; "
            f"the policy's max_attempts={attempts!r} becomes {NATIVE_MAX_ATTEMPTS} in the service config",
            UserWarning,
            stacklevel=2,
        )
        attempts = NATIVE_MAX_ATTEMPTS
    names: list[dict[str, str]] = [{"service": s} for s in services]
    names += [{"service": s, "method": m} for s, m in methods]
    method_config: dict[str, Any] = {"name": names or [{}]}
    if attempts > 1:
        method_config["retryPolicy"] = {
            "maxAttempts": attempts,
            "initialBackoff": _duration(policy.initial_backoff),
            "maxBackoff": _duration(max(policy.max_backoff, policy.initial_backoff)),
            "backoffMultiplier": policy.multiplier,
            "retryableStatusCodes": codes,
        }
    if policy.timeout is not None:
        method_config["timeout"] = _duration(policy.timeout)
    config: dict[str, Any] = {"methodConfig": [method_config]}
    if policy.budget is not None:
        config["retryThrottling"] = {
            "maxTokens": int(policy.budget.max_tokens)
            if policy.budget.max_tokens.is_integer()
            else policy.budget.max_tokens,
            "tokenRatio": round(policy.budget.token_ratio, 3),
        }
    return json.dumps(config, sort_keys=True)
