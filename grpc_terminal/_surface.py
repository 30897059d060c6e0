"""The Call surface of an ended RPC: what a typed error shares with grpc's calls.

grpc documents the ``RpcError`` a failed call raises as also being the
``grpc.Call`` of that RPC, and its own raised errors are finished
``grpc.Future`` objects; grpc.aio documents ``grpc.aio.AioRpcError``.
:class:`CallSurface` is the base of the exception hierarchy
(``class StatusError(CallSurface)``), so every typed error is all three.
:class:`EndedCall` is the part it shares with the client's other ended calls
(an attempt that raised, a call cancelled between two attempts).

This module imports grpc only: it sits below the hierarchy.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import grpc.aio

__all__ = ["CallSurface", "EndedCall"]

# grpc's classes are generic only in their type stubs.
if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:
    _Future = grpc.Future


class EndedCall(grpc.Call, _Future):
    """The Call-Future of an RPC that has ended: nothing runs, nothing can be cancelled.

    A subclass says how it ended with :meth:`_outcome` (and the Call methods
    ``code()``, ``details()``, ``initial_metadata()``, ``trailing_metadata()``);
    ``result()``, ``exception()`` and ``traceback()`` answer from it, at once.
    """

    def _outcome(self) -> Exception:
        """The error the RPC ended with.

        A cancelled call raises ``grpc.FutureCancelledError`` here instead,
        which is what ``result()``, ``exception()`` and ``traceback()`` of a
        cancelled grpc future raise.
        """
        raise NotImplementedError

    # grpc.RpcContext: the RPC is over.
    def is_active(self) -> bool:
        """Always False: the RPC has ended."""
        return False

    def time_remaining(self) -> float | None:  # type: ignore[override]
        """Always None: an ended RPC has no deadline left to count."""
        return None

    def cancel(self) -> bool:
        """Always False: an ended RPC cannot be cancelled."""
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """Always False (``callback`` is not called): the RPC has already ended."""
        return False

    # grpc.Future: finished.
    def cancelled(self) -> bool:
        """False: the RPC ended with its outcome, not by a cancel (a cancelled call says True)."""
        return False

    def running(self) -> bool:
        """Always False: the call has finished."""
        return False

    def done(self) -> bool:
        """Always True: the call has finished."""
        return True

    def result(self, timeout: float | None = None) -> NoReturn:
        """Raise the error the call ended with (``timeout`` is not needed)."""
        raise self._outcome()

    def exception(self, timeout: float | None = None) -> Exception:
        """The error the call ended with (``timeout`` is not needed)."""
        return self._outcome()

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        """The traceback of the error the call ended with (``timeout`` is not needed)."""
        return self._outcome().__traceback__

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Call ``fn`` with this call at once: it is done."""
        fn(self)


class CallSurface(grpc.aio.AioRpcError, EndedCall):  # type: ignore[misc]
    """What makes a :class:`~grpc_terminal.StatusError` the Call of the RPC that failed with it.

    Code written for grpc or grpc.aio keeps working with typed errors: they
    are ``grpc.Call``, ``grpc.Future`` and ``grpc.aio.AioRpcError``, answer
    ``initial_metadata()`` and ``debug_error_string()`` with what the real
    call received (an error built locally has no initial metadata and
    describes itself), and behave as a finished call whose outcome is the
    error itself.
    """

    #: What the failed call received, when the error comes from one (set by the client).
    _initial_metadata: object = None
    _debug_error_string: str | None = None

    def __init__(self, *args: object) -> None:
        """Keep ``args`` as the exception's arguments (a StatusError passes its message).

        Args:
            args: the exception arguments; ``AioRpcError.__init__`` (code,
                metadata, ...) is not called, the subclass keeps its own state.
        """
        Exception.__init__(self, *args)

    def _outcome(self) -> Exception:
        return self

    def initial_metadata(self) -> Any:
        """The initial metadata the server sent before failing (empty when none was received).

        Its shape is the one the call had: pairs on a sync channel, a
        ``grpc.aio.Metadata`` on an aio one (hence ``Any``: ``grpc.Call`` and
        ``grpc.aio.AioRpcError`` declare one each).
        """
        return () if self._initial_metadata is None else self._initial_metadata

    def debug_error_string(self) -> str:
        """grpc's debug string of the failed call; a one-line description when not received."""
        debug = self._debug_error_string
        return debug if isinstance(debug, str) else repr(self)
