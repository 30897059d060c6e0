"""Translator: what an exception, or a status a handler set itself, becomes, pinned in-process.

The server interceptors call :meth:`Translator.translate` for what a handler
raised and :meth:`Translator.handler_status` for a status the handler set with
``abort``/``abort_with_status``/``set_code``. These tests build the Translator
from a :class:`ServerOptions` as the interceptors do and assert what a peer
would receive (code, message, trailers, the decoded error's fields), what
``on_error`` gets (every :class:`ErrorEvent` field) and what is logged.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from grpc_terminal import ErrorEvent, ServerOptions
from grpc_terminal._decode import decode
from grpc_terminal._encode import TRUNCATION_MARK
from grpc_terminal._trailers import trailer_size
from grpc_terminal._translate import HandlerStatus, Translator, _cut, group_leaves

from fakes import Received

C = grpc.StatusCode
METHOD = "/pkg.Svc/Call"
LOGGER = "test.translate"
DETAILS = gt.STATUS_DETAILS_KEY
Events = list[ErrorEvent]
Logs = pytest.LogCaptureFixture
PUSHBACK = gt.PUSHBACK_KEY


@pytest.fixture
def events() -> list[ErrorEvent]:
    """What ``on_error`` received."""
    return []


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record of the translator's logger (named by ``logger=``)."""
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        yield caplog


def make(events: Events, **options: Any) -> Translator:
    """A Translator reporting to ``events`` and logging to :data:`LOGGER`."""
    return Translator(ServerOptions(on_error=events.append, logger=logging.getLogger(LOGGER), **options))


def lines(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[str]:
    """The rendered messages logged by the translator (at ``level``, when given)."""
    return [
        r.getMessage() for r in caplog.records
        if r.name == LOGGER and (level is None or r.levelno == level)
    ]


def extras(record: logging.LogRecord, *names: str) -> tuple[object, ...]:
    """The ``extra=`` fields ``names`` of a log record."""
    return tuple(getattr(record, name) for name in names)


def rich(code: grpc.StatusCode, *details: Any, message: str = "") -> bytes:
    """A serialized ``google.rpc.Status`` for ``code`` carrying ``details``."""
    packed = []
    for detail in details:
        box = any_pb2.Any()
        box.Pack(detail)
        packed.append(box)
    raw: bytes = status_pb2.Status(code=code.value[0], message=message, details=packed).SerializeToString()
    return raw


def status_of(err: gt.StatusError, **options: Any) -> grpc.Status:
    """What ``abort_with_status(to_status(err))`` hands the context."""
    return gt.to_status(err, options=ServerOptions(**options))


# -- the code a handler's abort/set_code sends ------------------------------------------


@pytest.mark.parametrize(
    ("code", "aio", "sent"),
    [
        (C.NOT_FOUND, False, C.NOT_FOUND),
        (C.NOT_FOUND, True, C.NOT_FOUND),
        (C.OK, False, C.UNKNOWN),  # a failure cannot be OK
        (C.OK, True, C.UNKNOWN),
        (5, True, C.NOT_FOUND),  # the aio server takes an int as the code with that number
        (14, True, C.UNAVAILABLE),
        (16, True, C.UNAUTHENTICATED),
        (5, False, C.UNKNOWN),  # the sync server sends UNKNOWN for anything but a StatusCode
        (0, True, C.UNKNOWN),
        (99, True, C.UNKNOWN),
        (True, True, C.UNKNOWN),  # a bool is not a code number
        ("NOT_FOUND", True, C.UNKNOWN),
        (None, True, C.UNKNOWN),
    ],
)
def test_effective_code(events: Events, code: object, aio: bool, sent: grpc.StatusCode) -> None:
    result = make(events).handler_status(None, METHOD, code, "x", (), aborted=True, aio=aio)
    assert result.code is sent
    assert events[0].code is sent and events[0].sent_code is sent


# -- a status the handler set: what is sent, reported and logged ------------------------


def test_aborted_plain_status_is_sent_unchanged(events: Events, logs: Logs) -> None:
    result = make(events).handler_status(
        None, METHOD, C.NOT_FOUND, "user 7 gone", [("k", "v"), ("b-bin", b"\x00")], aborted=True, aio=False
    )
    assert result == HandlerStatus(C.NOT_FOUND, "user 7 gone", (("k", "v"), ("b-bin", b"\x00")), False, False)
    (event,) = events
    assert (event.method, event.code, event.reason, event.request_id, event.expected) == (
        METHOD, C.NOT_FOUND, "NOT_FOUND", None, True,
    )
    assert type(event.exception) is Exception
    assert (event.terminal, event.retryable, event.masked) == (False, False, False)
    assert event.sent_code is C.NOT_FOUND
    assert lines(logs) == [f"{METHOD} failed: NOT_FOUND NOT_FOUND"]
    (record,) = logs.records
    assert record.levelno == logging.INFO
    assert extras(record, "grpc_method", "grpc_code", "reason") == (METHOD, "NOT_FOUND", "NOT_FOUND")
    assert not hasattr(record, "masked")


def test_status_set_and_returned_is_logged(events: Events, logs: Logs) -> None:
    result = make(events).handler_status(None, METHOD, C.ABORTED, "again", None, aborted=False, aio=False)
    assert result == HandlerStatus(C.ABORTED, "again", (), False, False)
    assert events[0].retryable is True and events[0].code is C.ABORTED
    assert lines(logs, logging.INFO) == [f"{METHOD} failed: ABORTED ABORTED"]


def test_exception_after_set_code_keeps_the_status_and_logs_the_traceback(
    events: Events, logs: Logs
) -> None:
    boom = RuntimeError("late")
    result = make(events).handler_status(boom, METHOD, C.UNAVAILABLE, "busy", (), aborted=False, aio=False)
    assert result == HandlerStatus(C.UNAVAILABLE, "busy", (), False, False)
    (event,) = events
    assert event.exception is boom and event.retryable is True and event.expected is True
    # The warning (with the traceback) is the only record: no "failed" info line.
    (record,) = logs.records
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        f"{METHOD} raised RuntimeError after setting status UNAVAILABLE; keeping that status"
    )
    assert record.exc_info is not None and record.exc_info[1] is boom


def test_exception_with_abort_is_not_warned_about(events: Events, logs: Logs) -> None:
    boom = RuntimeError("abort raised this")
    make(events).handler_status(boom, METHOD, C.INTERNAL, "bad", (), aborted=True, aio=False)
    assert events[0].exception is boom
    assert lines(logs) == [f"{METHOD} failed: INTERNAL INTERNAL"]


def test_reason_and_request_id_come_from_the_handlers_rich_status(events: Events) -> None:
    err = gt.NotFound("gone", error_reason="USER_GONE")
    err.request_info = ed.RequestInfo(request_id="rid-1")
    status = status_of(err)
    result = make(events).handler_status(
        None, METHOD, status.code, status.details, status.trailing_metadata, aborted=True, aio=False
    )
    assert (result.code, result.details, result.masked, result.changed) == (C.NOT_FOUND, "gone", False, False)
    assert result.trailing_metadata == tuple(status.trailing_metadata)
    assert (events[0].reason, events[0].request_id) == ("USER_GONE", "rid-1")


def test_terminal_status_is_reported_terminal(events: Events) -> None:
    status = status_of(gt.terminal_error("LICENSE_EXHAUSTED", "no seats"))
    make(events).handler_status(
        None, METHOD, status.code, status.details, status.trailing_metadata, aborted=True, aio=False
    )
    (event,) = events
    assert (event.code, event.reason, event.terminal, event.retryable) == (
        C.FAILED_PRECONDITION, "LICENSE_EXHAUSTED", True, False,
    )


def test_retryable_is_judged_on_what_is_sent(events: Events) -> None:
    # "-1\n" reads as a negative pushback (not retryable) but is not printable: it is dropped.
    result = make(events).handler_status(
        None, METHOD, C.UNAVAILABLE, "busy", [(PUSHBACK, "-1\n")], aborted=True, aio=False
    )
    assert (result.trailing_metadata, result.changed) == ((), True)
    assert events[0].retryable is True


def test_negative_pushback_kept_is_not_retryable(events: Events) -> None:
    result = make(events).handler_status(
        None, METHOD, C.UNAVAILABLE, "busy", [(PUSHBACK, "-1")], aborted=True, aio=False
    )
    assert result.trailing_metadata == ((PUSHBACK, "-1"),)
    assert events[0].retryable is False


def test_on_error_failure_is_logged_and_ignored(logs: Logs) -> None:
    def hook(event: ErrorEvent) -> None:
        raise ValueError("hook broke")

    translator = Translator(ServerOptions(on_error=hook, logger=logging.getLogger(LOGGER)))
    result = translator.handler_status(None, METHOD, C.NOT_FOUND, "x", (), aborted=True, aio=False)
    assert result.code is C.NOT_FOUND
    assert lines(logs, logging.ERROR) == [f"on_error hook failed: {hook!r}"]


# -- mask_permission_denied on a status the handler set ----------------------------------


def test_masked_handler_status(events: Events, logs: Logs) -> None:
    err = gt.PermissionDenied("alice may not read /secret", error_reason="NOT_OWNER")
    err.request_info = ed.RequestInfo(request_id="rid-9")
    status = status_of(err)
    translator = make(events, mask_permission_denied=True, domain="masked.example")
    result = translator.handler_status(
        None, METHOD, status.code, status.details, [*status.trailing_metadata, ("app", "leak")],
        aborted=True, aio=False,
    )
    assert (result.code, result.details) == (C.NOT_FOUND, "not found")
    assert (result.masked, result.changed) == (True, True)
    assert all(key != "app" for key, _ in result.trailing_metadata)
    sent = decode(result.code, result.details, result.trailing_metadata)
    assert type(sent) is gt.NotFound
    assert sent.request_id == "rid-9"
    assert sent.error_info is not None
    assert (sent.error_info.reason, sent.error_info.domain) == ("NOT_FOUND", "masked.example")
    assert sent.debug_info is None
    (event,) = events
    assert (event.code, event.reason, event.request_id, event.masked, event.sent_code) == (
        C.PERMISSION_DENIED, "NOT_OWNER", "rid-9", True, C.NOT_FOUND,
    )
    assert (event.terminal, event.retryable) == (False, False)
    assert lines(logs) == [f"{METHOD} failed: PERMISSION_DENIED NOT_OWNER (masked: sent as NOT_FOUND)"]
    (record,) = logs.records
    assert extras(record, "grpc_method", "grpc_code", "reason", "masked") == (
        METHOD, "PERMISSION_DENIED", "NOT_OWNER", True,
    )


def test_masked_terminal_status_is_not_reported_terminal(events: Events) -> None:
    status = status_of(gt.terminal_error("OPERATION_NOT_PERMITTED", "read-only"))
    make(events, mask_permission_denied=True).handler_status(
        None, METHOD, status.code, status.details, status.trailing_metadata, aborted=True, aio=False
    )
    (event,) = events
    assert (event.reason, event.terminal, event.masked) == ("OPERATION_NOT_PERMITTED", False, True)


def test_masked_set_code_is_logged_even_after_an_exception(
    events: Events, logs: Logs
) -> None:
    boom = KeyError("k")
    result = make(events, mask_permission_denied=True).handler_status(
        boom, METHOD, C.PERMISSION_DENIED, "no", (), aborted=False, aio=True
    )
    assert (result.code, result.details) == (C.NOT_FOUND, "not found")
    assert events[0].exception is boom and events[0].request_id is None
    assert lines(logs, logging.INFO) == [
        f"{METHOD} failed: PERMISSION_DENIED PERMISSION_DENIED (masked: sent as NOT_FOUND)"
    ]


def test_unmasked_permission_denied_without_the_option(events: Events) -> None:
    result = make(events).handler_status(None, METHOD, C.PERMISSION_DENIED, "no", (), aborted=True, aio=False)
    assert (result.code, result.details, result.masked) == (C.PERMISSION_DENIED, "no", False)


# -- clean: the handler's trailing metadata made sendable --------------------------------


def test_clean_drops_invalid_entries_and_logs_why(events: Events, logs: Logs) -> None:
    metadata: list[Any] = [
        ("ok", "v"),
        ("Bad Key", "v"),
        ("x",),  # not a pair
        (DETAILS, "not bytes"),
        (PUSHBACK, "12"),
        (PUSHBACK, "é"),
        ("data-bin", b"\x01"),
    ]
    details, kept, changed = make(events).clean(C.INTERNAL, "m", metadata)
    assert (details, kept, changed) == ("m", (("ok", "v"), (PUSHBACK, "12"), ("data-bin", b"\x01")), True)
    assert lines(logs, logging.WARNING) == [
        "grpc_terminal: dropping trailing metadata: invalid metadata key 'Bad Key'",
        "grpc_terminal: dropping trailing metadata entry: not a pair",
        f"grpc_terminal: dropping trailing metadata: {DETAILS} needs bytes",
        f"grpc_terminal: dropping trailing metadata: {PUSHBACK} needs a printable ASCII str",
    ]


def test_clean_keeps_a_well_formed_details_trailer(events: Events) -> None:
    raw = rich(C.INTERNAL)
    assert make(events).clean(C.INTERNAL, "m", [(DETAILS, raw)]) == ("m", ((DETAILS, raw),), False)


def test_clean_drops_unreadable_metadata(events: Events, logs: Logs) -> None:
    assert make(events).clean(C.INTERNAL, "m", 42) == ("m", (), True)
    assert lines(logs, logging.WARNING) == ["grpc_terminal: dropping unreadable trailing metadata: int"]


def test_clean_without_fit_leaves_an_oversized_status(events: Events) -> None:
    big = [("big", "x" * 2000)]
    translator = make(events, budget=1024)
    assert translator.clean(C.OK, "m", big, fit=False) == ("m", (("big", "x" * 2000),), False)
    assert translator.clean(C.OK, "m", big)[1] == ()


# -- fitting a handler's status into the budget ------------------------------------------


def fits(code: grpc.StatusCode, message: str, metadata: Any, budget: int) -> bool:
    return trailer_size(code, message, tuple(metadata)) <= budget


def test_status_exactly_at_the_budget_is_left_alone(events: Events) -> None:
    base = trailer_size(C.NOT_FOUND, "m", (("k", ""),))
    value = "v" * (1024 - base)
    assert trailer_size(C.NOT_FOUND, "m", (("k", value),)) == 1024
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.NOT_FOUND, "m", [("k", value)], aborted=True, aio=False
    )
    assert (result.trailing_metadata, result.changed) == ((("k", value),), False)
    over = make(events, budget=1024).handler_status(
        None, METHOD, C.NOT_FOUND, "m", [("k", value + "v")], aborted=True, aio=False
    )
    assert (over.trailing_metadata, over.changed) == ((), True)


def test_largest_application_entries_go_first(events: Events, logs: Logs) -> None:
    metadata = [("small", "s" * 10), ("big", "b" * 500), ("mid", "m" * 300), (PUSHBACK, "250")]
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.NOT_FOUND, "gone", metadata, aborted=True, aio=False
    )
    assert result == HandlerStatus(
        C.NOT_FOUND, "gone", (("small", "s" * 10), ("mid", "m" * 300), (PUSHBACK, "250")), False, True
    )
    original = trailer_size(C.NOT_FOUND, "gone", tuple(metadata))
    assert lines(logs, logging.WARNING) == [
        f"grpc_terminal: the NOT_FOUND status set by the handler needs {original} bytes, over the "
        "1024-byte trailer budget; dropped 1 trailing metadata entries"
    ]


def test_entries_are_dropped_until_the_rest_fits(events: Events) -> None:
    metadata = [("a", "a" * 400), ("b", "b" * 390), ("c", "c" * 380), ("d", "d" * 20)]
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.INTERNAL, "m", metadata, aborted=True, aio=False
    )
    assert result.trailing_metadata == (("c", "c" * 380), ("d", "d" * 20))
    assert result.details == "m"


def best_cut(code: grpc.StatusCode, details: str, metadata: Any, budget: int) -> str:
    """The longest ``_cut`` of ``details`` that fits (the search done the slow way)."""
    for limit in range(len(details.encode("utf-8", "replace")), -1, -1):
        if fits(code, _cut(details, limit), metadata, budget):
            return _cut(details, limit)
    raise AssertionError("nothing fits")


@pytest.mark.parametrize("details", ["x" * 3000, "é" * 500 + "tail", "%" * 400 + "y" * 1000])
def test_message_is_cut_to_the_longest_that_fits(
    events: Events, logs: Logs, details: str
) -> None:
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.INTERNAL, details, [("app", "a" * 50), (PUSHBACK, "5")], aborted=True, aio=False
    )
    assert result.trailing_metadata == ((PUSHBACK, "5"),)
    assert result.details == best_cut(C.INTERNAL, details, ((PUSHBACK, "5"),), 1024)
    assert result.details.endswith(TRUNCATION_MARK)
    assert fits(C.INTERNAL, result.details, result.trailing_metadata, 1024)
    assert lines(logs, logging.WARNING)[0].endswith(
        "trailer budget; dropped 1 trailing metadata entries and cut the message"
    )


def test_message_cut_without_metadata(events: Events) -> None:
    details = "z" * 1200
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.ABORTED, details, (), aborted=True, aio=False
    )
    assert result.details == best_cut(C.ABORTED, details, (), 1024)
    assert trailer_size(C.ABORTED, result.details, ()) == 1024  # a plain ASCII text fills the budget
    assert result.changed is True


def test_oversized_rich_status_is_fitted_like_ours(events: Events, logs: Logs) -> None:
    huge = ed.DebugInfo(detail="d" * 3000)
    words = ed.LocalizedMessage(locale="en-US", message="w" * 100)
    raw = rich(C.UNAVAILABLE, ed.ErrorInfo(reason="DOWN"), huge, words, message="down")
    metadata = [(DETAILS, raw), ("app", "keep me"), (PUSHBACK, "100")]
    result = make(events, budget=1024, domain="fit.example").handler_status(
        None, METHOD, C.UNAVAILABLE, "down", metadata, aborted=True, aio=False
    )
    assert (result.code, result.details, result.changed) == (C.UNAVAILABLE, "down", True)
    assert fits(C.UNAVAILABLE, result.details, result.trailing_metadata, 1024)
    assert result.trailing_metadata[0] == ("app", "keep me")
    assert [k for k, _ in result.trailing_metadata] == ["app", DETAILS]  # no RetryInfo: no pushback
    sent = decode(result.code, result.details, result.trailing_metadata)
    assert sent.debug_info is None  # debug is off: DebugInfo is not sent (and nothing was cut)
    assert sent.localized_message == words
    assert sent.error_info is not None
    assert (sent.error_info.reason, sent.error_info.domain) == ("DOWN", "fit.example")
    assert dict(sent.error_info.metadata) == {}
    assert lines(logs, logging.WARNING) == []
    assert (events[0].reason, events[0].retryable) == ("DOWN", True)


def test_oversized_rich_status_in_debug_mode_cuts_the_debug_info(events: Events) -> None:
    raw = rich(C.INTERNAL, ed.ErrorInfo(reason="BAD"), ed.DebugInfo(detail="d" * 3000))
    result = make(events, budget=1024, debug=True).handler_status(
        None, METHOD, C.INTERNAL, "bad", [(DETAILS, raw)], aborted=True, aio=False
    )
    sent = decode(result.code, result.details, result.trailing_metadata)
    assert sent.debug_info is None
    assert sent.error_info is not None
    assert dict(sent.error_info.metadata) == {"grpcTerminalTruncated": "true"}  # something was cut
    assert fits(C.INTERNAL, result.details, result.trailing_metadata, 1024)


def test_details_trailer_of_another_code_is_dropped_when_over_budget(
    events: Events, logs: Logs
) -> None:
    raw = rich(C.INTERNAL, ed.DebugInfo(detail="d" * 2000))
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.NOT_FOUND, "m", [(DETAILS, raw), ("app", "a")], aborted=True, aio=False
    )
    # Not a rich status for NOT_FOUND (a client ignores it): it goes, application entries stay.
    assert (result.details, result.trailing_metadata, result.changed) == ("m", (("app", "a"),), True)
    assert lines(logs, logging.WARNING)[0].endswith("budget; dropped 0 trailing metadata entries")


# -- _cut: a message cut to a byte length, with the marker -------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "cut"),
    [
        ("hello", 5, "hello"),
        ("hello", 100, "hello"),
        ("a" * 20, 19, "a" * 5 + TRUNCATION_MARK),
        ("a" * 20, 14, TRUNCATION_MARK),
        ("a" * 20, 3, TRUNCATION_MARK),
        ("a" * 20, 0, TRUNCATION_MARK),
        ("é" * 20, 17, "é" + TRUNCATION_MARK),  # 3 bytes kept: half a character dropped
        ("é" * 20, 18, "éé" + TRUNCATION_MARK),
        ("\ud800" * 20, 16, "??" + TRUNCATION_MARK),  # an unencodable character counts as "?"
        ("\ud800" * 3, 3, "\ud800" * 3),
    ],
    ids=lambda value: None if isinstance(value, int) else "text",
)
def test_cut(text: str, limit: int, cut: str) -> None:
    assert _cut(text, limit) == cut


# -- relaying a failure received downstream -----------------------------------------------


def test_transport_code_with_a_peer_status_is_relayed(events: Events) -> None:
    raw = rich(C.UNAVAILABLE, ed.ErrorInfo(reason="PEER_DOWN", domain="peer"))
    received = Received(C.UNAVAILABLE, "peer is draining", [(DETAILS, raw)])
    err, expected = make(events).resolve(received, METHOD)
    assert (err.code(), err.details(), expected) == (C.UNAVAILABLE, "peer is draining", True)
    assert err.request_id is None


def test_transport_code_with_a_mismatched_status_is_replaced(
    events: Events, logs: Logs
) -> None:
    raw = rich(C.INTERNAL, ed.ErrorInfo(reason="X", domain="peer"))
    received = Received(C.UNAVAILABLE, "connect to 10.0.0.1:443 failed", [(DETAILS, raw)])
    err, expected = make(events).resolve(received, METHOD)
    assert (err.code(), err.details(), expected) == (C.UNAVAILABLE, "upstream call failed: UNAVAILABLE", True)
    assert err.request_id is not None and len(err.request_id) == 32
    (line,) = lines(logs, logging.WARNING)
    assert "10.0.0.1" in line and err.request_id in line


class _Unreadable(gt.Unavailable):
    """A received error whose trailers cannot be read."""

    def trailing_metadata(self) -> Any:
        raise RuntimeError("unreadable")


def test_unreadable_trailers_are_no_peer_status(events: Events) -> None:
    received = _Unreadable("dns failed for internal.host")
    vars(received)["_received"] = True  # as decode builds it
    err, _ = make(events).resolve(received, METHOD)
    assert (err.code(), err.details()) == (C.UNAVAILABLE, "upstream call failed: UNAVAILABLE")


# -- resolve: the error to send and whether it was expected ----------------------------


def test_resolve_mapped_and_unexpected(events: Events, logs: Logs) -> None:
    translator = make(events, errors={KeyError: gt.NotFound})
    err, expected = translator.resolve(KeyError("alice"), METHOD)
    assert (type(err), err.details(), expected) == (gt.NotFound, "alice", True)
    err, expected = translator.resolve(ValueError("secret"), METHOD)
    assert (type(err), expected) == (gt.Unknown, False)
    assert "secret" not in err.details()
    assert events == []  # resolve reports nothing


def test_resolve_masks(events: Events) -> None:
    translator = make(events, mask_permission_denied=True)
    err, expected = translator.resolve(gt.PermissionDenied("no"), METHOD)
    assert (type(err), err.details(), expected) == (gt.NotFound, "not found", True)


# -- translate: an unexpected exception ----------------------------------------------------


def test_unexpected_exception_is_sent_generic_with_a_request_id(events: Events, logs: Logs) -> None:
    boom = ValueError("db password is hunter2")
    encoded = make(events).translate(boom, METHOD, [("app", "v")])
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    rid = sent.request_id
    assert rid is not None and re.fullmatch("[0-9a-f]{32}", rid)
    assert (encoded.code, encoded.message) == (C.UNKNOWN, f"unexpected server error (request id {rid})")
    assert encoded.trailing_metadata[0] == ("app", "v")
    assert sent.debug_info is None
    (event,) = events
    assert (event.method, event.code, event.reason, event.request_id, event.expected) == (
        METHOD, C.UNKNOWN, "UNKNOWN", rid, False,
    )
    assert event.exception is boom
    assert (event.terminal, event.retryable, event.masked) == (False, True, False)
    (record,) = logs.records  # no "failed" info line for an unexpected error
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"unexpected error in {METHOD} (request id {rid})"
    assert record.exc_info is not None and record.exc_info[1] is boom
    assert extras(record, "grpc_method", "request_id") == (METHOD, rid)
    # the fields every failure's log record has (a log metric keyed on them sees this one too)
    assert extras(record, "grpc_code", "reason") == ("UNKNOWN", "UNKNOWN")


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as a handler raises it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


class _BadStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


@pytest.mark.parametrize(
    ("exc", "detail"),
    [(ValueError("boom"), "ValueError: boom"), (_BadStr(), "_BadStr: _BadStr")],
    ids=["str", "broken-str"],
)
def test_debug_mode_sends_the_traceback(events: Events, logs: Logs, exc: BaseException, detail: str) -> None:
    exc = raised(exc)
    translator = make(events, debug=True)
    assert lines(logs, logging.WARNING) == [
        "grpc_terminal: DEBUG MODE IS ON: tracebacks of unexpected errors are sent to clients as DebugInfo. "
        "Never enable this in production."
    ]
    encoded = translator.translate(exc, METHOD)
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert sent.debug_info is not None
    assert sent.debug_info.detail == detail
    stack = traceback.format_exception(type(exc), exc, exc.__traceback__)
    assert list(sent.debug_info.stack_entries) == stack


def test_default_logger_and_no_hook(caplog: Logs) -> None:
    with caplog.at_level(logging.INFO, logger="grpc_terminal.server"):
        Translator().translate(gt.NotFound("x"), METHOD)
        Translator(ServerOptions(debug=False)).translate(gt.NotFound("y"), METHOD)
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("grpc_terminal.server", f"{METHOD} failed: NOT_FOUND NOT_FOUND")
    ] * 2


# -- translate: expected exceptions -----------------------------------------------------


def test_raised_status_error_is_sent_with_the_handlers_metadata(events: Events, logs: Logs) -> None:
    err = gt.Unavailable("try later", retry_delay=2, error_reason="DRAINING")
    encoded = make(events, domain="d.example").translate(err, METHOD, [("app", "v"), ("Bad", "x")])
    assert (encoded.code, encoded.message) == (C.UNAVAILABLE, "try later")
    assert encoded.trailing_metadata[0] == ("app", "v")
    assert (PUSHBACK, "2000") in encoded.trailing_metadata
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert sent.error_info is not None and sent.error_info.domain == "d.example"
    (event,) = events
    assert (event.code, event.reason, event.request_id, event.expected, event.exception) == (
        C.UNAVAILABLE, "DRAINING", None, True, err,
    )
    assert (event.terminal, event.retryable, event.masked) == (False, True, False)
    assert event.sent_code is C.UNAVAILABLE
    assert lines(logs, logging.INFO) == [f"{METHOD} failed: UNAVAILABLE DRAINING"]
    (info,) = [r for r in logs.records if r.levelno == logging.INFO]
    assert extras(info, "grpc_method", "grpc_code", "reason") == (METHOD, "UNAVAILABLE", "DRAINING")


def test_terminal_error_event(events: Events) -> None:
    make(events).translate(gt.terminal_error("USER_NOT_PROVISIONABLE", "suspended"), METHOD)
    (event,) = events
    assert (event.code, event.reason, event.terminal, event.retryable) == (
        C.FAILED_PRECONDITION, "USER_NOT_PROVISIONABLE", True, False,
    )


class Upstream(Exception):
    """A connector's own exception."""


class Custom(Upstream):
    def __str__(self) -> str:
        return "custom text"


@pytest.mark.parametrize(
    ("exc", "sent"),
    [
        (KeyError("alice"), (C.NOT_FOUND, "alice")),  # one str argument: itself, not its repr
        (KeyError(7), (C.NOT_FOUND, "7")),
        (KeyError("a", "b"), (C.NOT_FOUND, "('a', 'b')")),
        (IndexError("i"), (C.INVALID_ARGUMENT, "i")),  # LookupError's entry
        (Custom("ignored"), (C.UNAVAILABLE, "custom text")),  # its own __str__
        (Upstream("down"), (C.UNAVAILABLE, "down")),
    ],
)
def test_mapped_exceptions(events: Events, exc: BaseException, sent: tuple[grpc.StatusCode, str]) -> None:
    mapping = {LookupError: gt.InvalidArgument, KeyError: gt.NotFound, Upstream: gt.Unavailable}
    translator = make(events, errors=mapping)
    encoded = translator.translate(exc, METHOD)
    assert (encoded.code, encoded.message) == sent
    assert events[0].expected is True


def test_mapping_function_gets_the_exception(events: Events) -> None:
    def seats(exc: Upstream) -> gt.StatusError:
        return gt.terminal_error("LICENSE_EXHAUSTED", "seats: %s", exc)

    encoded = make(events, errors={Upstream: seats}).translate(Upstream("0 left"), METHOD)
    assert (encoded.code, encoded.message) == (C.FAILED_PRECONDITION, "seats: 0 left")
    assert events[0].terminal is True


def test_failed_mapping_is_logged_and_the_exception_unexpected(events: Events, logs: Logs) -> None:
    def wrong(exc: Upstream) -> Any:
        return "not an error"

    encoded = make(events, errors={Upstream: wrong}).translate(Upstream("x"), METHOD)
    assert encoded.code is C.UNKNOWN and events[0].expected is False
    failure = [r for r in logs.records if r.getMessage() == f"error mapping failed for Upstream in {METHOD}"]
    assert len(failure) == 1 and failure[0].levelno == logging.ERROR
    assert failure[0].exc_info is not None
    assert str(failure[0].exc_info[1]) == "error mapping for Upstream returned str, not a StatusError"


# -- translate: relayed failures ---------------------------------------------------------


def test_plain_peer_failure_is_relayed_without_its_trailers(events: Events, logs: Logs) -> None:
    received = Received(C.NOT_FOUND, "no such user", [("peer-secret", "s")])
    encoded = make(events).translate(received, METHOD)
    assert (encoded.code, encoded.message) == (C.NOT_FOUND, "no such user")
    assert all(key != "peer-secret" for key, _ in encoded.trailing_metadata)
    assert lines(logs, logging.WARNING) == []
    assert events[0].expected is True


def test_downstream_unauthenticated_becomes_internal(events: Events, logs: Logs) -> None:
    received = Received(C.UNAUTHENTICATED, "token expired for svc-account")
    encoded = make(events).translate(received, METHOD)
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    rid = sent.request_id
    assert (encoded.code, encoded.message) == (C.INTERNAL, "upstream rejected this server's credentials")
    assert rid is not None and re.fullmatch("[0-9a-f]{32}", rid)
    (warning,) = [r for r in logs.records if r.levelno == logging.WARNING]
    assert warning.getMessage() == (
        f"{METHOD}: a downstream call failed with UNAUTHENTICATED 'token expired for svc-account'; "
        f"sent as INTERNAL (request id {rid})"
    )
    assert extras(warning, "grpc_method", "request_id") == (METHOD, rid)
    assert (events[0].code, events[0].request_id, events[0].expected) == (C.INTERNAL, rid, True)


def test_transport_failure_message_is_replaced(events: Events) -> None:
    encoded = make(events).translate(Received(C.DEADLINE_EXCEEDED, "10.1.2.3 timed out"), METHOD)
    assert (encoded.code, encoded.message) == (C.DEADLINE_EXCEEDED, "upstream call failed: DEADLINE_EXCEEDED")


def test_received_status_error_is_relayed_by_the_same_rule(events: Events) -> None:
    received = gt.from_rpc_error(Received(C.UNAVAILABLE, "dial tcp 10.0.0.9"))
    encoded = make(events).translate(received, METHOD)
    assert encoded.message == "upstream call failed: UNAVAILABLE"
    own = make(events).translate(gt.Unavailable("dial tcp 10.0.0.9"), METHOD)
    assert own.message == "dial tcp 10.0.0.9"  # raised here: sent as it is


# -- translate: mask_permission_denied ---------------------------------------------------


def test_masked_translate(events: Events, logs: Logs) -> None:
    err = gt.PermissionDenied("bob may not", error_reason="NOT_OWNER")
    err.request_info = ed.RequestInfo(request_id="rid-3")
    encoded = make(events, mask_permission_denied=True).translate(err, METHOD, [("app", "v")])
    assert (encoded.code, encoded.message) == (C.NOT_FOUND, "not found")
    assert all(key != "app" for key, _ in encoded.trailing_metadata)
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert sent.request_id == "rid-3"
    (event,) = events
    assert (event.code, event.reason, event.request_id, event.masked, event.sent_code) == (
        C.PERMISSION_DENIED, "NOT_OWNER", "rid-3", True, C.NOT_FOUND,
    )
    assert lines(logs, logging.INFO) == [
        f"{METHOD} failed: PERMISSION_DENIED NOT_OWNER (masked: sent as NOT_FOUND)"
    ]


def test_masked_without_request_id_sends_none(events: Events) -> None:
    encoded = make(events, mask_permission_denied=True).translate(gt.PermissionDenied("x"), METHOD)
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert sent.request_id is None and sent.request_info is None
    assert events[0].request_id is None


def test_unmasked_permission_denied_keeps_metadata(events: Events) -> None:
    encoded = make(events).translate(gt.PermissionDenied("x"), METHOD, [("app", "v")])
    assert (encoded.code, encoded.message) == (C.PERMISSION_DENIED, "x")
    assert encoded.trailing_metadata[0] == ("app", "v")


class _NoFailureDetail(gt.NotFound):
    """A broken subclass: reading its failure detail raises."""

    @property
    def failure_detail(self) -> Any:
        raise RuntimeError("broken")


@pytest.mark.parametrize(("hook", "level", "described"), [
    (False, logging.WARNING, False),  # nobody reads the event: it is not built
    (False, logging.INFO, True),  # the INFO line reads it
    (True, logging.WARNING, True),  # the hook reads it
])
def test_the_event_is_built_only_when_someone_reads_it(
    caplog: pytest.LogCaptureFixture, hook: bool, level: int, described: bool
) -> None:
    # Describing _NoFailureDetail fails with a warning: the warning shows the event was built.
    seen: list[gt.ErrorEvent] = []
    options = ServerOptions(on_error=seen.append if hook else None, logger=logging.getLogger(LOGGER))
    with caplog.at_level(level, logger=LOGGER):
        encoded = Translator(options).translate(_NoFailureDetail("gone"), METHOD)
    assert (encoded.code, encoded.message) == (C.NOT_FOUND, "gone")
    assert (f"cannot describe the NOT_FOUND sent by {METHOD}" in lines(caplog)) is described
    assert len(seen) == int(hook)


def test_a_set_status_is_described_only_when_someone_reads_it(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[gt.ErrorEvent] = []
    quiet = Translator(ServerOptions(logger=logging.getLogger(LOGGER)))
    hooked = Translator(ServerOptions(on_error=seen.append, logger=logging.getLogger(LOGGER)))
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for translator in (quiet, hooked):
            result = translator.handler_status(None, METHOD, C.NOT_FOUND, "x", (), aborted=True, aio=False)
            assert (result.code, result.details) == (C.NOT_FOUND, "x")
    assert [(e.code, e.reason) for e in seen] == [(C.NOT_FOUND, "NOT_FOUND")]
    with caplog.at_level(logging.INFO, logger=LOGGER):
        quiet.handler_status(None, METHOD, C.NOT_FOUND, "x", (), aborted=True, aio=False)
    assert lines(caplog, logging.INFO) == [f"{METHOD} failed: NOT_FOUND NOT_FOUND"]


def test_undescribable_error_is_still_sent_and_reported(events: Events, logs: Logs) -> None:
    err = _NoFailureDetail("gone")
    encoded = make(events).translate(err, METHOD)
    assert (encoded.code, encoded.message) == (C.NOT_FOUND, "gone")
    (event,) = events
    assert (event.method, event.code, event.reason, event.request_id, event.expected, event.exception) == (
        METHOD, C.NOT_FOUND, "NOT_FOUND", None, True, err,
    )
    warnings = [r for r in logs.records if r.levelno == logging.WARNING]
    assert [r.getMessage() for r in warnings] == [
        "grpc_terminal: _NoFailureDetail.failure_detail is unreadable; not sent",  # the encoder's
        f"cannot describe the NOT_FOUND sent by {METHOD}",
    ]
    exc_info = warnings[1].exc_info
    assert exc_info and exc_info[0] is RuntimeError  # the traceback of what broke
    assert lines(logs, logging.INFO) == [f"{METHOD} failed: NOT_FOUND NOT_FOUND"]


# -- exception groups: the member that matters most ---------------------------------------


def sent_for(translator: Translator, exc: BaseException) -> tuple[grpc.StatusCode, str]:
    encoded = translator.translate(exc, METHOD)
    return encoded.code, encoded.message


def group_logs(logs: Logs) -> list[logging.LogRecord]:
    return [r for r in logs.records if "exception group" in r.getMessage()]


def test_group_sends_its_status_member_and_logs_the_unexpected_ones(events: Events, logs: Logs) -> None:
    group = ExceptionGroup("g", [ValueError("v"), gt.NotFound("x"), TypeError("t")])
    assert sent_for(make(events), group) == (C.NOT_FOUND, "x")
    (record,) = group_logs(logs)
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        f"2 unexpected error(s) in an exception group raised by {METHOD}; the group is sent as NotFound"
    )
    assert record.exc_info is not None and record.exc_info[1] is group
    assert extras(record, "grpc_method") == (METHOD,)
    assert (events[0].expected, events[0].exception) == (True, group)


def test_group_without_unexpected_members_logs_nothing(events: Events, logs: Logs) -> None:
    assert sent_for(make(events), ExceptionGroup("g", [gt.NotFound("x")])) == (C.NOT_FOUND, "x")
    assert group_logs(logs) == []


@pytest.mark.parametrize(
    ("members", "sent"),
    [
        # a terminal member first, wherever it is
        (
            [
                gt.NotFound("a"),
                gt.terminal_error("LICENSE_EXHAUSTED", "t1"),
                gt.terminal_error("LICENSE_EXHAUSTED", "t2"),
            ],
            (C.FAILED_PRECONDITION, "t1"),
        ),
        # then a StatusError (or relayed failure) over a mapped exception
        ([KeyError("k"), gt.Aborted("a")], (C.ABORTED, "a")),
        ([KeyError("k"), Received(C.NOT_FOUND, "relayed")], (C.NOT_FOUND, "relayed")),
        # the first one on ties
        ([gt.NotFound("1"), gt.Aborted("2")], (C.NOT_FOUND, "1")),
        # the mapped member whose mapped class is the deepest; the first on ties
        ([IndexError("i"), KeyError("k")], (C.NOT_FOUND, "k")),
        ([KeyError("k"), IndexError("i")], (C.NOT_FOUND, "k")),
        ([IndexError("i1"), IndexError("i2")], (C.INVALID_ARGUMENT, "i1")),
        # nested groups are searched
        (
            [ValueError("v"), ExceptionGroup("inner", [ValueError("w"), gt.Aborted("deep")])],
            (C.ABORTED, "deep"),
        ),
    ],
)
def test_group_member_precedence(
    events: Events, members: list[Exception], sent: tuple[grpc.StatusCode, str]
) -> None:
    translator = make(events, errors={LookupError: gt.InvalidArgument, KeyError: gt.NotFound})
    assert sent_for(translator, ExceptionGroup("g", members)) == sent


def test_base_exception_group_members(events: Events) -> None:
    group = BaseExceptionGroup("g", [KeyboardInterrupt(), gt.NotFound("x")])
    assert sent_for(make(events), group) == (C.NOT_FOUND, "x")


def test_each_member_is_looked_at_once(events: Events, logs: Logs) -> None:
    twice = ValueError("twice")
    inner = ExceptionGroup("inner", [twice])
    group = ExceptionGroup("g", [twice, inner, inner, gt.NotFound("x")])
    assert sent_for(make(events), group) == (C.NOT_FOUND, "x")
    assert group_logs(logs)[0].getMessage().startswith("1 unexpected error(s)")


def test_group_leaves_depth_first_in_order() -> None:
    a, b, c, d = ValueError("a"), KeyError("b"), TypeError("c"), OSError("d")
    group = ExceptionGroup("g", [a, ExceptionGroup("h", [b, ExceptionGroup("i", [c])]), d, a])
    assert list(group_leaves(group)) == [a, b, c, d]


class Batch(ExceptionGroup[Exception]):
    """An application's own group class."""


def test_group_class_is_looked_up_when_no_member_is_expected(events: Events, logs: Logs) -> None:
    group = Batch("batch failed", [ValueError("v")])
    assert sent_for(make(events, errors={Batch: gt.Aborted}), group) == (C.ABORTED, str(group))
    assert group_logs(logs) == []
    assert events[0].expected is True


def test_group_with_nothing_expected_is_unexpected(events: Events, logs: Logs) -> None:
    code, message = sent_for(make(events), ExceptionGroup("g", [ValueError("v")]))
    assert code is C.UNKNOWN and message.startswith("unexpected server error")
    assert events[0].expected is False


def test_failed_mapping_of_the_group_class_is_logged(events: Events, logs: Logs) -> None:
    def broken(exc: Batch) -> gt.StatusError:
        raise RuntimeError("mapping bug")

    code, _ = sent_for(make(events, errors={Batch: broken}), Batch("b", [ValueError("v")]))
    assert code is C.UNKNOWN
    (record,) = [r for r in logs.records if r.getMessage() == f"error mapping failed for Batch in {METHOD}"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None and str(record.exc_info[1]) == "mapping bug"


def test_failed_mapping_of_a_member_counts_as_unexpected(events: Events, logs: Logs) -> None:
    def broken(exc: Upstream) -> gt.StatusError:
        raise RuntimeError("mapping bug")

    group = ExceptionGroup("g", [Upstream("u"), gt.NotFound("x")])
    assert sent_for(make(events, errors={Upstream: broken}), group) == (C.NOT_FOUND, "x")
    assert [r.getMessage() for r in logs.records if r.levelno == logging.ERROR] == [
        f"error mapping failed for Upstream in {METHOD}",
        f"1 unexpected error(s) in an exception group raised by {METHOD}; the group is sent as NotFound",
    ]


class _Hostile(ExceptionGroup[Exception]):
    """A group whose members cannot be read."""

    @property
    def exceptions(self) -> Any:
        raise RuntimeError("no members")


def test_group_whose_members_cannot_be_read(events: Events) -> None:
    group = _Hostile("h", [gt.NotFound("x")])
    assert list(group_leaves(group)) == []
    assert sent_for(make(events, errors={_Hostile: gt.Aborted}), group)[0] is C.ABORTED


def test_broken_terminal_check_does_not_win(events: Events) -> None:
    group = ExceptionGroup("g", [_NoFailureDetail("broken"), gt.terminal_error("LICENSE_EXHAUSTED", "t")])
    assert sent_for(make(events), group) == (C.FAILED_PRECONDITION, "t")


# -- small helpers seen from outside: messages and request ids -----------------------------


class _NoArgs(Exception):
    @property
    def args(self) -> Any:  # type: ignore[override]
        raise RuntimeError("no args")


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (_BadStr("x"), "_BadStr"),  # str() raises: the class name
        (_NoArgs("y"), "y"),  # args unreadable: str()
        (OSError("disk"), "disk"),
        (Upstream(""), ""),
    ],
)
def test_mapped_message(events: Events, exc: BaseException, message: str) -> None:
    translator = make(events, errors={Exception: gt.Aborted})
    assert sent_for(translator, exc) == (C.ABORTED, message)


class _BadRequestId(gt.PermissionDenied):
    @property
    def request_id(self) -> Any:
        raise RuntimeError("broken")


class _OddRequestId(gt.PermissionDenied):
    @property
    def request_id(self) -> Any:
        return 42


@pytest.mark.parametrize("err", [_BadRequestId("a"), _OddRequestId("b")])
def test_masked_error_with_an_unusable_request_id(events: Events, err: gt.StatusError) -> None:
    encoded = make(events, mask_permission_denied=True).translate(err, METHOD)
    sent = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert (sent.code(), sent.request_info) == (C.NOT_FOUND, None)
    assert events[0].request_id is None


def test_masked_error_with_an_empty_request_id(events: Events) -> None:
    err = gt.PermissionDenied("a")
    err.request_info = ed.RequestInfo(request_id="")
    encoded = make(events, mask_permission_denied=True).translate(err, METHOD)
    assert decode(encoded.code, encoded.message, encoded.trailing_metadata).request_info is None


# -- details a log handler or on_error can see ----------------------------------------------


def test_log_records_carry_the_exception_triple(events: Events, logs: Logs) -> None:
    boom = raised(ValueError("v"))
    make(events).translate(boom, METHOD)
    group = raised(ExceptionGroup("g", [TypeError("t"), gt.NotFound("x")]))
    make(events).translate(group, METHOD)
    late = raised(RuntimeError("late"))
    make(events).handler_status(late, METHOD, C.ABORTED, "a", (), aborted=False, aio=False)
    triples = [r.exc_info for r in logs.records if r.exc_info]
    assert triples == [
        (ValueError, boom, boom.__traceback__),
        (ExceptionGroup, group, group.__traceback__),
        (RuntimeError, late, late.__traceback__),
    ]


def test_resolve_logs_under_the_method(events: Events, logs: Logs) -> None:
    err, _ = make(events).resolve(ValueError("v"), METHOD)
    assert lines(logs, logging.ERROR) == [f"unexpected error in {METHOD} (request id {err.request_id})"]


def test_clean_reports_a_dropped_non_pair_as_a_change(events: Events) -> None:
    assert make(events).clean(C.INTERNAL, "m", [("ok", "v"), ("lonely",)]) == ("m", (("ok", "v"),), True)


def test_oversized_rich_status_is_fitted_into_our_budget(events: Events) -> None:
    raw = rich(C.NOT_FOUND, ed.ErrorInfo(reason="GONE"), ed.LocalizedMessage(locale="en", message="w" * 2000))
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.NOT_FOUND, "gone", [(DETAILS, raw)], aborted=True, aio=False
    )
    assert fits(C.NOT_FOUND, result.details, result.trailing_metadata, 1024)
    sent = decode(result.code, result.details, result.trailing_metadata)
    assert (sent.code(), sent.message, sent.localized_message) == (C.NOT_FOUND, "gone", None)
    assert sent.error_info is not None and sent.error_info.reason == "GONE"


def test_entries_stop_going_once_the_rest_is_exactly_at_the_budget(events: Events) -> None:
    base = trailer_size(C.INTERNAL, "m", ())
    keep = ("k", "v" * (1024 - base - 33))  # an entry costs its key, its value and 32 bytes
    assert trailer_size(C.INTERNAL, "m", (keep,)) == 1024
    result = make(events, budget=1024).handler_status(
        None, METHOD, C.INTERNAL, "m", [keep, ("big", "b" * 800)], aborted=True, aio=False
    )
    assert (result.details, result.trailing_metadata) == ("m", (keep,))


def test_masked_status_is_fitted_into_the_budget(events: Events) -> None:
    err = gt.PermissionDenied("no")
    err.request_info = ed.RequestInfo(request_id="r" * 3000)
    status = status_of(err, budget=8192)
    result = make(events, budget=1024, mask_permission_denied=True).handler_status(
        None, METHOD, status.code, status.details, status.trailing_metadata, aborted=True, aio=False
    )
    assert result.code is C.NOT_FOUND
    assert fits(result.code, result.details, result.trailing_metadata, 1024)


def test_client_side_metadata_limit_status_is_not_retryable(events: Events) -> None:
    message = "received trailing metadata size exceeds limit"
    make(events).handler_status(None, METHOD, C.RESOURCE_EXHAUSTED, message, (), aborted=True, aio=False)
    make(events).handler_status(None, METHOD, C.RESOURCE_EXHAUSTED, "quota", (), aborted=True, aio=False)
    assert [e.retryable for e in events] == [False, True]


class _Uninitialised(gt.NotFound):
    """A subclass that skips StatusError.__init__ (it has no code to send)."""

    def __init__(self) -> None:
        pass


def test_raised_status_error_is_never_taken_for_a_mapping_failure(events: Events, logs: Logs) -> None:
    encoded = make(events).translate(_Uninitialised(), METHOD)
    assert encoded.code is C.UNKNOWN
    assert not encoded.message.startswith("unexpected server error")
    assert events[0].expected is True
    assert not any("error mapping failed" in line for line in lines(logs))


def test_translate_fits_into_the_configured_budget(events: Events) -> None:
    err = gt.NotFound("gone", localized_message="w" * 2000)
    encoded = make(events, budget=1024).translate(err, METHOD)
    assert encoded.size() <= 1024
    assert decode(encoded.code, encoded.message, encoded.trailing_metadata).localized_message is None


# -- the reason reported: the ProvisionFailureDetail's wins over the ErrorInfo's ---------


def test_failure_detail_reason_wins_over_the_error_info_reason(events: Events) -> None:
    # A peer's rich status may carry both; ErrorEvent.reason is documented as the
    # ProvisionFailureDetail reason first, the ErrorInfo reason only without one.
    pfd = gt.terminal_error("USER_NOT_PROVISIONABLE", "suspended").failure_detail
    raw = rich(C.FAILED_PRECONDITION, pfd, ed.ErrorInfo(reason="PEER_SAYS_OTHER", domain="peer"))
    make(events).handler_status(
        None, METHOD, C.FAILED_PRECONDITION, "suspended", [(DETAILS, raw)], aborted=True, aio=False
    )
    (event,) = events
    assert (event.code, event.reason, event.terminal) == (
        C.FAILED_PRECONDITION, "USER_NOT_PROVISIONABLE", True,
    )
