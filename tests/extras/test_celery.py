"""grpc_terminal.celery in a real Celery worker process, calling real loopback servers.

The worker (``python -m celery -A celery_app worker --pool=solo``) runs the
tasks of ``tests/extras/celery_app.py`` over kombu's filesystem transport
and the file:// result backend, in folders under the test's tmp path; the
gRPC servers run in this process (sync and aio), count the calls and stamp
their arrivals. No eager mode: every retry is a new message and a new run.
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

pytest.importorskip("celery", reason="the celery extra is not installed")

from celery import Celery, Task
from celery.app.task import Context
from celery.exceptions import Ignore, Reject, Retry

import grpc_terminal as gt
from grpc_terminal.celery import HEADER, MAX_HEADER, _carried, retry, retrying

from harness import AioServer, LoopThread, Scenario, SyncServer, register

sys.path.insert(0, str(Path(__file__).resolve().parent))
import celery_app  # the worker's module, from this folder

EXTRAS = Path(__file__).resolve().parent
STARTUP = 20.0  # seconds for the worker to answer its first task
RESULT = 15.0  # seconds for any task's result
DELAY = 0.25  # the RetryInfo the transient failures carry


class Worker:
    """The worker process and the app the tests send tasks with."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        celery_app.configure(celery_app.app, folder)
        self.app = celery_app.app
        self.log = folder / "worker.log"
        env = {**os.environ, "GT_CELERY_DIR": str(folder), "PYTHONPATH": str(EXTRAS)}
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "celery_app", "worker", "--pool=solo",
                 "--loglevel=INFO", "--without-heartbeat", "--without-mingle", "--without-gossip",
                 "-n", f"gt-test-{os.getpid()}@localhost"],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def result(self, name: str, *args: object, headers: dict[str, Any] | None = None) -> Any:
        """Send task ``name`` and wait for its result (its error is raised)."""
        assert self.proc.poll() is None, f"the worker exited:\n{self.tail()}"
        async_result = self.app.send_task(name, args=list(args), headers=headers)
        try:
            return async_result.get(timeout=RESULT, interval=0.02)
        finally:
            async_result.forget()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.app.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    w = Worker(tmp_path_factory.mktemp("celery"))
    try:
        started = time.monotonic()
        async_result = w.app.send_task("gt.ping")
        try:
            assert async_result.get(timeout=STARTUP, interval=0.05) == "pong", w.tail()
        except Exception as exc:
            pytest.fail(f"the worker did not start within {STARTUP} s ({exc!r}):\n{w.tail()}")
        assert time.monotonic() - started < STARTUP
        yield w
    finally:
        w.stop()


@pytest.fixture(scope="module", params=["sync", "aio"])
def address(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[str]:
    srv: Any = SyncServer(workers=4) if request.param == "sync" else AioServer(loop_thread)
    yield f"127.0.0.1:{srv.port}"
    srv.stop()


def stamped(scenario: Scenario, fail: Callable[[int], BaseException | None]) -> list[float]:
    """Stamp each arrival on the server; ``fail(n)`` is what the n-th call (1, 2 ...) raises."""
    stamps: list[float] = []

    def before() -> None:
        stamps.append(time.monotonic())
        error = fail(len(scenario.calls))
        if error is not None:
            raise error

    scenario.before = before
    return stamps


# -- the done-when of the issue ---------------------------------------------------------


def test_terminal_failure_runs_once_and_reaches_get_typed(worker: Worker, address: str) -> None:
    scenario = Scenario(raise_=gt.UserNotProvisionable("Okta E0000038: user 'jdoe' is SUSPENDED"))
    with pytest.raises(gt.UserNotProvisionable) as caught:
        worker.result("gt.call", address, register(scenario))
    assert len(scenario.calls) == 1, worker.tail()
    err = caught.value
    assert err.reason is gt.Reason.USER_NOT_PROVISIONABLE
    assert err.detail == "Okta E0000038: user 'jdoe' is SUSPENDED"
    assert gt.is_terminal(err) and err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert err.retry_history.stopped is gt.StopReason.TERMINAL and err.retry_history.count == 1
    assert "stopped (terminal) after 1 attempt" in err.__notes__[-1]


def test_transient_twice_succeeds_on_the_third_run_after_retry_info(worker: Worker, address: str) -> None:
    scenario = Scenario()
    transient = gt.Unavailable("upstream 503", retry_delay=DELAY)
    stamps = stamped(scenario, lambda n: transient if n <= 2 else None)
    assert worker.result("gt.call", address, register(scenario)) == "ok"
    assert len(scenario.calls) == 3, worker.tail()
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    # the policy's own backoff is 0.01-0.05 s: the server's RetryInfo is the floor
    assert len(gaps) == 2 and min(gaps) >= DELAY, gaps


def test_exhausted_transient_reaches_get_typed_with_every_run(worker: Worker, address: str) -> None:
    # A raw channel: the task sees grpc's own error; 5 runs, beyond Celery's default max_retries of 3.
    scenario = Scenario(raise_=gt.Unavailable("upstream 503", retry_delay=0.02))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call_by_hand", address, register(scenario), {"max_attempts": 5})
    assert len(scenario.calls) == 5, worker.tail()
    history = caught.value.retry_history
    assert history.stopped is gt.StopReason.EXHAUSTED and history.count == 5
    assert history.codes == (grpc.StatusCode.UNAVAILABLE,) * 5
    assert [a.number for a in history.attempts] == [1, 2, 3, 4, 5]
    assert len(history.waits) == 4 and min(history.waits) >= 0.02
    assert all(a.verdict.rule == "retry_info" for a in history.attempts)
    assert history.elapsed >= 4 * 0.02
    assert "stopped (exhausted) after 5 attempts" in caught.value.__notes__[-1]
    assert gt.retry_delay(caught.value) == 0.02  # the details survived the trip


def test_on_give_up_is_called_once_with_every_run(worker: Worker, address: str, tmp_path: Path) -> None:
    log = tmp_path / "give-up.jsonl"
    scenario = Scenario(raise_=gt.Unavailable("upstream 503"))
    with pytest.raises(gt.Unavailable):
        options = {"max_attempts": 3, "give_up_log": str(log)}
        worker.result("gt.call_by_hand", address, register(scenario), options)
    assert len(scenario.calls) == 3, worker.tail()
    assert log.read_text().splitlines() == ['[3, "exhausted", "Unavailable"]']


def test_not_retryable_runs_once_with_its_details(worker: Worker, address: str) -> None:
    invalid = gt.InvalidArgument("bad request", field_violations={"items[0].id": "required"})
    scenario = Scenario(raise_=invalid)
    with pytest.raises(gt.InvalidArgument) as caught:
        worker.result("gt.call_by_hand", address, register(scenario), {"max_attempts": 5})
    assert len(scenario.calls) == 1, worker.tail()
    assert caught.value.field_violations == [("items[0].id", "required")]
    assert caught.value.retry_history.stopped is gt.StopReason.NOT_RETRYABLE


# -- the policy's limits map to the task's runs ------------------------------------------


def test_timeout_counts_across_runs(worker: Worker, address: str) -> None:
    # RetryInfo 0.25 s, timeout 0.4 s: the first wait fits, the second would pass the deadline.
    scenario = Scenario(raise_=gt.Unavailable("busy", retry_delay=DELAY))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call_by_hand", address, register(scenario), {"max_attempts": 10, "timeout": 0.4})
    assert len(scenario.calls) == 2, worker.tail()
    assert caught.value.retry_history.stopped is gt.StopReason.DEADLINE


def test_server_delay_beyond_the_ceiling_gives_up_at_once(worker: Worker, address: str) -> None:
    scenario = Scenario(raise_=gt.Unavailable("come back tomorrow", retry_delay=86_400.0))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call_by_hand", address, register(scenario), {"max_attempts": 5})
    assert len(scenario.calls) == 1, worker.tail()
    assert caught.value.retry_history.stopped is gt.StopReason.SERVER_DELAY_TOO_LONG


def test_a_raising_hook_changes_nothing(worker: Worker, address: str) -> None:
    scenario = Scenario()
    stamped(scenario, lambda n: gt.Unavailable("503") if n <= 2 else None)
    key = register(scenario)
    assert worker.result("gt.call_by_hand", address, key, {"max_attempts": 3, "raising_hook": True}) == "ok"
    assert len(scenario.calls) == 3, worker.tail()


def test_headers_of_the_caller_travel_with_the_retries(worker: Worker, address: str) -> None:
    scenario = Scenario()
    stamped(scenario, lambda n: gt.Unavailable("503") if n == 1 else None)
    key = register(scenario)
    assert worker.result("gt.call_with_tenant", address, key, headers={"tenant": "acme"}) == "acme"
    assert len(scenario.calls) == 2, worker.tail()


# -- the header, read as an attacker writes it --------------------------------------------


def carried(count: int, started: float | None = None) -> str:
    row = {"code": "UNAVAILABLE", "error": "Unavailable", "retryable": True, "rule": "code",
           "verdict_code": "UNAVAILABLE", "delay": None, "wait": 0.01}
    return json.dumps({"v": 1, "started": time.time() if started is None else started,
                       "attempts": [row] * count})


def test_attempts_carried_in_the_header_count(worker: Worker, address: str) -> None:
    scenario = Scenario(raise_=gt.Unavailable("503"))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call", address, register(scenario), headers={HEADER: carried(3)})
    # the decorator's policy allows 4 attempts: 3 carried, so this run is the last
    assert len(scenario.calls) == 1, worker.tail()
    assert caught.value.retry_history.count == 4
    assert caught.value.retry_history.stopped is gt.StopReason.EXHAUSTED


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "{}",
        '{"v": 2, "started": 1, "attempts": []}',
        '{"v": 1, "started": NaN, "attempts": []}',
        '{"v": 1, "started": 1e999, "attempts": []}',
        '{"v": 1, "started": 1, "attempts": [{"code": "NOPE"}]}',
        '{"v": 1, "started": 1, "attempts": [{"code": null, "error": 1, "retryable": true}]}',
        '{"v": 1, "started": 1, "attempts": [{"retryable": "yes"}]}',
        '{"v": 1, "started": 1, "attempts": [{"retryable": true, "delay": -1}]}',
        '{"v": 1, "started": 1, "attempts": [{"retryable": true, "wait": 1e400}]}',
        '{"v": 1, "started": 1, "attempts": [7]}',
        "[" * 100_000,
    ],
    ids=lambda h: h[:40],
)
def test_an_unreadable_header_counts_as_a_first_run(header: str) -> None:
    # In process, on the request a worker builds from a message's headers: the worker
    # logs it and goes on; a forged header gains nothing over publishing a fresh task.
    request = Context({"id": "t1", "retries": 3, HEADER: header})
    assert request.headers == {HEADER: header}
    assert _carried(request, gt.RetryPolicy()) == ([], None)


def test_a_header_claiming_too_many_attempts_or_too_long_counts_as_a_first_run() -> None:
    policy = gt.RetryPolicy(max_attempts=4)
    assert len(_carried(Context({"id": "t1", HEADER: carried(3)}), policy)[0]) == 3  # within the policy
    for forged in (carried(4), carried(30_000)):  # as many attempts as the policy allows, or more
        assert _carried(Context({"id": "t1", HEADER: forged}), policy) == ([], None)
    unlimited = gt.RetryPolicy(max_attempts=None, timeout=60)
    assert len(_carried(Context({"id": "t1", HEADER: carried(5_000)}), unlimited)[0]) == 5_000
    too_long = carried(8_000)
    assert len(too_long) > MAX_HEADER
    assert _carried(Context({"id": "t1", HEADER: too_long}), unlimited) == ([], None)


def test_a_header_of_the_wrong_kind_counts_as_a_first_run(worker: Worker, address: str) -> None:
    scenario = Scenario()
    stamped(scenario, lambda n: gt.Unavailable("503") if n <= 2 else None)
    key = register(scenario)
    forged = {HEADER: {"v": 1, "attempts": "x" * 1000}}
    assert worker.result("gt.call", address, key, headers=forged) == "ok"
    assert len(scenario.calls) == 3, worker.tail()
    assert "ignoring an unreadable grpc_terminal_retry header" in worker.tail()


def test_a_start_in_the_future_or_the_far_past_is_clamped(worker: Worker, address: str) -> None:
    # far past: the deadline has passed, so the first failure here is the last
    far_past = Scenario(raise_=gt.Unavailable("503"))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call_by_hand", address, register(far_past), {"max_attempts": 5, "timeout": 60},
                      headers={HEADER: carried(1, started=-1e300)})
    assert len(far_past.calls) == 1 and caught.value.retry_history.stopped is gt.StopReason.DEADLINE
    # future (a clock ahead, or a forged start): counted from now, so the timeout still holds
    future = Scenario(raise_=gt.Unavailable("busy", retry_delay=DELAY))
    with pytest.raises(gt.Unavailable) as caught:
        worker.result("gt.call_by_hand", address, register(future), {"max_attempts": 6, "timeout": 0.4},
                      headers={HEADER: carried(1, started=1e300)})
    assert len(future.calls) == 2, worker.tail()
    assert caught.value.retry_history.stopped is gt.StopReason.DEADLINE
    assert caught.value.retry_history.count == 3 and 0 <= caught.value.retry_history.elapsed < 5


# -- in process: what needs no worker -----------------------------------------------------


def test_the_final_error_pickles_with_its_details_and_history() -> None:
    err = gt.UserNotProvisionable("jdoe is SUSPENDED")
    policy = gt.RetryPolicy(max_attempts=3, sleep=lambda _s: None)

    def grant() -> None:
        raise err

    with pytest.raises(gt.UserNotProvisionable):
        policy.call(grant)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is gt.UserNotProvisionable and back.detail == "jdoe is SUSPENDED"
    assert back.retry_history == err.retry_history and back.__notes__ == err.__notes__


def test_wrong_kinds_are_refused() -> None:
    task = celery_app.app.tasks["gt.call"]
    with pytest.raises(TypeError, match="RetryPolicy"):
        retrying({"max_attempts": 3})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RetryPolicy"):
        retry(task, ValueError("x"), policy=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="exception"):
        retry(task, "not an exception")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="function"):
        retrying()(42)  # type: ignore[arg-type]


def test_celery_control_flow_and_direct_calls_pass_through() -> None:
    task = celery_app.app.tasks["gt.call"]
    task.push_request(id="t1", called_directly=False)  # as in a worker
    try:
        for exc in (Retry(), Ignore(), KeyboardInterrupt()):
            assert retry(task, exc) is exc
            assert getattr(exc, "retry_history", None) is None and not getattr(exc, "__notes__", None)
    finally:
        task.pop_request()
    # called as a plain function there is no worker to schedule a run: the error is left as it is
    unavailable = gt.Unavailable("503")
    assert retry(task, unavailable) is unavailable and unavailable.retry_history is None
    with pytest.raises(grpc.RpcError) as caught:
        celery_app.call_by_hand("127.0.0.1:1", "k", {"max_attempts": 5})
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


@pytest.mark.parametrize("earlier", [None, 7])
def test_eager_runs_retry_at_once_and_leave_the_task_as_it_was(earlier: int | None) -> None:
    # task.apply() (and task_always_eager) run the retries in process, without countdowns.
    task = celery_app.app.tasks["gt.call_by_hand"]
    if earlier is not None:
        task.override_max_retries = earlier
    srv = SyncServer(workers=2)
    try:
        scenario = Scenario(raise_=gt.Unavailable("busy", retry_delay=1.0))
        started = time.monotonic()
        result = task.apply(args=[f"127.0.0.1:{srv.port}", register(scenario), {"max_attempts": 3}])
        took = time.monotonic() - started
    finally:
        srv.stop()
        state = vars(task).pop("override_max_retries", None)
    assert result.state == "FAILURE" and isinstance(result.result, gt.Unavailable)
    assert result.result.retry_history.stopped is gt.StopReason.EXHAUSTED
    assert len(scenario.calls) == 3 and took < 1.0  # with the countdowns: 2 s
    assert state == earlier  # Celery's override_max_retries, put back as it was


def test_a_run_that_cannot_be_published_is_rejected(tmp_path: Path) -> None:
    app = Celery("unpublishable", set_as_current=False)
    celery_app.configure(app, tmp_path)
    app.conf.task_publish_retry = False
    (tmp_path / "broker").rmdir()  # where the next run would be written

    @app.task(bind=True)
    def grant(self: Task[Any, Any]) -> None: ...

    grant.push_request(id="t1", called_directly=False, retries=0)
    try:
        with pytest.raises(Reject):
            retry(grant, gt.Unavailable("503"), gt.RetryPolicy(max_attempts=3))
    finally:
        grant.pop_request()
        app.close()
