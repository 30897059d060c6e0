"""Loopback integration: every code, reason and detail, all four RPC kinds,
on every sync/aio server x client combination (the ``pair`` fixture)."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt

from harness import KINDS, Outcome, Pair, Scenario

CODE_CLASSES: list[type[gt.StatusError]] = [
    gt.Cancelled, gt.Unknown, gt.InvalidArgument, gt.DeadlineExceeded, gt.NotFound,
    gt.AlreadyExists, gt.PermissionDenied, gt.ResourceExhausted, gt.FailedPrecondition,
    gt.Aborted, gt.OutOfRange, gt.Unimplemented, gt.Internal, gt.Unavailable, gt.DataLoss,
    gt.Unauthenticated,
]
TERMINAL_CLASSES: list[type[gt.TerminalError]] = [
    gt.UserNotProvisionable, gt.TargetManagedExternally, gt.LicenseExhausted,
    gt.ValidationFailure, gt.OperationNotPermitted,
]


def _error(out: Outcome) -> gt.StatusError:
    assert isinstance(out.error, gt.StatusError), f"expected a typed error, got {out.error!r}"
    assert isinstance(out.error, grpc.RpcError)
    assert isinstance(out.error.__cause__, grpc.RpcError)
    assert not isinstance(out.error.__cause__, gt.StatusError)
    return out.error


@pytest.mark.parametrize("kind", KINDS)
def test_every_code_class(pair: Pair, kind: str) -> None:
    for cls in CODE_CLASSES:
        out = pair.run(kind, Scenario(responses=1, raise_=cls(f"{cls.__name__} happened")))
        err = _error(out)
        assert type(err) is cls
        assert err.code() is cls.grpc_code
        assert err.details() == f"{cls.__name__} happened"
        assert err.error_info is not None
        assert err.error_info.reason == cls.grpc_code.name
        assert err.error_info.domain == gt.DEFAULT_DOMAIN
        assert err.failure_detail is None
        assert not gt.is_terminal(err)


@pytest.mark.parametrize("kind", KINDS)
def test_every_reason(pair: Pair, kind: str) -> None:
    for cls in TERMINAL_CLASSES:
        out = pair.run(kind, Scenario(raise_=cls(f"upstream says no ({cls.__name__})")))
        err = _error(out)
        assert type(err) is cls
        assert isinstance(err, gt.TerminalError)
        assert err.reason is cls._reason
        assert err.detail == f"upstream says no ({cls.__name__})"
        assert err.code() is gt.code_for_reason(err.reason)
        assert err.error_info is not None and err.error_info.reason == err.reason.name
        assert gt.is_terminal(err) and not gt.is_retryable(err)
        assert (gt.PUSHBACK_KEY, "-1") in err.trailing_metadata()


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_reason_number_is_preserved(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(raise_=gt.terminal_error(42, "from the future: %s", "x")))
    err = _error(out)
    assert type(err) is gt.TerminalError
    assert err.reason == 42 and type(err.reason) is gt.Reason and err.reason.name == "REASON_42"
    assert err.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert err.detail == "from the future: x"


@pytest.mark.parametrize("kind", KINDS)
def test_unspecified_reason_is_internal_without_detail(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(raise_=gt.terminal_error(gt.Reason.UNSPECIFIED, "oops")))
    err = _error(out)
    assert type(err) is gt.Internal and err.failure_detail is None


@pytest.mark.parametrize("kind", KINDS)
def test_every_standard_detail_round_trips(pair: Pair, kind: str) -> None:
    extra = wrappers_pb2.Int64Value(value=7)
    raised = gt.InvalidArgument(
        "bad descriptor",
        retry_delay=1.25,
        field_violations={"spec.name": "must not be empty", "spec.size": "too big"},
        precondition_violations=[("TOS", "user:1", "terms not accepted")],
        quota_violations={"project:9": "seats"},
        resource_info=("group", "admins"),
        help_links={"docs": "https://example.invalid/help"},
        localized_message=("de-DE", "Ungültig"),
        metadata={"user_id": "jdoe", "tenant": "acme"},
        error_reason="BAD_DESCRIPTOR",
        domain="connector.example.invalid",
        extra_details=[extra],
    )
    err = _error(pair.run(kind, Scenario(raise_=raised)))
    assert type(err) is gt.InvalidArgument
    assert err.retry_delay == pytest.approx(1.25)
    assert err.field_violations == [("spec.name", "must not be empty"), ("spec.size", "too big")]
    assert err.precondition_failure is not None
    assert [(v.type, v.subject, v.description) for v in err.precondition_failure.violations] == [
        ("TOS", "user:1", "terms not accepted")
    ]
    assert err.quota_failure is not None
    assert [(v.subject, v.description) for v in err.quota_failure.violations] == [("project:9", "seats")]
    assert err.resource_info == ed.ResourceInfo(resource_type="group", resource_name="admins")
    assert err.help is not None and err.help.links[0].url == "https://example.invalid/help"
    assert err.localized_message == ed.LocalizedMessage(locale="de-DE", message="Ungültig")
    assert err.error_info is not None
    assert err.error_info.reason == "BAD_DESCRIPTOR"
    assert err.error_info.domain == "connector.example.invalid"
    assert dict(err.error_info.metadata) == {"userId": "jdoe", "tenant": "acme"}
    assert len(err.extra_details) == 1
    unpacked = wrappers_pb2.Int64Value()
    assert err.extra_details[0].Unpack(unpacked) and unpacked.value == 7
    assert err.debug_info is None  # only in debug mode
    assert gt.retry_delay(err) == pytest.approx(1.25)
    assert gt.is_retryable(err)  # RetryInfo outranks the code table


@pytest.mark.parametrize("kind", KINDS)
def test_go_style_message_decodes(pair: Pair, kind: str) -> None:
    """A status message that wraps the detail, as grpc-go's %w wrapping gives."""
    raised = gt.UserNotProvisionable(
        "user 'jdoe' is SUSPENDED", message="grant failed: user 'jdoe' is SUSPENDED"
    )
    err = _error(pair.run(kind, Scenario(raise_=raised)))
    assert type(err) is gt.UserNotProvisionable
    assert err.details() == "grant failed: user 'jdoe' is SUSPENDED"
    assert err.detail == "user 'jdoe' is SUSPENDED"


@pytest.mark.parametrize("kind", KINDS)
def test_handler_trailers_survive(pair: Pair, kind: str) -> None:
    raised = gt.Unavailable("later", retry_delay=0.2, trailing_metadata=[("x-from-error", "2")])
    trailers = (("x-from-handler", "1"), ("x-blob-bin", b"\x00\x01"))
    out = pair.run(kind, Scenario(trailers=trailers, raise_=raised))
    err = _error(out)
    md = dict(err.trailing_metadata())
    assert md["x-from-handler"] == "1"
    assert md["x-blob-bin"] == b"\x00\x01"
    assert md["x-from-error"] == "2"
    assert md[gt.PUSHBACK_KEY] == "200"
    assert gt.STATUS_DETAILS_KEY in md


@pytest.mark.parametrize("kind", KINDS)
def test_context_abort_wins(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(responses=2, trailers=(("x-keep", "yes"),),
                                  abort=(grpc.StatusCode.NOT_FOUND, "no such user")))
    err = _error(out)
    assert type(err) is gt.NotFound
    assert err.details() == "no such user"
    assert gt.STATUS_DETAILS_KEY not in dict(err.trailing_metadata())
    if kind.endswith("stream"):
        assert out.responses == ["r0", "r1"]


@pytest.mark.parametrize("kind", KINDS)
def test_status_set_before_raising_stands(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(set_code=grpc.StatusCode.ALREADY_EXISTS, set_details="exists",
                                  raise_=RuntimeError("SECRET-set-code")))
    err = _error(out)
    assert type(err) is gt.AlreadyExists
    assert err.details() == "exists"
    out = pair.run(kind, Scenario(set_code=grpc.StatusCode.ABORTED, raise_=RuntimeError("SECRET-no-details")))
    err = _error(out)
    assert type(err) is gt.Aborted
    assert "SECRET" not in err.details()


@pytest.mark.parametrize("kind", KINDS)
def test_unexpected_exception_leaks_nothing(pair: Pair, kind: str) -> None:
    class Boom(Exception):
        def __init__(self) -> None:
            super().__init__("SECRET-arg", "SECRET-arg2")
            self.token = "SECRET-attr"

    exc = Boom()
    exc.add_note("SECRET-note")
    try:
        try:
            raise ValueError("SECRET-cause")
        except ValueError as cause:
            raise exc from cause
    except Boom as raised:
        exc = raised
    out = pair.run(kind, Scenario(responses=1, raise_=exc))
    err = _error(out)
    assert type(err) is gt.Unknown
    wire = repr(err) + err.details() + repr(err.trailing_metadata())
    assert "SECRET" not in wire and "Boom" not in wire
    assert err.request_id and err.request_id in err.details()
    assert gt.is_retryable(err)


@pytest.mark.parametrize("kind", KINDS)
def test_mid_stream_failure_after_responses(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(responses=3, raise_=gt.LicenseExhausted("Jira: 100 of 100 seats used")))
    err = _error(out)
    assert type(err) is gt.LicenseExhausted
    if kind.endswith("stream"):
        assert out.responses == ["r0", "r1", "r2"]


@pytest.mark.parametrize("kind", KINDS)
def test_success_passes_through(pair: Pair, kind: str) -> None:
    out = pair.run(kind, Scenario(responses=2))
    assert out.error is None
    assert out.responses == (["r0", "r1"] if kind.endswith("stream") else ["ok"])
