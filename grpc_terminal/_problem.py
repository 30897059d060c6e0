"""Failures for the world outside gRPC: RFC 9457 problem objects and exit codes.

:func:`problem` renders a gRPC failure as an RFC 9457 ``application/problem+json``
object, for an HTTP gateway, a web UI or a CLI's ``--json`` output.
:func:`exit_code` gives a command-line tool one stable process exit status
per kind of failure.

Problem types
-------------
``type`` is a URN that names the *kind* of failure, never the occurrence:

* terminal failures (a ProvisionFailureDetail is present):
  ``urn:grpc-terminal:reason:<reason>``, the reason in lower kebab case, e.g.
  ``urn:grpc-terminal:reason:user-not-provisionable`` (an unknown reason
  number ``n`` gives ``...:reason:reason-<n>``);
* every other failure: ``urn:grpc-terminal:code:<code>``, e.g.
  ``urn:grpc-terminal:code:unavailable``.

``title`` is fixed per type; ``status`` is the HTTP status of the gRPC code
(:data:`HTTP_STATUS`, the ``google.rpc.Code`` table); ``detail`` is the status
message; ``instance`` is ``urn:uuid:<id>`` when the error carries a request
id (ids that are not UUIDs are percent-encoded into
``urn:grpc-terminal:request:<id>``). Extension members, present only when
known: ``code``, ``reason``, ``domain``, ``metadata``, ``terminal``,
``retryable``, ``retry_delay`` (seconds), ``admin_detail`` (the
ProvisionFailureDetail detail), ``request_id``, ``field_violations``,
``precondition_violations``, ``quota_violations``, ``resource``,
``localized_message`` (user-facing text) and ``help_links``. ``DebugInfo`` is
never rendered.

Exit codes
----------
See :data:`EXIT_CODES`. 64..78 are left to the tool's own ``sysexits.h``
codes (64 usage, 78 configuration, ...); grpc-terminal uses 80..113:

======  =====================================================
80-89   terminal reasons: retrying cannot help; fix the target
90-94   the request is wrong: fix the input
95-96   authentication and authorization
97-98   unimplemented, cancelled
100-103 transient: retry later
110-113 server or client fault (113: not a gRPC failure at all)
======  =====================================================
"""

from __future__ import annotations

import types
import urllib.parse
import uuid
from collections.abc import Mapping

import grpc

from grpc_terminal._classify import find_status, is_retryable, is_terminal, retry_delay
from grpc_terminal._errors import StatusError
from grpc_terminal._reason import Reason, coerce_reason, reason_name

__all__ = [
    "EXIT_CODES",
    "HTTP_STATUS",
    "NOT_GRPC_EXIT_CODE",
    "PROBLEM_CONTENT_TYPE",
    "UNKNOWN_REASON_EXIT_CODE",
    "exit_code",
    "http_status",
    "problem",
    "problem_type",
]

PROBLEM_CONTENT_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:grpc-terminal:"

_C = grpc.StatusCode

#: HTTP status per gRPC code: the mapping documented on ``google.rpc.Code``.
HTTP_STATUS: Mapping[grpc.StatusCode, int] = types.MappingProxyType(
    {
        _C.OK: 200,
        _C.CANCELLED: 499,
        _C.UNKNOWN: 500,
        _C.INVALID_ARGUMENT: 400,
        _C.DEADLINE_EXCEEDED: 504,
        _C.NOT_FOUND: 404,
        _C.ALREADY_EXISTS: 409,
        _C.PERMISSION_DENIED: 403,
        _C.RESOURCE_EXHAUSTED: 429,
        _C.FAILED_PRECONDITION: 400,
        _C.ABORTED: 409,
        _C.OUT_OF_RANGE: 400,
        _C.UNIMPLEMENTED: 501,
        _C.INTERNAL: 500,
        _C.UNAVAILABLE: 503,
        _C.DATA_LOSS: 500,
        _C.UNAUTHENTICATED: 401,
    }
)

#: Exit code of a terminal failure whose reason this version does not know.
UNKNOWN_REASON_EXIT_CODE = 89
#: Exit code of an exception that carries no gRPC status at all.
NOT_GRPC_EXIT_CODE = 113

#: Process exit status per reason name (terminal failures) and per code name
#: (everything else), plus ``TERMINAL_OTHER`` and ``NOT_GRPC``. Stable: a
#: value never changes meaning; new kinds get new numbers.
EXIT_CODES: Mapping[str, int] = types.MappingProxyType(
    {
        # 80-89 terminal reasons
        Reason.USER_NOT_PROVISIONABLE.name: 80,
        Reason.TARGET_MANAGED_EXTERNALLY.name: 81,
        Reason.LICENSE_EXHAUSTED.name: 82,
        Reason.VALIDATION_FAILURE.name: 83,
        Reason.OPERATION_NOT_PERMITTED.name: 84,
        "TERMINAL_OTHER": UNKNOWN_REASON_EXIT_CODE,
        # 90-94 the request is wrong
        _C.INVALID_ARGUMENT.name: 90,
        _C.FAILED_PRECONDITION.name: 91,
        _C.OUT_OF_RANGE.name: 92,
        _C.NOT_FOUND.name: 93,
        _C.ALREADY_EXISTS.name: 94,
        # 95-96 auth
        _C.UNAUTHENTICATED.name: 95,
        _C.PERMISSION_DENIED.name: 96,
        # 97-98 other caller-side outcomes
        _C.UNIMPLEMENTED.name: 97,
        _C.CANCELLED.name: 98,
        # 100-103 transient
        _C.UNAVAILABLE.name: 100,
        _C.DEADLINE_EXCEEDED.name: 101,
        _C.RESOURCE_EXHAUSTED.name: 102,
        _C.ABORTED.name: 103,
        # 110-113 faults
        _C.INTERNAL.name: 110,
        _C.UNKNOWN.name: 111,
        _C.DATA_LOSS.name: 112,
        "NOT_GRPC": NOT_GRPC_EXIT_CODE,
    }
)

_REASON_TITLES: dict[Reason, str] = {
    Reason.USER_NOT_PROVISIONABLE: "User cannot be provisioned",
    Reason.TARGET_MANAGED_EXTERNALLY: "Target is managed externally",
    Reason.LICENSE_EXHAUSTED: "License capacity exhausted",
    Reason.VALIDATION_FAILURE: "Rejected by the upstream as invalid",
    Reason.OPERATION_NOT_PERMITTED: "Operation not permitted by policy",
}


def http_status(code: grpc.StatusCode) -> int:
    """The HTTP status for a gRPC code (500 for a code with no mapping, such as ``OK``).

    Args:
        code: the gRPC status code (for an error, ``err.code()``).

    Raises:
        TypeError: ``code`` is not a ``grpc.StatusCode`` (an exception, a name).
    """
    if not isinstance(code, grpc.StatusCode):
        hint = " (for an error, pass err.code())" if isinstance(code, BaseException) else ""
        raise TypeError(f"http_status() takes a grpc.StatusCode, got {type(code).__name__}{hint}")
    return HTTP_STATUS.get(code, 500)


def _kebab(name: str) -> str:
    return name.lower().replace("_", "-")


def _status(exc: BaseException) -> StatusError:
    status = find_status(exc)
    if status is None:
        raise TypeError(
            f"problem() needs a gRPC failure (StatusError or grpc.RpcError), got {type(exc).__name__}"
        )
    return status


def problem_type(exc: BaseException) -> str:
    """The problem ``type`` URN of a gRPC failure (see the module docs).

    Args:
        exc: a gRPC failure, or an exception wrapping one (as for :func:`problem`).
    """
    status = _status(exc)
    pfd = status.failure_detail
    if pfd is not None:
        return f"{TYPE_PREFIX}reason:{_kebab(reason_name(pfd.reason))}"
    return f"{TYPE_PREFIX}code:{_kebab(status.code().name)}"


def _title(status: StatusError) -> str:
    pfd = status.failure_detail
    if pfd is not None:
        return _REASON_TITLES.get(coerce_reason(pfd.reason)) or "Terminal failure"
    return status.code().name.replace("_", " ").capitalize()


def _instance(request_id: str) -> str:
    try:
        return uuid.UUID(request_id).urn
    except ValueError:
        return f"{TYPE_PREFIX}request:{urllib.parse.quote(request_id, safe='')}"


def problem(exc: BaseException) -> dict[str, object]:
    """``exc`` as an RFC 9457 problem object (a JSON-ready dict).

    Serve it with :data:`PROBLEM_CONTENT_TYPE` and the ``status`` member as
    the HTTP status. Every number in it is finite (a server's absurd retry
    delay is clamped), so ``json.dumps(..., allow_nan=False)`` works.

    Args:
        exc: a :class:`StatusError`, a raw ``grpc.RpcError``, or an exception
            wrapping one (causes, contexts and exception-group members are
            followed); anything else raises ``TypeError``.
    """
    status = _status(exc)
    code = status.code()
    out: dict[str, object] = {
        "type": problem_type(status),
        "title": _title(status),
        "status": http_status(code),
        "detail": status.message or code.name,
    }
    if status.request_id:
        out["instance"] = _instance(status.request_id)
    out["code"] = code.name
    pfd = status.failure_detail
    info = status.error_info
    if pfd is not None:
        out["reason"] = reason_name(pfd.reason)
    elif info is not None and info.reason:
        out["reason"] = info.reason
    if info is not None and info.domain:
        out["domain"] = info.domain
    if info is not None and info.metadata:
        out["metadata"] = dict(sorted(info.metadata.items()))
    out["terminal"] = is_terminal(status)
    out["retryable"] = is_retryable(status)
    delay = retry_delay(status)
    if delay is not None:
        out["retry_delay"] = delay
    if pfd is not None and pfd.detail:
        out["admin_detail"] = pfd.detail
    if status.request_id:
        out["request_id"] = status.request_id
    if status.field_violations:
        out["field_violations"] = [
            {"field": field, "description": description} for field, description in status.field_violations
        ]
    if status.precondition_failure is not None and status.precondition_failure.violations:
        out["precondition_violations"] = [
            {"type": v.type, "subject": v.subject, "description": v.description}
            for v in status.precondition_failure.violations
        ]
    if status.quota_failure is not None and status.quota_failure.violations:
        out["quota_violations"] = [
            {"subject": v.subject, "description": v.description} for v in status.quota_failure.violations
        ]
    if status.resource_info is not None:
        ri = status.resource_info
        resource = {
            "resource_type": ri.resource_type,
            "resource_name": ri.resource_name,
            "owner": ri.owner,
            "description": ri.description,
        }
        out["resource"] = {k: v for k, v in resource.items() if v}
    if status.localized_message is not None and status.localized_message.message:
        out["localized_message"] = {
            "locale": status.localized_message.locale,
            "message": status.localized_message.message,
        }
    if status.help is not None and status.help.links:
        out["help_links"] = [{"description": link.description, "url": link.url} for link in status.help.links]
    return out


def exit_code(exc: BaseException) -> int:
    """A stable process exit status for ``exc`` (see :data:`EXIT_CODES`).

    Terminal failures get their reason's code (89 for a reason this version
    does not know), other gRPC failures their code's; causes are followed,
    so a tool's own exception wrapping an ``RpcError`` maps like the
    ``RpcError``. An exception with no gRPC status anywhere gives 113.

    Args:
        exc: any exception; the first gRPC failure in it decides.
    """
    status = find_status(exc)
    if status is None:
        return NOT_GRPC_EXIT_CODE
    pfd = status.failure_detail
    if pfd is not None:
        return EXIT_CODES.get(reason_name(pfd.reason), UNKNOWN_REASON_EXIT_CODE)
    return EXIT_CODES.get(status.code().name, EXIT_CODES[_C.UNKNOWN.name])
