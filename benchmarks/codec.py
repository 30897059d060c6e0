"""Failure path, in process: exception -> trailers (encode) and trailers -> typed error (decode).

Each case is timed with ``time.perf_counter`` over a calibrated number of
iterations per sample; cases are interleaved sample by sample. The
``grpc_terminal`` logger is raised to ERROR for the duration so the
over-budget warning of the worst case costs its level check, not terminal I/O.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from benchmarks._stats import summarize
from grpc_terminal._decode import decode
from grpc_terminal._encode import encode

__all__ = ["run_codec"]


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
        cases: dict[str, Callable[[], object]] = {
            "encode typical": lambda: encode(typical),
            "decode typical": lambda: decode(enc_typical.code, enc_typical.message,
                                             enc_typical.trailing_metadata),
            "encode worst (1 MB detail + 10k violations)": lambda: encode(worst),
            "decode worst (its budget-fitted trailers)": lambda: decode(enc_worst.code, enc_worst.message,
                                                                        enc_worst.trailing_metadata),
            "decode foreign 15 KB status": lambda: decode(grpc.StatusCode.INVALID_ARGUMENT, "bad request",
                                                          foreign),
        }
        # Check what is measured does what it should.
        back = decode(enc_typical.code, enc_typical.message, enc_typical.trailing_metadata)
        if not isinstance(back, gt.UserNotProvisionable):
            raise AssertionError(f"typical round trip gave {back!r}")
        worst_back = decode(enc_worst.code, enc_worst.message, enc_worst.trailing_metadata)
        if not isinstance(worst_back, gt.ValidationFailure):
            raise AssertionError(f"worst round trip gave {worst_back!r}")
        iterations = {name: _calibrate(fn, target) for name, fn in cases.items()}
        times: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(samples):
            for name, fn in cases.items():
                n = iterations[name]
                start = time.perf_counter()
                for _ in range(n):
                    fn()
                times[name].append((time.perf_counter() - start) / n * 1e6)
        out: dict[str, Any] = {}
        for name in cases:
            out[name] = {"unit": "us", "iterations_per_sample": iterations[name], **summarize(times[name])}
        out["_sizes"] = {
            "typical_trailer_bytes": enc_typical.size(),
            "worst_trailer_bytes": enc_worst.size(),
            "budget": gt.TRAILER_BUDGET,
            "worst_field_violations_kept": len(worst_back.field_violations),
        }
        return out
    finally:
        logger.setLevel(level)
