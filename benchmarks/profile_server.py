"""Where a sync server spends its Python time on a failing RPC: a cProfile per variant.

``python -m benchmarks.profile_server [N]`` serves the benchmark service on a
sync grpc server whose handler pool has one thread, profiled around each RPC
it runs (that thread's CPU time, ``time.thread_time``), and drives N failing
unary calls per variant from the main thread (not profiled): *context.abort*,
*hand-written* (the same google.rpc.Status as ours, built by hand with
grpcio-status) and *ours* (``ServerInterceptor``, the handler raising
``UserNotProvisionable``). For each variant it prints the profiled CPU µs per
RPC (the profiler's own cost per call included: compare shares, not totals)
and the functions with the most own time. Work grpc's C core does on its own
threads is not in it; ``make bench`` measures the whole process.
"""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
import sys
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

from benchmarks import _service as svc

__all__ = ["PARTS", "in_process", "main", "profile_variant", "summary"]

VARIANTS = {"context.abort": ("none", "abort"), "hand-written": ("none", "status"), "ours": ("ours", "raise")}


#: What the summary reports, per failing RPC: (file suffix, function) whose cumulative
#: time is the part (the largest when several match, e.g. nested __init__).
PARTS: dict[str, tuple[str, str]] = {
    "handler and interceptor (all of the RPC's Python work)": ("grpc/_server.py", "_call_behavior"),
    "the exception raised (StatusError.__init__)": ("grpc_terminal/_errors.py", "__init__"),
    "the status built by hand (hand_written_status)": ("benchmarks/_service.py", "hand_written_status"),
    "translate: exception -> code, message, trailers": ("grpc_terminal/_translate.py", "translate"),
    "  of which encode (the codec)": ("grpc_terminal/_encode.py", "encode"),
    "  of which the ErrorEvent (_event)": ("grpc_terminal/_translate.py", "_event"),
    "  of which classify": ("grpc_terminal/_classify.py", "classify"),
    "grpc's _abort (hands the status to the C core)": ("grpc/_server.py", "_abort"),
}


class _ProfiledPool(futures.ThreadPoolExecutor):
    """One worker thread; every callable it runs is profiled (the same profile throughout)."""

    def __init__(self, profile: cProfile.Profile) -> None:
        super().__init__(max_workers=1)
        self._profile = profile
        self.active = threading.Event()

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> futures.Future[Any]:
        def run() -> Any:
            if not self.active.is_set():
                return fn(*args, **kwargs)
            self._profile.enable()
            try:
                return fn(*args, **kwargs)
            finally:
                self._profile.disable()

        return super().submit(run)


def profile_variant(variant: str, n: int, top: int = 25,
                    keep: list[pstats.Stats] | None = None) -> tuple[float, str]:
    """µs of profiled CPU time per failing RPC for ``variant``, and the top of its profile.

    Args:
        variant: a key of :data:`VARIANTS`.
        n: failing calls to profile (after as many unprofiled ones to warm up).
        top: how many functions to list, by own time.
        keep: a list to append the ``pstats.Stats`` to (for callers that read it).
    """
    interceptor, mode = VARIANTS[variant]
    profile = cProfile.Profile(time.thread_time)  # CPU of the handler thread, not wall time
    pool = _ProfiledPool(profile)
    server = grpc.server(pool, interceptors=svc.sync_server_interceptors(interceptor))
    server.add_generic_rpc_handlers((svc.sync_handlers(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = channel.unary_unary(svc.method_path("unary"), request_serializer=svc.Msg.SerializeToString,
                                       response_deserializer=svc.Msg.FromString)
            request = svc.Msg(value=mode)

            def calls() -> None:
                for _ in range(n):
                    try:
                        stub(request, timeout=10)
                    except grpc.RpcError:
                        pass
                    else:
                        raise AssertionError(f"{variant}: the call did not fail")

            calls()
            pool.active.set()
            calls()
    finally:
        server.stop(None)
        pool.shutdown(wait=True)
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    per_rpc = stats.total_tt / n * 1e6  # type: ignore[attr-defined]
    if keep is not None:
        keep.append(stats)
    if top:
        stats.sort_stats("tottime").print_stats(top)
    return per_rpc, out.getvalue()


def _stats(variant: str, n: int) -> tuple[float, pstats.Stats]:
    holder: list[pstats.Stats] = []
    per_rpc, _ = profile_variant(variant, n, top=0, keep=holder)
    return per_rpc, holder[0]


def in_process(n: int = 2000) -> dict[str, float]:
    """CPU µs per call, in process and unprofiled, of the pieces a failing RPC's handler
    thread runs: building the exception, translating it (``Translator.translate``, which
    encodes), encoding alone, and building the hand-written status.

    Args:
        n: calls per sample (best of 7 samples).
    """
    import timeit

    import grpc_terminal as gt
    from grpc_terminal._encode import encode
    from grpc_terminal._translate import Translator

    translator = Translator()
    exc = gt.UserNotProvisionable(svc.TERMINAL_MESSAGE)
    method = svc.method_path("unary")
    logger = logging.getLogger("grpc_terminal")
    level = logger.level
    logger.setLevel(logging.CRITICAL)  # translate logs the failure: its level check, not the I/O
    try:
        cases: dict[str, Callable[[], object]] = {
            "ours: the exception (UserNotProvisionable(...))": lambda: gt.UserNotProvisionable(
                svc.TERMINAL_MESSAGE),
            "ours: translate (decide + encode)": lambda: translator.translate(exc, method),
            "ours: encode alone": lambda: encode(exc),
            "hand-written: the status (hand_written_status())": svc.hand_written_status,
        }
        return {name: min(timeit.repeat(fn, number=n, repeat=7, timer=time.process_time)) / n * 1e6
                for name, fn in cases.items()}
    finally:
        logger.setLevel(level)


def summary(n: int) -> dict[str, dict[str, Any]]:
    """Per variant: handler-thread CPU µs per failing RPC and the cumulative µs of each of
    :data:`PARTS` (profiler overhead included: read them as shares of the total).

    Args:
        n: failing calls profiled per variant.
    """
    logger = logging.getLogger("grpc._server")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        out: dict[str, dict[str, Any]] = {}
        for variant in VARIANTS:
            per_rpc, stats = _stats(variant, n)
            table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
            parts: dict[str, float] = {}
            for label, (suffix, function) in PARTS.items():
                times = [entry[3] for (path, _, name), entry in table.items()
                         if name == function and path.replace("\\", "/").endswith(suffix)]
                if times:
                    parts[label] = max(times) / n * 1e6
            out[variant] = {"us_per_rpc": per_rpc, "parts": parts, "rpcs": n}
        return out
    finally:
        logger.setLevel(level)


def main(argv: list[str] | None = None) -> int:
    """Print each variant's profile.

    Args:
        argv: ``[N]``, the failing calls per variant (default 2000).
    """
    args = sys.argv[1:] if argv is None else argv
    n = int(args[0]) if args else 2000
    logging.getLogger("grpc._server").setLevel(logging.CRITICAL)
    for variant in VARIANTS:
        per_rpc, text = profile_variant(variant, n)
        print(f"== {variant}: {per_rpc:.1f} µs of handler-thread CPU per failing RPC ==")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
