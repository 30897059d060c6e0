"""Load: thousands of concurrent RPCs with mixed outcomes, no leaked threads, tasks or fds."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
import pytest

import grpc_terminal as gt

from harness import (
    KINDS,
    AioClient,
    AioServer,
    LoopThread,
    Outcome,
    Scenario,
    SyncClient,
    _handlers,
    register,
)

RPCS_PER_SIDE = 1000  # sync server + aio server: 2,000 RPCs in all
SYNC_CLIENT_THREADS = 16
AIO_CLIENT_TASKS = 64
FD_TOLERANCE = 8
THREAD_TOLERANCE = 2


def _outcomes() -> dict[str, tuple[Callable[[], Scenario], type[gt.StatusError] | None]]:
    return {
        "ok": (lambda: Scenario(responses=2), None),
        "user": (lambda: Scenario(raise_=gt.UserNotProvisionable("suspended")), gt.UserNotProvisionable),
        "managed": (lambda: Scenario(raise_=gt.TargetManagedExternally("rule")), gt.TargetManagedExternally),
        "license": (lambda: Scenario(raise_=gt.LicenseExhausted("seats")), gt.LicenseExhausted),
        "validation": (lambda: Scenario(raise_=gt.ValidationFailure("email")), gt.ValidationFailure),
        "forbidden": (lambda: Scenario(raise_=gt.OperationNotPermitted("policy")), gt.OperationNotPermitted),
        "transient": (lambda: Scenario(raise_=gt.Unavailable("503", retry_delay=0.25)), gt.Unavailable),
        "unexpected": (lambda: Scenario(raise_=ValueError("secret")), gt.Unknown),
        "abort": (lambda: Scenario(abort=(grpc.StatusCode.ABORTED, "conflict")), gt.Aborted),
        "mid-stream": (lambda: Scenario(responses=2, raise_=gt.NotFound("gone")), gt.NotFound),
    }


def _plan(n: int) -> list[tuple[str, str, str, type[gt.StatusError] | None]]:
    """(kind, key, outcome name, expected class) for n RPCs, every outcome on every kind."""
    table = _outcomes()
    keys = {name: register(make()) for name, (make, _) in table.items()}
    names = list(table)
    plan = []
    for i in range(n):
        name = names[i % len(names)]
        kind = KINDS[(i // len(names)) % len(KINDS)]
        plan.append((kind, keys[name], name, table[name][1]))
    return plan


def _check(kind: str, name: str, expected: type[gt.StatusError] | None, out: Outcome) -> str | None:
    if expected is None:
        if out.error is not None:
            return f"{name}/{kind}: unexpected {out.error!r}"
        return None
    if type(out.error) is not expected:
        return f"{name}/{kind}: expected {expected.__name__}, got {out.error!r}"
    if name == "mid-stream" and kind.endswith("stream") and out.responses != ["r0", "r1"]:
        return f"{name}/{kind}: responses {out.responses}"
    if name == "transient" and gt.retry_delay(out.error) != 0.25:
        return f"{name}/{kind}: retry delay {gt.retry_delay(out.error)}"
    return None


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _settle(baseline_threads: int, deadline: float = 5.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end and threading.active_count() > baseline_threads + THREAD_TOLERANCE:
        gc.collect()
        time.sleep(0.05)


class _OwnedSyncServer:
    """A sync server that also shuts its thread pool down (grpc.server does not own it)."""

    def __init__(self) -> None:
        self.pool = futures.ThreadPoolExecutor(max_workers=16)
        self.server = grpc.server(self.pool, interceptors=[gt.ServerInterceptor()])
        self.server.add_generic_rpc_handlers((_handlers(aio=False),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None).wait(10)
        self.pool.shutdown(wait=True)


def _run_sync_side(n: int) -> list[str]:
    server = _OwnedSyncServer()
    clients = [SyncClient(server.port) for _ in range(4)]
    plan = _plan(n)
    try:
        with futures.ThreadPoolExecutor(SYNC_CLIENT_THREADS) as pool:
            results = list(
                pool.map(
                    lambda item: _check(
                        item[1][0],
                        item[1][2],
                        item[1][3],
                        clients[item[0] % len(clients)].call(item[1][0], item[1][1]),
                    ),
                    enumerate(plan),
                )
            )
    finally:
        for client in clients:
            client.close()
        server.stop()
    return [r for r in results if r]


def _run_aio_side(lt: LoopThread, n: int) -> tuple[list[str], int, int]:
    server = AioServer(lt)
    client = AioClient(lt, server.port)
    plan = _plan(n)

    async def run() -> tuple[list[str], int]:
        before = len(asyncio.all_tasks())
        gate = asyncio.Semaphore(AIO_CLIENT_TASKS)

        async def one(kind: str, key: str, name: str, expected: type[gt.StatusError] | None) -> str | None:
            async with gate:
                return _check(kind, name, expected, await client.acall(kind, key))

        results = await asyncio.gather(*(one(*item) for item in plan))
        return [r for r in results if r], before

    try:
        problems, tasks_before = lt.run(run(), timeout=60)
    finally:
        client.close()
        server.stop()

    async def count() -> int:
        await asyncio.sleep(0.1)
        return len(asyncio.all_tasks())

    return problems, tasks_before, lt.run(count())


def _run_both(lt: LoopThread, n: int) -> list[str]:
    problems: list[str] = []
    aio_result: list[Any] = []
    aio = threading.Thread(target=lambda: aio_result.append(_run_aio_side(lt, n)))
    aio.start()
    problems += _run_sync_side(n)
    aio.join(90)
    assert not aio.is_alive()
    aio_problems, tasks_before, tasks_after = aio_result[0]
    problems += aio_problems
    # The only task left is the one counting them: every RPC task ended.
    assert tasks_after <= max(tasks_before, 1), (tasks_before, tasks_after)
    return problems


def test_thousands_of_mixed_rpcs_decode_right_and_leak_nothing(loop_thread: LoopThread) -> None:
    _run_both(loop_thread, 40)  # warm-up: grpc's own global threads and fds exist from here on
    gc.collect()
    fds, threads = _fds(), threading.active_count()
    problems = _run_both(loop_thread, RPCS_PER_SIDE)
    assert problems == [], problems[:10]
    _settle(threads)
    gc.collect()
    assert threading.active_count() <= threads + THREAD_TOLERANCE, (threads, threading.enumerate())
    assert _fds() <= fds + FD_TOLERANCE, (fds, _fds())


@pytest.mark.parametrize("n", [200])
def test_sync_client_against_aio_server_under_load(loop_thread: LoopThread, n: int) -> None:
    server = AioServer(loop_thread, sync_handlers=True)
    client = SyncClient(server.port)
    try:
        with futures.ThreadPoolExecutor(8) as pool:
            results = list(
                pool.map(
                    lambda item: _check(item[0], item[2], item[3], client.call(item[0], item[1])), _plan(n)
                )
            )
    finally:
        client.close()
        server.stop()
    assert [r for r in results if r] == []
