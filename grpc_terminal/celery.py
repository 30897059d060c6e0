"""Celery adapter: a task that calls a gRPC service retries as a :class:`~grpc_terminal.RetryPolicy` decides.

::

    import grpc
    from celery import Celery, Task

    import grpc_terminal as gt
    from grpc_terminal.celery import retrying

    app = Celery("grants", broker="redis://", backend="redis://")
    app.conf.update(result_serializer="pickle", result_accept_content=["pickle", "json"])
    policy = gt.RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=60.0)

    @app.task(bind=True)
    @retrying(policy)
    def grant(self: Task, address: str, user: str) -> str:
        with grpc.insecure_channel(address) as raw:
            channel = gt.intercept_channel(raw)
            ...

Each failure the task body raises is decided by the policy, over all the
task's runs:

* retryable (``UNAVAILABLE``, a ``RetryInfo`` ...) with attempts and time
  left: the task is retried the Celery way, a new run scheduled with
  ``task.retry(countdown=wait)``, where ``wait`` is the policy's backoff for
  that attempt, raised to the server's ``RetryInfo`` (the floor). Nothing
  sleeps in the worker.
* terminal (a ProvisionFailureDetail), not retryable (``NOT_FOUND``, a
  ``ValueError``), or retryable but out of attempts, time, budget, or asking
  for a wait beyond ``max_server_delay``: the task fails at once with the
  error, typed (a raw ``grpc.RpcError`` becomes its
  :class:`~grpc_terminal.StatusError`), with ``retry_history``, the
  :class:`~grpc_terminal.RetryHistory` of every run, and the policy's
  one-line note.

The policy's ``max_attempts`` counts runs (the first included) and its
``timeout`` runs from the first run's failure, countdowns included (wall
clock, so runs may move between workers). The attempts made so far travel
with the task in one message header (:data:`HEADER`, a short JSON text,
about 150 bytes per attempt); Celery's own ``max_retries`` is not consulted
for these retries. The policy's ``on_retry`` hooks are called in the worker
before each run is scheduled, its ``on_give_up`` hooks once when the task
gives up (with the history of every run), its budget counts per worker
process, and its ``sleep`` is never used.

For the failed task's ``AsyncResult.get()`` to raise the typed error with its
details and history, the result backend must store exceptions with pickle
(``result_serializer="pickle"``): with JSON, Celery keeps only the class name
and message. Pickle means that whoever can write to the result backend can
run code in every process that reads results: use it only with a backend
that only your workers can write to. Task messages can stay JSON.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeGuard, TypeVar, cast

import grpc

from grpc_terminal._decode import from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._history import Attempt, Verdict
from grpc_terminal._retry import MAX_DURATION, RetryPolicy, RetryRun, is_finite

try:
    from celery import Task
    from celery.app.task import Context
    from celery.exceptions import TaskPredicate
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("grpc_terminal.celery needs celery: pip install 'grpc-terminal[celery]'") from exc

__all__ = ["HEADER", "MAX_HEADER", "retry", "retrying"]

_log = logging.getLogger("grpc_terminal")

P = ParamSpec("P")
R = TypeVar("R")
TaskT = TypeVar("TaskT", bound="Task[Any, Any]")

#: The message header that carries the failed attempts from one run of a task
#: to the next: a JSON text (``{"v": 1, "started": <epoch seconds>, "attempts":
#: [...]}``). A header that cannot be read, is over :data:`MAX_HEADER`
#: characters or claims as many attempts as the policy allows in all is
#: ignored (logged): the run then counts as a first one. A forged header within
#: those bounds is believed: whoever can publish the task's messages can
#: shorten its retries (not lengthen them past the policy's limits).
HEADER = "grpc_terminal_retry"

_VERSION = 1
_TEXT_LIMIT = 200
_DEFAULT_POLICY = RetryPolicy()


def retry(task: Task[Any, Any], exc: BaseException, policy: RetryPolicy | None = None) -> BaseException:
    """Schedule the task's next run for a retryable failure, or give up: raise what it returns.

    Use it in a bound task's ``except`` block, the way Celery's own
    ``raise self.retry(exc=exc)`` is used::

        @app.task(bind=True)
        def grant(self: Task, address: str, user: str) -> str:
            try:
                return call_the_service(address, user)
            except Exception as exc:
                raise retry(self, exc, policy)

    It returns:

    * Celery's ``Retry``, after publishing the next run (with ``countdown``
      the policy's wait and the attempts so far in :data:`HEADER`), when the
      policy retries ``exc``;
    * otherwise the error to fail the task with: ``exc``, or its typed
      :class:`~grpc_terminal.StatusError` for a raw ``grpc.RpcError``, with
      ``retry_history`` covering every run;
    * ``exc`` itself, untouched, for Celery's own control flow (``Retry``,
      ``Ignore``, ``Reject``) and for what is not an ``Exception``
      (``KeyboardInterrupt``, ``SystemExit``), and when the task was called
      directly rather than run by a worker (there is no run to schedule).

    When the next run cannot be published (the broker is down), Celery's own
    ``task.retry`` raises ``Reject``, and so does this.

    Args:
        task: the bound task (``self`` of ``@app.task(bind=True)``), running now.
        exc: the exception the task body raised.
        policy: the :class:`~grpc_terminal.RetryPolicy` that decides; by
            default ``RetryPolicy()`` (5 attempts, 0.1 s to 5 s backoff).

    Raises:
        TypeError: ``policy`` is not a ``RetryPolicy``, or ``exc`` is not an exception.
        celery.exceptions.Reject: the next run could not be published.
    """
    return _decide(task, exc, _checked(policy), None)


def retrying(
    policy: RetryPolicy | None = None,
) -> Callable[[Callable[Concatenate[TaskT, P], R]], Callable[Concatenate[TaskT, P], R]]:
    """Decorate a bound task's function so that what it raises goes through :func:`retry`.

    Put it under ``@app.task(bind=True)``::

        @app.task(bind=True)
        @retrying(policy)
        def grant(self: Task, address: str, user: str) -> str: ...

    The policy's ``timeout`` then counts from the start of the first run
    (with :func:`retry` alone, from its first failure).

    Args:
        policy: the :class:`~grpc_terminal.RetryPolicy` that decides; by
            default ``RetryPolicy()``.

    Raises:
        TypeError: ``policy`` is not a ``RetryPolicy`` (at decoration time).
    """
    checked = _checked(policy)

    def decorate(fn: Callable[Concatenate[TaskT, P], R]) -> Callable[Concatenate[TaskT, P], R]:
        if not callable(fn):
            raise TypeError(f"retrying(...) decorates a function, got {type(fn).__name__}")

        @functools.wraps(fn)
        def run(task: TaskT, /, *args: P.args, **kwargs: P.kwargs) -> R:
            started = time.time()
            try:
                return fn(task, *args, **kwargs)
            except Exception as exc:
                raise _decide(task, exc, checked, started)  # noqa: B904 - the context is exc, as it should

        return run

    return decorate


def _checked(policy: RetryPolicy | None) -> RetryPolicy:
    if policy is None:
        return _DEFAULT_POLICY
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"policy must be a grpc_terminal.RetryPolicy, got {type(policy).__name__}")
    return policy


def _decide(
    task: Task[Any, Any], exc: BaseException, policy: RetryPolicy, started: float | None
) -> BaseException:
    if not isinstance(exc, BaseException):
        raise TypeError(f"exc must be an exception, got {type(exc).__name__}")
    if isinstance(exc, TaskPredicate) or not isinstance(exc, Exception):
        return exc
    request = task.request
    if request.called_directly:
        return exc
    now = time.time()
    attempts, first = _carried(request, policy)
    if first is None:
        first = now if started is None or not is_finite(started) else min(started, now)
    elapsed = min(max(now - first, 0.0), MAX_DURATION)
    run = RetryRun.resumed(policy, attempts, elapsed)
    wait = run.failed(exc)
    if wait is None:
        return run.give_up(exc)
    raw = isinstance(exc, grpc.RpcError) and not isinstance(exc, StatusError)
    typed = from_rpc_error(exc) if raw else exc
    headers = {**(request.headers or {}), HEADER: _encode(run.attempts, now - elapsed)}
    return _schedule(task, typed, wait, headers)


def _schedule(task: Task[Any, Any], exc: Exception, wait: float, headers: dict[str, Any]) -> BaseException:
    """Publish the next run in ``wait`` seconds; Celery's ``Retry`` to raise.

    ``max_retries`` is this run's retry number, so Celery's own limit never
    refuses a retry the policy allowed. Celery keeps an explicit
    ``max_retries`` on the task object (``override_max_retries``, read by its
    ``autoretry_for``); the previous value is put back.
    """
    state = vars(task)
    missing = object()
    previous = state.get("override_max_retries", missing)
    try:
        retried: BaseException = task.retry(
            exc=exc, countdown=wait, max_retries=task.request.retries + 1, throw=False, headers=headers
        )
        return retried
    finally:
        if previous is missing:
            state.pop("override_max_retries", None)
        else:
            state["override_max_retries"] = previous


# -- the header -----------------------------------------------------------------------


def _encode(attempts: list[Attempt], started: float) -> str:
    rows = [
        {
            "code": None if a.code is None else a.code.name,
            "error": a.error[:_TEXT_LIMIT],
            "retryable": a.verdict.retryable,
            "rule": a.verdict.rule[:_TEXT_LIMIT],
            "verdict_code": None if a.verdict.code is None else a.verdict.code.name,
            "delay": a.verdict.delay if is_finite(a.verdict.delay) else None,
            "wait": a.wait,
        }
        for a in attempts
    ]
    return json.dumps({"v": _VERSION, "started": started, "attempts": rows}, separators=(",", ":"))


class _Unreadable(ValueError):
    pass


#: The longest header read (about 6,000 attempts); a longer one is ignored (logged).
MAX_HEADER = 1_000_000


def _carried(request: Context, policy: RetryPolicy) -> tuple[list[Attempt], float | None]:
    """The attempts earlier runs made and when the first started; ``([], None)`` on a first run."""
    headers: object = request.headers
    raw: object = cast("dict[str, object]", headers).get(HEADER) if isinstance(headers, dict) else None
    if raw is None:
        raw = getattr(request, HEADER, None)  # custom headers are also the request's attributes
    if raw is None:
        return [], None
    try:
        if isinstance(raw, str) and len(raw) > MAX_HEADER:
            raise _Unreadable(f"{len(raw)} characters, over {MAX_HEADER}")
        attempts, started = _decode(raw)
        if policy.max_attempts is not None and len(attempts) >= policy.max_attempts:
            raise _Unreadable(f"{len(attempts)} earlier attempts, as many as the policy allows in all")
        return attempts, started
    except (_Unreadable, ValueError, TypeError, RecursionError) as err:
        _log.warning("grpc_terminal: ignoring an unreadable %s header (%s); counting this run as the first",
                     HEADER, err)
        return [], None


def _decode(raw: object) -> tuple[list[Attempt], float]:
    if not isinstance(raw, str):
        raise _Unreadable(f"a {type(raw).__name__}, not a text")
    payload = _object(json.loads(raw, parse_constant=_no_constant), "the header")
    if payload.get("v") != _VERSION:
        raise _Unreadable("not version 1")
    started, rows = payload.get("started"), payload.get("attempts")
    if not isinstance(started, int | float) or not is_finite(started) or not isinstance(rows, list):
        raise _Unreadable("no start time or no attempts")
    items = cast("list[object]", rows)  # isinstance leaves the item type unknown
    attempts = [_attempt(number, row) for number, row in enumerate(items, 1)]
    return attempts, float(started)


def _object(value: object, what: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Unreadable(f"{what} is not an object")
    return cast("dict[str, object]", value)  # JSON object keys are texts


def _no_constant(name: str) -> float:
    raise _Unreadable(f"{name} is not a number of seconds")


def _attempt(number: int, item: object) -> Attempt:
    row = _object(item, f"attempt {number}")
    retryable, delay, wait = row.get("retryable"), row.get("delay"), row.get("wait")
    if not isinstance(retryable, bool):
        raise _Unreadable(f"attempt {number}: retryable is not a boolean")
    if delay is not None and not _seconds(delay):
        raise _Unreadable(f"attempt {number}: bad delay")
    if wait is not None and not (_seconds(wait) and wait <= MAX_DURATION):
        raise _Unreadable(f"attempt {number}: bad wait")
    verdict = Verdict(
        retryable, _text(row, "rule", number), _code(row, "verdict_code", number),
        None if delay is None else float(delay),
    )
    return Attempt(
        number, _code(row, "code", number), _text(row, "error", number), verdict,
        None if wait is None else float(wait),
    )


def _seconds(value: object) -> TypeGuard[float]:
    """A finite, non-negative number (not a bool)."""
    return isinstance(value, int | float) and is_finite(value) and value >= 0


def _text(row: dict[str, object], key: str, number: int) -> str:
    value = row.get(key)
    if not isinstance(value, str):
        raise _Unreadable(f"attempt {number}: {key} is not a text")
    return value[:_TEXT_LIMIT]


def _code(row: dict[str, object], key: str, number: int) -> grpc.StatusCode | None:
    name = row.get(key)
    if name is None:
        return None
    if not isinstance(name, str) or name not in grpc.StatusCode.__members__:
        raise _Unreadable(f"attempt {number}: {key} is not a status code name")
    return grpc.StatusCode[name]
