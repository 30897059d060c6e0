"""Soak (``make soak``): 100,000 failing RPCs; memory stays flat after warm-up.

Half the RPCs go sync client -> sync server, half aio client -> aio server,
every failure kind mixed. RSS (VmRSS of /proc/self/status) is sampled after
each batch; after a warm-up of WARMUP_RPCS the growth to the end must stay
under RSS_GROWTH_BOUND_MB. The measured numbers are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

import grpc_terminal as gt

from harness import (
    KINDS,
    AioClient,
    AioServer,
    LoopThread,
    Scenario,
    SyncClient,
    SyncServer,
    _registry,
    register,
)

TOTAL_RPCS = int(__import__("os").environ.get("SOAK_RPCS", "100000"))
BATCH = 5_000
WARMUP_RPCS = 20_000
RSS_GROWTH_BOUND_MB = 10.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _raising(exc: BaseException, **options: object) -> Scenario:
    """A scenario re-raising ``exc``; its traceback is reset first.

    Re-raising one exception object prepends frames to its ``__traceback__``
    every time: 100,000 raises of a shared instance would measure that chain
    (and make the server log ever longer tracebacks), not this library.
    """
    return Scenario(raise_=exc, before=lambda: exc.with_traceback(None), **options)  # type: ignore[arg-type]


FAILURES: list[tuple[Scenario, type[gt.StatusError]]] = [
    (_raising(gt.UserNotProvisionable("suspended " * 20)), gt.UserNotProvisionable),
    (_raising(gt.LicenseExhausted("seats")), gt.LicenseExhausted),
    (_raising(gt.OperationNotPermitted("policy")), gt.OperationNotPermitted),
    (_raising(gt.Unavailable("503", retry_delay=1.0)), gt.Unavailable),
    (
        _raising(gt.InvalidArgument("bad", field_violations=[(f"f{i}", "x" * 50) for i in range(500)])),
        gt.InvalidArgument,
    ),
    (_raising(ValueError("unexpected")), gt.Unknown),
    (Scenario(abort=(grpc.StatusCode.ABORTED, "conflict")), gt.Aborted),
    (_raising(gt.NotFound("gone"), responses=2), gt.NotFound),
]


class _CountingHandler(logging.Handler):
    """Formats every record (as a real handler would) and keeps none of them."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.format(record)
        self.count += 1


@pytest.fixture
def uncaptured_logs() -> Iterator[_CountingHandler]:
    """pytest keeps every captured record (and its traceback) for the report: 100,000 RPCs
    of that would measure pytest. The library's loggers go to a counting handler instead.

    pytest also attaches its capturing handlers to loggers that do not propagate, so
    `make soak` runs with ``-p no:logging``; then this handler is the only one.
    """
    logger = logging.getLogger("grpc_terminal")
    handler = _CountingHandler()
    old = logger.propagate, logger.level
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.propagate, logger.level = old


def test_memory_stays_flat_over_100k_failing_rpcs(
    loop_thread: LoopThread, request: pytest.FixtureRequest, uncaptured_logs: _CountingHandler
) -> None:
    if "slow" not in str(request.config.getoption("markexpr", "")):
        pytest.skip("soak: run with -m slow (make soak)")
    keys = [(register(sc), cls) for sc, cls in FAILURES]
    scenarios = [_registry[key] for key, _ in keys]
    sync_server = SyncServer(workers=8)
    sync_clients = [SyncClient(sync_server.port) for _ in range(4)]
    aio_server = AioServer(loop_thread)
    aio_client = AioClient(loop_thread, aio_server.port)

    def sync_one(i: int) -> str | None:
        key, cls = keys[i % len(keys)]
        kind = KINDS[(i // len(keys)) % len(KINDS)]
        err = sync_clients[i % len(sync_clients)].call(kind, key, timeout=60).error
        return None if type(err) is cls else f"sync {kind}: {err!r}"

    async def aio_batch(start: int, n: int) -> list[str]:
        gate = asyncio.Semaphore(16)

        async def one(i: int) -> str | None:
            key, cls = keys[i % len(keys)]
            kind = KINDS[(i // len(keys)) % len(KINDS)]
            async with gate:
                err = (await aio_client.acall(kind, key, timeout=60)).error
            return None if type(err) is cls else f"aio {kind}: {err!r}"

        return [p for p in await asyncio.gather(*(one(i) for i in range(start, start + n))) if p]

    samples: list[tuple[int, float]] = []
    problems: list[str] = []
    done = 0
    t0 = time.monotonic()
    try:
        with futures.ThreadPoolExecutor(8) as pool:
            while done < TOTAL_RPCS:
                half = BATCH // 2
                problems += [p for p in pool.map(sync_one, range(done, done + half)) if p]
                problems += loop_thread.run(aio_batch(done, half), timeout=300)
                done += BATCH
                for sc in scenarios:
                    sc.calls.clear()  # the harness counts calls; keep that out of the measurement
                gc.collect()
                samples.append((done, _rss_mb()))
                print(
                    f"soak: {done} RPCs, RSS {samples[-1][1]:.1f} MB, {time.monotonic() - t0:.0f} s",
                    flush=True,
                )
                assert not problems, problems[:5]
    finally:
        for client in sync_clients:
            client.close()
        aio_client.close()
        sync_server.stop()
        aio_server.stop()
    after_warmup = [rss for n, rss in samples if n >= min(WARMUP_RPCS, samples[-1][0])]
    growth = after_warmup[-1] - after_warmup[0]
    peak = max(after_warmup) - after_warmup[0]
    print(f"\nsoak RSS MB by RPCs done: {[(n, round(r, 1)) for n, r in samples]}")
    print(
        f"soak: start {samples[0][1]:.1f} MB, after warm-up {after_warmup[0]:.1f} MB, "
        f"end {after_warmup[-1]:.1f} MB, growth {growth:.1f} MB, peak growth {peak:.1f} MB"
    )
    print(f"soak: {uncaptured_logs.count} log records formatted")
    assert uncaptured_logs.count >= TOTAL_RPCS // 8  # the server logged (unexpected errors at least)
    assert growth < RSS_GROWTH_BOUND_MB, samples
    assert peak < RSS_GROWTH_BOUND_MB, samples
