"""``to_status``: an exception as a ``grpc.Status`` for ``abort_with_status``."""

from __future__ import annotations

import functools

import grpc

from grpc_terminal._encode import status_from_encoded
from grpc_terminal._options import ServerOptions
from grpc_terminal._translate import Translator

__all__ = ["to_status"]


@functools.lru_cache(maxsize=16)
def _translator(options: ServerOptions) -> Translator:
    return Translator(options)


def to_status(exc: BaseException, *, options: ServerOptions | None = None) -> grpc.Status:
    """The ``grpc.Status`` the server interceptors would send for ``exc``.

    Typed errors are encoded as they are; any other exception is treated as
    unexpected (a generic message and a request id; the traceback is logged).

    Args:
        exc: the exception to encode.
        options: the :class:`ServerOptions` to encode with (``errors``,
            ``domain``, ``budget``, masking...); an interceptor is itself a
            ``ServerOptions``, so ``to_status(exc, options=interceptor)``
            sends what that interceptor would. Default: ``ServerOptions()``.
    """
    encoded = _translator(options if options is not None else ServerOptions()).translate(exc, "to_status")
    return status_from_encoded(encoded)
