"""The ProvisionFailureDetail reasons and the one table that maps them to codes."""

from __future__ import annotations

import enum

import grpc

from grpc_terminal._gen.c1.connector.v2 import annotation_provision_failure_pb2 as _pb2
from grpc_terminal._gen.c1.connector.v2.annotation_provision_failure_pb2 import (
    ProvisionFailureDetail,
)

# protoc names the module after the proto path (c1.connector.v2...), which is
# not importable here; pickle needs the real module to find the class.
ProvisionFailureDetail.__module__ = _pb2.__name__

__all__ = ["ProvisionFailureDetail", "Reason", "code_for_reason", "reason_name"]


class Reason(enum.IntEnum):
    """Mirror of ``ProvisionFailureDetail.Reason`` without the ``REASON_`` prefix."""

    UNSPECIFIED = 0
    USER_NOT_PROVISIONABLE = 1
    TARGET_MANAGED_EXTERNALLY = 2
    LICENSE_EXHAUSTED = 3
    VALIDATION_FAILURE = 4
    OPERATION_NOT_PERMITTED = 5


def code_for_reason(reason: int) -> grpc.StatusCode:
    """Return the gRPC code a terminal failure with ``reason`` is sent with.

    ``OPERATION_NOT_PERMITTED`` is ``PERMISSION_DENIED``; every other reason,
    including numbers this version does not know, is ``FAILED_PRECONDITION``.
    ``UNSPECIFIED`` is a programming error and gives ``INTERNAL``.
    """
    if reason == Reason.UNSPECIFIED:
        return grpc.StatusCode.INTERNAL
    if reason == Reason.OPERATION_NOT_PERMITTED:
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.FAILED_PRECONDITION


def coerce_reason(reason: int) -> Reason | int:
    """Return ``reason`` as a :class:`Reason` when known, else the raw int."""
    try:
        return Reason(reason)
    except ValueError:
        return int(reason)


def reason_name(reason: int) -> str:
    """UPPER_SNAKE name of ``reason`` (``REASON_<n>`` for unknown numbers)."""
    known = coerce_reason(reason)
    return known.name if isinstance(known, Reason) else f"REASON_{known}"
