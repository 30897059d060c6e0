from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import LoopThread, Pair

# `make test` and `make test-wheel` install every extra and tool the suite
# uses, so there a skip means something is missing: make it a failure. Named
# exceptions: the skips that wait on a variable the other target sets.
_SKIP_IS_FAILURE = bool(os.environ.get("GT_NO_SKIP"))
_MAY_SKIP = ("GT_EXPECT_INSTALLED is not set", "GT_PROTOC_PYTHON is not set")


def _forbid_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if not (_SKIP_IS_FAILURE and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not any(allowed in reason for allowed in _MAY_SKIP):
        report.outcome = "failed"
        report.longrepr = f"skipped under GT_NO_SKIP (everything should be installed): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    _forbid_skip(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    outcome = yield
    _forbid_skip(outcome.get_result())


# (server, client): "aio-sync-handlers" is an aio server whose handlers are plain
# functions; the "aio" client is a channel built with aio_interceptors(), the
# "aio-channel" client one wrapped by aio_intercept_channel().
COMBOS = [
    ("sync", "sync"),
    ("aio", "aio"),
    ("sync", "aio"),
    ("aio", "sync"),
    ("aio-sync-handlers", "aio"),
    ("aio-sync-handlers", "sync"),
    ("aio", "aio-channel"),
    ("sync", "aio-channel"),
]


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module", params=COMBOS, ids=["-".join(c) for c in COMBOS])
def pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    server_kind, client_kind = request.param
    p = Pair(server_kind, client_kind, loop_thread)
    yield p
    p.close()
