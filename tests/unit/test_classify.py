"""Classification pinned to the value: what classify, is_retryable, is_terminal,
retry_delay, find_status and failure_detail return for what a peer sends.

In-process only: a failure "as received" is a grpc.RpcError as grpcio raises it
on the client (``fakes.Received``), decoded by the library's public
``from_rpc_error``; a failure "as a server sent it" is what ``to_status`` gives
for a typed error. tests/test_classify.py holds the precedence table row by
row; this file pins the edges: pushback parsing, the rule-3 client faults,
the walk through causes, contexts and groups, and the exact verdict fields.
"""

from __future__ import annotations

from typing import TypeVar

import grpc
import pytest

import grpc_terminal as gt
from grpc_terminal._classify import MAX_SERVER_DELAY
from grpc_terminal._errors import decoded
from grpc_terminal._trailers import PUSHBACK_KEY

from fakes import Received, Trailers

C = grpc.StatusCode
E = TypeVar("E", bound=BaseException)
MAX_PUSHBACK_MS = 315_576_000_000_000  # MAX_SERVER_DELAY (10 000 years, protobuf's Duration) in ms


def bare(code: grpc.StatusCode, message: str = "m", trailers: Trailers = ()) -> gt.StatusError:
    """A received failure that carries no rich status (grpc's own, or a plain server's)."""
    return gt.from_rpc_error(Received(code, message, trailers))


def pushed(value: str | bytes, code: grpc.StatusCode = C.UNAVAILABLE) -> gt.StatusError:
    """A received failure whose only trailer is ``grpc-retry-pushback-ms: value``."""
    return bare(code, "m", ((PUSHBACK_KEY, value),))


def sent(exc: gt.StatusError, extra: Trailers = ()) -> gt.StatusError:
    """``exc`` as the client decodes it after a server raised it, plus ``extra`` trailers."""
    status = gt.to_status(exc)
    return gt.from_rpc_error(
        Received(status.code, status.details, (*status.trailing_metadata, *extra))
    )


def chained(outer: E, *, cause: BaseException | None = None,
            context: BaseException | None = None, suppress: bool = False) -> E:
    """``outer`` with the given ``__cause__``/``__context__`` as ``raise ... from`` sets them."""
    outer.__cause__ = cause
    outer.__context__ = context
    outer.__suppress_context__ = suppress
    return outer


def verdict(exc: BaseException) -> tuple[bool, str, grpc.StatusCode | None, float | None]:
    """classify's verdict as a plain tuple (retryable, rule, code, delay)."""
    v = gt.classify(exc)
    return (v.retryable, v.rule, v.code, v.delay)


# -- pushback parsing: each accepted and refused form, and its delay ------------------


@pytest.mark.parametrize(
    ("value", "delay"),
    [
        pytest.param("0", 0.0, id="zero"),  # "retry at once"
        pytest.param("000", 0.0, id="zeros"),
        pytest.param("-0", 0.0, id="minus-zero"),  # minus zero is zero, not a refusal
        pytest.param("-000", 0.0, id="minus-zeros"),
        pytest.param("+0", 0.0, id="plus-zero"),
        pytest.param("1", 0.001, id="one"),
        pytest.param("+5", 0.005, id="plus-five"),
        pytest.param("1500", 1.5, id="1500"),
        pytest.param(" 1500\t", 1.5, id="whitespace"),  # surrounding whitespace is ignored
        pytest.param(b"1500", 1.5, id="bytes"),  # a bytes value is read as ASCII
        # leading zeros do not count toward the clamp
        pytest.param("0000000000000000000001500", 1.5, id="leading-zeros"),
        pytest.param("100000000000000", 1e11, id="15-digits-below-max"),  # exact
        pytest.param(str(MAX_PUSHBACK_MS), MAX_SERVER_DELAY, id="max"),
        pytest.param(str(MAX_PUSHBACK_MS + 1), MAX_SERVER_DELAY, id="max-plus-one"),  # same length: clamped
        pytest.param("9" * 16, MAX_SERVER_DELAY, id="16-digits"),  # longer: clamped without int()
        pytest.param("9" * 400, MAX_SERVER_DELAY, id="400-digits"),
    ],
)
def test_pushback_delay(value: str | bytes, delay: float) -> None:
    err = pushed(value)
    assert gt.retry_delay(err) == delay
    assert verdict(err) == (True, "code", C.UNAVAILABLE, delay)


@pytest.mark.parametrize(
    "value",
    ["", " ", "soon", "1.5", "1e3", "0x10", "++1", "1 5", "\u0661\u0662", b"1\xff", b"\xff", "1-"],
    ids=["empty", "blank", "word", "decimal-point", "exponent", "hex", "two-signs", "inner-space",
         "arabic-indic-digits", "bytes-non-ascii-after", "bytes-non-ascii", "trailing-sign"],
)
def test_pushback_not_a_decimal_integer_is_ignored(value: str | bytes) -> None:
    err = pushed(value)
    assert gt.retry_delay(err) is None
    assert verdict(err) == (True, "code", C.UNAVAILABLE, None)


@pytest.mark.parametrize(
    "value",
    ["-1", "-0001", " -1 ", b"-25", "-" + "9" * 400],
    ids=["minus-one", "leading-zeros", "whitespace", "bytes", "400-digits"],
)
def test_negative_pushback_is_terminal(value: str | bytes) -> None:
    err = pushed(value)
    assert gt.retry_delay(err) is None
    assert verdict(err) == (False, "negative_pushback", C.UNAVAILABLE, None)
    assert not gt.is_retryable(err)
    assert not gt.is_terminal(err)  # not retryable, yet no ProvisionFailureDetail


def test_first_pushback_trailer_decides() -> None:
    first_bad = bare(C.UNAVAILABLE, trailers=((PUSHBACK_KEY, "soon"), (PUSHBACK_KEY, "-1")))
    assert verdict(first_bad) == (True, "code", C.UNAVAILABLE, None)
    first_good = bare(C.UNAVAILABLE, trailers=(("x-other", "-1"), (PUSHBACK_KEY, "20"), (PUSHBACK_KEY, "-1")))
    assert verdict(first_good) == (True, "code", C.UNAVAILABLE, 0.02)


def test_pushback_is_read_only_under_its_own_key() -> None:
    err = bare(C.UNAVAILABLE, trailers=(("x-retry-pushback-ms", "-1"), ("grpc-retry-pushback", "5")))
    assert verdict(err) == (True, "code", C.UNAVAILABLE, None)
    assert gt.retry_delay(err) is None


def test_pushback_delay_only_for_a_retryable_code() -> None:
    assert verdict(pushed("0", C.NOT_FOUND)) == (False, "code", C.NOT_FOUND, None)
    assert gt.retry_delay(pushed("0", C.NOT_FOUND)) == 0.0  # the server's suggestion, whatever the code
    assert gt.classify(pushed("0", C.NOT_FOUND), retryable_codes={C.NOT_FOUND}).delay == 0.0


# -- RetryInfo against pushback: RetryInfo wins, pushback fills in -------------------


def test_retry_info_wins_over_a_different_pushback() -> None:
    err = sent(gt.Unavailable("later", retry_delay=0.25), ((PUSHBACK_KEY, "900"),))
    assert verdict(err) == (True, "retry_info", C.UNAVAILABLE, 0.25)
    assert gt.retry_delay(err) == 0.25


def test_retry_info_of_zero_is_a_delay_not_absence() -> None:
    err = sent(gt.NotFound("now", retry_delay=0), ((PUSHBACK_KEY, "900"),))
    assert verdict(err) == (True, "retry_info", C.NOT_FOUND, 0.0)
    assert gt.retry_delay(err) == 0.0


def test_retry_info_without_pushback_or_table() -> None:
    err = sent(gt.NotFound("later", retry_delay=2))
    assert gt.classify(err, retryable_codes=()) == gt.Verdict(True, "retry_info", C.NOT_FOUND, 2.0)


# -- rule 3: the client's own limits and (de)serializers ------------------------------

RECEIVED_TOO_BIG = "Stream removed (CLIENT: Received message larger than max (2003 vs. 100))"
SENT_TOO_BIG = "CLIENT: Sent message larger than max (503 vs. 100)"
DESERIALIZING = "Exception deserializing response!"
SERIALIZING = "Exception serializing request!"
METADATA = "Stream removed (received metadata size exceeds hard limit (value length 20480 vs. 16384))"


@pytest.mark.parametrize(
    ("code", "message", "rule"),
    [
        (C.RESOURCE_EXHAUSTED, RECEIVED_TOO_BIG, "client_message_limit"),
        (C.RESOURCE_EXHAUSTED, SENT_TOO_BIG, "client_message_limit"),
        (C.INTERNAL, DESERIALIZING, "client_serialization"),
        (C.INTERNAL, SERIALIZING, "client_serialization"),
        (C.RESOURCE_EXHAUSTED, METADATA, "client_metadata_limit"),
        (C.RESOURCE_EXHAUSTED, "received initial metadata size exceeds limit", "client_metadata_limit"),
    ],
    ids=["received-too-big", "sent-too-big", "deserializing", "serializing", "metadata", "metadata-legacy"],
)
def test_client_fault_is_terminal(code: grpc.StatusCode, message: str, rule: str) -> None:
    err = bare(code, message, ((PUSHBACK_KEY, "10"), ("x-app", "1")))
    assert verdict(err) == (False, rule, code, None)
    assert not gt.is_retryable(err)
    assert not gt.is_terminal(err)
    assert gt.retry_delay(err) == 0.01  # the peer's suggestion is still readable


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (C.INTERNAL, RECEIVED_TOO_BIG),  # message-size text under the wrong code
        (C.UNAVAILABLE, SENT_TOO_BIG),
        (C.RESOURCE_EXHAUSTED, DESERIALIZING),  # serializer text under the wrong code
        (C.UNKNOWN, SERIALIZING),
        (C.INTERNAL, "handler said: Exception deserializing response!"),  # not at the start
        (C.RESOURCE_EXHAUSTED, "Received message larger than maximum allowed"),  # no word end at max
        (C.RESOURCE_EXHAUSTED, "quota exceeds limit"),
    ],
    ids=["size-internal", "size-unavailable", "serializer-resource-exhausted", "serializer-unknown",
         "serializer-not-at-start", "size-no-word-end", "quota"],
)
def test_lookalike_messages_are_classified_by_code(code: grpc.StatusCode, message: str) -> None:
    assert verdict(bare(code, message)) == (True, "code", code, None)


@pytest.mark.parametrize(
    "exc",
    [
        gt.ResourceExhausted(RECEIVED_TOO_BIG, retry_delay=3),
        gt.ResourceExhausted(SENT_TOO_BIG),
        gt.Internal(DESERIALIZING),
        gt.Internal(SERIALIZING),
    ],
    ids=["received-retry-info", "sent-too-big", "deserializing", "serializing"],
)
def test_peer_that_explains_itself_is_not_a_client_fault(exc: gt.StatusError) -> None:
    # The same text, but from a peer that sent a rich status: classified by what it says.
    received = sent(exc)
    expected = (True, "retry_info", exc.code(), 3.0) if exc.retry_delay else (True, "code", exc.code(), None)
    assert verdict(received) == expected


@pytest.mark.parametrize(
    "message",
    [RECEIVED_TOO_BIG, SENT_TOO_BIG, DESERIALIZING, METADATA],
    ids=["received-too-big", "sent-too-big", "deserializing", "metadata"],
)
def test_built_locally_is_not_a_client_fault(message: str) -> None:
    # A status a program built (not received) is classified by its code.
    for exc in (gt.ResourceExhausted(message), gt.Internal(message)):
        assert verdict(exc) == (True, "code", exc.code(), None)


def test_client_fault_rule_wins_over_retry_info_only_when_bare() -> None:
    # The metadata-limit rule needs only "received" (a peer cannot send that text
    # and mean it); the message-size rule also needs the absence of a rich status.
    meta = sent(gt.ResourceExhausted(METADATA, retry_delay=1))
    assert verdict(meta) == (False, "client_metadata_limit", C.RESOURCE_EXHAUSTED, None)
    size = sent(gt.ResourceExhausted(SENT_TOO_BIG, retry_delay=1))
    assert verdict(size) == (True, "retry_info", C.RESOURCE_EXHAUSTED, 1.0)


def test_a_message_that_is_not_text_is_no_client_fault() -> None:
    # A StatusError whose message attribute was replaced by bytes: classified
    # by its code, without raising.
    err = bare(C.INTERNAL, SERIALIZING)
    err.message = SERIALIZING.encode()  # type: ignore[assignment]
    assert verdict(err) == (True, "code", C.INTERNAL, None)


def test_negative_pushback_precedes_client_fault() -> None:
    err = bare(C.INTERNAL, SERIALIZING, ((PUSHBACK_KEY, "-5"),))
    assert verdict(err) == (False, "negative_pushback", C.INTERNAL, None)


class _TrailersRaise(gt.Internal):
    """A StatusError subclass whose trailing_metadata() raises."""

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        raise RuntimeError("no trailers")


def test_trailers_that_raise_read_as_none() -> None:
    received = bare(C.INTERNAL, SERIALIZING)
    err = decoded(_TrailersRaise, C.INTERNAL, SERIALIZING, (), ())
    assert type(err) is _TrailersRaise and received.code() is err.code()
    assert verdict(err) == (False, "client_serialization", C.INTERNAL, None)
    assert gt.retry_delay(err) is None


# -- rules 1 and 4/5: the verdict's code and delay -----------------------------------


def test_rule1_verdict_carries_the_first_status_code() -> None:
    terminal = gt.UserNotProvisionable("suspended")
    outer = chained(gt.Unavailable("retry me"), cause=terminal)
    assert verdict(outer) == (False, "provision_failure_detail", C.UNAVAILABLE, None)
    assert verdict(terminal) == (False, "provision_failure_detail", C.FAILED_PRECONDITION, None)
    # found inside a non-gRPC wrapper: the code is the terminal error's own
    assert verdict(chained(ValueError("w"), cause=terminal)) == (
        False, "provision_failure_detail", C.FAILED_PRECONDITION, None)


def test_rule1_beats_a_huge_retry_info_and_pushback() -> None:
    err = sent(gt.LicenseExhausted("seats", retry_delay=5), ((PUSHBACK_KEY, "10"),))
    assert verdict(err) == (False, "provision_failure_detail", C.FAILED_PRECONDITION, None)
    assert gt.is_terminal(err)
    assert gt.retry_delay(err) == 5.0


def test_not_grpc_verdict() -> None:
    assert gt.classify(KeyError("k")) == gt.Verdict(False, "not_grpc", None, None)
    assert gt.retry_delay(KeyError("k")) is None
    assert gt.find_status(KeyError("k")) is None
    assert gt.failure_detail(KeyError("k")) is None


def test_code_rule_terminal_has_no_delay_even_with_pushback() -> None:
    table = {C.NOT_FOUND}
    assert gt.classify(pushed("250", C.UNAVAILABLE), retryable_codes=table) == gt.Verdict(
        False, "code", C.UNAVAILABLE, None)
    assert gt.classify(pushed("250", C.NOT_FOUND), retryable_codes=table) == gt.Verdict(
        True, "code", C.NOT_FOUND, 0.25)
    assert gt.is_retryable(pushed("250", C.NOT_FOUND), retryable_codes=table)
    assert not gt.is_retryable(pushed("250", C.UNAVAILABLE), retryable_codes=table)


# -- the walk: causes, contexts, groups, order, cycles -------------------------------


def test_plain_rpc_error_without_code_is_not_grpc() -> None:
    assert gt.find_status(grpc.RpcError("bare")) is None
    assert verdict(grpc.RpcError("bare")) == (False, "not_grpc", None, None)


class _CodeNotCallable(grpc.RpcError):
    code = C.UNAVAILABLE  # type: ignore[assignment]  # an attribute, not a method: not a call


def test_rpc_error_with_code_attribute_not_callable_is_not_grpc() -> None:
    assert gt.find_status(_CodeNotCallable()) is None


class _AppError(Exception):
    """An application exception that happens to have a code() method."""

    def code(self) -> grpc.StatusCode:
        return C.UNAVAILABLE


def test_only_rpc_errors_are_decoded() -> None:
    assert gt.find_status(_AppError()) is None
    assert verdict(_AppError()) == (False, "not_grpc", None, None)


def test_raw_rpc_error_is_decoded() -> None:
    raw = Received(C.ABORTED, "conflict", ((PUSHBACK_KEY, "30"),))
    found = gt.find_status(raw)
    assert isinstance(found, gt.Aborted)
    assert (found.code(), found.message, found.__cause__) == (C.ABORTED, "conflict", raw)
    assert verdict(raw) == (True, "code", C.ABORTED, 0.03)


def test_typed_error_is_found_as_itself() -> None:
    err = gt.NotFound("gone")
    assert gt.find_status(err) is err
    assert gt.find_status(chained(ValueError(), context=err)) is err


def test_suppressed_context_is_not_searched_but_cause_is() -> None:
    hidden = gt.UserNotProvisionable("x")
    outer = chained(ValueError("outer"), context=hidden, suppress=True)
    assert gt.find_status(outer) is None
    assert verdict(outer) == (False, "not_grpc", None, None)
    assert not gt.is_terminal(outer)
    shown = chained(ValueError("outer"), context=hidden)
    assert gt.find_status(shown) is hidden
    assert gt.is_terminal(shown)
    with_cause = chained(ValueError("outer"), cause=gt.NotFound("c"), context=hidden, suppress=True)
    assert verdict(with_cause) == (False, "code", C.NOT_FOUND, None)
    assert not gt.is_terminal(with_cause)


def test_breadth_first_order() -> None:
    # group members come before a member's cause; the cause before the context
    deep = chained(ValueError("m1"), cause=gt.Unavailable("deep"))
    shallow = gt.NotFound("shallow")
    group = ExceptionGroup("g", [deep, shallow])
    assert gt.find_status(group) is shallow
    assert verdict(group) == (False, "code", C.NOT_FOUND, None)
    both = chained(ValueError(), cause=gt.Aborted("cause"), context=gt.NotFound("context"))
    assert verdict(both) == (True, "code", C.ABORTED, None)
    # the group's own cause comes after its members
    caused = ExceptionGroup("g", [ValueError(), shallow])
    caused.__cause__ = gt.Unavailable("cause")
    assert gt.find_status(caused) is shallow


def test_nested_groups_are_searched() -> None:
    inner = gt.OperationNotPermitted("policy")
    nested = BaseExceptionGroup("outer", [KeyboardInterrupt(), BaseExceptionGroup("inner", [inner])])
    assert gt.find_status(nested) is inner
    assert gt.is_terminal(nested)


def test_cycles_end() -> None:
    a, b = ValueError("a"), ValueError("b")
    chained(a, context=b)
    chained(b, cause=a, context=a)
    assert gt.find_status(a) is None
    assert verdict(a) == (False, "not_grpc", None, None)
    status = gt.Unavailable("u")
    chained(status, context=b)
    chained(b, context=status)
    assert verdict(b) == (True, "code", C.UNAVAILABLE, None)


class _CountsLooks(grpc.RpcError):
    """An RpcError without a code() that records each time its ``code`` is looked up."""

    def __init__(self, seen: list[BaseException]) -> None:
        super().__init__("counts")
        self._seen = seen

    def __getattribute__(self, name: str) -> object:
        if name == "code":
            object.__getattribute__(self, "_seen").append(self)
        return super().__getattribute__(name)


def test_each_exception_visited_once() -> None:
    # a diamond: the shared error is reached by two paths but looked at once
    shared = ValueError("shared")
    left = chained(ValueError("left"), cause=shared)
    right = chained(ValueError("right"), cause=shared)
    group = ExceptionGroup("g", [left, right])
    seen: list[BaseException] = []
    spy = _CountsLooks(seen)
    chained(shared, cause=spy)
    assert gt.failure_detail(group) is None
    assert seen == [spy]  # one look at the one RpcError


def test_the_first_exception_is_not_visited_again_through_a_cycle() -> None:
    seen: list[BaseException] = []
    root = _CountsLooks(seen)
    chained(root, context=chained(ValueError("middle"), cause=root))
    assert gt.find_status(root) is None
    assert seen == [root]


def test_long_chain_needs_no_recursion() -> None:
    err: BaseException = gt.LicenseExhausted("seats")
    for i in range(5000):
        err = chained(ValueError(i), cause=err)
    assert verdict(err) == (False, "provision_failure_detail", C.FAILED_PRECONDITION, None)


# -- failure_detail and is_terminal ---------------------------------------------------


def test_failure_detail_is_a_copy() -> None:
    err = gt.UserNotProvisionable("account locked")
    got = gt.failure_detail(err)
    assert got is not None and got == err.failure_detail
    assert got is not err.failure_detail
    got.detail = "changed"
    assert err.failure_detail is not None and err.failure_detail.detail == "account locked"


def test_failure_detail_skips_statuses_without_one() -> None:
    terminal = gt.ValidationFailure("bad")
    outer = chained(gt.Unavailable("u"), cause=terminal)
    assert gt.failure_detail(outer) == terminal.failure_detail
    assert gt.is_terminal(outer)
    assert gt.failure_detail(gt.Unavailable("u")) is None
    assert not gt.is_terminal(gt.Unavailable("u"))


# -- what is not an exception --------------------------------------------------------


@pytest.mark.parametrize(
    ("thing", "message"),
    [
        (14, "expected an exception, got int: 14"),
        (None, "expected an exception, got NoneType: None"),
        ("x" * 200, "expected an exception, got str: '" + "x" * 79),
        (ValueError, "expected an exception, got type: <class 'ValueError'>"),
    ],
    ids=["int", "none", "long-str", "exception-class"],
)
def test_not_an_exception_message(thing: object, message: str) -> None:
    with pytest.raises(TypeError) as caught:
        gt.find_status(thing)  # type: ignore[arg-type]
    assert str(caught.value) == message
    with pytest.raises(TypeError) as again:
        gt.classify(thing)  # type: ignore[arg-type]
    assert str(again.value) == message


# -- a message replaced after decoding ------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.INTERNAL], ids=["exhausted", "internal"]
)
def test_a_message_that_is_no_longer_text_is_classified_by_code(code: grpc.StatusCode) -> None:
    """Code that replaces a decoded error's message with bytes gets a verdict, not a TypeError."""
    err = gt.from_rpc_error(Received(code, "Received message larger than max (9 vs. 4)"))
    err.message = b"Received message larger than max"  # type: ignore[assignment]
    assert gt.classify(err) == gt.Verdict(code in gt.RETRYABLE_CODES, "code", code, None)


# -- a RetryInfo without our pushback trailer (a peer that is not a grpc-terminal server) ------
# Our servers send the pushback trailer beside every RetryInfo, with the same delay; another
# peer may send only the RetryInfo, or a pushback that disagrees with it.


def retry_info_only(exc: gt.StatusError, extra_first: Trailers = ()) -> gt.StatusError:
    """``exc`` as sent by a server, without its pushback trailer, ``extra_first`` before the rest."""
    status = gt.to_status(exc)
    kept = [(k, v) for k, v in status.trailing_metadata if k != PUSHBACK_KEY]
    return gt.from_rpc_error(Received(status.code, status.details, (*extra_first, *kept)))


def test_a_retry_info_alone_gives_its_delay() -> None:
    err = retry_info_only(gt.Unavailable("later", retry_delay=2))
    assert verdict(err) == (True, "retry_info", C.UNAVAILABLE, 2.0)
    assert gt.retry_delay(err) == 2.0


def test_a_retry_info_wins_over_an_earlier_different_pushback() -> None:
    err = retry_info_only(gt.NotFound("later", retry_delay=0.25), ((PUSHBACK_KEY, "900"),))
    assert verdict(err) == (True, "retry_info", C.NOT_FOUND, 0.25)
    assert gt.retry_delay(err) == 0.25
