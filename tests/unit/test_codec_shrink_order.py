"""The shrink order itself: each step removes only its own kind, in the documented order.

For every step of :data:`grpc_terminal.SHRINK_ORDER` an error is built that is
over the budget only because of that step's kind, with a little of every
later kind: encoding must remove (or, for repeated violations, halve) that
kind and leave every later kind exactly as it was. For every pair of steps,
an error with a lot of both loses all of the earlier kind before the later
one is touched. Swapping any two steps in the codec fails these tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._encode import TRUNCATED_KEY, TRUNCATION_MARK, encode
from grpc_terminal._trailers import Encoded

#: The documented order (README "Shrink order"): a change here is a change of contract.
DOCUMENTED = (
    "DebugInfo",
    "unrecognised extra details",
    "unknown fields of known details",
    "Help",
    "LocalizedMessage",
    "ResourceInfo",
    "QuotaFailure violations",
    "PreconditionFailure violations",
    "BadRequest field violations",
    "ErrorInfo metadata",
    "RequestInfo serving data",
    "application trailing metadata",
    "message and detail, truncated with a marker",
    "RequestInfo and ErrorInfo domain",
)

BIG = 6000  # bytes: any one kind this big is over the budget on its own
HALVED = ("QuotaFailure violations", "PreconditionFailure violations", "BadRequest field violations")


def test_the_order_is_the_documented_one() -> None:
    assert gt.SHRINK_ORDER == DOCUMENTED


def _unknown_field(size: int) -> bytes:
    """Field 15, length-delimited: unknown to ProvisionFailureDetail."""
    out, n = bytearray(), size
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            break
    return bytes([15 << 3 | 2]) + bytes(out) + b"u" * size


@dataclass
class Case:
    """One error to encode, plus the application metadata sent with it."""

    err: gt.TerminalError
    metadata: list[tuple[str, str]]
    debug: bool = True


def _base() -> Case:
    return Case(gt.UserNotProvisionable("jdoe is SUSPENDED"), [])


def _text(size: int, char: str) -> str:
    return char * size


# Each kind: how to add material (big or small) to a case, and how to read it back.
Add = Callable[[Case, bool], None]


def _add_debug(case: Case, big: bool) -> None:
    case.err.debug_info = ed.DebugInfo(detail=_text(BIG if big else 10, "d"))


def _add_extra(case: Case, big: bool) -> None:
    extra = any_pb2.Any()
    extra.Pack(wrappers_pb2.StringValue(value=_text(BIG if big else 10, "e")))
    case.err.extra_details.append(extra)


def _add_unknown(case: Case, big: bool) -> None:
    assert case.err.failure_detail is not None
    case.err.failure_detail.MergeFromString(_unknown_field(BIG if big else 10))


def _add_help(case: Case, big: bool) -> None:
    count = 100 if big else 1
    links = [ed.Help.Link(description=f"doc {i}", url=f"https://d/{i:050d}") for i in range(count)]
    case.err.help = ed.Help(links=links)


def _add_localized(case: Case, big: bool) -> None:
    case.err.localized_message = ed.LocalizedMessage(locale="fr-FR", message=_text(BIG if big else 10, "l"))


def _add_resource(case: Case, big: bool) -> None:
    name = _text(BIG if big else 10, "r")
    case.err.resource_info = ed.ResourceInfo(resource_type="user", resource_name=name)


def _violations(big: bool) -> list[tuple[str, str]]:
    return [(f"subject{i:03d}", "x" * 40) for i in range(150 if big else 2)]


def _add_quota(case: Case, big: bool) -> None:
    case.err.quota_failure = ed.QuotaFailure(
        violations=[ed.QuotaFailure.Violation(subject=s, description=d) for s, d in _violations(big)]
    )


def _add_precondition(case: Case, big: bool) -> None:
    violations = [
        ed.PreconditionFailure.Violation(type="TOS", subject=s, description=d) for s, d in _violations(big)
    ]
    case.err.precondition_failure = ed.PreconditionFailure(violations=violations)


def _add_bad_request(case: Case, big: bool) -> None:
    case.err.bad_request = ed.BadRequest(
        field_violations=[ed.BadRequest.FieldViolation(field=s, description=d) for s, d in _violations(big)]
    )


def _add_error_metadata(case: Case, big: bool) -> None:
    assert case.err.error_info is not None
    for i in range(100 if big else 1):
        case.err.error_info.metadata[f"key{i}"] = "v" * 60


def _add_serving_data(case: Case, big: bool) -> None:
    request = case.err.request_info or ed.RequestInfo(request_id="req-1")
    request.serving_data = _text(BIG if big else 10, "s")
    case.err.request_info = request


def _add_app_metadata(case: Case, big: bool) -> None:
    case.metadata += [(f"x-app{i}", "a" * 1000) for i in range(6)] if big else [("x-app", "a")]


def _add_text(case: Case, big: bool) -> None:
    assert case.err.failure_detail is not None
    text = _text(BIG if big else 17, "m")
    case.err.message = text
    case.err.failure_detail.detail = text


def _add_domain(case: Case, big: bool) -> None:
    # "big" here means only "needs the last step": the tests give it a budget it cannot meet otherwise.
    request = case.err.request_info or ed.RequestInfo()
    request.request_id = _text(300, "😀") if big else "req-1"
    case.err.request_info = request
    assert case.err.error_info is not None
    case.err.error_info.domain = _text(300, "😀") if big else "example.com"


ADD: dict[str, Add] = {
    "DebugInfo": _add_debug,
    "unrecognised extra details": _add_extra,
    "unknown fields of known details": _add_unknown,
    "Help": _add_help,
    "LocalizedMessage": _add_localized,
    "ResourceInfo": _add_resource,
    "QuotaFailure violations": _add_quota,
    "PreconditionFailure violations": _add_precondition,
    "BadRequest field violations": _add_bad_request,
    "ErrorInfo metadata": _add_error_metadata,
    "RequestInfo serving data": _add_serving_data,
    "application trailing metadata": _add_app_metadata,
    "message and detail, truncated with a marker": _add_text,
    "RequestInfo and ErrorInfo domain": _add_domain,
}


def _read(kind: str, err: gt.StatusError, enc: Encoded) -> object:
    """What of ``kind`` a decoded error carries (None when nothing)."""
    if kind == "DebugInfo":
        return err.debug_info.detail if err.debug_info is not None else None
    if kind == "unrecognised extra details":
        return [x.value for x in err.extra_details] or None
    if kind == "unknown fields of known details":
        pfd = err.failure_detail
        if pfd is None:
            return None
        known = type(pfd)(reason=pfd.reason, detail=pfd.detail)
        return pfd.ByteSize() - known.ByteSize() or None
    if kind == "Help":
        return [(link.description, link.url) for link in err.help.links] if err.help is not None else None
    if kind == "LocalizedMessage":
        return err.localized_message.message if err.localized_message is not None else None
    if kind == "ResourceInfo":
        return err.resource_info.resource_name if err.resource_info is not None else None
    if kind == "QuotaFailure violations":
        q = err.quota_failure
        return [(v.subject, v.description) for v in q.violations] or None if q is not None else None
    if kind == "PreconditionFailure violations":
        p = err.precondition_failure
        return [(v.subject, v.description) for v in p.violations] or None if p is not None else None
    if kind == "BadRequest field violations":
        return err.field_violations or None
    if kind == "ErrorInfo metadata":
        info = err.error_info
        found = {k: v for k, v in info.metadata.items() if k != TRUNCATED_KEY} if info is not None else {}
        return found or None
    if kind == "RequestInfo serving data":
        return err.request_info.serving_data or None if err.request_info is not None else None
    if kind == "application trailing metadata":
        return [(k, v) for k, v in enc.trailing_metadata if k.startswith("x-app")] or None
    if kind == "message and detail, truncated with a marker":
        return (err.details(), err.failure_detail.detail if err.failure_detail is not None else None)
    if kind == "RequestInfo and ErrorInfo domain":
        return (err.request_id or None, err.error_info.domain if err.error_info is not None else None)
    raise AssertionError(kind)


def _encode(
    case: Case, budget: int, caplog: pytest.LogCaptureFixture
) -> tuple[gt.StatusError, Encoded, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        enc = encode(case.err, debug=case.debug, metadata=case.metadata, budget=budget, domain="example.com")
    cut: list[str] = []
    for record in caplog.records:
        text = record.getMessage()
        if "cut: " in text:
            cut = text.split("cut: ")[1].split(" (now")[0].split("; ")
    return decode(enc.code, enc.message, enc.trailing_metadata), enc, cut


def _whole(case: Case) -> tuple[gt.StatusError, Encoded]:
    enc = encode(case.err, debug=case.debug, metadata=case.metadata, budget=10**9, domain="example.com")
    return decode(enc.code, enc.message, enc.trailing_metadata), enc


def _case(big: dict[str, bool]) -> Case:
    case = _base()
    for kind in DOCUMENTED:  # text first would lose nothing; any order of adding gives the same case
        if kind in big:
            ADD[kind](case, big[kind])
    return case


def _budget_for(kind: str, case: Case) -> int:
    if kind != "RequestInfo and ErrorInfo domain":
        return gt.TRAILER_BUDGET
    # Just over the irreducible status: the truncation step cannot keep 64 bytes of each.
    smallest = encode(case.err, debug=case.debug, metadata=case.metadata, budget=1, domain="example.com")
    return smallest.size() + 40


@pytest.mark.parametrize("index", range(len(DOCUMENTED)), ids=lambda i: DOCUMENTED[i])
def test_each_step_removes_its_own_kind_and_keeps_every_later_one(
    index: int, caplog: pytest.LogCaptureFixture
) -> None:
    kind, later = DOCUMENTED[index], DOCUMENTED[index + 1 :]
    case = _case({kind: True, **dict.fromkeys(later, False)})
    before, whole_enc = _whole(case)
    budget = _budget_for(kind, case)
    assert whole_enc.size() > budget
    without = _case(dict.fromkeys(later, False))
    assert _whole(without)[1].size() <= budget, "the later kinds alone must fit"

    after, enc, cut = _encode(case, budget, caplog)
    assert enc.size() <= budget
    assert type(after) is gt.UserNotProvisionable and after.reason is gt.Reason.USER_NOT_PROVISIONABLE
    # exactly this kind was cut (the last step runs after the truncation step)
    if kind == DOCUMENTED[-1]:
        assert cut == list(DOCUMENTED[-2:])
        assert _read(kind, after, enc) == (None, "")
        return
    assert cut == [kind]
    was, now = _read(kind, before, whole_enc), _read(kind, after, enc)
    assert was is not None
    if kind in HALVED:
        assert isinstance(was, list)
        assert now is None or (isinstance(now, list) and 0 < len(now) < len(was) and was[: len(now)] == now)
    elif kind == DOCUMENTED[-2]:
        assert isinstance(now, tuple) and isinstance(was, tuple)
        message, detail = now
        assert message.endswith(TRUNCATION_MARK) and detail.endswith(TRUNCATION_MARK)
        assert was[0].startswith(message[: -len(TRUNCATION_MARK)])
    else:
        assert now is None
    for other in later:
        assert _read(other, after, enc) == _read(other, before, whole_enc), f"{kind} touched {other}"
    assert after.error_info is not None and after.error_info.metadata[TRUNCATED_KEY] == "true"


PAIRS = [(i, j) for i in range(len(DOCUMENTED) - 2) for j in range(i + 1, len(DOCUMENTED) - 1)]


@pytest.mark.parametrize(("i", "j"), PAIRS, ids=[f"{DOCUMENTED[i]} < {DOCUMENTED[j]}" for i, j in PAIRS])
def test_an_earlier_kind_goes_entirely_before_a_later_one_is_touched(
    i: int, j: int, caplog: pytest.LogCaptureFixture
) -> None:
    earlier, later = DOCUMENTED[i], DOCUMENTED[j]
    case = _case({earlier: True, later: True})
    before, whole_enc = _whole(case)
    after, enc, cut = _encode(case, gt.TRAILER_BUDGET, caplog)
    assert enc.size() <= gt.TRAILER_BUDGET
    assert cut[:2] == [earlier, later]
    assert _read(earlier, after, enc) is None, f"{earlier} was not removed before {later} was cut"
    assert _read(later, before, whole_enc) != _read(later, after, enc)


def test_an_earlier_kind_alone_suffices_and_later_big_kinds_survive(caplog: pytest.LogCaptureFixture) -> None:
    # DebugInfo is over the budget; removing it is enough: a later kind of fair size is untouched.
    case = _case({"DebugInfo": True, "Help": False, "BadRequest field violations": False})
    _add_app_metadata(case, False)
    before, whole_enc = _whole(case)
    after, enc, cut = _encode(case, gt.TRAILER_BUDGET, caplog)
    assert cut == ["DebugInfo"]
    for kind in ("Help", "BadRequest field violations", "application trailing metadata"):
        assert _read(kind, after, enc) == _read(kind, before, whole_enc) is not None
    assert after.code() is grpc.StatusCode.FAILED_PRECONDITION
