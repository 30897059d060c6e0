"""``python -m examples.provisioner.demo`` (``make demo``): the whole path, printed.

Starts the Provisioner on a sync ``grpc.server``, then on a ``grpc.aio``
server, and calls it through clients that retry with a fast ``RetryPolicy``.
For every call it prints each attempt, the waits between attempts, the
typed error with its reason and admin-facing detail, and what the client
decided. Exits 0 when every call behaved as expected, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TextIO

import grpc
from google.protobuf import json_format

import grpc_terminal as gt
from examples.provisioner.client import AioClient, Attempts, SyncClient, fast_policy
from examples.provisioner.service import serve_aio, serve_sync
from examples.provisioner.upstream import Directory


@dataclass(frozen=True)
class Scenario:
    method: str
    user: str
    target: str
    story: str
    # succeeded | retried-then-succeeded | terminal | not-retryable | gave-up
    # ("terminal" only for a ProvisionFailureDetail, the contract gt.is_terminal reads)
    expect: str


SCENARIOS = (
    Scenario("Grant", "alice", "engineering", "an ordinary grant", "succeeded"),
    Scenario("Grant", "bob", "engineering", "the user is SUSPENDED upstream", "terminal"),
    Scenario("Grant", "alice", "all-staff", "the group is managed by a rule", "terminal"),
    Scenario("Grant", "carol", "jira-users", "no license seat left", "terminal"),
    Scenario("Grant", "alice", "prod-admins", "policy forbids direct grants", "terminal"),
    Scenario("Grant", "", "engineering", "the request has no user", "not-retryable"),
    Scenario("Grant", "alice", "flaky-group", "upstream 503 + Retry-After, twice", "retried-then-succeeded"),
    Scenario("Grant", "ghost", "engineering", "the connector hits a bug", "gave-up"),
    Scenario("Revoke", "alice", "engineering", "an ordinary revoke", "succeeded"),
)

_RULES = {
    "provision_failure_detail": "a ProvisionFailureDetail says retrying cannot help",
    "negative_pushback": "the server's pushback says never retry",
    "client_metadata_limit": "the client's own metadata limit: a configuration fault",
    "not_grpc": "not a gRPC failure",
}


@dataclass
class Retry:
    """What the policy's ``on_retry`` hook reported before one wait."""

    attempt: int
    wait: float
    rule: str


class RetryLog:
    """The ``on_retry`` hook: ``(attempt, wait, verdict, error)`` before each wait."""

    def __init__(self) -> None:
        self.retries: list[Retry] = []

    def __call__(self, attempt: int, wait: float, verdict: gt.Verdict, error: BaseException) -> None:
        self.retries.append(Retry(attempt, wait, verdict.rule))

    def drain(self) -> list[Retry]:
        retries, self.retries = self.retries, []
        return retries


def _history(exc: BaseException | None) -> Any:
    """The RetryHistory the policy attached to the error (or what it wraps)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        history = getattr(exc, "retry_history", None)
        if history is not None:
            return history
        exc = exc.__cause__ or exc.__context__
    return None


@dataclass
class Result:
    """One call: what happened and what the client decided."""

    scenario: Scenario
    attempts: int
    waits: list[float]
    codes: list[str]
    suggested: list[float | None]
    error: gt.StatusError | None
    response: dict[str, Any]
    kind: str
    decision: str
    note: str = ""
    retries: list[Retry] = field(default_factory=list[Retry])
    server_events: list[gt.ErrorEvent] = field(default_factory=list[gt.ErrorEvent])
    server_log: list[str] = field(default_factory=list[str])


class ServerLog(logging.Handler):
    """Keeps the server's error log lines (tracebacks stay out of the transcript)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())

    def drain(self) -> list[str]:
        lines, self.lines = self.lines, []
        return lines


class Events:
    """The server's ``on_error`` hook: one ErrorEvent per failed attempt."""

    def __init__(self) -> None:
        self.events: list[gt.ErrorEvent] = []

    def __call__(self, event: gt.ErrorEvent) -> None:
        self.events.append(event)

    def drain(self) -> list[gt.ErrorEvent]:
        events, self.events = self.events, []
        return events


def _typed(exc: BaseException) -> gt.StatusError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, gt.StatusError):
            return current
        if isinstance(current, grpc.RpcError):
            return gt.from_rpc_error(current)
        current = current.__cause__ or current.__context__
    return None


def _decide(sc: Scenario, attempts: Attempts, error: BaseException | None, response: Any) -> Result:
    count = len(attempts.log)
    codes = [a.code.name for a in attempts.log]
    suggested = [a.suggested_delay for a in attempts.log]
    body = json_format.MessageToDict(response) if response is not None else {}
    if error is None:
        kind = "succeeded" if count == 1 else "retried-then-succeeded"
        decision = "succeeded" if count == 1 else f"retried then succeeded after {count} attempts"
        return Result(sc, count, attempts.waits(), codes, suggested, None, body, kind, decision)
    typed = _typed(error)
    verdict = gt.classify(error)
    history = _history(error)
    if history is not None:
        stopped = str(history.stopped)
    elif count > 1:
        stopped = "exhausted"
    else:
        stopped = "terminal" if gt.is_terminal(error) else "not_retryable"
    if stopped in ("terminal", "not_retryable") and not verdict.retryable:
        why = _RULES.get(verdict.rule, f"{verdict.code.name if verdict.code else '?'} is not retryable")
        # "terminal" is the ProvisionFailureDetail contract; anything else is merely not retryable
        kind = "terminal" if stopped == "terminal" else "not-retryable"
        decision = f"gave up at once: {kind.replace('-', ' ')} ({why})"
    else:
        why = _STOPS.get(stopped, stopped)
        kind, decision = "gave-up", f"gave up after {count} attempts ({stopped}: {why})"
    note = history.describe() if history is not None else ""
    return Result(sc, count, attempts.waits(), codes, suggested, typed, body, kind, decision, note)


_STOPS = {
    "exhausted": "max_attempts reached",
    "deadline": "the next wait would pass the deadline",
    "throttled": "the retry budget is spent",
    "committed": "a response already reached the caller",
    "server_delay_too_long": "the server's suggested wait is beyond the policy's max_server_delay",
}


def _report(result: Result, out: TextIO) -> None:
    sc = result.scenario
    out.write(f"\n> {sc.method}(user={sc.user!r}, target={sc.target!r})  -- {sc.story}\n")
    planned = {r.attempt: r for r in result.retries}
    for index, code in enumerate(result.codes, 1):
        delay = result.suggested[index - 1]
        hint = f"  (server suggests retrying in {delay:g} s)" if delay is not None else ""
        out.write(f"    attempt {index}: {code}{hint}\n")
        if index < len(result.codes):
            plan = planned.get(index)
            said = f"policy: retry in {plan.wait:.2f} s, rule {plan.rule}; " if plan is not None else ""
            out.write(f"      {said}waited {result.waits[index - 1]:.2f} s\n")
    err = result.error
    if err is None:
        out.write(f"    result:   {json.dumps(result.response, sort_keys=True)}\n")
    else:
        out.write(f"    error:    {type(err).__name__} ({err.code().name})\n")
        if err.failure_detail is not None:
            out.write(f"    reason:   {gt.Reason(err.failure_detail.reason).name}\n")
            out.write(f"    detail:   {err.failure_detail.detail}  [admin-facing]\n")
        else:
            out.write(f"    message:  {err.details()}\n")
        if err.localized_message is not None:
            out.write(f"    user sees: {err.localized_message.message}\n")
        for fld, why in err.field_violations:
            out.write(f"    field:    {fld}: {why}\n")
        if err.quota_failure is not None:
            for v in err.quota_failure.violations:
                out.write(f"    quota:    {v.subject}: {v.description}\n")
        if err.request_id:
            out.write(f"    request id: {err.request_id}\n")
    if result.server_events:
        counts = collections.Counter(f"{e.code.name}/{e.reason}" for e in result.server_events)
        shown = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counts.items())
        out.write(f"    server on_error: {shown}\n")
    for line in result.server_log:
        out.write(f"    server log: {line}\n")
    if result.note:
        out.write(f"    note:     {result.note}\n")
    out.write(f"    decision: {result.decision}\n")


def _header(title: str, port: int, policy: Any, out: TextIO) -> None:
    out.write(f"\n=== {title} on 127.0.0.1:{port} ===\n")
    shown = ", ".join(
        f"{name}={getattr(policy, name)!r}"
        for name in ("max_attempts", "initial_backoff", "max_backoff", "multiplier", "jitter", "timeout")
    )
    out.write(f"client retry: RetryPolicy({shown})\n")


def run_sync(out: TextIO, log: ServerLog) -> list[Result]:
    """Every scenario against a sync server, through a sync client."""
    events, retries = Events(), RetryLog()
    results: list[Result] = []
    policy = fast_policy(on_retry=retries)
    with serve_sync(Directory(), on_error=events) as port:
        _header("sync grpc.server + sync client", port, policy, out)
        client = SyncClient(port, policy)
        try:
            for sc in SCENARIOS:
                response, error = None, None
                try:
                    response = client.call(sc.method, sc.user, sc.target)
                except Exception as exc:
                    error = exc
                result = _decide(sc, client.attempts, error, response)
                result.server_events, result.server_log = events.drain(), log.drain()
                result.retries = retries.drain()
                _report(result, out)
                results.append(result)
        finally:
            client.close()
    return results


async def _aio_calls(
    port: int, policy: Any, events: Events, retries: RetryLog, log: ServerLog, out: TextIO
) -> list[Result]:
    client = AioClient(port, policy)
    results: list[Result] = []
    try:
        for sc in SCENARIOS:
            response, error = None, None
            try:
                response = await client.call(sc.method, sc.user, sc.target)
            except Exception as exc:
                error = exc
            result = _decide(sc, client.attempts, error, response)
            result.server_events, result.server_log = events.drain(), log.drain()
            result.retries = retries.drain()
            _report(result, out)
            results.append(result)
    finally:
        await client.close()
    return results


def run_aio(out: TextIO, log: ServerLog) -> list[Result]:
    """Every scenario against a grpc.aio server, through a grpc.aio client."""
    events, retries = Events(), RetryLog()
    policy = fast_policy(on_retry=retries)
    with serve_aio(Directory(), on_error=events) as port:
        _header("grpc.aio server + grpc.aio client", port, policy, out)
        return asyncio.run(asyncio.wait_for(_aio_calls(port, policy, events, retries, log, out), 30))


def _problem_section(results: list[Result], out: TextIO) -> None:
    err = next(r.error for r in results if isinstance(r.error, gt.LicenseExhausted))
    out.write("\n=== the LicenseExhausted error, for the world outside gRPC ===\n")
    out.write("RFC 9457 problem JSON (gt.problem(err)):\n")
    out.write(json.dumps(gt.problem(err), indent=2) + "\n")
    out.write(f"exit code for a command-line tool (gt.exit_code(err)): {gt.exit_code(err)}\n")


@contextlib.contextmanager
def _server_log() -> Generator[ServerLog, None, None]:
    handler = ServerLog()
    logger = logging.getLogger("grpc_terminal.server")
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def main(out: TextIO | None = None) -> int:
    """Run the demo; 0 when every call behaved as expected."""
    stream: TextIO = out or sys.stdout
    started = time.monotonic()
    with _server_log() as log:
        results = run_sync(stream, log)
        _problem_section(results, stream)
        results += run_aio(stream, log)
    unexpected = [r for r in results if r.kind != r.scenario.expect]
    elapsed = time.monotonic() - started
    attempts = sum(r.attempts for r in results)
    stream.write(f"\n=== {len(results)} calls, {attempts} attempts, {elapsed:.1f} s ===\n")
    for r in unexpected:
        sc = r.scenario
        stream.write(f"UNEXPECTED: {sc.method} {sc.user!r} {sc.target!r} -> {r.kind}, wanted {sc.expect}\n")
    stream.write("every call behaved as expected\n" if not unexpected else "SOME CALLS MISBEHAVED\n")
    stream.flush()
    return 0 if not unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
