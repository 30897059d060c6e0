"""google-api-core adapters: a ``Retry`` predicate and our details from its exceptions.

::

    from google.api_core.retry import Retry
    from grpc_terminal.api_core import if_retryable, from_api_core

    retry = Retry(predicate=if_retryable, initial=0.1, maximum=5, timeout=60)
    try:
        retry(stub.Grant)(request)
    except GoogleAPICallError as exc:
        typed = from_api_core(exc)      # StatusError: .reason, .detail, .failure_detail ...

``if_retryable`` accepts both raw ``grpc.RpcError`` (a stub called directly)
and ``GoogleAPICallError`` (what generated GAPIC clients raise): a terminal
failure is never retried.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import grpc

from grpc_terminal._classify import RETRYABLE_CODES, classify, find_status
from grpc_terminal._codec import STATUS_DETAILS_KEY, decode, from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._reason import ProvisionFailureDetail

try:
    from google.api_core import exceptions as api_exceptions
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.api_core needs google-api-core: pip install 'grpc-terminal[api-core]'"
    ) from exc

__all__ = ["failure_detail", "from_api_core", "if_retryable", "retryable_predicate"]


def _pack_all(details: Any) -> list[Any]:
    from google.protobuf import any_pb2
    from google.protobuf.message import Message

    packed = []
    for item in details or ():
        if isinstance(item, any_pb2.Any):
            packed.append(item)
        elif isinstance(item, Message):
            wrapper = any_pb2.Any()
            wrapper.Pack(item)
            packed.append(wrapper)
    return packed


def from_api_core(exc: BaseException) -> StatusError | None:
    """The typed error behind a google-api-core exception (or any gRPC failure); None if there is none.

    The raw ``grpc.RpcError`` api-core keeps (``response``, ``errors`` or the
    cause) is decoded in full. Without one, the error is rebuilt from the
    exception's ``grpc_status_code``, message and parsed ``details``, where
    api-core keeps our ProvisionFailureDetail as a packed ``Any``.
    """
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        candidates = [exc.response, *(exc.errors or ())]
        for candidate in candidates:
            if isinstance(candidate, grpc.RpcError):
                return from_rpc_error(candidate)
        found = find_status(exc)
        if found is not None:
            return found
        code = exc.grpc_status_code
        if code is None:
            return None
        from google.rpc import status_pb2

        message = exc.message or ""
        status = status_pb2.Status(code=code.value[0], message=message, details=_pack_all(exc.details))
        typed = decode(code, message, ((STATUS_DETAILS_KEY, status.SerializeToString()),))
        typed.__cause__ = exc
        return typed
    return find_status(exc)


def failure_detail(exc: BaseException) -> ProvisionFailureDetail | None:
    """The ProvisionFailureDetail in a google-api-core exception (or any gRPC failure)."""
    typed = from_api_core(exc)
    return typed.failure_detail if typed is not None else None


def retryable_predicate(
    retryable_codes: Collection[grpc.StatusCode] = RETRYABLE_CODES,
) -> Any:
    """A predicate for ``google.api_core.retry.Retry`` with a custom code table."""
    codes = frozenset(retryable_codes)

    def predicate(exc: Exception) -> bool:
        typed = from_api_core(exc)
        return typed is not None and classify(typed, retryable_codes=codes).retryable

    return predicate


#: ``Retry(predicate=if_retryable)``: our classification, terminal failures never retried.
if_retryable = retryable_predicate()
