"""The encoder (``grpc_terminal._encode``), in process: what the server sends and logs.

Complements test_codec.py (the last-resort encodings, text fitting) and
test_codec_shrink_order.py (the order of the shrinking steps). Each group pins
one behaviour down to the value: what the full encoder does with odd input
(wrong codes, messages and detail types) and the exact log line it writes,
that encoding never changes the raised error, the pushback cap, the budget
boundaries (a status of exactly the budget is neither cut nor reported), the
longest text that fits, and a peer's ErrorInfo reason cut inside a character.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt
from grpc_terminal._encode import TRUNCATED_KEY, TRUNCATION_MARK, encode
from grpc_terminal._errors import DETAIL_SLOTS
from grpc_terminal._trailers import PUSHBACK_KEY, Encoded, short_repr

from fakes import client_error, trailer

C = grpc.StatusCode
LOGGER = "grpc_terminal"


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records]


def _domain(enc: Encoded) -> str | None:
    info = client_error(enc).error_info
    return info.domain if info is not None else None


# -- odd input to the full encoder: sent as well as it can be, logged once, exactly ------------


class _Coded(gt.Internal):
    """An error whose ``code()`` returns what the test wants (a subclass can override it)."""

    def __init__(self, message: str, code: object) -> None:
        super().__init__(message, domain="idp.example")
        self._odd = code

    def code(self) -> Any:
        return self._odd


@pytest.mark.parametrize("code", [C.OK, 13, "INTERNAL"], ids=["OK", "int", "str"])
def test_an_error_without_a_failure_code_is_sent_as_unknown_with_its_details(
    code: object, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(_Coded("odd code", code))
    assert (enc.code, enc.message) == (C.UNKNOWN, "odd code")
    assert _domain(enc) == "idp.example"  # the full encoder ran: not the last resort
    assert _logged(caplog) == [
        (logging.ERROR, f"grpc_terminal: _Coded has code {short_repr(code)}; sending UNKNOWN")
    ]


def test_a_message_that_is_not_a_str_is_sent_empty_with_its_details(caplog: pytest.LogCaptureFixture) -> None:
    err = gt.PermissionDenied("x", domain="idp.example")
    setattr(err, "message", 42)  # noqa: B010  # a wrong type, as untyped code may assign
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err)
    assert (enc.code, enc.message) == (C.PERMISSION_DENIED, "")
    assert _domain(enc) == "idp.example"
    assert _logged(caplog) == [
        (logging.ERROR, "grpc_terminal: PermissionDenied.message is not a str; not sent")
    ]


def test_a_detail_of_the_wrong_type_is_dropped_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    err = gt.NotFound("x", domain="idp.example")
    setattr(err, "help", "see the docs")  # noqa: B010
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err)
    got = client_error(enc)
    assert got.help is None and got.message == "x"
    assert _domain(enc) == "idp.example"
    assert _logged(caplog) == [
        (logging.WARNING, "grpc_terminal: NotFound.help is a str, not a google.rpc.Help; not sent")
    ]


class _NoHelp(gt.NotFound):
    """An error whose ``help`` attribute is missing (AttributeError): no detail, nothing to report."""

    @property
    def help(self) -> ed.Help | None:  # type: ignore[override]
        raise AttributeError("help")


def test_a_missing_detail_attribute_is_no_detail_and_not_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(_NoHelp("x", domain="idp.example"))
    assert client_error(enc).help is None
    assert _domain(enc) == "idp.example"
    assert caplog.records == []


def test_an_error_without_extra_details_is_encoded_in_full(caplog: pytest.LogCaptureFixture) -> None:
    err = gt.NotFound("x", domain="idp.example")
    del err.extra_details  # as a subclass that never called StatusError.__init__ may be
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err)
    assert _domain(enc) == "idp.example"
    assert client_error(enc).extra_details == []
    assert caplog.records == []


class _BadTrailers(gt.NotFound):
    """An error whose ``trailing_metadata()`` raises."""

    def trailing_metadata(self) -> Any:
        raise RuntimeError("no trailers")


def test_trailing_metadata_that_raises_is_not_sent_and_logged_with_its_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(_BadTrailers("x", domain="idp.example"), metadata=[("x-app", "1")])
    assert trailer(enc, "x-app") == "1"  # the handler's metadata still goes
    assert _domain(enc) == "idp.example"
    (record,) = caplog.records
    assert (record.levelno, record.getMessage()) == (
        logging.WARNING, "grpc_terminal: _BadTrailers.trailing_metadata() failed; not sent"
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_an_unencodable_error_is_logged_exactly_with_its_traceback(caplog: pytest.LogCaptureFixture) -> None:
    err = gt.NotFound("x")
    setattr(err, "extra_details", 7)  # noqa: B010  # not iterable: the full encoder fails on it
    with caplog.at_level(logging.WARNING, LOGGER):
        encode(err)
    (record,) = caplog.records
    assert (record.levelno, record.getMessage()) == (
        logging.ERROR, "grpc_terminal: cannot encode NotFound; sending its code and reasons only"
    )
    assert record.exc_info is not None and isinstance(record.exc_info[1], TypeError)


# -- encoding never changes the raised error -----------------------------------------------


def _snapshot(err: gt.StatusError) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for attr, _ in DETAIL_SLOTS.values():
        msg: Message | None = getattr(err, attr)
        if msg is not None:
            out[attr] = msg.SerializeToString(deterministic=True)
    return out


def test_shrinking_and_cutting_leave_the_raised_error_as_it_was() -> None:
    err = gt.ResourceExhausted(
        "m" * 6000,
        domain="d" * 3000,
        metadata={"userId": "7"},
        quota_violations=[(f"q{i:02}", "y" * 400) for i in range(16)],
        extra_details=[ed.RequestInfo(request_id="r" * 3000, serving_data="s" * 100)],
    )
    before = _snapshot(err)
    enc = encode(err)
    assert enc.size() <= gt.TRAILER_BUDGET
    got = client_error(enc)
    assert got.quota_failure is None and got.error_info is not None
    assert got.error_info.metadata[TRUNCATED_KEY] == "true"
    assert _snapshot(err) == before
    assert err.message == "m" * 6000


def test_the_irreducible_step_leaves_the_raised_error_as_it_was() -> None:
    err = gt.LicenseExhausted("d" * 5000, message="m" * 5000, domain="x" * 3000)
    before = _snapshot(err)
    encode(err, budget=450)
    assert _snapshot(err) == before


# -- the pushback header is an int32 of milliseconds --------------------------------------------


@pytest.mark.parametrize(
    ("delay", "pushback"),
    [(10.0**7, "2147483647"), (2147483.647, "2147483647"), (2147483.646, "2147483646")],
    ids=["huge", "max", "below-max"],
)
def test_the_pushback_is_capped_at_the_largest_int32(delay: float, pushback: str) -> None:
    enc = encode(gt.Unavailable("later", retry_delay=delay))
    assert trailer(enc, PUSHBACK_KEY) == pushback
    assert client_error(enc).retry_delay == delay  # the RetryInfo itself is not capped


# -- a status of exactly the budget: nothing more is cut, nothing reported --------------------


def _size(err: gt.StatusError) -> int:
    return encode(err, budget=10**9).size()


def test_a_status_of_exactly_the_budget_is_sent_whole_and_not_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    err = gt.NotFound("x", help_links={"docs": "https://d"})
    whole = encode(err, budget=10**9)
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err, budget=whole.size())
    assert enc == whole
    assert caplog.records == []


def _quota(count: int, **kwargs: Any) -> gt.ResourceExhausted:
    violations = [(f"q{i}", "y" * 200) for i in range(count)]
    return gt.ResourceExhausted("quota", quota_violations=violations, **kwargs)


def test_a_step_stops_as_soon_as_the_status_is_exactly_the_budget(caplog: pytest.LogCaptureFixture) -> None:
    err = _quota(8)
    budget = _size(_quota(4, metadata={TRUNCATED_KEY: "true"}))  # one halving, marked
    original = _size(err)
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err, budget=budget)
    assert enc.size() == budget
    got = client_error(enc)
    assert got.quota_failure is not None and len(got.quota_failure.violations) == 4
    assert _logged(caplog) == [
        (
            logging.WARNING,
            f"grpc_terminal: RESOURCE_EXHAUSTED status needs at least {original} bytes, over the "
            f"{budget}-byte trailer budget; cut: QuotaFailure violations (now {budget} bytes)",
        )
    ]


# -- the text cut keeps the longest text that fits --------------------------------------------


def _message_only(text: str) -> gt.Internal:
    err = gt.Internal(text)
    err.error_info = None
    return err


@pytest.mark.parametrize("budget", [1024, 1025, 1500, 2047, 3000, 4096])
def test_the_cut_message_is_the_longest_that_fits(budget: int) -> None:
    enc = encode(_message_only("m" * 6000), budget=budget)
    assert enc.size() <= budget
    kept = len(enc.message) - len(TRUNCATION_MARK)
    assert enc.message == "m" * kept + TRUNCATION_MARK
    one_more = "m" * (kept + 1) + TRUNCATION_MARK
    assert _size(_message_only(one_more)) > budget


@pytest.mark.parametrize("length", [300, 301, 302, 303, 1000, 1001, 1002, 1003])
def test_a_cut_that_fills_the_budget_exactly_is_kept(length: int) -> None:
    cut = "m" * (length - len(TRUNCATION_MARK)) + TRUNCATION_MARK
    budget = _size(_message_only(cut))  # the budget this cut fills to the byte
    enc = encode(_message_only("m" * 6000), budget=budget)
    assert enc.size() == budget
    assert len(enc.message) >= length


# -- the irreducible status: exactly the budget is no overrun; an overrun is logged exactly ----


def test_an_irreducible_status_of_exactly_the_budget_is_not_an_overrun(
    caplog: pytest.LogCaptureFixture,
) -> None:
    err = gt.NotFound("m" * 5000, domain="d" * 300)
    smallest = encode(err, budget=1).size()
    caplog.clear()
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err, budget=smallest)
    assert enc.size() == smallest
    assert [level for level, _ in _logged(caplog)] == [logging.WARNING]
    assert _domain(enc) == ""


def test_an_irreducible_status_over_the_budget_is_logged_exactly(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.NotFound("m" * 5000), budget=100)
    assert _logged(caplog)[0] == (
        logging.ERROR,
        f"grpc_terminal: even the smallest status for NOT_FOUND takes {enc.size()} bytes, over the "
        "100-byte trailer budget; sending it anyway",
    )


# -- a peer's ErrorInfo reason cut to 63 bytes never splits a character -------------------------


@pytest.mark.parametrize("budget", [gt.TRAILER_BUDGET, 200], ids=["text-cut", "irreducible"])
def test_a_multibyte_reason_is_cut_to_whole_characters(budget: int, caplog: pytest.LogCaptureFixture) -> None:
    err = gt.Internal("m" * 6000)
    assert err.error_info is not None
    err.error_info.reason = "\N{LATIN SMALL LETTER E WITH ACUTE}" * 40  # 80 bytes, as a peer may send it
    with caplog.at_level(logging.ERROR, LOGGER):
        enc = encode(err, budget=budget)
    got = client_error(enc)
    assert got.error_info is not None
    assert got.error_info.reason == "\N{LATIN SMALL LETTER E WITH ACUTE}" * 31  # 62 bytes: no half character
    assert not [r for r in caplog.records if "cannot encode" in r.getMessage()]


# -- text longer than the budget is cut to it before fitting (so fitting stays cheap) ----------


def test_a_detail_longer_than_the_budget_is_measured_after_its_pre_cut(
    caplog: pytest.LogCaptureFixture,
) -> None:
    budget = 1024
    pre_cut = "d" * (budget - len(TRUNCATION_MARK)) + TRUNCATION_MARK
    needs = _size(gt.LicenseExhausted(pre_cut, message="m", domain="x"))
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(gt.LicenseExhausted("d" * 5000, message="m", domain="x"), budget=budget)
    got = client_error(enc)
    assert isinstance(got, gt.LicenseExhausted) and got.detail.endswith(TRUNCATION_MARK)
    (record,) = caplog.records
    assert record.getMessage().startswith(
        f"grpc_terminal: {enc.code.name} status needs at least {needs} bytes, over the {budget}-byte"
    )


class _BrokenErrorInfo(gt.NotFound):
    """An error whose ``error_info`` raises something other than AttributeError when read."""

    @property
    def error_info(self) -> ed.ErrorInfo | None:  # type: ignore[override]
        raise RuntimeError("broken")

    @error_info.setter
    def error_info(self, value: ed.ErrorInfo | None) -> None:
        del value


def test_an_unreadable_detail_is_dropped_and_logged_and_the_later_ones_are_sent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    err = _BrokenErrorInfo("x", help_links={"docs": "https://d.example"}, resource_info=("t", "n"))
    with caplog.at_level(logging.WARNING, LOGGER):
        enc = encode(err)
    got = client_error(enc)
    assert got.error_info is None
    assert got.help is not None and [link.url for link in got.help.links] == ["https://d.example"]
    assert got.resource_info is not None and got.resource_info.resource_name == "n"
    assert _logged(caplog) == [
        (logging.WARNING, "grpc_terminal: _BrokenErrorInfo.error_info is unreadable; not sent")
    ]
