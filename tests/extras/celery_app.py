"""The Celery app the tests of grpc_terminal.celery run in a real worker process.

The worker is started with ``python -m celery -A celery_app worker``; the
folder of its broker (kombu's filesystem transport) and of its results (the
file:// backend) comes from the ``GT_CELERY_DIR`` environment variable. The
test process imports this module too and calls :func:`configure` with the same
folder, to send tasks and read their results.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
from celery import Celery, Task
from google.protobuf import wrappers_pb2
from kombu.transport import filesystem
from kombu.utils.json import dumps

import grpc_terminal as gt
from grpc_terminal.celery import retry, retrying

Msg = wrappers_pb2.StringValue
SERVICE = "test.Probe"
RPC_TIMEOUT = 5.0
POLL = 0.02


class _WholeMessageChannel(filesystem.Channel):
    """kombu's filesystem channel, writing each message whole.

    Its reader moves a message file away without taking the writer's lock, so
    it can read a file another process (or the worker's timer thread) is still
    writing, get nothing, and stop the worker on a JSONDecodeError. Here a
    message is written under a name the reader skips (no ``.queue.msg``
    suffix), then renamed to its real name in one step.
    """

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        name = f"{round(time.monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        writing = os.path.join(self.data_folder_out, f"writing-{uuid.uuid4().hex}")
        with open(writing, "wb") as f:
            f.write(dumps(payload).encode())
        os.replace(writing, os.path.join(self.data_folder_out, name))


class WholeMessageTransport(filesystem.Transport):
    """kombu's filesystem transport with :class:`_WholeMessageChannel`."""

    Channel = _WholeMessageChannel


def configure(app: Celery, folder: Path) -> None:
    """Point ``app`` at a broker and a result folder under ``folder`` (created)."""
    broker, processed, results = folder / "broker", folder / "processed", folder / "results"
    control = folder / "control"
    for path in (broker, processed, results, control):
        path.mkdir(parents=True, exist_ok=True)
    app.conf.update(
        broker_url="filesystem://",
        broker_transport=f"{__name__}:WholeMessageTransport",
        broker_transport_options={
            "data_folder_in": str(broker),
            "data_folder_out": str(broker),
            "processed_folder": str(processed),
            "store_processed": True,
            "control_folder": str(control),  # exchange tables (else ./control)
            "polling_interval": POLL,
        },
        broker_connection_retry_on_startup=True,
        result_backend=f"file://{results}",
        # Task messages stay JSON; results are pickled so that the typed error
        # (its details, its retry_history) reaches AsyncResult.get().
        task_serializer="json",
        accept_content=["json"],
        result_serializer="pickle",
        result_accept_content=["pickle"],
        worker_enable_remote_control=False,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
    )


def _call(address: str, key: str, intercepted: bool) -> str:
    with grpc.insecure_channel(address) as raw:
        channel = gt.intercept_channel(raw) if intercepted else raw
        method = channel.unary_unary(
            f"/{SERVICE}/Unary",
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        reply: Any = method(Msg(value=key), timeout=RPC_TIMEOUT)
        return str(reply.value)


app = Celery("celery_app", set_as_current=False)
if os.environ.get("GT_CELERY_DIR"):
    configure(app, Path(os.environ["GT_CELERY_DIR"]))

POLICY = gt.RetryPolicy(max_attempts=4, initial_backoff=0.01, max_backoff=0.05, jitter=0)


@app.task(bind=True, name="gt.call")
@retrying(POLICY)
def call(self: Task[Any, Any], address: str, key: str) -> str:
    """Call the server with the decorator's policy (4 attempts)."""
    return _call(address, key, intercepted=True)


def _raising_hook(*args: object) -> None:
    raise RuntimeError("a metrics hook that fails")


@app.task(bind=True, name="gt.call_by_hand")
def call_by_hand(self: Task[Any, Any], address: str, key: str, options: dict[str, Any]) -> str:
    """Call the server on a raw channel (grpc's own errors) and decide in ``except`` with retry().

    ``options``: the policy's fields (``max_attempts``, ``timeout``, ``max_server_delay``),
    ``raising_hook``: an ``on_retry`` hook that raises, and ``give_up_log``: a file the
    ``on_give_up`` hook appends ``[count, stopped, error class]`` to.
    """
    fields = {k: v for k, v in options.items() if k not in ("raising_hook", "give_up_log")}
    hook = _raising_hook if options.get("raising_hook") else None
    log = options.get("give_up_log")

    def give_up(history: gt.RetryHistory, error: BaseException) -> None:
        if log is not None:
            with open(log, "a") as out:
                out.write(json.dumps([history.count, history.stopped.value, type(error).__name__]) + "\n")

    policy = gt.RetryPolicy(
        initial_backoff=0.01, max_backoff=0.05, jitter=0, on_retry=hook, on_give_up=give_up, **fields
    )
    try:
        return _call(address, key, intercepted=False)
    except Exception as exc:
        raise retry(self, exc, policy)  # noqa: B904 - retry() returns exc itself when giving up


@app.task(bind=True, name="gt.call_with_tenant")
@retrying(POLICY)
def call_with_tenant(self: Task[Any, Any], address: str, key: str) -> str:
    """Call the server; return the ``tenant`` header this run was published with."""
    _call(address, key, intercepted=True)
    return str((self.request.headers or {}).get("tenant"))


@app.task(name="gt.ping")
def ping() -> str:
    """Answers once the worker consumes."""
    return "pong"
