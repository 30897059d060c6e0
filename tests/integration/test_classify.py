"""The retry classification precedence, row by row (section 4 of the design)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._reason import ProvisionFailureDetail
from grpc_terminal._retry import RetryPolicy
from grpc_terminal._trailers import PUSHBACK_KEY, STATUS_DETAILS_KEY

from harness import LoopThread, Pair, Scenario

C = grpc.StatusCode

# Exactly what grpcio 1.85 gives for over-limit received metadata (measured in
# test_client_metadata_limit_real_server below and by hand with 10 KiB trailers).
HARD_LIMIT = "Stream removed (received metadata size exceeds hard limit (value length 20480 vs. 16384))"
SOFT_LIMIT = (
    "Stream removed (received metadata size exceeds soft limit (10365 vs. 8192);  "
    "grpc-status:44B grpc-message:44B x-big:10277B)"
)


def received(
    code: grpc.StatusCode,
    message: str = "m",
    *,
    pfd: ProvisionFailureDetail | None = None,
    retry_info: float | None = None,
    pushback: str | None = None,
) -> gt.StatusError:
    """A failure as the client decodes it from the wire."""
    status = status_pb2.Status(code=code.value[0], message=message)
    if pfd is not None:
        status.details.add().Pack(pfd)
    if retry_info is not None:
        status.details.add().Pack(
            ed.RetryInfo(retry_delay=duration_pb2.Duration(nanos=int(retry_info * 1e9)))
        )
    trailers: list[tuple[str, str | bytes]] = [(STATUS_DETAILS_KEY, status.SerializeToString())]
    if pushback is not None:
        trailers.append((PUSHBACK_KEY, pushback))
    return decode(code, message, tuple(trailers))


SUSPENDED = ProvisionFailureDetail(reason=ProvisionFailureDetail.REASON_USER_NOT_PROVISIONABLE, detail="x")


def wrapped(inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise RuntimeError("wrapper") from exc
    except RuntimeError as outer:
        return outer


# (case id, error, retryable, rule, delay)
RULE1 = "provision_failure_detail"
ROWS: list[tuple[str, BaseException, bool, str, float | None]] = [
    # rule 1: a ProvisionFailureDetail anywhere -> terminal, whatever else is there
    ("1-typed", gt.UserNotProvisionable("suspended"), False, RULE1, None),
    ("1-with-retry-info", gt.LicenseExhausted("seats", retry_delay=3), False, RULE1, None),
    ("1-retryable-code", received(C.UNAVAILABLE, pfd=SUSPENDED), False, RULE1, None),
    ("1-in-cause", wrapped(gt.TargetManagedExternally("scim")), False, RULE1, None),
    ("1-in-group", ExceptionGroup("g", [ValueError(), gt.ValidationFailure("v")]), False, RULE1, None),
    # rule 2: negative pushback -> terminal, even over RetryInfo and a retryable code
    ("2-pushback", received(C.UNAVAILABLE, pushback="-1"), False, "negative_pushback", None),
    ("2-over-retry-info", received(C.UNAVAILABLE, retry_info=1.0, pushback="-1"), False,
     "negative_pushback", None),
    # rule 3: the client's own metadata limit -> terminal, even over RetryInfo
    ("3-hard", received(C.RESOURCE_EXHAUSTED, HARD_LIMIT), False, "client_metadata_limit", None),
    ("3-soft", received(C.RESOURCE_EXHAUSTED, SOFT_LIMIT), False, "client_metadata_limit", None),
    ("3-legacy", received(C.RESOURCE_EXHAUSTED, "received trailing metadata size exceeds limit"), False,
     "client_metadata_limit", None),
    ("3-over-retry-info", received(C.RESOURCE_EXHAUSTED, HARD_LIMIT, retry_info=1.0), False,
     "client_metadata_limit", None),
    ("3-not-a-quota-message", received(C.RESOURCE_EXHAUSTED, "quota exceeds limit"), True, "code", None),
    ("3-only-when-received", gt.ResourceExhausted(HARD_LIMIT), True, "code", None),
    ("3-only-resource-exhausted", received(C.UNAVAILABLE, HARD_LIMIT), True, "code", None),
    # rule 4: RetryInfo -> retryable with its delay, even for a terminal code
    ("4-terminal-code", gt.FailedPrecondition("not yet", retry_delay=2.5), True, "retry_info", 2.5),
    ("4-received", received(C.NOT_FOUND, retry_info=0.2, pushback="200"), True, "retry_info", 0.2),
    ("4-retryable-code", gt.Unavailable("later", retry_delay=1), True, "retry_info", 1.0),
    # rule 5 extras: pushback >= 0 is a delay; exceptions without a status are not retryable
    ("5-pushback-delay", received(C.UNAVAILABLE, pushback="1500"), True, "code", 1.5),
    ("5-pushback-terminal-code", received(C.NOT_FOUND, pushback="1500"), False, "code", None),
    ("5-not-grpc", ValueError("boom"), False, "not_grpc", None),
    ("5-timeout-not-grpc", TimeoutError(), False, "not_grpc", None),
]


@pytest.mark.parametrize(
    ("error", "retryable", "rule", "delay"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS]
)
def test_precedence_row(error: BaseException, retryable: bool, rule: str, delay: float | None) -> None:
    verdict = gt.classify(error)
    assert (verdict.retryable, verdict.rule) == (retryable, rule)
    assert verdict.delay == (pytest.approx(delay) if delay is not None else None)
    assert gt.is_retryable(error) is retryable


RETRYABLE = {C.UNAVAILABLE, C.DEADLINE_EXCEEDED, C.RESOURCE_EXHAUSTED, C.ABORTED, C.INTERNAL, C.UNKNOWN}


@pytest.mark.parametrize("code", [c for c in C if c is not C.OK], ids=lambda c: c.name)
def test_code_table_row(code: grpc.StatusCode) -> None:
    for error in (gt.from_rpc_error(received(code)), gt._errors.class_for(code)("m")):
        verdict = gt.classify(error)
        assert verdict.rule == "code"
        assert verdict.retryable is (code in RETRYABLE)
        assert verdict.code is code
        assert not gt.is_terminal(error)  # is_terminal is the ProvisionFailureDetail contract only
    assert gt.RETRYABLE_CODES == RETRYABLE


def test_code_table_is_overridable() -> None:
    table = {C.NOT_FOUND}
    assert gt.is_retryable(gt.NotFound("later"), retryable_codes=table)
    assert not gt.is_retryable(gt.Unavailable("down"), retryable_codes=table)
    # the earlier rules are not part of the table
    assert not gt.is_retryable(gt.UserNotProvisionable("x"), retryable_codes={C.FAILED_PRECONDITION})
    assert gt.classify(gt.NotFound("x", retry_delay=1), retryable_codes=()).retryable


def test_is_terminal_only_with_detail() -> None:
    assert gt.is_terminal(gt.OperationNotPermitted("policy"))
    assert gt.is_terminal(received(C.UNAVAILABLE, pfd=SUSPENDED))
    assert not gt.is_terminal(received(C.UNAVAILABLE, pushback="-1"))  # not retryable, yet not "terminal"
    assert not gt.is_terminal(ValueError())


def test_retry_delay_order() -> None:
    assert gt.retry_delay(received(C.UNAVAILABLE, retry_info=0.25, pushback="900")) == pytest.approx(0.25)
    assert gt.retry_delay(received(C.UNAVAILABLE, pushback="900")) == pytest.approx(0.9)
    assert gt.retry_delay(received(C.UNAVAILABLE, pushback="-1")) is None
    assert gt.retry_delay(received(C.UNAVAILABLE, pushback="soon")) is None
    assert gt.retry_delay(received(C.UNAVAILABLE)) is None
    assert gt.retry_delay(ValueError()) is None


# -- rule 3 against a real server: measure grpcio's own message -----------------------


@pytest.fixture(scope="module", params=[("sync", "sync"), ("aio", "aio")], ids=["sync", "aio"])
def limit_pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    server_kind, client_kind = request.param
    p = Pair(server_kind, client_kind, loop_thread, client_options={"retry": RetryPolicy(initial_backoff=0)})
    yield p
    p.close()


def test_client_metadata_limit_real_server(limit_pair: Pair) -> None:
    # The handler succeeds but sets 20 KiB of trailers: grpc's client rejects them.
    scenario = Scenario(trailers=(("x-big", "a" * 20 * 1024),))
    out = limit_pair.run("unary_unary", scenario)
    err = out.error
    assert isinstance(err, gt.ResourceExhausted)
    assert "received metadata size exceeds hard limit" in err.details()
    verdict = gt.classify(err)
    assert (verdict.retryable, verdict.rule) == (False, "client_metadata_limit")
    assert len(scenario.calls) == 1  # RetryPolicy(max_attempts=5) did not repeat it
    assert err.retry_history is not None and err.retry_history.stopped == "not_retryable"


@pytest.mark.parametrize(
    "helper",
    [gt.is_retryable, gt.is_terminal, gt.classify, gt.retry_delay, gt.failure_detail, gt.exit_code,
     gt.problem],
)
@pytest.mark.parametrize("thing", [object(), None, "UNAVAILABLE", 14])
def test_what_is_not_an_exception_is_a_clear_type_error(
    helper: Callable[[object], object], thing: object
) -> None:
    with pytest.raises(TypeError, match=r"expected an exception, got "):
        helper(thing)
