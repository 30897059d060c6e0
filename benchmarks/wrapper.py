"""Client success path, in process: what the typed-error wrapper adds to one call.

End-to-end client CPU per RPC on loopback varies by several per cent from
sample to sample, more than the wrapper can cost. This measures the wrapper
alone: the same stub call through ``gt.intercept_channel`` /
``gt.aio_intercept_channel`` and directly, against in-process fakes that
answer at once, interleaved sample by sample. The difference is the CPU the
wrapper adds to every successful call; ``run.py`` puts it beside the
end-to-end cost of a call without it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Generator
from typing import Any

import grpc_terminal as gt
from benchmarks._stats import summarize

__all__ = ["run_wrapper"]

_RESPONSE = object()


class _FakeMultiCallable:
    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        return _RESPONSE


class _FakeAioCall:
    """Awaitable like a finished grpc.aio call: returns the response without suspending."""

    def __await__(self) -> Generator[Any, None, Any]:
        return _RESPONSE
        yield  # a generator, as grpc.aio's calls are


class _FakeAioMultiCallable:
    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        return _FakeAioCall()


class _FakeChannel:
    def __init__(self, multicallable: Any) -> None:
        self._multicallable = multicallable

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable


def _per_call(fn: Callable[[int], None], target_s: float) -> float:
    """Seconds per call of ``fn(n)`` (n calls), n calibrated to take about ``target_s``."""
    n = 64
    while True:
        start = time.process_time()
        fn(n)
        took = time.process_time() - start
        if took >= target_s:
            return took / n
        n *= 2


def run_wrapper(samples: int, target_s: float) -> dict[str, Any]:
    """Median and spread of the µs per call, direct and wrapped, sync and aio."""
    sync_raw = _FakeMultiCallable()
    sync_wrapped = gt.intercept_channel(_FakeChannel(sync_raw)).unary_unary("/b.S/M")  # type: ignore[arg-type]
    aio_raw = _FakeAioMultiCallable()
    aio_wrapped = gt.aio_intercept_channel(_FakeChannel(aio_raw)).unary_unary("/b.S/M")  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()

    def sync_loop(stub: Any) -> Callable[[int], None]:
        def calls(n: int) -> None:
            for _ in range(n):
                stub(None, timeout=5)

        return calls

    def aio_loop(stub: Any) -> Callable[[int], None]:
        async def many(n: int) -> None:
            for _ in range(n):
                await stub(None, timeout=5)

        return lambda n: loop.run_until_complete(many(n))

    cases = {
        "sync direct": sync_loop(sync_raw),
        "sync intercept_channel": sync_loop(sync_wrapped),
        "aio direct": aio_loop(aio_raw),
        "aio aio_intercept_channel": aio_loop(aio_wrapped),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for fn in cases.values():
            fn(1000)  # warm-up
        for _ in range(samples):
            for name, fn in cases.items():
                times[name].append(_per_call(fn, target_s) * 1e6)
    finally:
        loop.close()
    out: dict[str, Any] = {name: summarize(values) for name, values in times.items()}
    for style, wrapped in (("sync", "sync intercept_channel"), ("aio", "aio aio_intercept_channel")):
        added = [w - d for w, d in zip(times[wrapped], times[f"{style} direct"], strict=True)]
        out[f"_{style}_added_us"] = summarize(added)
    return out
