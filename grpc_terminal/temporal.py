"""Temporal adapter: terminal gRPC failures in activities fail the activity for good.

::

    from temporalio.worker import Worker
    from grpc_terminal.temporal import TerminalErrorInterceptor

    Worker(client, task_queue="grants", activities=[grant], workflows=[...],
           interceptors=[TerminalErrorInterceptor()])

When an activity raises a gRPC failure (typed, raw, or wrapped), the
interceptor applies :func:`grpc_terminal.classify`:

* not retryable (a ProvisionFailureDetail, negative pushback, a terminal
  code): re-raised as a non-retryable ``ApplicationError`` whose ``type`` is
  the reason (``USER_NOT_PROVISIONABLE``) or else the code name
  (``NOT_FOUND``), with one detail: a dict holding ``code``, ``message``,
  ``reason``, ``reason_value`` and ``detail`` (see :func:`failure_details`).
  Temporal then fails the activity after this one attempt, whatever the
  activity's retry policy says.
* retryable with a server delay (RetryInfo / pushback) of at most
  ``max_server_delay`` (300 s by default, as in
  :class:`grpc_terminal.RetryPolicy`): a retryable ``ApplicationError`` with
  that delay as ``next_retry_delay``.
* retryable with a longer server delay, or one that cannot be read (a
  pushback of 10**13 ms, int64's maximum): a non-retryable
  ``ApplicationError`` whose ``type`` is the code name, its detail saying
  ``"stopped": "server_delay_too_long"`` and the ``retry_delay`` in seconds
  (``None`` when unreadable). The activity gives up at once, as a
  ``RetryPolicy`` would; raise ``max_server_delay`` to wait longer.
* otherwise, and for exceptions that carry no gRPC status: untouched, so
  Temporal's own retry policy applies.

Nothing here raises on absurd values: the delay is checked against the
ceiling before it becomes a ``timedelta``.
"""

from __future__ import annotations

import datetime
from typing import Any

from grpc_terminal._classify import find_status
from grpc_terminal._reason import reason_name
from grpc_terminal._retry import (
    DEFAULT_MAX_SERVER_DELAY,
    StopReason,
    check_ceiling,
    is_finite,
    safe_classify,
    server_delay_too_long,
)

try:
    from temporalio.exceptions import ApplicationError
    from temporalio.worker import (
        ActivityInboundInterceptor,
        ExecuteActivityInput,
        Interceptor,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.temporal needs temporalio: pip install 'grpc-terminal[temporal]'"
    ) from exc

__all__ = ["TerminalErrorInterceptor", "failure_details", "to_application_error"]


def failure_details(exc: BaseException) -> dict[str, Any] | None:
    """The JSON-ready description of the gRPC failure in ``exc``, or None."""
    status = find_status(exc)
    if status is None:
        return None
    pfd = status.failure_detail
    out: dict[str, Any] = {"code": status.code().name, "message": status.details()}
    if pfd is not None:
        out["reason"] = reason_name(pfd.reason)
        out["reason_value"] = int(pfd.reason)
        out["detail"] = pfd.detail
    if status.request_id:
        out["request_id"] = status.request_id
    return out


def to_application_error(
    exc: BaseException, *, max_server_delay: float = DEFAULT_MAX_SERVER_DELAY
) -> ApplicationError | None:
    """The ``ApplicationError`` to raise instead of ``exc``; None to leave ``exc`` alone.

    ``exc``: what the activity raised. ``max_server_delay``: the ceiling, in
    seconds, on a server-suggested delay; a retryable failure asking for
    longer becomes non-retryable (see the module documentation).
    """
    ceiling = check_ceiling(max_server_delay)
    if isinstance(exc, ApplicationError):
        return None
    details = failure_details(exc)
    if details is None:
        return None
    verdict = safe_classify(exc)
    message = details["message"] or details["code"]
    if not verdict.retryable:
        error_type = details.get("reason") or details["code"]
        return ApplicationError(message, details, type=error_type, non_retryable=True)
    if server_delay_too_long(verdict.delay, ceiling):
        details["stopped"] = StopReason.SERVER_DELAY_TOO_LONG.value
        details["retry_delay"] = verdict.delay if is_finite(verdict.delay) else None
        return ApplicationError(message, details, type=details["code"], non_retryable=True)
    if verdict.delay is not None:
        return ApplicationError(
            message,
            details,
            type=details["code"],
            next_retry_delay=datetime.timedelta(seconds=verdict.delay),
        )
    return None


class _ActivityInbound(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, max_server_delay: float) -> None:
        super().__init__(next)
        self.max_server_delay = max_server_delay

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            converted = to_application_error(exc, max_server_delay=self.max_server_delay)
            if converted is None:
                raise
            raise converted from exc


class TerminalErrorInterceptor(Interceptor):
    """A temporalio worker interceptor: see the module documentation.

    ``max_server_delay`` (seconds, default 300): the ceiling on a
    server-suggested delay; a retryable failure asking for longer fails the
    activity for good instead of scheduling a retry that far away.
    """

    def __init__(self, *, max_server_delay: float = DEFAULT_MAX_SERVER_DELAY) -> None:
        self.max_server_delay = check_ceiling(max_server_delay)

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(super().intercept_activity(next), self.max_server_delay)


