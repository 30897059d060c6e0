"""grpc-terminal: honest gRPC failures.

Servers raise typed errors (or their own exceptions, mapped once); the
interceptors send the right code with a rich ``google.rpc.Status``. Clients
get the typed error back, still a ``grpc.RpcError``, and retry logic stops at
once on terminal failures while backing off on transient ones.
"""

from types import FunctionType as _FunctionType

from grpc_terminal._classify import (
    RETRYABLE_CODES,
    Verdict,
    classify,
    failure_detail,
    find_status,
    is_retryable,
    is_terminal,
    retry_delay,
)
from grpc_terminal._client import aio_intercept_channel, aio_interceptors, intercept_channel
from grpc_terminal._decode import from_rpc_error
from grpc_terminal._encode import DEFAULT_DOMAIN, SHRINK_ORDER
from grpc_terminal._errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DataLoss,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    LicenseExhausted,
    NotFound,
    OperationNotPermitted,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    StatusError,
    TargetManagedExternally,
    TerminalError,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Unknown,
    UserNotProvisionable,
    ValidationFailure,
    terminal_error,
)
from grpc_terminal._history import Attempt
from grpc_terminal._options import ErrorEvent, ErrorFactory, ErrorMapping, ServerOptions
from grpc_terminal._problem import (
    EXIT_CODES,
    HTTP_STATUS,
    PROBLEM_CONTENT_TYPE,
    exit_code,
    http_status,
    problem,
)
from grpc_terminal._reason import ProvisionFailureDetail, Reason, code_for_reason
from grpc_terminal._retry import RetryBudget, RetryHistory, RetryPolicy, StopReason
from grpc_terminal._server import AioServerInterceptor, AsyncServerInterceptor, ServerInterceptor
from grpc_terminal._service_config import service_config
from grpc_terminal._status import to_status
from grpc_terminal._trailers import PUSHBACK_KEY, STATUS_DETAILS_KEY, TRAILER_BUDGET
from grpc_terminal._version import __version__

__all__ = [
    "Aborted",
    "AioServerInterceptor",
    "AlreadyExists",
    "AsyncServerInterceptor",
    "Attempt",
    "Cancelled",
    "DEFAULT_DOMAIN",
    "DataLoss",
    "DeadlineExceeded",
    "EXIT_CODES",
    "ErrorEvent",
    "ErrorFactory",
    "ErrorMapping",
    "FailedPrecondition",
    "HTTP_STATUS",
    "Internal",
    "InvalidArgument",
    "LicenseExhausted",
    "NotFound",
    "OperationNotPermitted",
    "OutOfRange",
    "PROBLEM_CONTENT_TYPE",
    "PUSHBACK_KEY",
    "PermissionDenied",
    "ProvisionFailureDetail",
    "RETRYABLE_CODES",
    "Reason",
    "ResourceExhausted",
    "RetryBudget",
    "RetryHistory",
    "RetryPolicy",
    "SHRINK_ORDER",
    "STATUS_DETAILS_KEY",
    "ServerInterceptor",
    "ServerOptions",
    "StatusError",
    "StopReason",
    "TRAILER_BUDGET",
    "TargetManagedExternally",
    "TerminalError",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "Unknown",
    "UserNotProvisionable",
    "ValidationFailure",
    "Verdict",
    "__version__",
    "aio_intercept_channel",
    "aio_interceptors",
    "classify",
    "code_for_reason",
    "exit_code",
    "failure_detail",
    "find_status",
    "from_rpc_error",
    "http_status",
    "intercept_channel",
    "is_retryable",
    "is_terminal",
    "problem",
    "retry_delay",
    "service_config",
    "terminal_error",
    "to_status",
]


def _public_module() -> None:
    """Give every exported class and function ``__module__ = "grpc_terminal"``.

    Tracebacks, ``repr`` and ``help()`` then show ``grpc_terminal.LicenseExhausted``,
    the name users import, not the private module it is defined in. The
    generated ProvisionFailureDetail keeps its protobuf module.
    """
    for name in __all__:
        obj = globals()[name]
        module = str(getattr(obj, "__module__", ""))
        private = module.startswith("grpc_terminal._") and not module.startswith("grpc_terminal._gen")
        if isinstance(obj, type | _FunctionType) and private:
            obj.__module__ = "grpc_terminal"


_public_module()
