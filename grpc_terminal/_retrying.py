"""Running a :class:`~grpc_terminal.RetryPolicy` over sync unary-unary calls.

The policy itself (a value: backoff, budget, history) lives in ``_retry``;
this module applies it to sync unary-unary calls (``_retrying_stream`` to
response streams, ``_aio_retrying`` to grpc.aio calls) and holds what they
share. The retrying multicallables make every attempt with the typed
multicallables of ``_calls``, so they judge typed errors and the caller gets
the last one, carrying ``retry_history``; the typed channel (``_client``)
hands them out in place of the typed ones when it has a policy.

Cancelling a retried call ends it at once, in an attempt or in the wait
between two: the caller then sees what grpc shows for a cancelled call
(``cancelled()``, ``grpc.FutureCancelledError`` from ``result()``).
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import grpc

from grpc_terminal._calls import LocallyCancelled, Raised, TypedUnary, debug_string_of
from grpc_terminal._errors import StatusError
from grpc_terminal._retry import RetryPolicy, RetryRun

__all__ = ["Attempt", "RetryingCall", "RetryingUnary", "call_options", "checked_policy"]

_log = logging.getLogger("grpc_terminal")

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future

#: Starts one attempt with the given timeout; its call (never raises: a failure is a call too).
Attempt = Callable[[float | None], Any]


def checked_policy(policy: object) -> RetryPolicy:
    """``policy``, when it is a :class:`~grpc_terminal.RetryPolicy`.

    Args:
        policy: the ``retry=`` argument.

    Raises:
        TypeError: ``policy`` is something else.
    """
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"retry must be a RetryPolicy, got {type(policy).__name__}")
    return policy


def call_options(
    timeout: float | None = None,
    metadata: Any = None,
    credentials: grpc.CallCredentials | None = None,
    wait_for_ready: bool | None = None,
    compression: grpc.Compression | None = None,
) -> tuple[float | None, dict[str, Any]]:
    """A multicallable's arguments after the request: the call's timeout, and what every attempt gets.

    Args:
        timeout: the call's timeout, in seconds.
        metadata: the call's metadata.
        credentials: the call's credentials.
        wait_for_ready: grpc's wait-for-ready flag.
        compression: the call's compression.
    """
    options = {
        "metadata": metadata,
        "credentials": credentials,
        "wait_for_ready": wait_for_ready,
        "compression": compression,
    }
    return timeout, options


def _run_callback(fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        _log.exception("grpc_terminal: a call's callback raised")


class _PendingCall(grpc.Call, _Future):
    """A Call-Future whose outcome, a finished Call-Future, arrives later (:meth:`_finish`).

    The Future and Call methods answer from the outcome, so they wait until
    there is one; callbacks added before run when it arrives, after at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._wake = threading.Event()
        self._outcome: Any = None
        self._done_callbacks: list[Callable[[Any], None]] = []
        self._rpc_callbacks: list[Callable[[], None]] = []

    def _finish(self, outcome: Any) -> bool:
        """Settle on ``outcome`` and run the callbacks; False when already settled."""
        with self._lock:
            if self._outcome is not None:
                return False
            self._outcome = outcome
            rpc_callbacks, self._rpc_callbacks = self._rpc_callbacks, []
            done_callbacks, self._done_callbacks = self._done_callbacks, []
            self._lock.notify_all()
        self._wake.set()
        for callback in rpc_callbacks:
            _run_callback(callback)
        for fn in done_callbacks:
            _run_callback(fn, self)
        return True

    def _final(self, timeout: float | None = None) -> Any:
        with self._lock:
            if not self._lock.wait_for(lambda: self._outcome is not None, timeout):
                raise grpc.FutureTimeoutError()
            return self._outcome

    # -- grpc.Future --------------------------------------------------------------------

    def cancelled(self) -> bool:
        outcome = self._outcome
        return outcome is not None and bool(outcome.cancelled())

    def running(self) -> bool:
        return self._outcome is None

    def done(self) -> bool:
        return self._outcome is not None

    def result(self, timeout: float | None = None) -> Any:
        return self._final(timeout).result()

    def exception(self, timeout: float | None = None) -> Exception | None:
        return self._final(timeout).exception()  # type: ignore[no-any-return]

    def traceback(self, timeout: float | None = None) -> Any:
        return self._final(timeout).traceback()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        with self._lock:
            if self._outcome is None:
                self._done_callbacks.append(fn)
                return
        fn(self)

    # -- grpc.Call ----------------------------------------------------------------------

    def initial_metadata(self) -> Any:
        return self._final().initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._final().trailing_metadata()

    def code(self) -> grpc.StatusCode:
        return self._final().code()  # type: ignore[no-any-return]

    def details(self) -> str:
        return self._final().details()  # type: ignore[no-any-return]

    def debug_error_string(self) -> str:
        return debug_string_of(self._final())

    def is_active(self) -> bool:
        return self._outcome is None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        with self._lock:
            if self._outcome is not None:
                return False
            self._rpc_callbacks.append(callback)
            return True


class RetryingCall(_PendingCall):
    """A unary-unary call retried under a policy: a Call-Future from the first attempt on.

    Each attempt after the first starts when the previous one has failed and
    the backoff has passed, on a short-lived thread of its own (in a copy of
    the caller's context), so ``future()`` returns at once and ``cancel()``
    ends the call at once, in an attempt or in a backoff. A blocking call
    waits in ``result()``. The outcome is the final attempt.

    Args:
        policy: the retry policy.
        timeout: the call's own timeout (the policy may set a shorter one).
        attempt: starts one attempt.
    """

    def __init__(self, policy: RetryPolicy, timeout: float | None, attempt: Attempt) -> None:
        super().__init__()
        self._policy = policy
        self._run = RetryRun(policy, timeout)
        self._start_attempt = attempt
        self._context = contextvars.copy_context()
        self._attempt: Any = None

    def start(self) -> None:
        """Make the first attempt (in the caller's thread)."""
        try:
            self._launch()
        except Exception as exc:
            self._finish(Raised(exc))

    def _launch(self) -> None:
        attempt = self._start_attempt(self._run.timeout())
        with self._lock:
            late = self._outcome is not None
            if not late:
                self._attempt = attempt
        if late:
            attempt.cancel()
            return
        # grpc runs a call's done callbacks in a thread of the channel's, in
        # the context of whichever call started that thread: judge (and call
        # the policy's hooks) in a copy of this call's caller's context.
        attempt.add_done_callback(self._attempt_done_in_context)

    def _attempt_done_in_context(self, attempt: Any) -> None:
        self._context.copy().run(self._attempt_done, attempt)

    def _attempt_done(self, attempt: Any) -> None:
        try:
            self._judge(attempt)
        except Exception as exc:
            self._finish(Raised(exc))

    def _judge(self, attempt: Any) -> None:
        with self._lock:
            if self._outcome is not None or attempt is not self._attempt:
                return
        try:
            err = attempt.exception()
        except grpc.FutureCancelledError:
            self._finish(attempt)
            return
        if err is None:
            self._run.succeeded()
            self._finish(attempt)
            return
        # _launch runs this in a copy of the caller's context (grpc's callback
        # thread may carry another call's): the policy's hooks see the caller's span.
        wait = self._run.failed(err)
        if wait is None:
            self._run.end(err)
            self._finish(attempt)
            return
        thread = threading.Thread(
            target=self._context.copy().run,
            args=(self._backoff, wait),
            name="grpc-terminal-retry",
            daemon=True,
        )
        thread.start()

    def _backoff(self, wait: float) -> None:
        try:
            self._run.sleep(wait, self._wake)
            if self._outcome is None:
                self._launch()
        except Exception as exc:
            self._finish(Raised(exc))

    def cancel(self) -> bool:
        with self._lock:
            attempt = self._attempt
        if not self._finish(LocallyCancelled()):
            return False
        if attempt is not None:
            attempt.cancel()
        return True

    def time_remaining(self) -> float | None:  # type: ignore[override]
        remaining = self._run.remaining()
        return None if remaining is None else max(remaining, 0.0)


class RetryingUnary:
    """A unary-unary multicallable whose calls are retried under a policy.

    Blocking calls (``__call__``, ``with_call``) make each attempt with
    ``with_call``, ``future()`` with ``future()``; an attempt's failure is
    the typed error. ``future()`` returns at once.

    Args:
        typed: the typed multicallable the attempts are made with.
        policy: the retry policy.
    """

    def __init__(self, typed: TypedUnary, policy: RetryPolicy) -> None:
        self._typed = typed
        self._policy = policy

    def __call__(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        return self.with_call(request, *args, **kwargs)[0]

    def with_call(self, request: Any, *args: Any, **kwargs: Any) -> tuple[Any, RetryingCall]:
        timeout, options = call_options(*args, **kwargs)
        call = self._start(timeout, self._blocking(request, options))
        return call.result(), call

    def future(self, request: Any, *args: Any, **kwargs: Any) -> grpc.Call:
        timeout, options = call_options(*args, **kwargs)
        try:
            return self._start(timeout, self._future(request, options))
        except Exception as exc:
            return Raised(exc)

    def _start(self, timeout: float | None, attempt: Attempt) -> RetryingCall:
        call = RetryingCall(self._policy, timeout, attempt)
        call.start()
        return call

    def _blocking(self, request: Any, options: dict[str, Any]) -> Attempt:
        def attempt(timeout: float | None) -> Any:
            try:
                return self._typed.with_call(request, timeout=timeout, **options)[1]
            except StatusError as err:
                return err  # a typed error is the ended Call-Future of its RPC
            except Exception as exc:
                return Raised(exc)

        return attempt

    def _future(self, request: Any, options: dict[str, Any]) -> Attempt:
        def attempt(timeout: float | None) -> Any:
            try:
                return self._typed.future(request, timeout=timeout, **options)
            except Exception as exc:
                return Raised(exc)

        return attempt
