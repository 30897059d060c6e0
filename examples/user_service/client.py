"""Clients of the Seats service, sync and aio, written as grpc-terminal's README shows.

Each reserves seats through a channel that raises typed errors and retries
with a ``RetryPolicy``, and reports what every call came to: the seat, or
the failure's class, code, reason, admin detail, retry history and the
``grpc-status-details-bin`` trailer (base64, what ``python -m grpc_terminal
decode`` reads).
"""

from __future__ import annotations

import base64

import grpc
import grpc.aio

import grpc_terminal as gt
from examples.user_service import seats_pb2, seats_pb2_grpc

#: Up to 4 attempts, 50 ms doubling to 0.5 s, everything within 10 s; a
#: server's RetryInfo delay is the floor of each wait.
POLICY = gt.RetryPolicy(max_attempts=4, initial_backoff=0.05, max_backoff=0.5, timeout=10.0)

#: What the clients ask for: (user, app).
REQUESTS = [("ann", "jira"), ("bob", "jira"), ("cid", "jira"), ("zed", "jira"), ("ann", "figma")]


def logged(lines: list[str]) -> gt.RetryPolicy:
    """:data:`POLICY`, noting each retry in ``lines``."""

    def on_retry(attempt: int, wait: float, verdict: gt.Verdict, error: BaseException) -> None:
        lines.append(f"  attempt {attempt}: {type(error).__name__}, retrying in {wait:.2f} s")

    return POLICY.replace(on_retry=on_retry)


def trailer(err: gt.StatusError) -> str:
    """The error's ``grpc-status-details-bin`` trailer value, base64 as a log would show it."""
    for key, value in err.trailing_metadata():
        if key == gt.STATUS_DETAILS_KEY and isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
    return ""


def describe(err: gt.StatusError) -> str:
    """One line about a failed call."""
    line = f"{type(err).__name__} {err.code().name}"
    if isinstance(err, gt.TerminalError):
        line += f" reason={err.reason}"
    pfd = err.failure_detail
    if pfd is not None:
        line += f" detail={pfd.detail!r}"
    if err.quota_failure is not None:
        line += f" quota={[v.subject for v in err.quota_failure.violations]}"
    history = err.retry_history
    if history is not None:
        line += f" attempts={len(history.attempts)} stopped={history.stopped.value}"
    return line + f" terminal={gt.is_terminal(err)} retryable={gt.is_retryable(err)}"


def reserve_all(target: str) -> list[str]:
    """Run :data:`REQUESTS` and a ``Watch`` against ``target`` with a sync channel."""
    lines: list[str] = []
    with grpc.insecure_channel(target) as raw:
        stub = seats_pb2_grpc.SeatsStub(gt.intercept_channel(raw, retry=logged(lines)))
        for user, app in REQUESTS:
            try:
                reply = stub.Reserve(seats_pb2.ReserveRequest(user=user, app=app), timeout=5)
            except gt.LicenseExhausted as err:  # terminal: the policy stopped after one attempt
                lines.append(f"Reserve({user}, {app}): {describe(err)}")
                lines.append(f"  grpc-status-details-bin: {trailer(err)}")
            except gt.StatusError as err:
                lines.append(f"Reserve({user}, {app}): {describe(err)}")
            else:
                lines.append(f"Reserve({user}, {app}): seat {reply.seat_id}")
        for app in ("jira", "slack"):
            try:
                for event in stub.Watch(seats_pb2.WatchRequest(app=app), timeout=5):
                    lines.append(f"Watch({app}): {event.user} holds seat {event.used} of {event.total}")
            except gt.NotFound as err:
                lines.append(f"Watch({app}): {describe(err)}")
    return lines


async def reserve_all_aio(target: str) -> list[str]:
    """The same as :func:`reserve_all`, with a ``grpc.aio`` channel (call it in your event loop)."""
    lines: list[str] = []
    interceptors = gt.aio_interceptors(retry=logged(lines))
    async with grpc.aio.insecure_channel(target, interceptors=interceptors) as channel:
        stub = seats_pb2_grpc.SeatsStub(channel)
        for user, app in REQUESTS:
            try:
                reply = await stub.Reserve(seats_pb2.ReserveRequest(user=user, app=app), timeout=5)
            except gt.LicenseExhausted as err:
                lines.append(f"Reserve({user}, {app}): {describe(err)}")
                lines.append(f"  grpc-status-details-bin: {trailer(err)}")
            except gt.StatusError as err:
                lines.append(f"Reserve({user}, {app}): {describe(err)}")
            else:
                lines.append(f"Reserve({user}, {app}): seat {reply.seat_id}")
        for app in ("jira", "slack"):
            try:
                async for event in stub.Watch(seats_pb2.WatchRequest(app=app), timeout=5):
                    lines.append(f"Watch({app}): {event.user} holds seat {event.used} of {event.total}")
            except gt.NotFound as err:
                lines.append(f"Watch({app}): {describe(err)}")
    return lines
