"""Failure path, in process: exception -> trailers (encode) and trailers -> typed error (decode).

Each case is timed with ``time.perf_counter`` over a calibrated number of
iterations per sample; cases are interleaved sample by sample. Also: what the
client wrapper adds to a failing call (fakes that raise a ``grpc.RpcError`` at
once), and how encoding grows with the number of field violations and the
length of the detail (:func:`run_scaling`). The
``grpc_terminal`` logger is raised to ERROR for the duration so the
over-budget warning of the worst case costs its level check, not terminal I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Callable, Generator
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from benchmarks._stats import summarize
from grpc_terminal._decode import decode, from_rpc_error
from grpc_terminal._encode import encode

__all__ = ["VIOLATION_COUNTS", "DETAIL_LENGTHS", "run_codec", "run_scaling"]

#: Field violations per error for the scaling series (short message).
VIOLATION_COUNTS = (10, 100, 1_000, 10_000, 100_000)
#: Detail (message) lengths in bytes for the scaling series (no violations).
DETAIL_LENGTHS = (1_000, 10_000, 100_000, 1_000_000, 10_000_000)


def typical_error() -> gt.StatusError:
    """A terminal error as a connector raises it: message, metadata, a resource and a help link."""
    return gt.UserNotProvisionable(
        "Okta E0000038: user 'jdoe' is SUSPENDED",
        metadata={"user_id": "00u1abcd2EFGH3ijk4l5", "upstream": "okta"},
        resource_info=("okta.user", "jdoe@example.com"),
        help_links={"Reactivate a user": "https://help.example.com/okta/reactivate"},
    )


def worst_error() -> gt.StatusError:
    """The budget-limited worst case: a 1 MB detail and 10,000 field violations."""
    return gt.ValidationFailure(
        "x" * 1_000_000,
        field_violations=[(f"spec.entitlements[{i}].id", "must reference an existing entitlement")
                          for i in range(10_000)],
    )


def foreign_status_trailers(target: int = 15_000) -> tuple[tuple[str, str | bytes], ...]:
    """A peer's status just under grpc's 16 KiB hard limit: one BadRequest with many violations."""
    bad = ed.BadRequest()
    while len(bad.SerializeToString()) < target * 3 // 4 - 200:  # base64 inflates by 4/3
        violation = bad.field_violations.add()
        violation.field = f"spec.items[{len(bad.field_violations)}]"
        violation.description = "must not be empty"
    packed = any_pb2.Any()
    packed.Pack(bad)
    status = status_pb2.Status(
        code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="bad request", details=[packed]
    )
    return (("grpc-status-details-bin", status.SerializeToString()),)


class _FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """A failed call as grpc raises it, with the typical error's trailers."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: Any) -> None:
        super().__init__()
        self._code, self._message, self._trailers = code, message, trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._message

    def trailing_metadata(self) -> Any:
        return self._trailers

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


class _FailingMultiCallable:
    def __init__(self, err: BaseException) -> None:
        self._err = err

    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        raise self._err


class _FailedAioCall:
    def __init__(self, err: BaseException) -> None:
        self._err = err

    def __await__(self) -> Generator[Any, None, Any]:
        raise self._err
        yield  # a generator, as grpc.aio's calls are


class _FailingAioMultiCallable:
    def __init__(self, err: BaseException) -> None:
        self._err = err

    def __call__(self, request: Any, timeout: float | None = None) -> Any:
        return _FailedAioCall(self._err)


class _FakeChannel:
    def __init__(self, multicallable: Any) -> None:
        self._multicallable = multicallable

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._multicallable


def _wrapper_cases(err: BaseException) -> tuple[dict[str, Callable[[], object]], asyncio.AbstractEventLoop]:
    """A failing call straight on the fake, and through ``intercept_channel`` / ``aio_intercept_channel``."""
    sync_raw = _FailingMultiCallable(err)
    sync_wrapped = gt.intercept_channel(_FakeChannel(sync_raw)).unary_unary("/b.S/M")  # type: ignore[arg-type]
    aio_raw = _FailingAioMultiCallable(err)
    aio_wrapped = gt.aio_intercept_channel(_FakeChannel(aio_raw)).unary_unary("/b.S/M")  # type: ignore[arg-type]
    loop = asyncio.new_event_loop()

    def sync_call(stub: Any, caught: type[BaseException]) -> Callable[[], object]:
        def call() -> object:
            try:
                stub(None, timeout=5)
            except caught as exc:
                return exc
            raise AssertionError("the fake call did not fail")

        return call

    def aio_call(stub: Any, caught: type[BaseException]) -> Callable[[], object]:
        async def call() -> object:
            try:
                await stub(None, timeout=5)
            except caught as exc:
                return exc
            raise AssertionError("the fake call did not fail")

        return lambda: loop.run_until_complete(call())

    return {
        "sync failing call, direct (RpcError)": sync_call(sync_raw, grpc.RpcError),
        "sync failing call, intercept_channel (typed)": sync_call(sync_wrapped, gt.StatusError),
        "aio failing call, direct (RpcError)": aio_call(aio_raw, grpc.RpcError),
        "aio failing call, aio_intercept_channel (typed)": aio_call(aio_wrapped, gt.StatusError),
    }, loop


def _calibrate(fn: Callable[[], object], target: float) -> int:
    """Iterations per sample so that one sample takes about ``target`` seconds."""
    iterations = 1
    while True:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= target / 4 or iterations >= 1 << 20:
            return max(1, round(iterations * target / max(elapsed, 1e-9)))
        iterations *= 4


def run_codec(samples: int, target: float) -> dict[str, Any]:
    """µs per operation for each case: median, spread and samples."""
    logger = logging.getLogger("grpc_terminal")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        typical, worst = typical_error(), worst_error()
        enc_typical, enc_worst = encode(typical), encode(worst)
        foreign = foreign_status_trailers()
        rpc_error = _FakeRpcError(enc_typical.code, enc_typical.message, enc_typical.trailing_metadata)
        wrapper_cases, loop = _wrapper_cases(rpc_error)
        cases: dict[str, Callable[[], object]] = {
            "encode typical": lambda: encode(typical),
            "decode typical": lambda: decode(enc_typical.code, enc_typical.message,
                                             enc_typical.trailing_metadata),
            "from_rpc_error typical": lambda: from_rpc_error(rpc_error),
            "encode worst (1 MB detail + 10k violations)": lambda: encode(worst),
            "decode worst (its budget-fitted trailers)": lambda: decode(enc_worst.code, enc_worst.message,
                                                                        enc_worst.trailing_metadata),
            "decode foreign 15 KB status": lambda: decode(grpc.StatusCode.INVALID_ARGUMENT, "bad request",
                                                          foreign),
            **wrapper_cases,
        }
        # Check what is measured does what it should.
        back = decode(enc_typical.code, enc_typical.message, enc_typical.trailing_metadata)
        if not isinstance(back, gt.UserNotProvisionable):
            raise AssertionError(f"typical round trip gave {back!r}")
        worst_back = decode(enc_worst.code, enc_worst.message, enc_worst.trailing_metadata)
        if not isinstance(worst_back, gt.ValidationFailure):
            raise AssertionError(f"worst round trip gave {worst_back!r}")
        for name, fn in wrapper_cases.items():
            got = fn()
            want = gt.UserNotProvisionable if "typed" in name else _FakeRpcError
            if not isinstance(got, want):
                raise AssertionError(f"{name} gave {got!r}")
        iterations = {name: _calibrate(fn, target) for name, fn in cases.items()}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(samples):
            for name, fn in cases.items():
                n = iterations[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                times[name].append((time.perf_counter() - start) / n * 1e6)
        loop.close()
        out: dict[str, Any] = {}
        for name in cases:
            out[name] = {"unit": "us", "iterations_per_sample": iterations[name], **summarize(times[name])}
        for style, wrapped in (("sync", "intercept_channel"), ("aio", "aio_intercept_channel")):
            direct = times[f"{style} failing call, direct (RpcError)"]
            typed = times[f"{style} failing call, {wrapped} (typed)"]
            out[f"_{style}_failure_added_us"] = summarize([t - d for t, d in zip(typed, direct, strict=True)])
        out["_sizes"] = {
            "typical_trailer_bytes": enc_typical.size(),
            "worst_trailer_bytes": enc_worst.size(),
            "budget": gt.TRAILER_BUDGET,
            "worst_field_violations_kept": len(worst_back.field_violations),
        }
        return out
    finally:
        logger.setLevel(level)


def _violations_error(n: int) -> gt.StatusError:
    return gt.ValidationFailure(
        "spec rejected",
        field_violations=[(f"spec.entitlements[{i}].id", "must reference an existing entitlement")
                          for i in range(n)],
    )


def _growth(points: list[dict[str, Any]], unit: str) -> dict[str, Any]:
    """How time grows with size: the cost per unit between consecutive sizes, and the growth
    exponent per step (log time ratio over log size ratio: 1 is linear, 2 quadratic)."""
    steps = []
    for before, after in itertools.pairwise(points):
        ratio = after[unit] / before[unit]
        steps.append({
            "from": before[unit], "to": after[unit],
            "us_per_unit": (after["us"] - before["us"]) / (after[unit] - before[unit]),
            "exponent": math.log(after["us"] / before["us"]) / math.log(ratio),
        })
    first, last = points[-3], points[-1]
    return {
        "steps": steps,
        # Over the largest sizes, where the fixed cost of an encode no longer hides the growth.
        "exponent_top": math.log(last["us"] / first["us"]) / math.log(last[unit] / first[unit]),
        "top_from": first[unit],
        "us_per_unit_at_largest": last["us"] / last[unit],
    }


def run_scaling(samples: int, target: float) -> dict[str, Any]:
    """Encode time against the field violations (``VIOLATION_COUNTS``) and the detail length
    (``DETAIL_LENGTHS``): median µs per encode at each size, the cost per violation / per KB
    between consecutive sizes and how time grows with size (its exponent: 1 is linear)."""
    logger = logging.getLogger("grpc_terminal")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        series: dict[str, tuple[str, list[tuple[int, gt.StatusError]]]] = {
            "violations": ("violations", [(n, _violations_error(n)) for n in VIOLATION_COUNTS]),
            "detail": ("kb", [(n // 1000, gt.ValidationFailure("x" * n)) for n in DETAIL_LENGTHS]),
        }
        out: dict[str, Any] = {}
        for name, (unit, cases) in series.items():
            points = []
            for size, exc in cases:
                encoded = encode(exc)
                if encoded.size() > gt.TRAILER_BUDGET:
                    raise AssertionError(f"{name} {size}: {encoded.size()} B over the budget")
                n = _calibrate(lambda exc=exc: encode(exc), target)  # type: ignore[misc]
                times = []
                for _ in range(samples):
                    start = time.perf_counter()
                    for _ in range(n):
                        encode(exc)
                    times.append((time.perf_counter() - start) / n * 1e6)
                points.append({unit: size, "us": summarize(times)["median"], "iterations_per_sample": n,
                               "trailer_bytes": encoded.size()})
            out[name] = {"unit": unit, "points": points, **_growth(points, unit)}
        return out
    finally:
        logger.setLevel(level)
