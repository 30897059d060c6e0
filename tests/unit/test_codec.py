"""The status codec (``grpc_terminal._codec``), in process: what a peer would receive or decode.

Each group pins one behaviour down to the value: the last-resort encodings of
an error too broken to encode, the fitting of text into a tight budget, how
many violations one halving keeps, the lenient decoding of a status the strict
parser rejects, the reading of odd ``details()`` values and of a details
trailer handed over as str. What is asserted is what a client sees: codes,
messages, trailers and the decoded error's fields (and, for failures of the
encoder itself, the logged record).
"""

from __future__ import annotations

import base64
import logging
from typing import Any, cast

import grpc
import pytest
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from grpc_terminal._decode import salvage_status
from grpc_terminal._encode import SHRINK_ORDER, TRUNCATED_KEY, TRUNCATION_MARK, _Draft, _drop, _halve, encode
from grpc_terminal._trailers import PUSHBACK_KEY, STATUS_DETAILS_KEY, Encoded

from fakes import Received, client_error, trailer, varint

C = grpc.StatusCode
LOGGER = "grpc_terminal"


def _status(enc: Encoded) -> status_pb2.Status:
    raw = trailer(enc, STATUS_DETAILS_KEY)
    assert isinstance(raw, bytes)
    return status_pb2.Status.FromString(raw)


def _unencodable(err: gt.StatusError) -> gt.StatusError:
    """``err`` with an ``extra_details`` that is not iterable: the full encoder fails on it."""
    setattr(err, "extra_details", 7)  # noqa: B010  # a wrong type, as untyped code may assign
    return err


# -- an error the full encoder cannot encode: code, reasons and message only ------------------


def test_an_unencodable_terminal_error_keeps_its_code_reasons_message_and_pushback() -> None:
    err = _unencodable(
        gt.UserNotProvisionable(
            "jdoe is SUSPENDED",
            field_violations={"user": "suspended"},
            domain="idp.example",
            metadata={"userId": "7"},
            trailing_metadata=[("x-app", "1")],
        )
    )
    enc = encode(err)
    assert enc.code is C.FAILED_PRECONDITION
    assert enc.message == "jdoe is SUSPENDED"
    assert trailer(enc, PUSHBACK_KEY) == "-1"
    assert trailer(enc, "x-app") is None  # application metadata is not sent
    got = client_error(enc)
    assert type(got) is gt.UserNotProvisionable
    assert got.reason is gt.Reason.USER_NOT_PROVISIONABLE
    assert got.detail == "jdoe is SUSPENDED"
    assert got.error_info is not None
    assert got.error_info.reason == "USER_NOT_PROVISIONABLE"
    assert got.error_info.domain == ""  # only the reason survives
    assert dict(got.error_info.metadata) == {}  # nothing was cut: no truncation mark either
    assert got.bad_request is None


def test_an_unencodable_transient_error_sends_no_pushback() -> None:
    enc = encode(_unencodable(gt.Unavailable("upstream down", retry_delay=2.5)))
    assert (enc.code, enc.message) == (C.UNAVAILABLE, "upstream down")
    assert trailer(enc, PUSHBACK_KEY) is None
    got = client_error(enc)
    assert type(got) is gt.Unavailable
    assert got.retry_delay is None
    assert got.error_info is not None and got.error_info.reason == "UNAVAILABLE"


def test_an_unencodable_error_is_logged_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, LOGGER):
        encode(_unencodable(gt.NotFound("user 7")))
    (record,) = caplog.records
    assert record.levelno == logging.ERROR
    assert "cannot encode NotFound" in record.getMessage()
    assert record.exc_info is not None


def test_an_unencodable_error_still_fits_a_tight_budget_and_marks_the_cut() -> None:
    err = _unencodable(gt.LicenseExhausted("seats " * 2000))
    enc = encode(err, budget=1024)
    assert enc.size() <= 1024
    assert enc.message.endswith(TRUNCATION_MARK)
    got = client_error(enc)
    assert isinstance(got, gt.LicenseExhausted)
    assert got.detail.endswith(TRUNCATION_MARK)
    assert got.error_info is not None
    assert got.error_info.reason == "LICENSE_EXHAUSTED"
    assert got.error_info.metadata[TRUNCATED_KEY] == "true"


def test_an_unencodable_error_has_its_text_cleaned_and_its_reason_cut() -> None:
    err = _unencodable(gt.UserNotProvisionable("ok"))
    err.message = "bad \ud800 text"
    assert err.error_info is not None
    err.error_info.reason = "R" * 100  # as a peer may send it
    got = client_error(encode(err))
    assert got.message == "bad \N{REPLACEMENT CHARACTER} text"
    assert isinstance(got, gt.UserNotProvisionable) and got.detail == "ok"
    assert got.error_info is not None and got.error_info.reason == "R" * 63


class _Coded(gt.Internal):
    """An error whose ``code()`` says what the test wants (a subclass can override it)."""

    def __init__(self, message: str, code: object) -> None:
        super().__init__(message)
        self._odd = code

    def code(self) -> Any:
        if isinstance(self._odd, Exception):
            raise self._odd
        return self._odd


@pytest.mark.parametrize("code", [C.OK, 13, "INTERNAL"], ids=["OK", "int", "str"])
def test_an_unencodable_error_without_a_failure_code_is_sent_as_unknown(code: object) -> None:
    enc = encode(_unencodable(_Coded("odd code", code)))
    assert (enc.code, enc.message) == (C.UNKNOWN, "odd code")
    assert _status(enc).code == C.UNKNOWN.value[0]
    assert type(client_error(enc)) is gt.Unknown


def test_an_unencodable_error_whose_message_is_not_a_str_is_sent_without_one() -> None:
    err = _unencodable(gt.PermissionDenied("x"))
    setattr(err, "message", 42)  # noqa: B010
    enc = encode(err)
    assert (enc.code, enc.message) == (C.PERMISSION_DENIED, "")
    got = client_error(enc)
    assert got.error_info is not None and got.error_info.reason == "PERMISSION_DENIED"


class _Plain:
    """Not a StatusError at all (untyped code may hand anything to the encoder)."""

    message = "plain text"


def test_an_object_that_is_not_a_status_error_is_sent_as_unknown_with_its_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, LOGGER):
        enc = encode(cast(Any, _Plain()))
    assert (enc.code, enc.message) == (C.UNKNOWN, "plain text")
    assert enc.trailing_metadata == (
        (STATUS_DETAILS_KEY, status_pb2.Status(code=2, message="plain text").SerializeToString()),
    )
    assert len(caplog.records) == 1  # the minimal status was built: no second failure


def test_an_object_without_a_message_is_sent_as_a_bare_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, LOGGER):
        enc = encode(cast(Any, object()))
    assert len(caplog.records) == 1  # the minimal status was built: no second failure
    assert (enc.code, enc.message) == (C.UNKNOWN, "")
    assert _status(enc) == status_pb2.Status(code=2)


# -- the last resort: even the minimal status cannot be built ---------------------------------


def test_an_error_whose_code_raises_is_sent_as_a_bare_unknown(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, LOGGER):
        enc = encode(_Coded("lost", RuntimeError("code() is broken")))
    assert enc == Encoded(
        C.UNKNOWN, "", ((STATUS_DETAILS_KEY, status_pb2.Status(code=2).SerializeToString()),)
    )
    got = client_error(enc)
    assert type(got) is gt.Unknown and got.message == ""
    last = caplog.records[-1]
    assert last.levelno == logging.ERROR
    assert last.getMessage().startswith("grpc_terminal: ")
    assert last.getMessage().endswith("minimal status; sending UNKNOWN")
    assert last.exc_info is not None and isinstance(last.exc_info[1], RuntimeError)


# -- fitting free text into a tight budget ----------------------------------------------------


def test_a_long_request_id_is_cut_with_the_message_and_kept() -> None:
    err = gt.Internal("boom", extra_details=[ed.RequestInfo(request_id="r" * 6000, serving_data="s")])
    enc = encode(err)
    assert enc.size() <= gt.TRAILER_BUDGET
    got = client_error(enc)
    assert got.request_info is not None
    assert got.request_info.serving_data == ""
    assert got.request_id is not None and got.request_id.endswith(TRUNCATION_MARK)
    assert len(got.request_id) > 1000  # a useful part of it survived
    assert got.message == "boom"


def test_a_long_domain_is_cut_with_the_message_and_kept() -> None:
    enc = encode(gt.Internal("boom", domain="d" * 6000))
    got = client_error(enc)
    assert got.error_info is not None
    assert got.error_info.domain.endswith(TRUNCATION_MARK) and len(got.error_info.domain) > 1000
    assert got.error_info.reason == "INTERNAL"
    assert got.error_info.metadata[TRUNCATED_KEY] == "true"


def test_the_domain_keeps_64_bytes_while_the_message_is_cut_shorter() -> None:
    enc = encode(gt.Internal("m" * 5000, domain="d" * 5000), budget=620)
    assert enc.size() <= 620
    got = client_error(enc)
    assert 14 < len(got.message) < 64 and got.message.endswith(TRUNCATION_MARK)
    assert got.error_info is not None
    assert got.error_info.domain == "d" * (64 - len(TRUNCATION_MARK)) + TRUNCATION_MARK


def test_a_long_error_reason_from_a_peer_is_cut_to_63_bytes_when_text_is_cut() -> None:
    err = gt.Internal("m" * 6000)
    assert err.error_info is not None
    err.error_info.reason = "R" * 70  # as relayed from a peer: never validated
    got = client_error(encode(err))
    assert got.error_info is not None and got.error_info.reason == "R" * 63


def test_an_error_without_error_info_is_cut_like_any_other() -> None:
    err = gt.Internal("m" * 6000)
    err.error_info = None
    enc = encode(err, budget=1024)
    assert enc.size() <= 1024 and enc.code is C.INTERNAL
    assert enc.message.startswith("mmm") and enc.message.endswith(TRUNCATION_MARK)
    assert client_error(enc).error_info is None


# -- the irreducible status: code, reasons, retry delay, marked text ---------------------------


def test_the_irreducible_status_keeps_the_retry_delay_and_marks_the_cut() -> None:
    err = gt.Unavailable(
        "m" * 5000, retry_delay=2.5, domain="d" * 3000, extra_details=[ed.RequestInfo(request_id="r" * 3000)]
    )
    enc = encode(err, budget=450)
    assert trailer(enc, PUSHBACK_KEY) == "2500"
    assert enc.message == TRUNCATION_MARK
    got = client_error(enc)
    assert type(got) is gt.Unavailable
    assert got.retry_delay == 2.5
    assert got.request_info is None
    assert got.error_info is not None
    assert (got.error_info.reason, got.error_info.domain) == ("UNAVAILABLE", "")
    assert dict(got.error_info.metadata) == {TRUNCATED_KEY: "true"}


def test_the_irreducible_status_keeps_the_reason_and_a_marked_detail() -> None:
    err = gt.LicenseExhausted("d" * 5000, message="m" * 5000, domain="x" * 3000)
    enc = encode(err, budget=450)
    assert trailer(enc, PUSHBACK_KEY) == "-1"
    got = client_error(enc)
    assert isinstance(got, gt.LicenseExhausted)
    assert (got.message, got.detail) == (TRUNCATION_MARK, TRUNCATION_MARK)
    assert got.error_info is not None and got.error_info.metadata[TRUNCATED_KEY] == "true"


def test_the_irreducible_status_is_sent_over_a_tiny_budget_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.NotFound("m" * 5000), budget=100)
    assert enc.size() > 100 and enc.message == TRUNCATION_MARK
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.ERROR, logging.WARNING]
    assert SHRINK_ORDER[-1] in caplog.records[-1].getMessage()


# -- one shrinking step: how much a halving keeps, when a drop reports a change ----------------


def _draft(err: gt.StatusError) -> _Draft:
    return _Draft.of(err, gt.DEFAULT_DOMAIN, False, [], gt.TRAILER_BUDGET)


def test_one_halving_keeps_the_first_half_rounded_down_then_drops_the_detail() -> None:
    draft = _draft(gt.ResourceExhausted("quota", quota_violations=[(f"q{i}", "d") for i in range(5)]))
    draft.own()
    step = _halve("quota_failure", "violations")
    seen: list[tuple[bool, list[str] | None]] = []
    for _ in range(5):
        changed = step(draft)
        msg = draft.slots.get("quota_failure")
        subjects = [v.subject for v in msg.violations] if isinstance(msg, ed.QuotaFailure) else None
        seen.append((changed, subjects))
    assert seen == [(True, ["q0", "q1"]), (True, ["q0"]), (True, None), (False, None), (False, None)]
    assert "error_info" in draft.slots  # only its own detail goes


def test_halving_an_absent_detail_changes_nothing() -> None:
    draft = _draft(gt.InvalidArgument("bad"))
    assert _halve("bad_request", "field_violations")(draft) is False
    assert "error_info" in draft.slots


def test_dropping_a_detail_reports_whether_there_was_one() -> None:
    draft = _draft(gt.NotFound("x", help_links={"docs": "https://d"}))
    step = _drop("help")
    assert step(draft) is True
    assert "help" not in draft.slots and "error_info" in draft.slots
    assert step(draft) is False


def test_encoding_halves_violations_until_they_fit_keeping_the_first() -> None:
    err = gt.ResourceExhausted("quota", quota_violations=[(f"q{i:02}", "y" * 400) for i in range(16)])
    enc = encode(err)
    assert enc.size() <= gt.TRAILER_BUDGET
    got = client_error(enc)
    assert got.quota_failure is not None
    assert [v.subject for v in got.quota_failure.violations] == ["q00", "q01", "q02", "q03"]


# -- lenient decoding: what is salvaged of a status the strict parser rejects ------------------


def _field(number: int, value: int | bytes) -> bytes:
    """One protobuf field: a varint for an int, length-delimited for bytes."""
    if isinstance(value, int):
        return varint(number << 3) + varint(value)
    return varint(number << 3 | 2) + varint(len(value)) + value


def _packed(msg: Any) -> bytes:
    any_msg = any_pb2.Any()
    any_msg.Pack(msg)
    return any_msg.SerializeToString()


INFO = ed.ErrorInfo(reason="BAD_THING", domain="peer.example")
LONG_INFO = ed.ErrorInfo(reason="LONG", domain="x" * 300)  # a detail over 127 bytes: 2-byte lengths


def test_a_status_whose_message_is_not_utf8_keeps_its_code_and_details() -> None:
    raw = _field(1, 9) + _field(2, b"caf\xe9") + _field(3, _packed(INFO))
    with pytest.raises(DecodeError):  # the strict parser refuses it
        status_pb2.Status.FromString(raw)
    got = gt.from_rpc_error(Received(C.FAILED_PRECONDITION, "precondition", [(STATUS_DETAILS_KEY, raw)]))
    assert type(got) is gt.FailedPrecondition
    assert got.message == "precondition"
    assert got.error_info == INFO


def test_salvage_reads_the_code_and_every_well_formed_detail() -> None:
    raw = (
        _field(3, b"\x0a\x05ab")  # an Any cut short: skipped
        + _field(1, 5)
        + _field(7, 99)  # an unknown varint field: not the code
        + varint(9 << 3 | 1) + b"\x01" * 8  # fixed64
        + varint(10 << 3 | 5) + b"\x02" * 4  # fixed32
        + _field(2, b"\n\x03abc")  # the message, though it would parse as an Any
        + _field(3, _packed(INFO))
        + _field(3, _packed(LONG_INFO))
        + _field(3, 4)  # a varint where a detail belongs: skipped
        + varint(11 << 3 | 5) + b"\x03" * 4  # a fixed32 as the last field
    )
    status = salvage_status(raw)
    assert status.code == 5
    assert status.message == ""
    assert [d.SerializeToString() for d in status.details] == [_packed(INFO), _packed(LONG_INFO)]


@pytest.mark.parametrize("tail", [varint(11 << 3 | 5) + b"\x03" * 4, varint(11 << 3 | 1) + b"\x03" * 8])
def test_salvage_reads_a_status_ending_in_a_fixed_width_field(tail: bytes) -> None:
    status = salvage_status(_field(1, 6) + _field(3, _packed(INFO)) + tail)
    assert status.code == 6
    assert [d.SerializeToString() for d in status.details] == [_packed(INFO)]


def test_salvage_of_nothing_is_code_0() -> None:
    assert salvage_status(b"") == status_pb2.Status()


@pytest.mark.parametrize(
    ("wire", "code"),
    [(-1, -1), (2**31, -(2**31)), (2**31 - 1, 2**31 - 1), (2**32 + 5, 5), (100, 100), (63, 63)],
)
def test_salvage_reads_the_code_as_an_int32(wire: int, code: int) -> None:
    assert salvage_status(_field(1, wire)).code == code


def test_salvage_ignores_a_code_field_of_the_wrong_wire_type() -> None:
    raw = _field(1, 5) + varint(1 << 3 | 5) + b"\x07\x00\x00\x00"
    assert salvage_status(raw).code == 5


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x08\x80", "truncated varint"),
        (b"\x08" + b"\xff" * 9 + b"\x01", None),  # ten bytes: the longest varint
        (b"\x08" + b"\x80" * 10 + b"\x01", "varint too long"),
        (varint(3 << 3 | 2) + varint(5) + b"abcd", "truncated field"),
        (varint(9 << 3 | 1) + b"\x00" * 7, "truncated field"),
        (varint(9 << 3 | 5) + b"\x00" * 3, "truncated field"),
        (varint(9 << 3 | 3), "unsupported wire type 3"),
    ],
    ids=[
        "short-varint", "10-byte-varint", "11-byte-varint", "short-bytes",
        "short-fixed64", "short-fixed32", "group",
    ],
)
def test_salvage_refuses_broken_framing(raw: bytes, match: str | None) -> None:
    if match is None:
        assert salvage_status(raw).code == -1
        return
    with pytest.raises(ValueError, match=f"^{match}$"):
        salvage_status(raw)


def test_a_details_value_base64_encoded_by_the_peer_is_read() -> None:
    wrapped = base64.b64encode(_details_status(C.NOT_FOUND))
    got = gt.from_rpc_error(Received(C.NOT_FOUND, "nf", [(STATUS_DETAILS_KEY, wrapped)]))
    assert got.error_info == INFO


# -- a details trailer handed over as str (a test double, a proxy), odd details() values ------


def _details_status(code: grpc.StatusCode, info: ed.ErrorInfo = INFO) -> bytes:
    status = status_pb2.Status(code=code.value[0])
    status.details.add().Pack(info)
    return bytes(status.SerializeToString())


@pytest.mark.parametrize("domain", ["peer.example", "peer.example.org"], ids=["2-short", "1-short"])
def test_a_str_details_value_in_unpadded_base64_is_decoded(domain: str) -> None:
    info = ed.ErrorInfo(reason="BAD_THING", domain=domain)
    text = base64.b64encode(_details_status(C.NOT_FOUND, info)).decode().rstrip("=")
    assert len(text) % 4 != 0  # the padding is really missing
    got = gt.from_rpc_error(Received(C.NOT_FOUND, "nf", [(STATUS_DETAILS_KEY, text)]))
    assert got.error_info == info


def test_a_str_details_value_that_is_not_base64_is_read_as_latin1_bytes() -> None:
    text = _details_status(C.NOT_FOUND).decode("latin-1")
    got = gt.from_rpc_error(Received(C.NOT_FOUND, "nf", [(STATUS_DETAILS_KEY, text)]))
    assert type(got) is gt.NotFound
    assert got.error_info == INFO


class _Odd:
    """A ``details()`` value that is neither str nor bytes."""

    def __init__(self, text: str | None) -> None:
        self.text = text

    def __str__(self) -> str:
        if self.text is None:
            raise RuntimeError("no text")
        return self.text


class _RawError(grpc.RpcError):
    """A raw RpcError whose ``details()`` returns anything."""

    def __init__(self, details: object) -> None:
        self._details = details

    def code(self) -> grpc.StatusCode:
        return C.ABORTED

    def details(self) -> object:  # type: ignore[override]
        return self._details


@pytest.mark.parametrize(
    ("details", "message"),
    [
        (_Odd("odd text"), "odd text"),
        (_Odd(None), ""),
        (None, ""),
        (b"caf\xc3\xa9 \xff", "caf\xe9 \N{REPLACEMENT CHARACTER}"),
    ],
    ids=["str()", "str()-raises", "None", "bytes"],
)
def test_an_odd_details_value_becomes_the_message(details: object, message: str) -> None:
    got = gt.from_rpc_error(_RawError(details))
    assert type(got) is gt.Aborted
    assert got.message == message


# -- dropped application metadata is logged with a bounded repr of the culprit ---------------


class _Evil:
    """A metadata key whose repr raises."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def _dropped_key_log(key: object, caplog: pytest.LogCaptureFixture) -> str:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.NotFound("x"), metadata=[(key, "v"), ("ok", "1")])
    assert trailer(enc, "ok") == "1"  # the valid entry is still sent
    (record,) = caplog.records
    return record.getMessage()


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        ("K" * 78, repr("K" * 78)),  # a repr of exactly 80 characters: whole
        ("K" * 79, repr("K" * 79)[:77] + "..."),  # 81: cut to 80 with an ellipsis
        (_Evil(), "<_Evil>"),
    ],
    ids=["80", "81", "repr-raises"],
)
def test_a_dropped_key_is_shown_bounded(key: object, shown: str, caplog: pytest.LogCaptureFixture) -> None:
    assert _dropped_key_log(key, caplog).endswith(f"invalid metadata key {shown}")


# -- which application metadata is sent ---------------------------------------------------------


@pytest.mark.parametrize("value", ["a b", "~tilde~", " !#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}"])
def test_printable_ascii_metadata_values_are_sent(value: str) -> None:
    enc = encode(gt.NotFound("x"), metadata=[("x-note", value)])
    assert trailer(enc, "x-note") == value


@pytest.mark.parametrize("value", ["del\x7f", "tab\t", "caf\xe9", "nl\n"])
def test_other_metadata_values_are_dropped_and_logged(value: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.NotFound("x"), metadata=[("x-note", value)])
    assert trailer(enc, "x-note") is None
    assert "'x-note' needs a printable ASCII str value" in caplog.records[0].getMessage()


def test_a_reserved_grpc_key_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.NotFound("x"), metadata=[("grpc-custom", "v")])
    assert trailer(enc, "grpc-custom") is None
    assert caplog.records[0].getMessage().endswith("reserved metadata key 'grpc-custom'")
