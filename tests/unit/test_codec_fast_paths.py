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
from grpc_terminal._encode import TRUNCATION_MARK, _clean_cut, _Draft, _fit, _halve, _truncate, _varint
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
        quota = [ed.QuotaFailure.Violation(subject=f"s{i}", description="q" * length)
                 for i in range(violations)]
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


# -- one halving step with the budget known: where it lands ----------------------------------


def _violations_draft(n: int, message: str = "m", budget: int = TRAILER_BUDGET) -> _Draft:
    err = gt.ValidationFailure(message, field_violations=[(f"f{i}", "d") for i in range(n)])
    draft = _Draft.of(err, "example.com", False, [], budget)
    draft.budget = budget
    return draft


def _kept(draft: _Draft) -> int | None:
    msg = draft.slots.get("bad_request")
    return len(msg.field_violations) if isinstance(msg, ed.BadRequest) else None


@pytest.mark.parametrize(("n", "budget", "kept"), [
    (10_000, 3000, 1250),  # 5000 and 2500 cannot fit (2 bytes each at least); 1250 might
    (10_000, 2500, 1250),  # 2 * 1250 is exactly the budget: might fit, so it is measured
    (10_000, 2499, 625),
    (10_000, 10**6, 5000),  # a large budget: the plain halving
    (3, 3000, 1),
    (2, 3000, 1),
])
def test_one_halving_with_the_budget_skips_the_counts_that_cannot_fit(n: int, budget: int, kept: int) -> None:
    draft = _violations_draft(n, budget=budget)
    assert _halve("bad_request", "field_violations")(draft) is True
    assert _kept(draft) == kept


def test_one_halving_without_the_budget_halves_once() -> None:
    draft = _violations_draft(10_000)
    draft.budget = None
    assert _halve("bad_request", "field_violations")(draft) is True
    assert _kept(draft) == 5000


def test_a_detail_that_cannot_fit_even_alone_goes_in_one_step() -> None:
    draft = _violations_draft(10_000, message="m" * 3000)  # the message alone is over the budget
    assert draft.size_without("bad_request") > TRAILER_BUDGET
    assert _halve("bad_request", "field_violations")(draft) is True
    assert _kept(draft) is None and "error_info" in draft.slots
    assert _halve("bad_request", "field_violations")(draft) is False


def test_the_size_without_a_detail_is_the_size_of_the_status_without_it() -> None:
    draft = _violations_draft(100)
    whole = draft.encoded()
    without = draft.size_without("bad_request")
    assert list(draft.slots) == ["failure_detail", "error_info", "bad_request"]  # order kept
    assert draft.encoded() == whole
    del draft.slots["bad_request"]
    assert draft.encoded().size() == without < whole.size()


# -- the caches: serialized once, copied once --------------------------------------------------


def test_a_detail_is_serialized_once_until_it_changes() -> None:
    draft = _violations_draft(10)
    first = draft.value("bad_request")
    assert draft.value("bad_request") is first
    assert draft.value("error_info") is not first
    draft.changed("bad_request")
    assert draft.value("bad_request") is not first and draft.value("bad_request") == first


def test_a_second_own_copies_nothing_again() -> None:
    err = _rich("m", 2)
    draft = _Draft.of(err, "example.com", True, [], 10**9)
    draft.own()
    extras, slots = draft.extras, dict(draft.slots)
    draft.own()
    assert draft.extras is extras
    assert all(draft.slots[a] is slots[a] for a in slots)


def test_unknown_fields_are_seen_on_the_message_itself() -> None:
    from grpc_terminal._encode import _has_unknown_fields

    plain = ProvisionFailureDetail(reason=1, detail="d")
    assert _has_unknown_fields(plain) is False
    plain.MergeFromString(b"\xa0\x06\x07")
    assert _has_unknown_fields(plain) is True


def test_without_the_unknown_fields_module_a_message_is_assumed_to_have_some(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import sys

    from grpc_terminal._encode import _has_unknown_fields

    monkeypatch.setitem(sys.modules, "google.protobuf.unknown_fields", None)  # import fails
    assert _has_unknown_fields(ProvisionFailureDetail(reason=1)) is True


# -- the text cut: every text in the status is the cut one -------------------------------------


def test_cut_texts_are_the_ones_sent() -> None:
    text = "t" * 6000
    err = gt.UserNotProvisionable(text)
    err.error_info.domain = "d" * 6000  # type: ignore[union-attr]
    err.request_info = ed.RequestInfo(request_id="r" * 6000)
    enc = _fit(_Draft.of(err, "example.com", False, [], TRAILER_BUDGET), TRAILER_BUDGET)
    status = status_pb2.Status.FromString(dict(enc.trailing_metadata)["grpc-status-details-bin"])
    got = {}
    for packed in status.details:
        for cls in (ProvisionFailureDetail, ed.ErrorInfo, ed.RequestInfo):
            msg = cls()
            if packed.Unpack(msg):
                got[cls] = msg
    limit = len(enc.message.encode())
    assert enc.message == _truncate(text, limit) and enc.message.endswith(TRUNCATION_MARK)
    assert got[ProvisionFailureDetail].detail == enc.message
    assert got[ed.RequestInfo].request_id == _truncate("r" * 6000, max(limit, 64))
    assert got[ed.ErrorInfo].domain == _truncate("d" * 6000, max(limit, 64))
    assert enc.size() <= TRAILER_BUDGET


@pytest.mark.parametrize("text", ["abcdefghijklmnopqrstuvwxyz", "é" * 20, "a" * 15])
def test_a_clean_cut_to_the_marks_length_keeps_only_the_mark(text: str) -> None:
    assert _clean_cut(text, len(TRUNCATION_MARK)) == TRUNCATION_MARK == _truncate(text, len(TRUNCATION_MARK))


def test_a_packed_detail_is_reused_until_it_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    draft = _violations_draft(10)
    first = draft.status_bytes()
    value = draft.value("bad_request")
    packed: list[str] = []
    original = draft._any
    monkeypatch.setattr(draft, "_any", lambda attr: packed.append(attr) or original(attr))
    assert draft.status_bytes() == first and packed == []  # nothing packed again, not even ErrorInfo
    draft.changed("bad_request")
    assert draft.status_bytes() == first and packed == ["bad_request"]
    kept = draft.value("bad_request")
    assert kept == value
    draft._anys.clear()  # packing again reuses the serialized value
    assert draft.status_bytes() == first
    assert draft.value("bad_request") is kept


def test_only_the_error_info_is_packed_again_once_anything_was_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    draft = _violations_draft(10)
    draft.shrunk.append("DebugInfo")
    draft.status_bytes()
    packed: list[str] = []
    original = draft._any
    monkeypatch.setattr(draft, "_any", lambda attr: packed.append(attr) or original(attr))
    assert draft.status_bytes() == _reference(draft)
    assert packed == ["error_info"]


def test_violations_that_cannot_fit_are_not_measured_one_halving_at_a_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The message alone is over the budget: halving 10,000 violations one step at a
    # time would measure the status with them 15 times before dropping them.
    measured: list[bool] = []
    encoded = _Draft.encoded

    def counting(self: _Draft) -> Encoded:
        measured.append("bad_request" in self.slots)
        return encoded(self)

    monkeypatch.setattr(_Draft, "encoded", counting)
    err = gt.ValidationFailure("m" * 5000, field_violations=[(f"f{i}", "d") for i in range(10_000)])
    enc = _fit(_Draft.of(err, "example.com", False, [], TRAILER_BUDGET), TRAILER_BUDGET)
    assert enc.size() <= TRAILER_BUDGET
    assert measured.count(True) == 1  # only as it came
