"""The ProvisionFailureDetail reasons and the one table that maps them to codes."""

from __future__ import annotations

import enum
from typing import TypeAlias

import grpc

from grpc_terminal._gen.c1.connector.v2 import annotation_provision_failure_pb2 as _pb2
from grpc_terminal._gen.c1.connector.v2.annotation_provision_failure_pb2 import (
    ProvisionFailureDetail,
)

# protoc names the module after the proto path (c1.connector.v2...), which is
# not importable here; pickle needs the real module to find the class.
ProvisionFailureDetail.__module__ = _pb2.__name__

__all__ = [
    "ProvisionFailureDetail",
    "Reason",
    "ReasonLike",
    "code_for_reason",
    "coerce_reason",
    "is_known_reason",
    "parse_reason",
    "reason_name",
]

_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


class Reason(enum.IntEnum):
    """Mirror of ``ProvisionFailureDetail.Reason`` without the ``REASON_`` prefix.

    A reason prints as its name (``str(Reason.LICENSE_EXHAUSTED)`` and
    ``f"{reason}"`` give ``LICENSE_EXHAUSTED``) and is still an int
    (``int(reason)``, ``"%d" % reason`` and ``f"{reason:d}"`` give ``3``).

    ``Reason(n)`` for a number this version does not know (a newer peer's
    reason) gives a pseudo-member named ``REASON_<n>`` with value ``n``; it
    is not listed by ``list(Reason)`` and :func:`is_known_reason` is False
    for it. Numbers outside int32 raise ``ValueError``.
    """

    UNSPECIFIED = 0
    USER_NOT_PROVISIONABLE = 1
    TARGET_MANAGED_EXTERNALLY = 2
    LICENSE_EXHAUSTED = 3
    VALIDATION_FAILURE = 4
    OPERATION_NOT_PERMITTED = 5

    @classmethod
    def _missing_(cls, value: object) -> Reason | None:
        if isinstance(value, bool) or not isinstance(value, int) or not _INT32_MIN <= value <= _INT32_MAX:
            return None
        # Not cached in _value2member_map_: a hostile peer could send every int32.
        pseudo = int.__new__(cls, value)
        pseudo._name_ = f"REASON_{int(value)}"
        pseudo._value_ = int(value)
        return pseudo

    def __str__(self) -> str:
        return str(self._name_)

    def __format__(self, format_spec: str) -> str:
        # The name for "", "s"-like and alignment specs; the number for numeric ones ("d", "x", "03").
        try:
            return format(str(self._name_), format_spec)
        except ValueError:
            return format(int(self), format_spec)


#: What the public API accepts as a reason: a :class:`Reason`, its number, or
#: its name (``"LICENSE_EXHAUSTED"`` or ``"REASON_LICENSE_EXHAUSTED"``, any case).
ReasonLike: TypeAlias = Reason | int | str


def is_known_reason(reason: int) -> bool:
    """True when ``reason`` is one of this version's named reasons (not a pseudo-member)."""
    return not isinstance(reason, bool) and isinstance(reason, int) and reason in Reason._value2member_map_


def parse_reason(reason: ReasonLike) -> Reason:
    """``reason`` as a :class:`Reason`.

    ``reason`` is a :class:`Reason`, an int32 (a number this version does not
    know gives a ``REASON_<n>`` pseudo-member), or a name: ``"LICENSE_EXHAUSTED"``
    or ``"REASON_LICENSE_EXHAUSTED"``, in any case, surrounding spaces ignored.
    An unknown name raises ``ValueError`` listing the valid names; an int
    outside int32 raises ``ValueError``; anything else (``bool`` included)
    raises ``TypeError``.
    """
    if isinstance(reason, Reason):
        return reason
    if isinstance(reason, bool):
        raise TypeError(f"reason must be a Reason, an int or a reason name, got {reason!r}")
    if isinstance(reason, int):
        try:
            return Reason(reason)
        except ValueError:
            raise ValueError(f"reason number must be an int32, got {reason!r}") from None
    if isinstance(reason, str):
        name = reason.strip().upper()
        if name.startswith("REASON_") and name[len("REASON_") :] in Reason.__members__:
            name = name[len("REASON_") :]
        if name in Reason.__members__:
            return Reason[name]
        valid = ", ".join(Reason.__members__)
        raise ValueError(f"unknown reason name {reason!r}; valid names: {valid} (with or without REASON_)")
    raise TypeError(f"reason must be a Reason, an int or a reason name, got {type(reason).__name__}")


def code_for_reason(reason: int) -> grpc.StatusCode:
    """Return the gRPC code a terminal failure with ``reason`` is sent with.

    ``OPERATION_NOT_PERMITTED`` is ``PERMISSION_DENIED``; every other reason,
    including numbers this version does not know, is ``FAILED_PRECONDITION``.
    ``UNSPECIFIED`` is a programming error and gives ``INTERNAL``.

    Args:
        reason: a :class:`Reason` or its number.
    """
    if reason == Reason.UNSPECIFIED:
        return grpc.StatusCode.INTERNAL
    if reason == Reason.OPERATION_NOT_PERMITTED:
        return grpc.StatusCode.PERMISSION_DENIED
    return grpc.StatusCode.FAILED_PRECONDITION


def coerce_reason(reason: int) -> Reason:
    """``reason`` as a :class:`Reason` (a ``REASON_<n>`` pseudo-member when unknown).

    A number outside int32 (which no ProvisionFailureDetail can carry) is
    clamped into it, so this never raises for an int.
    """
    value = max(_INT32_MIN, min(_INT32_MAX, int(reason)))
    return Reason(value)


def reason_name(reason: int) -> str:
    """UPPER_SNAKE name of ``reason`` (``REASON_<n>`` for unknown numbers)."""
    number = int(reason)
    return Reason(number).name if _INT32_MIN <= number <= _INT32_MAX else f"REASON_{number}"
