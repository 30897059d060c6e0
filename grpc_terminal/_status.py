"""``to_status``: an exception as a ``grpc.Status`` for ``abort_with_status``."""

from __future__ import annotations

import grpc

from grpc_terminal._codec import status_from_encoded
from grpc_terminal._translate import Translator

__all__ = ["to_status"]

_DEFAULT = Translator()


def to_status(exc: BaseException, *, translator: Translator | None = None) -> grpc.Status:
    """The ``grpc.Status`` the interceptors would send for ``exc``.

    Typed errors are encoded as they are; any other exception is treated as
    unexpected (a generic message and a request id; the traceback is logged).
    """
    encoded = (translator or _DEFAULT).translate(exc, "to_status")
    return status_from_encoded(encoded)
