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
failure is never retried. api-core's ``Retry`` cannot lengthen its waits to a
server's RetryInfo, so a failure whose server asks for more than
``max_server_delay`` (300 s by default, as in :class:`grpc_terminal.RetryPolicy`)
is not retried either: retrying sooner would go against the server. The
predicate never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Protocol, cast

import grpc

from grpc_terminal._classify import RETRYABLE_CODES, find_status
from grpc_terminal._decode import decode, from_rpc_error
from grpc_terminal._errors import StatusError
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._retry import (
    DEFAULT_MAX_SERVER_DELAY,
    check_ceiling,
    safe_classify,
    server_delay_too_long,
)
from grpc_terminal._trailers import STATUS_DETAILS_KEY

if TYPE_CHECKING:
    from google.protobuf import any_pb2

try:
    from google.api_core import exceptions as api_exceptions
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.api_core needs google-api-core: pip install 'grpc-terminal[api-core]'"
    ) from exc

__all__ = ["failure_detail", "from_api_core", "if_retryable", "retryable_predicate"]


class _ApiCallError(Protocol):
    """What :func:`from_api_core` reads of a ``GoogleAPICallError``, as api-core documents it.

    google-api-core has no annotations on these, so pyright sees them as unknown.
    """

    grpc_status_code: grpc.StatusCode | None
    message: str | None

    @property
    def response(self) -> object: ...

    @property
    def errors(self) -> Iterable[object] | None: ...

    @property
    def details(self) -> Iterable[object] | None: ...


def _pack_all(details: Iterable[object] | None) -> list[any_pb2.Any]:
    from google.protobuf import any_pb2
    from google.protobuf.message import Message

    packed: list[any_pb2.Any] = []
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
        call = cast(_ApiCallError, exc)  # google-api-core is untyped: see _ApiCallError
        candidates = [call.response, *(call.errors or ())]
        for candidate in candidates:
            if isinstance(candidate, grpc.RpcError):
                return from_rpc_error(candidate)
        found = find_status(exc)
        if found is not None:
            return found
        code = call.grpc_status_code
        if code is None:
            return None
        from google.rpc import status_pb2

        message = call.message or ""
        status = status_pb2.Status(code=code.value[0], message=message, details=_pack_all(call.details))
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
    *,
    max_server_delay: float = DEFAULT_MAX_SERVER_DELAY,
) -> Callable[[Exception], bool]:
    """A predicate for ``google.api_core.retry.Retry``.

    ``retryable_codes`` is the code table. ``max_server_delay`` (seconds) is
    the ceiling on a server-suggested wait: a failure whose server asks for
    longer (or for a delay that cannot be read) is not retried. The
    predicate never raises: a failure it cannot read is not retried.
    """
    codes = frozenset(retryable_codes)
    ceiling = check_ceiling(max_server_delay)

    def predicate(exc: Exception) -> bool:
        try:
            typed = from_api_core(exc)
        except Exception:
            return False
        if typed is None:
            return False
        verdict = safe_classify(typed, codes)
        return verdict.retryable and not server_delay_too_long(verdict.delay, ceiling)

    return predicate


#: ``Retry(predicate=if_retryable)``: our classification, terminal failures never retried.
if_retryable = retryable_predicate()
