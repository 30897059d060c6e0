"""Retry: wall time for a caller to give up on a terminal failure.

A real server on loopback (in this process; wall time, not CPU, is measured)
counts the attempts it sees. Scenarios, all with the same backoff
(``max_attempts=5``, exponential, no jitter):

* ``without grpc-terminal``: the handler raises its own exception, grpcio sends
  UNKNOWN, a code-only retrier (retrying the usual transient codes, UNKNOWN
  among them) retries it to exhaustion;
* ``grpc-terminal``: the server interceptor sends FAILED_PRECONDITION with a
  ProvisionFailureDetail, the client's ``RetryPolicy`` stops at once;
* ``code-only retrier, grpc-terminal server``: what the server side alone buys
  a generic retrier;
* ``gRPC service-config retry``, plain server vs grpc-terminal server: the
  ``grpc-retry-pushback-ms: -1`` trailer stops gRPC's own retry even with
  FAILED_PRECONDITION in ``retryableStatusCodes`` (gRPC always jitters).
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc

import grpc_terminal as gt
from benchmarks import _service as svc
from benchmarks._stats import summarize

__all__ = ["CodeOnlyRetrier", "run_retry"]

#: What a generic retrier retries when all it looks at is the code.
CODE_ONLY_RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
    }
)

MAX_ATTEMPTS = 5


def _by_code(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() in CODE_ONLY_RETRYABLE


class CodeOnlyRetrier:
    """A small exponential-backoff retrier, the kind every codebase has."""

    def __init__(
        self,
        max_attempts: int,
        initial_backoff: float,
        max_backoff: float,
        multiplier: float,
        jitter: float = 0.0,
        retryable: Callable[[BaseException], bool] = _by_code,
    ) -> None:
        self.max_attempts = max_attempts
        self.initial_backoff, self.max_backoff = initial_backoff, max_backoff
        self.multiplier, self.jitter = multiplier, jitter
        self.retryable = retryable

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        attempt = 1
        while True:
            try:
                return fn(*args)
            except Exception as exc:
                if attempt >= self.max_attempts or not self.retryable(exc):
                    raise
            backoff = min(self.initial_backoff * self.multiplier ** (attempt - 1), self.max_backoff)
            time.sleep(backoff * (1 - self.jitter * random.random()))
            attempt += 1


def our_retrier(initial_backoff: float, max_backoff: float, multiplier: float) -> Any:
    """``gt.RetryPolicy`` when the package has it, else the local retrier with ``gt.is_retryable``."""
    if hasattr(gt, "RetryPolicy"):
        return gt.RetryPolicy(
            max_attempts=MAX_ATTEMPTS, initial_backoff=initial_backoff, max_backoff=max_backoff,
            multiplier=multiplier, jitter=0.0,
        )
    return CodeOnlyRetrier(
        MAX_ATTEMPTS, initial_backoff, max_backoff, multiplier, jitter=0.0, retryable=gt.is_retryable
    )


class _Counter(grpc.ServerInterceptor):  # type: ignore[type-arg]
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def intercept_service(self, continuation: Any, details: Any) -> Any:
        with self.lock:
            self.count += 1
        return continuation(details)


class _Server:
    def __init__(self, ours: bool) -> None:
        self.counter = _Counter()
        interceptors: list[Any] = [self.counter]
        if ours:
            interceptors.append(gt.ServerInterceptor())
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
        self.server.add_generic_rpc_handlers((svc.sync_handlers(),))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)


def _service_config(initial_backoff: float, max_backoff: float, multiplier: float) -> str:
    return json.dumps(
        {
            "methodConfig": [
                {
                    "name": [{"service": "bench.Bench"}],
                    "retryPolicy": {
                        "maxAttempts": MAX_ATTEMPTS,
                        "initialBackoff": f"{initial_backoff}s",
                        "maxBackoff": f"{max_backoff}s",
                        "backoffMultiplier": multiplier,
                        "retryableStatusCodes": ["UNKNOWN", "FAILED_PRECONDITION"],
                    },
                }
            ]
        }
    )


def run_retry(reps: int, initial_backoff: float, max_backoff: float, multiplier: float) -> dict[str, Any]:
    """Wall seconds to give up, and the attempts the server saw, per scenario."""
    plain, ours = _Server(ours=False), _Server(ours=True)
    code_only = CodeOnlyRetrier(MAX_ATTEMPTS, initial_backoff, max_backoff, multiplier)
    policy = our_retrier(initial_backoff, max_backoff, multiplier)
    config = _service_config(initial_backoff, max_backoff, multiplier)
    channels: list[grpc.Channel] = []

    def stub(server: _Server, typed: bool, native_retry: bool = False) -> Callable[[svc.Msg], Any]:
        options = [("grpc.enable_retries", 1), ("grpc.service_config", config)] if native_retry else []
        raw = grpc.insecure_channel(f"127.0.0.1:{server.port}", options=options)
        grpc.channel_ready_future(raw).result(30)
        channels.append(raw)
        channel = gt.intercept_channel(raw) if typed else raw
        call = channel.unary_unary(
            svc.method_path("unary"),
            request_serializer=svc.Msg.SerializeToString,
            response_deserializer=svc.Msg.FromString,
        )
        return lambda request: call(request, timeout=30)

    scenarios: dict[str, tuple[_Server, Callable[[], Any]]] = {}
    plain_stub, ours_stub = stub(plain, typed=False), stub(ours, typed=True)
    generic_stub = stub(ours, typed=False)
    native_plain, native_ours = stub(plain, False, True), stub(ours, False, True)
    scenarios = {
        "without grpc-terminal (UNKNOWN, code-only retrier)": (
            plain, lambda: code_only.call(plain_stub, svc.Msg(value="plain"))),
        "grpc-terminal server + our retrier": (ours, lambda: policy.call(ours_stub, svc.Msg(value="raise"))),
        "code-only retrier, grpc-terminal server": (
            ours, lambda: code_only.call(generic_stub, svc.Msg(value="raise"))),
        "gRPC service-config retry, plain abort": (plain, lambda: native_plain(svc.Msg(value="abort"))),
        "gRPC service-config retry, grpc-terminal server": (
            ours, lambda: native_ours(svc.Msg(value="raise"))),
    }
    walls: dict[str, list[float]] = {name: [] for name in scenarios}
    attempts: dict[str, list[int]] = {name: [] for name in scenarios}
    errors: dict[str, str] = {}
    try:
        for _ in range(reps):
            for name, (server, fn) in scenarios.items():
                before = server.counter.count
                start = time.perf_counter()
                try:
                    fn()
                except grpc.RpcError as exc:
                    errors[name] = f"{type(exc).__name__} {exc.code().name}"
                else:
                    raise AssertionError(f"{name}: the call succeeded")
                walls[name].append(time.perf_counter() - start)
                attempts[name].append(server.counter.count - before)
    finally:
        for channel in channels:
            channel.close()
        plain.stop()
        ours.stop()
    return {
        "_config": {
            "max_attempts": MAX_ATTEMPTS, "initial_backoff": initial_backoff, "max_backoff": max_backoff,
            "multiplier": multiplier, "jitter": 0.0, "retry_policy": type(policy).__name__,
        },
        **{
            name: {
                "unit": "s",
                **summarize(walls[name]),
                "attempts": attempts[name],
                "error": errors.get(name, ""),
            }
            for name in scenarios
        },
    }
