"""Shared Hypothesis strategies: arbitrary StatusError instances of every class.

``status_errors()`` draws any concrete class of the hierarchy (every code
class, every terminal reason, unknown reason numbers) with random standard
details, sized by ``max_items`` and ``max_text`` so tests choose between
"ordinary" and "oversized" errors.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2 as ed
from hypothesis import strategies as st

import grpc_terminal as gt

CODE_CLASSES: tuple[type[gt.StatusError], ...] = (
    gt.Cancelled,
    gt.Unknown,
    gt.InvalidArgument,
    gt.DeadlineExceeded,
    gt.NotFound,
    gt.AlreadyExists,
    gt.PermissionDenied,
    gt.ResourceExhausted,
    gt.FailedPrecondition,
    gt.Aborted,
    gt.OutOfRange,
    gt.Unimplemented,
    gt.Internal,
    gt.Unavailable,
    gt.DataLoss,
    gt.Unauthenticated,
)
TERMINAL_CLASSES: tuple[type[gt.TerminalError], ...] = (
    gt.UserNotProvisionable,
    gt.TargetManagedExternally,
    gt.LicenseExhausted,
    gt.ValidationFailure,
    gt.OperationNotPermitted,
)
ALL_CLASSES: tuple[type[gt.StatusError], ...] = (*CODE_CLASSES, *TERMINAL_CLASSES, gt.TerminalError)


#: Text that is valid to send: any Unicode scalar except surrogates.
def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=("Cs",)), max_size=max_size)


def ascii_keys() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z][a-z0-9_.\-]{0,20}", fullmatch=True).filter(
        lambda k: not k.startswith("grpc-") and not k.endswith("-bin")
    )


def camel_keys() -> st.SearchStrategy[str]:
    return st.from_regex(r"[a-z][a-zA-Z0-9]{0,20}", fullmatch=True)


def error_reasons() -> st.SearchStrategy[str]:
    return st.from_regex(r"[A-Z][A-Z0-9_]{0,30}[A-Z0-9]", fullmatch=True)


def pairs(max_items: int, max_text: int) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(texts(max_text), texts(max_text)), max_size=max_items)


@st.composite
def options(draw: st.DrawFn, max_items: int = 5, max_text: int = 40) -> dict[str, Any]:
    """Keyword options of ``StatusError(...)``, each present or not."""
    opts: dict[str, Any] = {}
    maybe = st.booleans()
    if draw(maybe):
        opts["retry_delay"] = draw(st.floats(min_value=0, max_value=3600, allow_nan=False))
    if draw(maybe):
        opts["field_violations"] = draw(pairs(max_items, max_text))
    if draw(maybe):
        triple = st.tuples(texts(max_text), texts(max_text), texts(max_text))
        opts["precondition_violations"] = draw(st.lists(triple, max_size=max_items))
    if draw(maybe):
        opts["quota_violations"] = draw(pairs(max_items, max_text))
    if draw(maybe):
        opts["resource_info"] = draw(st.tuples(texts(max_text), texts(max_text)))
    if draw(maybe):
        opts["help_links"] = draw(pairs(max_items, max_text))
    if draw(maybe):
        opts["localized_message"] = draw(st.one_of(texts(max_text), st.tuples(texts(10), texts(max_text))))
    if draw(maybe):
        opts["metadata"] = draw(st.dictionaries(camel_keys(), texts(max_text), max_size=max_items))
    if draw(maybe):
        opts["error_reason"] = draw(error_reasons())
    if draw(maybe):
        opts["domain"] = draw(st.from_regex(r"[a-z][a-z0-9.\-]{0,40}", fullmatch=True))
    if draw(maybe):
        extra = any_pb2.Any()
        extra.Pack(wrappers_pb2.StringValue(value=draw(texts(max_text))))
        opts["extra_details"] = [extra, ed.DebugInfo(detail=draw(texts(max_text)))]
    if draw(maybe):
        value = st.one_of(
            st.from_regex(r"[ -~]{0,40}", fullmatch=True),
        )
        opts["trailing_metadata"] = draw(
            st.lists(
                st.one_of(
                    st.tuples(ascii_keys(), value),
                    st.tuples(ascii_keys().map(lambda k: k + "-bin"), st.binary(max_size=max_text)),
                ),
                max_size=max_items,
            )
        )
    return opts


@st.composite
def status_errors(
    draw: st.DrawFn,
    classes: tuple[type[gt.StatusError], ...] = ALL_CLASSES,
    max_items: int = 5,
    max_text: int = 40,
) -> gt.StatusError:
    """Any StatusError: every class, random message and standard details."""
    cls = draw(st.sampled_from(classes))
    message = draw(texts(max_text))
    opts = draw(options(max_items, max_text))
    if cls is gt.TerminalError:
        # Known reasons have their own classes; the base class carries the unknown ones.
        reason = draw(st.integers(6, 2**31 - 1))
        return gt.TerminalError(message, reason=reason, **opts)
    return cls(message, **opts)


def oversized_errors() -> st.SearchStrategy[gt.StatusError]:
    """Errors whose natural encoding is far over any trailer budget."""
    return status_errors(max_items=60, max_text=600)
