"""The Provisioner client: a typed channel with a RetryPolicy, every attempt recorded.

The retry lives in grpc-terminal's client interceptor; :class:`Attempts`
sits *under* it (closest to the wire), so it sees each attempt the policy
makes and when it was made.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2

import grpc_terminal as gt
from examples.provisioner.service import GRANT, REVOKE


def fast_policy(on_retry: Callable[..., None] | None = None) -> gt.RetryPolicy:
    """A RetryPolicy with demo-sized backoffs: at most 3 attempts, all within 5 s.

    ``on_retry(attempt, wait, verdict, error)`` is called before each wait.
    """
    return gt.RetryPolicy(
        max_attempts=3, initial_backoff=0.05, max_backoff=0.5, multiplier=2, jitter=0.2, timeout=5.0,
        on_retry=on_retry,
    )


@dataclass
class Attempt:
    """One attempt as the wire saw it."""

    started: float
    ended: float = 0.0
    code: grpc.StatusCode = grpc.StatusCode.OK
    suggested_delay: float | None = None


@dataclass
class Attempts:
    """Records attempts; install below the retrying interceptors."""

    log: list[Attempt] = field(default_factory=list[Attempt])

    def clear(self) -> None:
        self.log.clear()

    def begin(self) -> Attempt:
        attempt = Attempt(started=time.monotonic())
        self.log.append(attempt)
        return attempt

    @staticmethod
    def end(attempt: Attempt, error: BaseException | None) -> None:
        attempt.ended = time.monotonic()
        if error is not None:
            typed = gt.from_rpc_error(error)
            attempt.code = typed.code()
            attempt.suggested_delay = gt.retry_delay(typed)

    def waits(self) -> list[float]:
        """Seconds between the end of each attempt and the start of the next."""
        return [b.started - a.ended for a, b in zip(self.log, self.log[1:], strict=False)]


class SyncAttempts(Attempts, grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """A sync client interceptor recording each unary attempt."""

    def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        attempt = self.begin()
        outcome: grpc.Future[Any] = continuation(client_call_details, request)
        outcome.add_done_callback(lambda done: self.end(attempt, done.exception()))
        return outcome


class AioAttempts(Attempts, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """A grpc.aio client interceptor recording each unary attempt."""

    async def intercept_unary_unary(self, continuation: Any, client_call_details: Any, request: Any) -> Any:
        attempt = self.begin()
        call = await continuation(client_call_details, request)
        try:
            await call
        except grpc.RpcError as err:
            self.end(attempt, err)
        else:
            self.end(attempt, None)
        return call


def request(user: str, target: str) -> struct_pb2.Struct:
    msg = struct_pb2.Struct()
    # types-protobuf's Struct.update names an alias pyright's typeshed lacks (FloatInt).
    msg.update({k: v for k, v in (("user", user), ("target", target)) if v})  # pyright: ignore[reportUnknownMemberType]
    return msg


# A channel-local subchannel pool: closing the channel closes its connection, so
# stopping the server afterwards does not send a GOAWAY to a lingering one.
_OPTIONS = [("grpc.use_local_subchannel_pool", 1)]

_CODEC: dict[str, Any] = {
    "request_serializer": struct_pb2.Struct.SerializeToString,
    "response_deserializer": struct_pb2.Struct.FromString,
}


class SyncClient:
    """``Grant``/``Revoke`` over a sync channel: typed errors, retries, recorded attempts."""

    def __init__(self, port: int, policy: gt.RetryPolicy) -> None:
        self.attempts = SyncAttempts()
        self._raw = grpc.insecure_channel(f"127.0.0.1:{port}", options=_OPTIONS)
        # grpc-stubs leave the interceptor types' and (de)serializers' parameters unknown.
        recorded = grpc.intercept_channel(self._raw, self.attempts)  # pyright: ignore[reportUnknownMemberType]
        self.channel = gt.intercept_channel(recorded, retry=policy)
        self._methods: dict[str, Callable[..., Any]] = {
            "Grant": self.channel.unary_unary(GRANT, **_CODEC),  # pyright: ignore[reportUnknownMemberType]
            "Revoke": self.channel.unary_unary(REVOKE, **_CODEC),  # pyright: ignore[reportUnknownMemberType]
        }

    def call(self, method: str, user: str, target: str) -> struct_pb2.Struct:
        self.attempts.clear()
        return self._methods[method](request(user, target), timeout=10)  # type: ignore[no-any-return]

    def close(self) -> None:
        self._raw.close()


class AioClient:
    """The same over a grpc.aio channel; create and use it inside one event loop."""

    def __init__(self, port: int, policy: gt.RetryPolicy) -> None:
        self.attempts = AioAttempts()
        interceptors: list[Any] = [*gt.aio_interceptors(retry=policy), self.attempts]
        self.channel = grpc.aio.insecure_channel(
            f"127.0.0.1:{port}", options=_OPTIONS, interceptors=interceptors
        )
        # grpc-stubs cannot infer the multicallable's message types from these (de)serializers.
        self._methods: dict[str, Callable[..., Any]] = {
            "Grant": self.channel.unary_unary(GRANT, **_CODEC),  # pyright: ignore[reportUnknownMemberType]
            "Revoke": self.channel.unary_unary(REVOKE, **_CODEC),  # pyright: ignore[reportUnknownMemberType]
        }

    async def call(self, method: str, user: str, target: str) -> struct_pb2.Struct:
        self.attempts.clear()
        return await self._methods[method](request(user, target), timeout=10)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self.channel.close(None)
