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
* retryable with a server delay (RetryInfo / pushback): a retryable
  ``ApplicationError`` with that delay as ``next_retry_delay``.
* otherwise, and for exceptions that carry no gRPC status: untouched, so
  Temporal's own retry policy applies.
"""

from __future__ import annotations

import datetime
from typing import Any

from grpc_terminal._classify import classify, find_status
from grpc_terminal._reason import reason_name

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


def to_application_error(exc: BaseException) -> ApplicationError | None:
    """The ``ApplicationError`` to raise instead of ``exc``; None to leave ``exc`` alone."""
    if isinstance(exc, ApplicationError):
        return None
    details = failure_details(exc)
    if details is None:
        return None
    verdict = classify(exc)
    message = details["message"] or details["code"]
    if not verdict.retryable:
        error_type = details.get("reason") or details["code"]
        return ApplicationError(message, details, type=error_type, non_retryable=True)
    if verdict.delay is not None:
        return ApplicationError(
            message,
            details,
            type=details["code"],
            next_retry_delay=datetime.timedelta(seconds=verdict.delay),
        )
    return None


class _ActivityInbound(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        try:
            return await super().execute_activity(input)
        except Exception as exc:
            converted = to_application_error(exc)
            if converted is None:
                raise
            raise converted from exc


class TerminalErrorInterceptor(Interceptor):
    """A temporalio worker interceptor: see the module documentation."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityInbound(super().intercept_activity(next))


