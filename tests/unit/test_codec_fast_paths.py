"""The encoder's shortcuts give exactly what the plain algorithm gives.

The encoder frames the ``google.rpc.Status`` from each detail's bytes instead
of building it with protobuf, cuts long text reading only its head, rebuilds a
ProvisionFailureDetail instead of copying a long detail, and skips halvings
that cannot fit. Each test compares a shortcut with what it replaces: the same
bytes, the same text, the same trailers and the same log lines.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st

import grpc_terminal as gt
from grpc_terminal._details import clean_text
from grpc_terminal._encode import TRUNCATION_MARK, _clean_cut, _Draft, _fit, _truncate, _varint
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._trailers import TRAILER_BUDGET, Encoded

LOGGER = "grpc_terminal"


# -- the Status framed by hand is the Status protobuf serializes --------------------------------


@pytest.mark.parametrize("n", [1, 127, 128, 300, 16_383, 16_384, 2**21, 2**31 - 1])
def test_a_varint_is_protobufs(n: int) -> None:
    # A Status's code field (field 1, tag byte 0x08) holds a varint.
    assert b"\x08" + _varint(n) == status_pb2.Status(code=n).SerializeToString()


@pytest.mark.parametrize("n", [0, 2**40, 2**63])
def test_a_varint_reads_back(n: int) -> None:
    raw = _varint(n)
    assert all(b & 0x80 for b in raw[:-1]) and not raw[-1] & 0x80
    assert sum((b & 0x7F) << (7 * i) for i, b in enumerate(raw)) == n


def _reference(draft: _Draft) -> bytes:
    """The status protobuf builds for ``draft`` (what the encoder did before framing it by hand)."""
    details: list[any_pb2.Any] = []
    for attr, msg in draft.slots.items():
        if attr == "error_info" and draft.shrunk and isinstance(msg, ed.ErrorInfo):
            marked = ed.ErrorInfo()
            marked.CopyFrom(msg)
            marked.metadata["grpcTerminalTruncated"] = "true"
            msg = marked
        packed = any_pb2.Any()
        packed.Pack(msg)
        details.append(packed)
    return status_pb2.Status(
        code=draft.code.value[0], message=draft.message, details=details + draft.extras
    ).SerializeToString()


def _rich(message: str, violations: int) -> gt.StatusError:
    extra = any_pb2.Any(type_url="type.example.com/x.Y", value=b"\x08\x01" * 100)
    err = gt.ValidationFailure(
        message,
        metadata={"k": "v" * 200},
        field_violations=[(f"f{i}", "d" * 50) for i in range(violations)],
        help_links={"docs": "https://d.example"},
        resource_info=("t", "n"),
    )
    err.extra_details.append(extra)
    err.debug_info = ed.DebugInfo(detail="trace")
    return err


@pytest.mark.parametrize("message", ["", "m", "é" * 70, "x" * 5000])
@pytest.mark.parametrize("violations", [0, 1, 3, 400])
@pytest.mark.parametrize("shrunk", [False, True])
def test_the_framed_status_is_the_serialized_one(message: str, violations: int, shrunk: bool) -> None:
    draft = _Draft.of(_rich(message, violations), "example.com", True, [], 10**9)
    if shrunk:
        draft.shrunk.append("DebugInfo")
    assert draft.status_bytes() == _reference(draft)
    assert draft.status() == status_pb2.Status.FromString(_reference(draft))


def test_an_empty_detail_is_framed_as_its_type_url_only() -> None:
    err = gt.NotFound("gone")
    err.localized_message = ed.LocalizedMessage()  # every field empty: an Any with no value
    draft = _Draft.of(err, "example.com", False, [], 10**9)
    assert draft.status_bytes() == _reference(draft)


def test_a_changed_detail_is_serialized_again() -> None:
    draft = _Draft.of(_rich("m", 4), "example.com", True, [], 10**9)
    before = draft.status_bytes()
    draft.mutable("bad_request").field_violations[0].field = "changed"  # type: ignore[attr-defined]
    assert draft.status_bytes() == _reference(draft) != before
    pfd = draft.slots["failure_detail"]
    assert isinstance(pfd, ProvisionFailureDetail)
    pfd.detail = "changed in place"
    draft.changed("failure_detail")
    assert draft.status_bytes() == _reference(draft)


def test_a_slot_is_copied_once_before_it_changes_and_never_the_raised_errors() -> None:
    err = _rich("m", 4)
    draft = _Draft.of(err, "example.com", True, [], 10**9)
    assert draft.slots["bad_request"] is err.bad_request
    first = draft.mutable("bad_request")
    assert first is not err.bad_request and draft.mutable("bad_request") is first
    draft.own()
    assert draft.slots["bad_request"] is first
    assert all(draft.slots[a] is not getattr(err, a) for a in draft.slots)
    assert all(x is not y for x, y in zip(draft.extras, err.extra_details, strict=True))


# -- long text is cut reading only its head ---------------------------------------------------


@given(st.text(max_size=80), st.integers(min_value=14, max_value=60))
def test_a_clean_cut_is_truncate_after_clean(text: str, limit: int) -> None:
    assert _clean_cut(text, limit) == _truncate(clean_text(text), limit)


@pytest.mark.parametrize("text", ["a" * 65, "a" * 64, "a" * 63, "é" * 40, "\ud800" * 70, "a" * 63 + "\ud800"])
def test_a_clean_cut_at_the_edges(text: str) -> None:
    assert _clean_cut(text, 64) == _truncate(clean_text(text), 64)


def test_a_text_of_exactly_the_limit_in_characters_and_more_in_bytes_is_cut() -> None:
    text = "é" * 64
    assert _clean_cut(text, 64).endswith(TRUNCATION_MARK)
    assert len(_clean_cut(text, 64).encode()) <= 64


# -- a long ProvisionFailureDetail detail: rebuilt, or copied when it carries unknown fields ------


def test_provision_failure_detail_has_the_two_fields_the_rebuild_copies() -> None:
    assert [f.name for f in ProvisionFailureDetail.DESCRIPTOR.fields] == ["reason", "detail"]


def test_a_long_detail_is_cut_on_a_new_message_with_the_same_reason() -> None:
    err = gt.LicenseExhausted("x" * 10_000)
    draft = _Draft.of(err, "example.com", False, [], TRAILER_BUDGET)
    pfd = draft.slots["failure_detail"]
    assert isinstance(pfd, ProvisionFailureDetail) and pfd is not err.failure_detail
    assert pfd.reason == gt.Reason.LICENSE_EXHAUSTED
    assert pfd.detail == _truncate("x" * 10_000, TRAILER_BUDGET)
    assert err.failure_detail is not None and err.failure_detail.detail == "x" * 10_000


def test_a_long_detail_with_unknown_fields_keeps_them_until_the_unknown_fields_step() -> None:
    err = gt.LicenseExhausted("y" * 10_000)
    unknown = b"\xa0\x06\x07"  # field 100, varint 7: not in this version's ProvisionFailureDetail
    pfd = err.failure_detail
    assert pfd is not None
    pfd.MergeFromString(unknown)
    draft = _Draft.of(err, "example.com", False, [], TRAILER_BUDGET)
    kept = draft.slots["failure_detail"]
    assert isinstance(kept, ProvisionFailureDetail) and kept is not pfd
    assert kept.SerializeToString().endswith(unknown)
    assert kept.detail == _truncate("y" * 10_000, TRAILER_BUDGET) and kept.reason == 3
    assert pfd.detail == "y" * 10_000


# -- the halving shortcuts: the same trailers and log as halving one step at a time ---------------


class _Plain(_Draft):
    """A draft that never learns the budget: every halving is applied and measured."""

    @property  # type: ignore[override]
    def budget(self) -> int | None:
        return None

    @budget.setter
    def budget(self, value: int | None) -> None:
        del value


def _fitted(cls: type[_Draft], err: gt.StatusError, budget: int, metadata: list[Any],
            caplog: pytest.LogCaptureFixture) -> tuple[Encoded, list[str]]:
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        enc = _fit(cls.of(err, "example.com", False, list(metadata), budget), budget)
    return enc, [r.getMessage() for r in caplog.records]


CASES = [
    # (violations, description length, message length, budget)
    (10_000, 10, 10, TRAILER_BUDGET),
    (10_000, 10, 3000, TRAILER_BUDGET),  # the rest alone is over: the violations all go
    (5000, -1, 10, TRAILER_BUDGET),  # empty violations: 2 bytes each, 1250 of them fit
    (4097, -1, 10, 8192),
    (2100, -1, 10, TRAILER_BUDGET),  # 2100 do not fit, 1050 do
    (3000, 40, 200, 2048),
    (64, 100, 10, TRAILER_BUDGET),
    (1, 5000, 10, TRAILER_BUDGET),
    (2, 3000, 10, TRAILER_BUDGET),
]


@pytest.mark.parametrize(("violations", "length", "message", "budget"), CASES)
def test_halving_shortcuts_change_nothing(
    violations: int, length: int, message: int, budget: int, caplog: pytest.LogCaptureFixture
) -> None:
    if length < 0:  # the smallest violations there are
        err = gt.ValidationFailure("m" * message)
        err.bad_request = ed.BadRequest(field_violations=[ed.BadRequest.FieldViolation()] * violations)
        err.quota_failure = ed.QuotaFailure(violations=[ed.QuotaFailure.Violation()] * violations)
    else:
        err = gt.ValidationFailure(
            "m" * message, field_violations=[(f"f{i}", "d" * length) for i in range(violations)]
        )
        quota = [ed.QuotaFailure.Violation(subject=f"s{i}", description="q" * length) for i in range(violations)]
        err.quota_failure = ed.QuotaFailure(violations=quota)
    metadata = [("x-app", "a" * 100)]
    fast = _fitted(_Draft, err, budget, metadata, caplog)
    plain = _fitted(_Plain, err, budget, metadata, caplog)
    assert fast == plain
    assert fast[0].size() <= budget
    assert fast[0].code is grpc.StatusCode.FAILED_PRECONDITION


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=60),
       st.integers(min_value=0, max_value=3000), st.sampled_from([1024, 1500, TRAILER_BUDGET]))
def test_halving_shortcuts_change_nothing_for_any_size(violations: int, length: int, message: int,
                                                       budget: int) -> None:
    err = gt.ValidationFailure(
        "m" * message, field_violations=[(f"f{i}", "d" * length) for i in range(violations)]
    )
    logger = logging.getLogger(LOGGER)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        fast = _fit(_Draft.of(err, "example.com", False, [], budget), budget)
        plain = _fit(_Plain.of(err, "example.com", False, [], budget), budget)
    finally:
        logger.setLevel(level)
    assert fast == plain
