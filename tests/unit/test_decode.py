"""Decoding (``grpc_terminal._decode``), in process: the typed error a client gets for what a peer sent.

Each group pins one decision down by what the caller sees: the decoded
error's class, code, message, details and trailers, and the DEBUG record that
explains a status detail it could not use. Complements tests/unit/test_codec.py
(lenient parsing, str trailers, odd ``details()`` values), which these tests do
not repeat.
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from grpc_terminal._decode import decode, parse_status

from fakes import varint

C = grpc.StatusCode
KEY = gt.STATUS_DETAILS_KEY
LOGGER = "grpc_terminal"
PREFIX = "grpc_terminal: "  # every line the library logs starts so

INFO = ed.ErrorInfo(reason="BAD_THING", domain="peer.example")
RETRY = ed.RetryInfo(retry_delay=duration_pb2.Duration(seconds=3))


def _status(code: grpc.StatusCode, *details: Any) -> bytes:
    """A serialized Status with ``code`` and each of ``details`` packed (an ``Any`` as it is)."""
    status = status_pb2.Status(code=code.value[0])
    for detail in details:
        if isinstance(detail, any_pb2.Any):
            status.details.append(detail)
        else:
            status.details.add().Pack(detail)
    return bytes(status.SerializeToString())


def _debug_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.DEBUG]


# -- the call's code: a failure is never OK, and never anything but a StatusCode ---------------


@pytest.mark.parametrize("code", [C.OK, 9, None, "NOT_FOUND"], ids=["OK", "int", "None", "str"])
def test_a_code_that_is_not_a_failure_code_is_decoded_as_unknown_keeping_the_message(code: Any) -> None:
    got = decode(code, "m", [("x-app", "1")])
    assert type(got) is gt.Unknown
    assert got.code() is C.UNKNOWN
    assert got.message == "m"
    assert got.trailing_metadata() == (("x-app", "1"),)


def test_a_details_trailer_is_read_against_unknown_when_the_code_was_not_a_failure() -> None:
    got = decode(C.OK, "m", [(KEY, _status(C.UNKNOWN, INFO))])
    assert got.code() is C.UNKNOWN and got.error_info == INFO


# -- which details trailer is read: the first readable one that agrees with the call ------------


def test_an_undecodable_details_trailer_is_skipped_for_a_later_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, LOGGER):
        got = decode(C.NOT_FOUND, "nf", [(KEY, b"\x00junk"), (KEY, _status(C.NOT_FOUND, INFO))])
    assert type(got) is gt.NotFound and got.message == "nf"
    assert got.error_info == INFO
    (record,) = _debug_records(caplog)
    assert record.getMessage().startswith(PREFIX)
    assert f"undecodable {KEY} trailer" in record.getMessage()


def test_a_details_trailer_that_disagrees_with_the_call_is_skipped_for_a_later_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    other = ed.ErrorInfo(reason="OTHER")
    trailers = [(KEY, _status(C.INTERNAL, other)), (KEY, _status(C.NOT_FOUND, INFO))]
    with caplog.at_level(logging.DEBUG, LOGGER):
        got = decode(C.NOT_FOUND, "nf", trailers)
    assert type(got) is gt.NotFound and got.error_info == INFO
    (record,) = _debug_records(caplog)
    text = record.getMessage()
    assert text.startswith(PREFIX)
    assert "say code 13, call says NOT_FOUND" in text  # both codes, for whoever debugs the peer


def test_the_first_agreeing_details_trailer_wins() -> None:
    trailers = [(KEY, _status(C.NOT_FOUND, INFO)), (KEY, _status(C.NOT_FOUND, RETRY))]
    got = decode(C.NOT_FOUND, "nf", trailers)
    assert got.error_info == INFO and got.retry_info is None


def test_parse_status_skips_other_keys_and_finds_none_without_a_details_trailer() -> None:
    assert parse_status(C.NOT_FOUND, (("x-app", "1"),)) is None
    raw = _status(C.NOT_FOUND, INFO)
    assert parse_status(C.NOT_FOUND, (("x-app", "1"), (KEY, raw))) == status_pb2.Status.FromString(raw)


# -- how one details trailer is read: strictly, leniently, or once unwrapped from base64 --------


def test_a_status_with_a_field_only_the_strict_parser_frames_is_read() -> None:
    group = varint(99 << 3 | 3) + varint(99 << 3 | 4)  # an unknown group field (a newer schema)
    raw = _status(C.NOT_FOUND, INFO) + group
    assert status_pb2.Status.FromString(raw).code == C.NOT_FOUND.value[0]
    got = decode(C.NOT_FOUND, "nf", [(KEY, raw)])
    assert got.error_info == INFO


def test_a_details_value_base64_encoded_twice_is_unwrapped_once_only() -> None:
    twice = base64.b64encode(base64.b64encode(_status(C.NOT_FOUND, INFO)))
    got = decode(C.NOT_FOUND, "nf", [(KEY, twice)])
    assert type(got) is gt.NotFound and got.message == "nf"
    assert got.error_info is None


@pytest.mark.parametrize(
    "raw",
    [b"abcde", b"abcdefg", b"\xff\x00garbage", b"\x00junk"],
    ids=["five-letters", "seven-letters", "garbage", "junk"],
)
def test_a_details_value_that_is_neither_a_status_nor_its_base64_is_ignored(raw: bytes) -> None:
    got = decode(C.FAILED_PRECONDITION, "m", [(KEY, raw), ("x-app", "1")])
    assert type(got) is gt.FailedPrecondition
    assert got.message == "m"
    assert got.error_info is None
    assert got.trailing_metadata() == ((KEY, raw), ("x-app", "1"))


def test_a_str_details_value_that_is_not_latin1_is_ignored_keeping_the_message() -> None:
    got = decode(C.FAILED_PRECONDITION, "m", [(KEY, "not base64 at all \N{CHECK MARK}")])
    assert type(got) is gt.FailedPrecondition
    assert got.message == "m"
    assert got.error_info is None


# -- which details are used: each unpacked once; unknown types kept packed, broken ones dropped --


def test_an_unknown_detail_type_is_kept_packed_and_later_details_still_read() -> None:
    unknown = any_pb2.Any(type_url="type.googleapis.com/peer.v9.Novel", value=b"\x08\x01")
    got = decode(C.NOT_FOUND, "nf", [(KEY, _status(C.NOT_FOUND, unknown, INFO))])
    assert got.error_info == INFO
    assert list(got.extra_details) == [unknown]


def test_a_known_detail_type_that_fails_to_unpack_is_dropped_and_later_details_still_read() -> None:
    broken = any_pb2.Any(type_url="type.googleapis.com/google.rpc.ErrorInfo", value=b"\xff\xff\xff")
    got = decode(C.UNAVAILABLE, "down", [(KEY, _status(C.UNAVAILABLE, broken, RETRY))])
    assert type(got) is gt.Unavailable
    assert got.error_info is None
    assert got.retry_delay == 3.0
    assert list(got.extra_details) == []


# -- never raises: details an error cannot take, a message that cannot be read, a broken lookup --


class _Undecodable(bytes):
    """A call message (bytes) whose ``decode`` fails, as a hostile or broken proxy may hand over."""

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise UnicodeError("cannot decode")


def test_details_the_error_cannot_take_leave_the_code_message_and_trailers(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*args: object) -> None:
        raise TypeError("this detail does not fit")

    monkeypatch.setattr("grpc_terminal._errors.attach", refuse)
    trailers = ((KEY, _status(C.NOT_FOUND, INFO)), ("x-app", "1"))
    with caplog.at_level(logging.DEBUG, LOGGER):
        got = decode(C.NOT_FOUND, "nf", trailers)
    assert type(got) is gt.NotFound
    assert got.code() is C.NOT_FOUND
    assert got.message == "nf"
    assert got.trailing_metadata() == trailers
    assert got.error_info is None and list(got.extra_details) == []
    (record,) = _debug_records(caplog)
    assert record.getMessage().startswith(PREFIX) and "details unusable" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], TypeError)


def test_a_message_that_cannot_be_read_leaves_the_code_alone(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, LOGGER):
        got = decode(C.NOT_FOUND, _Undecodable(b"nf"), [(KEY, _status(C.NOT_FOUND, INFO)), ("x-app", "1")])
    assert type(got) is gt.NotFound
    assert got.code() is C.NOT_FOUND
    assert got.message == ""
    assert got.trailing_metadata() == ()
    assert got.error_info is None and list(got.extra_details) == []
    (record,) = _debug_records(caplog)
    assert record.getMessage().startswith(PREFIX) and "decode failed" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], UnicodeError)


def test_a_broken_class_lookup_still_gives_a_bare_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object) -> type[gt.StatusError]:
        raise LookupError("no class")

    monkeypatch.setattr("grpc_terminal._decode.class_for", broken)
    got = decode(C.NOT_FOUND, "nf", [(KEY, _status(C.NOT_FOUND, INFO)), ("x-app", "1")])
    assert type(got) is gt.Unknown
    assert got.code() is C.UNKNOWN
    assert got.message == ""
    assert got.trailing_metadata() == ()
    assert got.error_info is None and list(got.extra_details) == []


def test_a_type_url_with_a_longer_prefix_is_read_by_its_last_segment() -> None:
    # As Any.TypeName() reads it: the ProvisionFailureDetail's reason picks the class.
    pfd = any_pb2.Any(type_url="example.com/custom/prefix/c1.connector.v2.ProvisionFailureDetail",
                      value=gt.ProvisionFailureDetail(reason=1, detail="d").SerializeToString())
    status = status_pb2.Status(code=grpc.StatusCode.FAILED_PRECONDITION.value[0], message="m", details=[pfd])
    trailers = (("grpc-status-details-bin", status.SerializeToString()),)
    got = decode(grpc.StatusCode.FAILED_PRECONDITION, "m", trailers)
    assert type(got) is gt.UserNotProvisionable
    assert got.failure_detail is not None and got.failure_detail.detail == "d"
    assert got.extra_details == []
