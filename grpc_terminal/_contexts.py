"""The contexts a wrapped handler gets where grpc's own would send too early.

grpc.aio's ``abort`` (and the sync context grpcio gives sync handlers on an
aio server) sends the status at once: masking and metadata cleaning must
happen before it. :class:`AioContext` and :class:`SyncRecorder` stand in for
grpc's context and route ``abort`` through the :class:`Translator`; every
other attribute is grpc's own.
"""

from __future__ import annotations

from typing import Any, NoReturn

import grpc

from grpc_terminal._translate import Translator

__all__ = ["SYNC_CONTEXT", "AioContext", "SyncRecorder", "text_of"]


def text_of(details: object) -> str:
    """``details`` as text: bytes decoded (bad bytes replaced), anything else but str as ``""``."""
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details if isinstance(details, str) else ""


class SyncRecorder:
    """A sync handler's context on an aio server (grpcio's ``_SyncServicerContext``).

    That context has setters but no getters: this remembers what the handler
    set. Its ``abort`` sends at once, so masking and cleaning happen here,
    before it is called.

    Args:
        context: grpcio's sync context for the call.
        translator: the interceptor's translator (masking, cleaning).
        method: the RPC's full method name.
    """

    def __init__(self, context: Any, translator: Translator, method: str) -> None:
        self._context = context
        self._translator = translator
        self._method = method
        self._code: object = None
        self._details: str | None = None
        self._trailers: tuple[Any, ...] = ()
        self.aborted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    def set_code(self, code: Any) -> None:
        self._code = code
        self._context.set_code(code)

    def set_details(self, details: str) -> None:
        self._details = details
        self._context.set_details(details)

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self._trailers = tuple(trailing_metadata)
        self._context.set_trailing_metadata(trailing_metadata)

    def abort(self, code: Any, details: str = "", trailing_metadata: tuple[Any, ...] = ()) -> None:
        if self.aborted or not isinstance(details, str) or not isinstance(trailing_metadata, tuple):
            self._context.abort(code, details, trailing_metadata)  # grpc's own outcome
            return
        details = details or self._details or ""
        trailers = trailing_metadata or self._trailers
        fixed = self._translator.handler_status(
            None, self._method, code, details, trailers, aborted=True, aio=True
        )
        self.send(fixed.code if fixed.masked else code, fixed.details, fixed.trailing_metadata)

    def send(self, code: Any, details: str, trailing_metadata: tuple[Any, ...]) -> None:
        """Send this status now (grpc's ``abort``, which does not raise here)."""
        self.aborted = True
        self._code, self._details, self._trailers = code, details, trailing_metadata
        self._context.set_trailing_metadata(trailing_metadata)
        self._context.abort(code, details, trailing_metadata)

    def code(self) -> Any:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:
        return self._trailers


class AioContext:
    """The ``grpc.aio`` context an async handler gets: grpc's own, but ``abort`` goes through us.

    grpc's ``abort`` sends the status at once, so its masking and cleaning
    must happen before; every other attribute is grpc's context itself.

    Args:
        context: grpc.aio's context for the call.
        translator: the interceptor's translator (masking, cleaning).
        method: the RPC's full method name.
    """

    __slots__ = ("_context", "_method", "_translator", "aborted")

    def __init__(self, context: Any, translator: Translator, method: str) -> None:
        self._context = context
        self._translator = translator
        self._method = method
        self.aborted = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._context, name)

    async def abort(self, code: Any, details: str = "", trailing_metadata: tuple[Any, ...] = ()) -> NoReturn:
        """Send ``code`` and ``details`` now and raise ``grpc.aio.AbortError`` (see grpc.aio)."""
        context = self._context
        if self.aborted or not isinstance(details, str) or not isinstance(trailing_metadata, tuple):
            await context.abort(code, details, trailing_metadata)  # grpc's own outcome
            raise AssertionError("grpc.aio abort returned")  # pragma: no cover - abort always raises
        self.aborted = True
        details = details or text_of(context.details())
        trailers = trailing_metadata or tuple(context.trailing_metadata() or ())
        fixed = self._translator.handler_status(
            None, self._method, code, details, trailers, aborted=True, aio=True
        )
        context.set_trailing_metadata(fixed.trailing_metadata)
        context.set_details(fixed.details)
        await context.abort(fixed.code if fixed.masked else code, fixed.details, fixed.trailing_metadata)
        raise AssertionError("grpc.aio abort returned")  # pragma: no cover - abort always raises

    async def abort_with_status(self, status: grpc.Status) -> NoReturn:
        """``abort`` with a ``grpc.Status``'s code, details and trailing metadata."""
        await self.abort(status.code, status.details, status.trailing_metadata)


def _sync_context_factory() -> Any:
    """grpcio's own sync-handler context class for aio servers, if it has one."""
    import importlib

    cygrpc = importlib.import_module("grpc._cython.cygrpc")
    return getattr(cygrpc, "_SyncServicerContext", None)


#: grpcio's context class for sync handlers on an aio server (None when it has none).
SYNC_CONTEXT = _sync_context_factory()
