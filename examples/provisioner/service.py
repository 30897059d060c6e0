"""The Provisioner gRPC service: Grant and Revoke, sync and aio.

No code generation: the service is registered with generic handlers and
speaks ``google.protobuf.Struct`` (request ``{"user": ..., "target": ...}``,
response ``{"status": ..., "grantId": ...}``).

Failures are raised, never hand-encoded:

* the upstream's own exceptions are mapped once, at the interceptor (``ERRORS``);
* the handler raises grpc-terminal errors directly where it knows best
  (bad input, a policy denial);
* anything else (a bug) becomes ``UNKNOWN`` with a request id; the traceback
  stays in the server log.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Generator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
from google.protobuf import struct_pb2

import grpc_terminal as gt
from examples.provisioner.upstream import (
    Directory,
    GroupManagedByRule,
    SeatLimitReached,
    UpstreamUnavailable,
    UserSuspended,
)

SERVICE = "provisioner.v1.Provisioner"
GRANT = f"/{SERVICE}/Grant"
REVOKE = f"/{SERVICE}/Revoke"
DOMAIN = "provisioner.example.com"

#: Groups that policy forbids granting directly.
POLICY_PROTECTED = {"prod-admins": "prod-admins-need-approval"}


def _license_exhausted(exc: BaseException) -> gt.StatusError:
    assert isinstance(exc, SeatLimitReached)
    return gt.terminal_error(
        gt.Reason.LICENSE_EXHAUSTED,
        "%s: %d of %d seats used",
        exc.app,
        exc.used,
        exc.total,
        quota_violations={exc.app: f"{exc.used} of {exc.total} seats used"},
        help_links={"Buy more seats": "https://admin.example.com/billing/seats"},
    )


def _unavailable(exc: BaseException) -> gt.StatusError:
    assert isinstance(exc, UpstreamUnavailable)
    return gt.Unavailable(str(exc), retry_delay=exc.retry_after)


#: The upstream's exceptions, mapped once (the most specific class wins).
ERRORS: dict[type[BaseException], Any] = {
    UserSuspended: gt.UserNotProvisionable,
    GroupManagedByRule: gt.TargetManagedExternally,
    SeatLimitReached: _license_exhausted,
    UpstreamUnavailable: _unavailable,
}


def _fields(request: struct_pb2.Struct) -> tuple[str, str]:
    user = request.fields["user"].string_value if "user" in request.fields else ""
    target = request.fields["target"].string_value if "target" in request.fields else ""
    violations: dict[str, str] = {}
    if not user:
        violations["user"] = "required: the login of the user to provision"
    if not target:
        violations["target"] = "required: the group to grant"
    if violations:
        raise gt.InvalidArgument("invalid request", field_violations=violations)
    return user, target


def _check_policy(target: str) -> None:
    policy = POLICY_PROTECTED.get(target)
    if policy is not None:
        raise gt.OperationNotPermitted(
            f"policy '{policy}' denies direct grants to '{target}'",
            localized_message=f"Access to {target} needs an approval. Request it in the access portal.",
            help_links={"Access portal": "https://access.example.com/request"},
        )


def _reply(**values: str) -> struct_pb2.Struct:
    reply = struct_pb2.Struct()
    # types-protobuf's Struct.update names an alias pyright's typeshed lacks (FloatInt).
    reply.update(values)  # pyright: ignore[reportUnknownMemberType]
    return reply


class Provisioner:
    """The service logic, shared by the sync and aio handlers."""

    def __init__(self, directory: Directory) -> None:
        self.directory = directory

    def grant(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        user, target = _fields(request)
        _check_policy(target)
        grant_id = self.directory.add_member(user, target)
        return _reply(status="granted", grantId=grant_id)

    def revoke(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        user, target = _fields(request)
        self.directory.remove_member(user, target)
        return _reply(status="revoked")

    async def agrant(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        await asyncio.sleep(0)  # an aio handler awaits its upstream; ours answers at once
        return self.grant(request, context)

    async def arevoke(self, request: struct_pb2.Struct, context: Any) -> struct_pb2.Struct:
        await asyncio.sleep(0)
        return self.revoke(request, context)

    def handler(self, *, aio: bool) -> grpc.GenericRpcHandler[Any, Any]:
        """Generic handlers for both methods (coroutines when ``aio``)."""
        codec: dict[str, Any] = {
            "request_deserializer": struct_pb2.Struct.FromString,
            "response_serializer": struct_pb2.Struct.SerializeToString,
        }
        grant: Callable[..., Any] = self.agrant if aio else self.grant
        revoke: Callable[..., Any] = self.arevoke if aio else self.revoke
        # grpc-stubs leave these builders' parameters and type arguments unknown.
        return grpc.method_handlers_generic_handler(  # pyright: ignore[reportUnknownMemberType, reportUnknownVariableType]
            SERVICE,
            {
                "Grant": grpc.unary_unary_rpc_method_handler(grant, **codec),  # pyright: ignore[reportUnknownMemberType]
                "Revoke": grpc.unary_unary_rpc_method_handler(revoke, **codec),  # pyright: ignore[reportUnknownMemberType]
            },
        )


def interceptor_options(on_error: Callable[[gt.ErrorEvent], None] | None = None) -> dict[str, Any]:
    """The options both servers use: the error mapping, our ErrorInfo domain, a hook."""
    return {"errors": ERRORS, "domain": DOMAIN, "on_error": on_error}


@contextlib.contextmanager
def serve_sync(
    directory: Directory, on_error: Callable[[gt.ErrorEvent], None] | None = None
) -> Generator[int, None, None]:
    """A ``grpc.server`` on 127.0.0.1 (ephemeral port); yields the port, stops on exit."""
    pool = futures.ThreadPoolExecutor(max_workers=4)
    # grpc-stubs leave the handler and interceptor types' type arguments unknown.
    server = grpc.server(pool, interceptors=[gt.ServerInterceptor(**interceptor_options(on_error))])  # pyright: ignore[reportUnknownMemberType]
    server.add_generic_rpc_handlers((Provisioner(directory).handler(aio=False),))  # pyright: ignore[reportUnknownMemberType]
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait(5)
        pool.shutdown(wait=True)


@contextlib.contextmanager
def serve_aio(
    directory: Directory, on_error: Callable[[gt.ErrorEvent], None] | None = None
) -> Generator[int, None, None]:
    """A ``grpc.aio.server`` on 127.0.0.1, on an event loop in its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="provisioner-aio", daemon=True)
    thread.start()

    async def start() -> tuple[grpc.aio.Server, int]:
        # grpc-stubs leave the handler and interceptor types' type arguments unknown.
        server = grpc.aio.server(interceptors=[gt.AioServerInterceptor(**interceptor_options(on_error))])  # pyright: ignore[reportUnknownMemberType]
        server.add_generic_rpc_handlers((Provisioner(directory).handler(aio=True),))  # pyright: ignore[reportUnknownMemberType]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(10)
    try:
        yield port
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
