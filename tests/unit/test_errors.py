"""The exception hierarchy as pure values: no I/O."""

from __future__ import annotations

import copy
import pickle

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._encode import encode

ALL_CLASSES: list[type[gt.StatusError]] = [
    gt.StatusError, gt.Cancelled, gt.Unknown, gt.InvalidArgument, gt.DeadlineExceeded, gt.NotFound,
    gt.AlreadyExists, gt.PermissionDenied, gt.ResourceExhausted, gt.FailedPrecondition, gt.Aborted,
    gt.OutOfRange, gt.Unimplemented, gt.Internal, gt.Unavailable, gt.DataLoss, gt.Unauthenticated,
    gt.UserNotProvisionable, gt.TargetManagedExternally, gt.LicenseExhausted, gt.ValidationFailure,
    gt.OperationNotPermitted,
]


def test_code_for_reason_table() -> None:
    expected = {
        gt.Reason.UNSPECIFIED: grpc.StatusCode.INTERNAL,
        gt.Reason.USER_NOT_PROVISIONABLE: grpc.StatusCode.FAILED_PRECONDITION,
        gt.Reason.TARGET_MANAGED_EXTERNALLY: grpc.StatusCode.FAILED_PRECONDITION,
        gt.Reason.LICENSE_EXHAUSTED: grpc.StatusCode.FAILED_PRECONDITION,
        gt.Reason.VALIDATION_FAILURE: grpc.StatusCode.FAILED_PRECONDITION,
        gt.Reason.OPERATION_NOT_PERMITTED: grpc.StatusCode.PERMISSION_DENIED,
    }
    assert {r: gt.code_for_reason(r) for r in gt.Reason} == expected
    assert gt.code_for_reason(99) is grpc.StatusCode.FAILED_PRECONDITION


def test_reason_mirrors_the_proto_enum() -> None:
    enum = gt.ProvisionFailureDetail.Reason
    assert {f"REASON_{r.name}": r.value for r in gt.Reason} == dict(enum.items())


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (gt.UserNotProvisionable, (gt.TerminalError, gt.FailedPrecondition)),
        (gt.TargetManagedExternally, (gt.TerminalError, gt.FailedPrecondition)),
        (gt.LicenseExhausted, (gt.TerminalError, gt.FailedPrecondition)),
        (gt.ValidationFailure, (gt.TerminalError, gt.FailedPrecondition)),
        (gt.OperationNotPermitted, (gt.TerminalError, gt.PermissionDenied)),
    ],
)
def test_terminal_classes_have_both_parents(cls: type[gt.TerminalError], bases: tuple[type, ...]) -> None:
    err = cls("why")
    for base in bases:
        assert isinstance(err, base)
    assert err.code() is bases[1].grpc_code
    assert err.failure_detail == gt.ProvisionFailureDetail(reason=cls._reason, detail="why")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", ALL_CLASSES)
def test_every_class_is_a_well_behaved_rpc_error(cls: type[gt.StatusError]) -> None:
    err = cls("something broke", retry_delay=0.5, field_violations={"a": "b"}, metadata={"k": "v"})
    assert isinstance(err, grpc.RpcError)
    assert err.args == ("something broke",)  # super().__init__ ran
    assert err.details() == "something broke" == str(err)
    assert err.code() is not grpc.StatusCode.OK
    assert err.trailing_metadata() == ()
    assert cls.__name__ in repr(err)
    assert err.code().name in repr(err)
    assert cls.__doc__ and "\n" not in cls.__doc__.strip()
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert clone.code() is err.code()
    assert clone.details() == err.details()
    assert clone.failure_detail == err.failure_detail
    assert clone.retry_delay == err.retry_delay
    assert clone.error_info == err.error_info
    assert clone.field_violations == [("a", "b")]
    assert repr(copy.copy(err)) == repr(err)
    with pytest.raises(cls) as info:
        try:
            raise KeyError("cause")
        except KeyError as cause:
            raise err from cause
    assert isinstance(info.value.__cause__, KeyError)


def test_decoded_errors_pickle_too() -> None:
    encoded = encode(gt.UserNotProvisionable("suspended", retry_delay=1))
    received = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    clone = pickle.loads(pickle.dumps(received))
    assert type(clone) is gt.UserNotProvisionable
    assert clone.detail == "suspended"
    assert clone.trailing_metadata() == received.trailing_metadata()


def test_empty_message_prints_the_code() -> None:
    assert str(gt.NotFound()) == "NOT_FOUND"


def test_terminal_error_formats_only_with_args() -> None:
    literal = gt.terminal_error(gt.Reason.LICENSE_EXHAUSTED, "50% of seats used, 100%s")
    assert isinstance(literal, gt.LicenseExhausted)
    assert literal.detail == "50% of seats used, 100%s"
    formatted = gt.terminal_error(gt.Reason.LICENSE_EXHAUSTED, "Jira: %d of %d seats used", 100, 100)
    assert formatted.details() == "Jira: 100 of 100 seats used"
    broken = gt.terminal_error(gt.Reason.USER_NOT_PROVISIONABLE, "user %d", "not-a-number")
    assert isinstance(broken, gt.UserNotProvisionable)
    assert "not-a-number" in broken.details()


def test_terminal_error_classes_and_unknown_reasons() -> None:
    for reason in gt.Reason:
        if reason is gt.Reason.UNSPECIFIED:
            continue
        err = gt.terminal_error(reason, "x")
        assert isinstance(err, gt.TerminalError)
        assert err.reason is reason
    future = gt.terminal_error(17, "new reason")
    assert type(future) is gt.TerminalError
    assert future.reason == 17
    assert future.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert future.error_info is not None
    assert future.error_info.reason == "REASON_17"


def test_unspecified_reason_gives_internal_without_detail(caplog: pytest.LogCaptureFixture) -> None:
    err = gt.terminal_error(gt.Reason.UNSPECIFIED, "forgot the reason")
    assert type(err) is gt.Internal
    assert err.failure_detail is None
    assert not gt.is_terminal(err)
    assert "REASON_UNSPECIFIED" in caplog.text
    with pytest.raises(ValueError, match="UNSPECIFIED"):
        gt.TerminalError("x", reason=gt.Reason.UNSPECIFIED)


@pytest.mark.parametrize(
    ("build", "error", "match"),
    [
        (lambda: gt.TerminalError("x"), TypeError, "needs a reason"),
        (lambda: gt.UserNotProvisionable("x", reason=gt.Reason.LICENSE_EXHAUSTED), ValueError, "has reason"),
        (lambda: gt.TerminalError("x", reason=-1), TypeError, "int32"),
        (lambda: gt.NotFound(b"bytes"), TypeError, "message must be str"),  # type: ignore[arg-type]
        (lambda: gt.NotFound("x", error_reason="lower"), ValueError, "UPPER_SNAKE"),
        (lambda: gt.NotFound("x", metadata={"Bad Key": "v"}), ValueError, "lowerCamelCase"),
        (lambda: gt.NotFound("x", metadata={"k": 1}), TypeError, "must be str"),  # type: ignore[dict-item]
        (lambda: gt.Unavailable("x", retry_delay=-1), ValueError, "retry_delay"),
        (lambda: gt.Unavailable("x", retry_delay=float("nan")), ValueError, "retry_delay"),
        (lambda: gt.Unavailable("x", retry_delay=10**400), ValueError, "between 0 and"),  # no OverflowError
        (lambda: gt.Unavailable("x", retry_delay=True), TypeError, "number of seconds"),
        (lambda: gt.Unavailable("x", retry_delay="5"), TypeError, "number of seconds"),  # type: ignore[arg-type]
        (lambda: gt.InvalidArgument("x", field_violations=[("only-one",)]), TypeError, "pairs"),  # type: ignore[list-item]
        (lambda: gt.InvalidArgument("x", extra_details=["not a message"]), TypeError, "protobuf"),  # type: ignore[list-item]
    ],
)
def test_bad_options_fail_clearly(build: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        build()  # type: ignore[operator]


def test_metadata_keys_become_lower_camel_case() -> None:
    err = gt.NotFound("x", metadata={"user_id": "1", "group-name": "g", "tenant": "t"})
    assert err.error_info is not None
    assert dict(err.error_info.metadata) == {"userId": "1", "groupName": "g", "tenant": "t"}


def test_standard_details_given_as_messages_land_in_their_slot() -> None:
    info = ed.ResourceInfo(resource_type="user", resource_name="jdoe")
    extra = wrappers_pb2.StringValue(value="?")
    err = gt.NotFound("x", extra_details=[info, extra, ed.ResourceInfo(resource_type="dup")])
    assert err.resource_info == info
    assert len(err.extra_details) == 2  # the unknown type and the repeated ResourceInfo


def test_failure_detail_walks_chains_and_groups() -> None:
    terminal = gt.TargetManagedExternally("group rule")

    def explicit() -> None:
        try:
            raise terminal
        except gt.StatusError as exc:
            raise RuntimeError("wrapped") from exc

    def implicit() -> None:
        try:
            raise terminal
        except gt.StatusError:
            raise RuntimeError("while handling")  # noqa: B904

    for fn in (explicit, implicit):
        with pytest.raises(RuntimeError) as info:
            fn()
        pfd = gt.failure_detail(info.value)
        assert pfd is not None
        assert pfd.reason == gt.Reason.TARGET_MANAGED_EXTERNALLY
        assert gt.is_terminal(info.value)

    group = ExceptionGroup("many", [ValueError("a"), ExceptionGroup("inner", [terminal])])
    assert gt.is_terminal(group)
    assert not gt.is_terminal(ValueError("plain"))
    suppressed = RuntimeError("no context")
    suppressed.__context__ = terminal
    suppressed.__suppress_context__ = True
    assert not gt.is_terminal(suppressed)
    cycle = RuntimeError("a")
    cycle.__cause__ = cycle
    assert gt.failure_detail(cycle) is None


def test_to_status() -> None:
    status = gt.to_status(gt.OperationNotPermitted("policy says no"))
    assert status.code is grpc.StatusCode.PERMISSION_DENIED
    assert status.details == "policy says no"
    md = dict(status.trailing_metadata)
    assert md[gt.PUSHBACK_KEY] == "-1"
    assert isinstance(md[gt.STATUS_DETAILS_KEY], bytes)
    generic = gt.to_status(RuntimeError("SECRET"))
    assert generic.code is grpc.StatusCode.UNKNOWN
    assert "SECRET" not in generic.details + repr(generic.trailing_metadata)


def test_from_rpc_error_returns_typed_errors_unchanged_and_never_raises() -> None:
    err = gt.NotFound("x")
    assert gt.from_rpc_error(err) is err

    class Liar(grpc.RpcError):
        def code(self) -> object:
            raise RuntimeError("no")

        def trailing_metadata(self) -> object:
            return 42

    typed = gt.from_rpc_error(Liar())
    assert type(typed) is gt.Unknown
    assert isinstance(typed.__cause__, Liar)
