"""RFC 9457 problem objects and process exit codes (grpc_terminal._problem)."""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt
from grpc_terminal._encode import encode
from grpc_terminal._problem import (
    EXIT_CODES,
    HTTP_STATUS,
    NOT_GRPC_EXIT_CODE,
    UNKNOWN_REASON_EXIT_CODE,
    exit_code,
    http_status,
    problem,
    problem_type,
)
from grpc_terminal.testing import loopback_server

from fakes import Received

C = grpc.StatusCode

# The google.rpc.Code table, written out independently of the module under test.
EXPECTED_HTTP = {
    "OK": 200, "CANCELLED": 499, "UNKNOWN": 500, "INVALID_ARGUMENT": 400, "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404, "ALREADY_EXISTS": 409, "PERMISSION_DENIED": 403, "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400, "ABORTED": 409, "OUT_OF_RANGE": 400, "UNIMPLEMENTED": 501,
    "INTERNAL": 500, "UNAVAILABLE": 503, "DATA_LOSS": 500, "UNAUTHENTICATED": 401,
}

TERMINAL: list[tuple[type[gt.TerminalError], str, int, int]] = [
    (gt.UserNotProvisionable, "user-not-provisionable", 400, 80),
    (gt.TargetManagedExternally, "target-managed-externally", 400, 81),
    (gt.LicenseExhausted, "license-exhausted", 400, 82),
    (gt.ValidationFailure, "validation-failure", 400, 83),
    (gt.OperationNotPermitted, "operation-not-permitted", 403, 84),
]

CODE_CLASSES: list[type[gt.StatusError]] = [
    gt.Cancelled, gt.Unknown, gt.InvalidArgument, gt.DeadlineExceeded, gt.NotFound,
    gt.AlreadyExists, gt.PermissionDenied, gt.ResourceExhausted, gt.FailedPrecondition,
    gt.Aborted, gt.OutOfRange, gt.Unimplemented, gt.Internal, gt.Unavailable, gt.DataLoss,
    gt.Unauthenticated,
]

# RFC 9457 section 3.2: extension names SHOULD start with a letter, use ALPHA / DIGIT / "_",
# and be at least three characters long.
MEMBER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{2,}$")


def received(err: gt.StatusError) -> Received:
    """``err`` as a client receives it from grpc: encoded, then code, details and trailers only."""
    encoded = encode(err)
    return Received(encoded.code, encoded.message, encoded.trailing_metadata)


def _json_roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(obj))
    return loaded


def test_http_status_table_is_the_google_rpc_code_table() -> None:
    assert {code.name: status for code, status in HTTP_STATUS.items()} == EXPECTED_HTTP
    for code in C:
        assert http_status(code) == EXPECTED_HTTP[code.name]


@pytest.mark.parametrize(("cls", "slug", "status", "_exit"), TERMINAL)
def test_terminal_errors_are_typed_by_reason(
    cls: type[gt.TerminalError], slug: str, status: int, _exit: int
) -> None:
    err = cls("Okta E0000038: user 'jdoe' is SUSPENDED")
    body = _json_roundtrip(problem(err))
    assert body["type"] == f"urn:grpc-terminal:reason:{slug}"
    assert problem_type(err) == body["type"]
    assert body["status"] == status
    assert body["title"] and body["title"] != body["detail"]
    assert body["detail"] == "Okta E0000038: user 'jdoe' is SUSPENDED"
    assert body["admin_detail"] == "Okta E0000038: user 'jdoe' is SUSPENDED"
    assert body["code"] == err.code().name
    assert body["reason"] == cls._reason.name  # type: ignore[union-attr]
    assert body["terminal"] is True
    assert body["retryable"] is False
    assert "instance" not in body
    assert "retry_delay" not in body


@pytest.mark.parametrize("cls", CODE_CLASSES)
def test_every_code_has_a_type_title_and_status(cls: type[gt.StatusError]) -> None:
    err = cls("something happened")
    body = _json_roundtrip(problem(err))
    code = cls.grpc_code
    assert body["type"] == "urn:grpc-terminal:code:" + code.name.lower().replace("_", "-")
    assert body["status"] == EXPECTED_HTTP[code.name]
    assert body["title"] == code.name.replace("_", " ").capitalize()
    assert body["code"] == code.name
    assert body["reason"] == code.name  # the ErrorInfo reason defaults to the code
    assert body["terminal"] is False
    assert body["retryable"] is gt.is_retryable(err)
    for name in body:
        assert MEMBER_NAME.match(name), name


def test_type_and_title_do_not_depend_on_the_occurrence() -> None:
    a, b = problem(gt.LicenseExhausted("Jira: 100 of 100")), problem(gt.LicenseExhausted("Slack: 5 of 5"))
    assert (a["type"], a["title"], a["status"]) == (b["type"], b["title"], b["status"])
    assert a["detail"] != b["detail"]


def test_unknown_reason_gets_its_own_type() -> None:
    err = gt.terminal_error(42, "from a newer peer")
    body = problem(err)
    assert body["type"] == "urn:grpc-terminal:reason:reason-42"
    assert body["title"] == "Terminal failure"
    assert body["reason"] == "REASON_42"
    assert body["status"] == 400
    assert body["terminal"] is True


def test_transient_error_carries_retry_delay() -> None:
    body = problem(gt.Unavailable("upstream 503", retry_delay=2.5))
    assert body["type"] == "urn:grpc-terminal:code:unavailable"
    assert body["status"] == 503
    assert body["retryable"] is True
    assert body["retry_delay"] == 2.5


def test_standard_details_become_extension_members() -> None:
    err = gt.InvalidArgument(
        "bad descriptor",
        field_violations={"spec.name": "must not be empty", "spec.kind": "unknown kind"},
        precondition_violations=[("TOS", "user:1", "terms not accepted")],
        quota_violations={"project:p": "no quota"},
        resource_info=("group", "engineering"),
        help_links={"Docs": "https://docs.example.com/descriptors"},
        localized_message=("fr-FR", "Descripteur invalide"),
        metadata={"user_id": "u-1"},
        domain="provisioner.example.com",
    )
    body = _json_roundtrip(problem(err))
    assert body["field_violations"] == [
        {"field": "spec.name", "description": "must not be empty"},
        {"field": "spec.kind", "description": "unknown kind"},
    ]
    assert body["precondition_violations"] == [
        {"type": "TOS", "subject": "user:1", "description": "terms not accepted"}
    ]
    assert body["quota_violations"] == [{"subject": "project:p", "description": "no quota"}]
    assert body["resource"] == {"resource_type": "group", "resource_name": "engineering"}
    assert body["help_links"] == [{"description": "Docs", "url": "https://docs.example.com/descriptors"}]
    assert body["localized_message"] == {"locale": "fr-FR", "message": "Descripteur invalide"}
    assert body["metadata"] == {"userId": "u-1"}
    assert body["domain"] == "provisioner.example.com"
    for name in body:
        assert MEMBER_NAME.match(name), name


def test_request_id_becomes_instance() -> None:
    rid = uuid.uuid4().hex
    err = gt.Unknown("unexpected server error")
    err.request_info = ed.RequestInfo(request_id=rid)
    body = problem(err)
    assert body["instance"] == f"urn:uuid:{uuid.UUID(rid)}"
    assert body["request_id"] == rid


def test_non_uuid_request_id_is_percent_encoded() -> None:
    err = gt.Internal("boom")
    err.request_info = ed.RequestInfo(request_id="req 7/a")
    assert problem(err)["instance"] == "urn:grpc-terminal:request:req%207%2Fa"


def test_debug_info_is_never_rendered() -> None:
    err = gt.Internal("boom")
    err.debug_info = ed.DebugInfo(stack_entries=["SECRET-FRAME"], detail="SECRET-DETAIL")
    assert "SECRET" not in json.dumps(problem(err))


def test_raw_rpc_error_and_wrapped_errors_are_accepted() -> None:
    raw = received(gt.LicenseExhausted("Jira: 100 of 100 seats"))
    assert problem(raw)["type"] == "urn:grpc-terminal:reason:license-exhausted"
    with pytest.raises(RuntimeError) as info:
        try:
            raise raw
        except grpc.RpcError as inner:
            raise RuntimeError("grant failed") from inner
    assert problem(info.value)["reason"] == "LICENSE_EXHAUSTED"
    assert exit_code(info.value) == 82


def test_non_grpc_exception_is_rejected() -> None:
    with pytest.raises(TypeError, match="gRPC failure"):
        problem(ValueError("x"))


def test_problem_of_an_error_received_over_a_real_call() -> None:
    def handler(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
        raise RuntimeError("a bug")

    handlers = grpc.method_handlers_generic_handler(
        "test.Problem",
        {"Call": grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        )},
    )
    with loopback_server(handlers) as (channel, _port):
        call = channel.unary_unary(
            "/test.Problem/Call",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        with pytest.raises(gt.Unknown) as info:
            call(wrappers_pb2.StringValue(value="x"), timeout=10)
    body = problem(info.value)
    assert body["status"] == 500
    assert body["retryable"] is True
    assert info.value.request_id
    assert body["instance"] == uuid.UUID(info.value.request_id).urn
    assert "a bug" not in json.dumps(body)


# -- exit codes -------------------------------------------------------------------------


def test_exit_codes_are_distinct_and_in_the_documented_range() -> None:
    values = list(EXIT_CODES.values())
    assert len(values) == len(set(values))
    assert all(80 <= v <= 113 for v in values)
    assert UNKNOWN_REASON_EXIT_CODE == EXIT_CODES["TERMINAL_OTHER"] == 89
    assert NOT_GRPC_EXIT_CODE == EXIT_CODES["NOT_GRPC"] == 113
    # every reason but UNSPECIFIED, and every code but OK, has its own number
    assert {r.name for r in gt.Reason if r} <= set(EXIT_CODES)
    assert {c.name for c in C if c is not C.OK} <= set(EXIT_CODES)


@pytest.mark.parametrize(("cls", "_slug", "_status", "code"), TERMINAL)
def test_exit_code_of_terminal_reasons(
    cls: type[gt.TerminalError], _slug: str, _status: int, code: int
) -> None:
    assert exit_code(cls("x")) == code


@pytest.mark.parametrize("cls", CODE_CLASSES)
def test_exit_code_by_code(cls: type[gt.StatusError]) -> None:
    assert exit_code(cls("x")) == EXIT_CODES[cls.grpc_code.name]


def test_exit_code_groups() -> None:
    assert exit_code(gt.InvalidArgument("x")) == 90
    assert exit_code(gt.Unauthenticated("x")) == 95
    assert exit_code(gt.PermissionDenied("x")) == 96
    assert exit_code(gt.Unavailable("x")) == 100
    assert exit_code(gt.Internal("x")) == 110
    assert exit_code(gt.terminal_error(42, "newer reason")) == 89
    assert exit_code(ValueError("not grpc")) == 113
    assert exit_code(received(gt.OperationNotPermitted("policy"))) == 84


@pytest.mark.parametrize("wrong", [gt.Cancelled("x"), "CANCELLED", 1], ids=["error", "name", "number"])
def test_http_status_refuses_what_is_not_a_status_code(wrong: object) -> None:
    with pytest.raises(TypeError, match=r"takes a grpc\.StatusCode"):
        gt.http_status(wrong)  # type: ignore[arg-type]
    assert gt.http_status(gt.Cancelled("x").code()) == 499
