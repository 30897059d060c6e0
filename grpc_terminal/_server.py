"""Server interceptors: the sync and aio edges around one :class:`HandlerWrapper`.

The interceptors are the public face (their options are :class:`ServerOptions`);
the wrapping of each RPC kind is in ``_handlers``, the stand-in contexts in
``_contexts``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from grpc_terminal._handlers import HandlerWrapper
from grpc_terminal._options import ServerOptions

__all__ = ["AioServerInterceptor", "AsyncServerInterceptor", "ServerInterceptor"]

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _SyncBase = grpc.ServerInterceptor[Any, Any]
    _AioBase = grpc.aio.ServerInterceptor[Any, Any]
else:
    _SyncBase, _AioBase = grpc.ServerInterceptor, grpc.aio.ServerInterceptor


def _options_args() -> str:
    """The ``Args:`` section of :class:`ServerOptions`, written once, shown by both interceptors."""
    doc = ServerOptions.__doc__ or ""
    return "\n" + doc[doc.index("    Args:") : doc.index("    Raises:")].rstrip() + "\n"


_OPTIONS = _options_args()

_POOL_ARG = """        thread_pool: the executor whose threads drive sync streaming
            handlers on the aio server (pass the one you gave
            ``grpc.aio.server(migration_thread_pool=...)`` to share it). By
            default the interceptor creates its own, on first use, with
            ``DEFAULT_WORKERS`` threads named ``grpc-terminal-*``; the event
            loop's default executor is never used.
"""

_RULES = """
    What is sent (the full rules: Design, Guarantees, in the documentation):

    * a raised :class:`StatusError` as it is; a mapped exception (``errors``)
      as its mapping gives; anything else as ``UNKNOWN`` with a generic
      message and a request id, the traceback logged under that id;
    * an exception group (``ExceptionGroup``, ``asyncio.TaskGroup``) as its
      member that matters most, nested groups included: the first terminal
      member, else the first StatusError or relayed ``grpc.RpcError``, else
      the mapped member with the most specific mapped class; ``UNKNOWN`` when
      no member is expected;
    * a failure received from a downstream call as what the peer said (its
      code, message and details) when it carries a rich status or a code our
      own transport never produces; otherwise its code with the message
      "upstream call failed: <CODE>" and a request id (our own grpc's text,
      naming hosts and addresses, is only logged); a downstream
      ``UNAUTHENTICATED`` is about this server's credentials: it is sent as
      ``INTERNAL`` "upstream rejected this server's credentials" (raise your
      own ``Unauthenticated`` to blame the caller);
    * a status the handler set itself (``abort``, ``abort_with_status``,
      ``set_code``, also when it returns normally) as set, with invalid
      trailing metadata dropped and the trailers kept within ``budget``.

    ``KeyboardInterrupt``, ``SystemExit``, ``GeneratorExit`` and
    ``asyncio.CancelledError`` (or a group holding one) pass through
    untouched; any other ``BaseException`` is sent as ``UNKNOWN`` (generic
    message and request id), then re-raised where grpc allows it.
"""


def _same_object(self: object, other: object) -> bool:
    return self is other


def _identity_hash(self: object) -> int:
    return id(self) >> 4


@dataclass(frozen=True, eq=False)
class ServerInterceptor(ServerOptions, _SyncBase):
    __doc__ = (
        "Interceptor for sync servers (``grpc.server``): raised exceptions become rich statuses.\n"
        + _RULES
        + """
    On ``grpc.server`` a ``BaseException`` is replaced by the exception
    grpc's ``abort`` raises (grpc would leave the RPC open otherwise); it is
    logged with its traceback. For ``grpc.aio`` servers use
    :class:`AioServerInterceptor` (grpc.aio refuses this class with a
    ``ValueError``).
"""
        + _OPTIONS
    )

    # An interceptor is an object with a life of its own, not a value: equal
    # only to itself (its options compare with ``ServerOptions(...)``).
    __eq__ = _same_object
    __hash__ = _identity_hash
    _core: HandlerWrapper = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "_core", HandlerWrapper(self))

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        """The handler grpc found for this call, wrapped (called by grpc for each call)."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=False)


@dataclass(frozen=True, eq=False)
class AioServerInterceptor(ServerOptions, _AioBase):
    __doc__ = (
        "Interceptor for ``grpc.aio`` servers: raised exceptions become rich statuses.\n"
        + _RULES
        + """
    Async handlers get grpc's context with ``abort`` and ``abort_with_status``
    going through the interceptor (masking, metadata); sync handlers on the
    aio server are served too. On a sync ``grpc.server`` every call fails at
    once with ``UNKNOWN`` and a logged ``TypeError``: use
    :class:`ServerInterceptor` there.
"""
        + _OPTIONS
        + _POOL_ARG
    )

    thread_pool: futures.Executor | None = field(default=None, kw_only=True)

    __eq__ = _same_object
    __hash__ = _identity_hash
    _core: HandlerWrapper = field(init=False, repr=False, compare=False)
    _warned_sync_server: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.thread_pool is not None and not isinstance(self.thread_pool, futures.Executor):
            raise TypeError(f"thread_pool must be a concurrent.futures.Executor, got {self.thread_pool!r}")
        core = HandlerWrapper(self)
        core.thread_pool = self.thread_pool
        object.__setattr__(self, "_core", core)
        object.__setattr__(self, "_warned_sync_server", False)

    def intercept_service(  # type: ignore[override]
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Coroutine[Any, Any, grpc.RpcMethodHandler[Any, Any] | None]:
        """The handler grpc.aio found for this call, wrapped (awaited by grpc.aio for each call).

        Raises ``TypeError`` when called outside an event loop, i.e. by a
        sync ``grpc.server`` (which then fails the call with ``UNKNOWN``).
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            error = TypeError(
                "grpc_terminal.AioServerInterceptor is for grpc.aio servers; this is a sync "
                "grpc.server: use grpc_terminal.ServerInterceptor there"
            )
            if not self._warned_sync_server:
                object.__setattr__(self, "_warned_sync_server", True)
                self._core.translator.log.error("%s", error)
            raise error from None
        return self._intercept(continuation, handler_call_details)

    async def _intercept(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return self._core.wrapped(handler, handler_call_details.method, aio=True)


#: The design document's name for :class:`AioServerInterceptor` (the same class):
#: the client side says ``aio_`` everywhere, so the class says ``Aio`` too.
AsyncServerInterceptor = AioServerInterceptor
