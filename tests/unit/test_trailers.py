"""Trailers (``grpc_terminal._trailers``), in process: their size, what is sent, what is read.

Each group pins one decision down to the value: the bytes a status's trailers
take against gRPC's metadata limit (name + value + 32 per entry, the message
percent-encoded, binary values base64-encoded, plus the response-headers
allowance), which application metadata is sent and how a dropped entry is
logged, and which received entries a decoded error keeps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

from grpc_terminal._trailers import (
    RESPONSE_HEADERS_ALLOWANCE,
    Encoded,
    read_metadata,
    sanitize_metadata,
    trailer_size,
    valid_metadata,
)

C = grpc.StatusCode
LOGGER = "grpc_terminal"
PREFIX = "grpc_terminal: "  # every line the library logs starts so
ENTRY = 32  # what gRPC's metadata limit adds per entry

# grpc-status and grpc-message with an empty message, for a one-digit code, allowance included.
BARE = RESPONSE_HEADERS_ALLOWANCE + (len("grpc-status") + 1 + ENTRY) + (len("grpc-message") + ENTRY)


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == level]


# -- the size of a status's trailers as gRPC's metadata limit counts them -------------------------


def test_bare_trailers_count_the_allowance_the_code_digits_and_the_two_names() -> None:
    assert BARE == 264
    assert trailer_size(C.NOT_FOUND, "", ()) == BARE
    assert trailer_size(C.INTERNAL, "", ()) == BARE + 1  # "13": two digits
    assert Encoded(C.NOT_FOUND, "", ()).size() == BARE


@pytest.mark.parametrize(
    ("message", "counted"),
    [
        ("plain text ~", 12),  # printable ASCII goes as it is
        ("%", 3),  # the escape character itself is escaped
        ("\N{LATIN SMALL LETTER E WITH ACUTE}", 6),  # two UTF-8 bytes, each %XX
        ("a\nb", 5),
        ("x\ud800", 2),  # a lone surrogate is counted as the "?" it becomes
    ],
    ids=["plain", "percent", "two-byte", "newline", "surrogate"],
)
def test_the_message_is_counted_percent_encoded(message: str, counted: int) -> None:
    assert trailer_size(C.NOT_FOUND, message, ()) == BARE + counted


@pytest.mark.parametrize(
    ("value", "counted"),
    [
        (b"", 0),
        (b"a", 4),
        (b"ab", 4),
        (b"abc", 4),
        (b"abcd", 8),
        (b"abcdefg", 12),
        ("\N{LATIN SMALL LETTER E WITH ACUTE}" * 3, 8),  # a str: its six UTF-8 bytes
        ("\ud800ab", 4),  # a lone surrogate: "?ab"
    ],
    ids=["empty", "one", "two", "three", "four", "seven", "str-utf8", "str-surrogate"],
)
def test_a_binary_value_is_counted_base64_encoded(value: str | bytes, counted: int) -> None:
    assert trailer_size(C.NOT_FOUND, "", (("k-bin", value),)) == BARE + len("k-bin") + counted + ENTRY


@pytest.mark.parametrize(
    ("value", "counted"),
    [("abc", 3), ("\N{LATIN SMALL LETTER E WITH ACUTE}", 2), (b"abc", 3), (b"\xe9", 1)],
    ids=["ascii", "str-utf8", "bytes", "bytes-high"],
)
def test_a_text_value_is_counted_as_its_bytes(value: str | bytes, counted: int) -> None:
    assert trailer_size(C.NOT_FOUND, "", (("k", value),)) == BARE + 1 + counted + ENTRY


def test_every_entry_is_counted() -> None:
    md = (("a", "1"), ("b-bin", b"xyz"))
    assert trailer_size(C.NOT_FOUND, "", md) == BARE + (1 + 1 + ENTRY) + (5 + 4 + ENTRY)


# -- which application metadata can be sent ------------------------------------------------------


def test_a_binary_key_needs_a_bytes_value() -> None:
    assert valid_metadata("x-bin", b"\x00\xff") is None
    assert valid_metadata("x-bin", "text") == "binary metadata 'x-bin' needs bytes"


def test_an_entry_that_is_not_a_pair_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        out = sanitize_metadata([("a", "1"), 7, ("b", "2")])  # type: ignore[list-item]
    assert out == [("a", "1"), ("b", "2")]
    (record,) = _records(caplog, logging.WARNING)
    assert record.getMessage().startswith(PREFIX)
    assert record.getMessage().endswith("entry 7: not a pair")  # the culprit, bounded


def test_an_entry_grpc_would_reject_is_dropped_and_logged_with_why(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        out = sanitize_metadata([("x-bin", "text"), ("ok", "1")])
    assert out == [("ok", "1")]
    (record,) = _records(caplog, logging.WARNING)
    assert record.getMessage().startswith(PREFIX)
    assert record.getMessage().endswith(": binary metadata 'x-bin' needs bytes")


def _broken_after_one() -> Iterator[tuple[str, str]]:
    yield ("a", "1")
    raise RuntimeError("metadata source failed")


def test_metadata_that_fails_midway_keeps_what_came_before_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        out = sanitize_metadata(_broken_after_one())
    assert out == [("a", "1")]
    (record,) = _records(caplog, logging.WARNING)
    assert record.getMessage().startswith(PREFIX) and "malformed trailing metadata" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


# -- which received entries are kept ------------------------------------------------------------


def test_received_entries_that_are_not_pairs_are_skipped() -> None:
    assert read_metadata([1, ("k",), ("a", "1"), ("k", "v", "x"), ("b", b"2")]) == (("a", "1"), ("b", b"2"))


def test_a_bytes_key_is_read_as_latin1() -> None:
    got = read_metadata([(b"x-\xe9", "v"), ("b", b"\x00")])
    assert got == (("x-\N{LATIN SMALL LETTER E WITH ACUTE}", "v"), ("b", b"\x00"))


def test_an_entry_needs_a_str_key_and_a_str_or_bytes_value() -> None:
    assert read_metadata([(5, "v"), ("k", 5), ("k", None), ("ok", "v")]) == (("ok", "v"),)


def test_no_metadata_reads_as_none() -> None:
    assert read_metadata(None) == ()


def test_unreadable_metadata_keeps_what_came_before_and_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, LOGGER):
        assert read_metadata(_broken_after_one()) == (("a", "1"),)
        assert read_metadata(42) == ()
    first, second = _records(caplog, logging.DEBUG)
    for record, exc in ((first, RuntimeError), (second, TypeError)):
        assert record.getMessage().startswith(PREFIX)
        assert "unreadable trailing metadata" in record.getMessage()
        assert record.exc_info is not None and isinstance(record.exc_info[1], exc)
