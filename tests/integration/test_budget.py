"""The trailer budget: whatever is raised, the client gets the intended code and reason."""

from __future__ import annotations

import logging
from collections.abc import Callable

import grpc
import pytest
from google.rpc import error_details_pb2 as ed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpc_terminal as gt
from grpc_terminal._encode import TRUNCATED_KEY, TRUNCATION_MARK, encode
from grpc_terminal._errors import DETAIL_SLOTS

from fakes import Received
from harness import KINDS, SERVICE, Msg, Pair, Scenario, SyncServer, register
from strategies import oversized_errors, status_errors

BIG = "x" * 1_000_000
WIDE = "é€😀\u200b%\n" * 20_000  # triples (and more) under percent-encoding


def _one_mb_detail() -> gt.StatusError:
    return gt.UserNotProvisionable(BIG)


def _many_field_violations() -> gt.StatusError:
    return gt.InvalidArgument(
        "bad spec", field_violations=[(f"spec.f{i}", "must be set") for i in range(10_000)]
    )


def _huge_metadata() -> gt.StatusError:
    md = [(f"k{i}", "v" * 1000) for i in range(200)] + [("blob-bin", b"\x00\xff" * 50_000)]
    return gt.Unavailable("upstream 503", retry_delay=2.5, trailing_metadata=md)


def _many_help_links() -> gt.StatusError:
    return gt.LicenseExhausted(
        "Jira: 100 of 100 seats", help_links=[(f"doc {i}", f"https://d/{i}") for i in range(5000)]
    )


def _huge_error_info() -> gt.StatusError:
    return gt.TargetManagedExternally("group rule", metadata={f"key{i}": "v" * 200 for i in range(2000)})


def _non_ascii() -> gt.StatusError:
    return gt.OperationNotPermitted(WIDE)


def _everything() -> gt.StatusError:
    return gt.ValidationFailure(
        WIDE,
        field_violations=[(f"f{i}", "d" * 50) for i in range(3000)],
        precondition_violations=[("TOS", f"user{i}", "x" * 40) for i in range(3000)],
        quota_violations=[(f"q{i}", "y" * 40) for i in range(3000)],
        resource_info=("user", "u" * 10_000),
        help_links=[("h", "https://h/" + "z" * 100)] * 500,
        localized_message=("fr-FR", "é" * 10_000),
        metadata={f"k{i}": "v" * 100 for i in range(500)},
        extra_details=[ed.DebugInfo(detail="d" * 10_000)],
        trailing_metadata=[(f"t{i}", "w" * 500) for i in range(100)],
    )


CASES: dict[str, tuple[Callable[[], gt.StatusError], type[gt.StatusError], str]] = {
    "1MB-detail": (_one_mb_detail, gt.UserNotProvisionable, "USER_NOT_PROVISIONABLE"),
    "10k-field-violations": (_many_field_violations, gt.InvalidArgument, "INVALID_ARGUMENT"),
    "huge-trailing-metadata": (_huge_metadata, gt.Unavailable, "UNAVAILABLE"),
    "5k-help-links": (_many_help_links, gt.LicenseExhausted, "LICENSE_EXHAUSTED"),
    "huge-errorinfo-metadata": (_huge_error_info, gt.TargetManagedExternally, "TARGET_MANAGED_EXTERNALLY"),
    "non-ascii-message": (_non_ascii, gt.OperationNotPermitted, "OPERATION_NOT_PERMITTED"),
    "everything": (_everything, gt.ValidationFailure, "VALIDATION_FAILURE"),
}


def _check(
    err: BaseException | None, make: Callable[[], gt.StatusError], cls: type[gt.StatusError], reason: str
) -> None:
    assert type(err) is cls, err
    assert err.code() is not grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.error_info is not None and err.error_info.reason == reason
    assert err.error_info.metadata.get(TRUNCATED_KEY) == "true"
    original = make()
    if isinstance(original, gt.TerminalError):
        assert isinstance(err, gt.TerminalError)
        assert err.reason == original.reason
        if len(original.detail) < 100:
            assert err.detail == original.detail
        else:
            assert err.detail.endswith(TRUNCATION_MARK)
            assert original.detail.startswith(err.detail[: -len(TRUNCATION_MARK)])
            assert len(err.detail) > 100  # a useful part of the detail survived
    if isinstance(original, gt.Unavailable):
        assert err.retry_delay == 2.5
    if isinstance(original, gt.InvalidArgument):
        assert 0 < len(err.field_violations) < 10_000
        assert err.field_violations[0] == ("spec.f0", "must be set")  # the first ones are kept


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("case", list(CASES))
def test_oversized_errors_arrive_with_code_and_reason(pair: Pair, kind: str, case: str) -> None:
    make, cls, reason = CASES[case]
    out = pair.run(kind, Scenario(responses=1, raise_=make()))
    _check(out.error, make, cls, reason)


@pytest.mark.parametrize("kind", KINDS)
def test_oversized_handler_trailers_are_dropped_not_fatal(pair: Pair, kind: str) -> None:
    trailers = tuple((f"h{i}", "v" * 1000) for i in range(30))
    out = pair.run(kind, Scenario(trailers=trailers, raise_=gt.NotFound("user 7")))
    err = out.error
    assert type(err) is gt.NotFound
    assert err.details() == "user 7"
    assert not any(k.startswith("h") and k[1:].isdigit() for k, _ in err.trailing_metadata())


def test_shrinking_follows_the_documented_order(caplog: pytest.LogCaptureFixture) -> None:
    assert gt.SHRINK_ORDER[0] == "DebugInfo"
    assert gt.SHRINK_ORDER[-2].startswith("message and detail")
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        enc = encode(_everything(), debug=True)
    assert enc.size() <= gt.TRAILER_BUDGET
    (line,) = [r.getMessage() for r in caplog.records if "trailer budget" in r.getMessage()]
    cut = line.split("cut: ")[1].split(" (now")[0].split("; ")
    assert cut == sorted(cut, key=gt.SHRINK_ORDER.index)
    assert "DebugInfo" in cut and "application trailing metadata" in cut


def test_small_errors_are_untouched() -> None:
    err = gt.InvalidArgument("bad", field_violations={"a": "b"}, help_links={"d": "u"}, retry_delay=1.0)
    enc = encode(err)
    decoded = gt.from_rpc_error(Received(enc.code, enc.message, enc.trailing_metadata))
    assert decoded.field_violations == [("a", "b")]
    assert decoded.help is not None
    assert decoded.error_info is not None and TRUNCATED_KEY not in decoded.error_info.metadata


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(err=oversized_errors())
def test_encode_always_fits_the_budget(err: gt.StatusError) -> None:
    enc = encode(err)
    assert enc.size() <= gt.TRAILER_BUDGET
    assert enc.code == err.code()
    decoded = gt.from_rpc_error(Received(enc.code, enc.message, enc.trailing_metadata))
    assert type(decoded) is type(err)
    assert decoded.error_info is not None and err.error_info is not None
    assert decoded.error_info.reason == err.error_info.reason
    if isinstance(err, gt.TerminalError):
        assert isinstance(decoded, gt.TerminalError) and decoded.reason == err.reason


@settings(max_examples=40, deadline=None)
@given(err=status_errors(), budget=st.integers(900, 8192))
def test_encode_fits_any_budget(err: gt.StatusError, budget: int) -> None:
    assert encode(err, budget=budget).size() <= budget


def _snapshot(err: gt.StatusError) -> list[object]:
    return [err.message, err.trailing_metadata()] + [
        None if (msg := getattr(err, attr)) is None else msg.SerializeToString(deterministic=True)
        for attr, _ in DETAIL_SLOTS.values()
    ] + [x.SerializeToString() for x in err.extra_details]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(err=st.one_of(status_errors(), oversized_errors()), budget=st.integers(900, 8192))
def test_encoding_never_changes_the_raised_error(err: gt.StatusError, budget: int) -> None:
    """Shrinking works on copies: the same error can be raised (and encoded) again and again."""
    before = _snapshot(err)
    first = encode(err, budget=budget)
    assert _snapshot(err) == before
    assert encode(err, budget=budget) == first


# -- the count is not an underestimate: a real client with a tight metadata limit -----


@pytest.fixture(scope="module")
def plain_server() -> object:
    server = SyncServer()
    yield server
    server.stop()


def _call_with_limit(port: int, exc: gt.StatusError, limit: int, responses: int) -> BaseException | None:
    options = [("grpc.max_metadata_size", limit), ("grpc.absolute_max_metadata_size", limit)]
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=options)
    try:
        stub = gt.intercept_channel(channel).unary_stream(
            f"/{SERVICE}/ServerStream",
            request_serializer=Msg.SerializeToString,
            response_deserializer=Msg.FromString,
        )
        try:
            list(stub(Msg(value=register(Scenario(responses=responses, raise_=exc))), timeout=10))
        except grpc.RpcError as err:
            return err
        return None
    finally:
        channel.close()


ACCOUNTING_CASES = [
    lambda: gt.NotFound("a"),
    lambda: gt.NotFound("a" * 1000),
    lambda: gt.NotFound("é\n%" * 300),
    _one_mb_detail,
    _many_field_violations,
    _huge_metadata,
    _huge_error_info,
    _non_ascii,
    _everything,
]


@pytest.mark.parametrize("responses", [0, 1], ids=["trailers-only", "after-a-response"])
@pytest.mark.parametrize("index", range(len(ACCOUNTING_CASES)))
def test_size_accounting_is_not_an_underestimate(
    plain_server: SyncServer, index: int, responses: int
) -> None:
    make = ACCOUNTING_CASES[index]
    size = encode(make()).size()
    assert size <= gt.TRAILER_BUDGET
    # What fits our count is accepted by a client whose limit is exactly that count...
    err = _call_with_limit(plain_server.port, make(), size, responses)
    assert type(err) is type(make()), err
    # ...and the limit is really applied to these trailers (so the check above can fail).
    tight = _call_with_limit(plain_server.port, make(), size // 3, responses)
    assert isinstance(tight, grpc.RpcError) and tight.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
