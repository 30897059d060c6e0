"""The provisioner example: ``make demo`` runs, fast, and tells the truth.

Real servers on loopback (sync and aio), real clients with a RetryPolicy.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _blocks(section: str) -> dict[str, str]:
    """Transcript blocks of one server variant, keyed by their '> Method(...)' line."""
    out: dict[str, str] = {}
    for chunk in re.split(r"\n(?=> )", section)[1:]:
        head, _, _ = chunk.partition("  -- ")
        out[head.strip()] = chunk
    return out


def _attempts(block: str) -> list[str]:
    return re.findall(r"^    attempt \d+: (\w+)", block, re.MULTILINE)


def _decision(block: str) -> str:
    match = re.search(r"^    decision: (.*)$", block, re.MULTILINE)
    assert match, block
    return match.group(1)


@pytest.fixture(scope="module")
def transcript() -> str:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "examples.provisioner.demo"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stdout + result.stderr
    assert elapsed < 30, f"the demo took {elapsed:.1f} s"
    return result.stdout


def _sections(transcript: str) -> dict[str, str]:
    parts = re.split(r"^=== ", transcript, flags=re.MULTILINE)
    found = {p.split(" on 127.0.0.1:")[0]: p for p in parts if " on 127.0.0.1:" in p.splitlines()[0]}
    assert set(found) == {"sync grpc.server + sync client", "grpc.aio server + grpc.aio client"}, list(found)
    return found


SCENARIO_KEYS = {
    "ok": "> Grant(user='alice', target='engineering')",
    "suspended": "> Grant(user='bob', target='engineering')",
    "rule": "> Grant(user='alice', target='all-staff')",
    "seats": "> Grant(user='carol', target='jira-users')",
    "policy": "> Grant(user='alice', target='prod-admins')",
    "invalid": "> Grant(user='', target='engineering')",
    "flaky": "> Grant(user='alice', target='flaky-group')",
    "bug": "> Grant(user='ghost', target='engineering')",
    "revoke": "> Revoke(user='alice', target='engineering')",
}


def test_demo_finishes_and_says_every_call_behaved(transcript: str) -> None:
    assert "every call behaved as expected" in transcript
    assert "=== 18 calls, 26 attempts," in transcript
    assert "UNEXPECTED" not in transcript


@pytest.mark.parametrize("variant", ["sync grpc.server + sync client", "grpc.aio server + grpc.aio client"])
def test_transcript_tells_each_story(transcript: str, variant: str) -> None:
    blocks = _blocks(_sections(transcript)[variant])
    assert set(blocks) == set(SCENARIO_KEYS.values())
    b = {name: blocks[key] for name, key in SCENARIO_KEYS.items()}

    assert _attempts(b["ok"]) == ["OK"]
    assert _decision(b["ok"]) == "succeeded"
    assert '"status": "granted"' in b["ok"]
    assert _attempts(b["revoke"]) == ["OK"]

    terminal = {
        "suspended": ("UserNotProvisionable (FAILED_PRECONDITION)", "USER_NOT_PROVISIONABLE", "is SUSPENDED"),
        "rule": ("TargetManagedExternally (FAILED_PRECONDITION)", "TARGET_MANAGED_EXTERNALLY", "group rule"),
        "seats": ("LicenseExhausted (FAILED_PRECONDITION)", "LICENSE_EXHAUSTED", "100 of 100 seats used"),
        "policy": ("OperationNotPermitted (PERMISSION_DENIED)", "OPERATION_NOT_PERMITTED", "prod-admins"),
    }
    for name, (error, reason, detail) in terminal.items():
        block = b[name]
        assert _attempts(block) == [error.split("(")[1].rstrip(")")], block
        assert f"error:    {error}" in block
        assert f"reason:   {reason}" in block
        assert re.search(rf"detail:   .*{re.escape(detail)}.*\[admin-facing\]", block), block
        assert f"server on_error: {error.split('(')[1].rstrip(')')}/{reason}" in block
        assert _decision(block).startswith("gave up at once: terminal (a ProvisionFailureDetail"), block
    assert "quota:    Jira Software: 100 of 100 seats used" in b["seats"]
    assert "user sees: Access to prod-admins needs an approval" in b["policy"]

    assert _attempts(b["invalid"]) == ["INVALID_ARGUMENT"]
    assert "field:    user: required" in b["invalid"]
    assert _decision(b["invalid"]) == "gave up at once: not retryable (INVALID_ARGUMENT is not retryable)"

    flaky = b["flaky"]
    assert _attempts(flaky) == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
    assert flaky.count("(server suggests retrying in 0.2 s)") == 2
    waits = [float(w) for w in re.findall(r"waited (\d+\.\d+) s", flaky)]
    assert len(waits) == 2
    assert all(w >= 0.18 for w in waits), waits  # the server's delay is a floor
    assert _decision(flaky) == "retried then succeeded after 3 attempts"
    assert "server on_error: UNAVAILABLE/UNAVAILABLE x2" in flaky

    bug = b["bug"]
    assert _attempts(bug) == ["UNKNOWN", "UNKNOWN", "UNKNOWN"]
    assert _decision(bug).startswith("gave up after 3 attempts (exhausted")
    request_id = re.search(r"request id: ([0-9a-f]{32})", bug)
    assert request_id, bug
    # the id the client got is the one the server logged with the traceback
    logged = f"server log: unexpected error in /provisioner.v1.Provisioner/Grant (request id {request_id[1]})"
    assert logged in bug
    assert "ZeroDivisionError" not in bug and "NoneType" not in bug  # nothing leaks to the client


def test_transcript_shows_problem_json_and_exit_code(transcript: str) -> None:
    assert '"type": "urn:grpc-terminal:reason:license-exhausted"' in transcript
    assert '"status": 400' in transcript
    assert "exit code for a command-line tool (gt.exit_code(err)): 82" in transcript


def test_demo_in_process_results() -> None:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # the examples package lives beside tests/, not in site-packages
    from examples.provisioner import demo

    out = io.StringIO()
    with demo._server_log() as log:
        results = demo.run_sync(out, log)
    kinds = [(r.scenario.method, r.scenario.user, r.scenario.target, r.kind, r.attempts) for r in results]
    assert kinds == [
        ("Grant", "alice", "engineering", "succeeded", 1),
        ("Grant", "bob", "engineering", "terminal", 1),
        ("Grant", "alice", "all-staff", "terminal", 1),
        ("Grant", "carol", "jira-users", "terminal", 1),
        ("Grant", "alice", "prod-admins", "terminal", 1),
        ("Grant", "", "engineering", "not-retryable", 1),
        ("Grant", "alice", "flaky-group", "retried-then-succeeded", 3),
        ("Grant", "ghost", "engineering", "gave-up", 3),
        ("Revoke", "alice", "engineering", "succeeded", 1),
    ]
    bug = next(r for r in results if r.scenario.user == "ghost")
    assert bug.error is not None and bug.error.request_id
    assert [e.request_id for e in bug.server_events][-1] == bug.error.request_id
    assert all(e.expected is False for e in bug.server_events)
    flaky = next(r for r in results if r.scenario.target == "flaky-group")
    assert [r.rule for r in flaky.retries] == ["retry_info", "retry_info"]
    assert all(r.wait >= 0.2 for r in flaky.retries)
