"""``python -m grpc_terminal decode``: every input form, both outputs, bad input."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import status_pb2

import grpc_terminal as gt
from grpc_terminal._cli import main
from grpc_terminal._encode import encode
from grpc_terminal._trailers import STATUS_DETAILS_KEY
from grpc_terminal.testing import loopback_server


def _raw(err: gt.StatusError) -> bytes:
    value = dict(encode(err).trailing_metadata)[STATUS_DETAILS_KEY]
    assert isinstance(value, bytes)
    return value


def run(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


SUSPENDED = gt.UserNotProvisionable(
    "Okta E0000038: user 'jdoe' is SUSPENDED",
    help_links={"Runbook": "https://runbooks.example.com/suspended"},
    localized_message="This account is suspended; ask your admin to reactivate it. ???",
)
RAW = _raw(SUSPENDED)
STD = base64.b64encode(RAW).decode()
URLSAFE = base64.urlsafe_b64encode(RAW).decode()
assert STD.endswith("=") and ("+" in STD or "/" in STD), "pick a sample exercising padding and alphabets"

FORMS = {
    "standard-padded": STD,
    "standard-unpadded": STD.rstrip("="),
    "urlsafe-padded": URLSAFE,
    "urlsafe-unpadded": URLSAFE.rstrip("="),
    "grpcurl-trailer-line": f"Response trailers received:\ngrpc-status-details-bin: {STD}\n",
    "proxy-log-equals": f"grpc-status-details-bin={URLSAFE.rstrip('=')}",
    "wrapped-lines": "\n".join(STD[i : i + 60] for i in range(0, len(STD), 60)) + "\n",
    "quoted": f'"{STD}"',
}


def _check_text(out: str) -> None:
    assert "9 FAILED_PRECONDITION" in out
    assert "Okta E0000038: user 'jdoe' is SUSPENDED" in out
    assert "UserNotProvisionable (terminal" in out
    assert "reason:     USER_NOT_PROVISIONABLE" in out
    assert "detail:     Okta E0000038" in out
    for name in ("ProvisionFailureDetail", "ErrorInfo", "google.rpc.Help", "google.rpc.LocalizedMessage"):
        assert name in out
    assert "https://runbooks.example.com/suspended" in out
    assert "ask your admin to reactivate it" in out


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_textual_form_from_the_argument(form: str) -> None:
    status, out, err = run(["decode", FORMS[form]])
    assert (status, err) == (0, "")
    _check_text(out)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_textual_form_from_stdin(form: str) -> None:
    status, out, err = run(["decode"], FORMS[form].encode())
    assert (status, err) == (0, "")
    _check_text(out)


def test_raw_bytes_on_stdin_and_dash() -> None:
    for argv in (["decode"], ["decode", "-"]):
        status, out, err = run(argv, RAW)
        assert (status, err) == (0, "")
        _check_text(out)


def test_json_output() -> None:
    status, out, _ = run(["decode", "--json", STD])
    assert status == 0
    info = json.loads(out)
    assert info["code"] == 9
    assert info["code_name"] == "FAILED_PRECONDITION"
    assert info["error_class"] == "UserNotProvisionable"
    assert info["reason"] == "USER_NOT_PROVISIONABLE"
    assert info["detail"] == "Okta E0000038: user 'jdoe' is SUSPENDED"
    assert info["terminal"] is True
    assert info["retryable"] is False
    assert info["exit_code"] == 80
    types = [d["@type"] for d in info["details"]]
    assert types == [
        "type.googleapis.com/c1.connector.v2.ProvisionFailureDetail",
        "type.googleapis.com/google.rpc.ErrorInfo",
        "type.googleapis.com/google.rpc.Help",
        "type.googleapis.com/google.rpc.LocalizedMessage",
    ]
    assert info["details"][0]["reason"] == "REASON_USER_NOT_PROVISIONABLE"


def test_problem_output() -> None:
    status, out, _ = run(["decode", "--problem", STD])
    assert status == 0
    body = json.loads(out)
    assert body["type"] == "urn:grpc-terminal:reason:user-not-provisionable"
    assert body["status"] == 400


def test_transient_error_with_field_violations_and_retry_delay() -> None:
    err = gt.Unavailable("upstream 503", retry_delay=1.5, field_violations={"spec.name": "too long"})
    status, out, _ = run(["decode", base64.b64encode(_raw(err)).decode()])
    assert status == 0
    assert "14 UNAVAILABLE" in out
    assert "transient: retrying may help" in out
    assert "retry_delay: 1.5 s" in out
    assert "field: spec.name" in out
    assert "description: too long" in out
    info = json.loads(run(["decode", "--json", base64.b64encode(_raw(err)).decode()])[1])
    assert info["retry_delay"] == 1.5
    assert info["details"][-1]["field_violations"] == [{"field": "spec.name", "description": "too long"}]


def test_unknown_detail_types_are_shown_not_dropped() -> None:
    status_msg = status_pb2.Status(code=5, message="gone")
    status_msg.details.append(any_pb2.Any(type_url="type.googleapis.com/acme.v1.Custom", value=b"\x08\x01"))
    value = base64.b64encode(status_msg.SerializeToString()).decode()
    code, out, _ = run(["decode", value])
    assert code == 0
    assert "5 NOT_FOUND" in out
    assert "acme.v1.Custom" in out
    info = json.loads(run(["decode", "--json", value])[1])
    assert info["details"] == [{"@type": "type.googleapis.com/acme.v1.Custom", "value_base64": "CAE="}]


BAD = {
    "empty": ("", "no input"),
    "whitespace": ("  \n", "no input"),
    "not-base64": ("this is not base64!", "not base64"),
    "impossible-length": ("CAkSJ", "length is impossible"),
    "mixed-alphabets": ("ab+c-d", "mixes"),
    "not-a-status": (base64.b64encode(b"\xff\xff\xff\xff").decode(), "not a google.rpc.Status"),
    "zero-byte": ("AA==", "not a google.rpc.Status"),
    "prefix-only": ("grpc-status-details-bin: ", "no base64 value"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_a_message(case: str) -> None:
    value, message = BAD[case]
    for argv, stdin in ((["decode", value], b""), (["decode"], value.encode())):
        status, out, err = run(argv, stdin)
        assert status == 2, (argv, out, err)
        assert out == ""
        assert err.startswith("grpc_terminal decode: error: ")
        assert message in err
        assert "Traceback" not in err


def test_zero_bytes_decode_to_an_empty_status_and_are_rejected() -> None:
    status, _, err = run(["decode"], b"\x00\x00")
    assert status == 2
    assert "google.rpc.Status" in err


def test_problem_needs_a_failure_code() -> None:
    ok = base64.b64encode(status_pb2.Status(code=0, message="fine").SerializeToString()).decode()
    assert run(["decode", ok])[0] == 0
    status, _, err = run(["decode", "--problem", ok])
    assert status == 2
    assert "failure code" in err


def test_usage_errors_exit_2() -> None:
    assert main([], stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert main(["decode", "--json", "--problem", STD], stdout=io.StringIO(), stderr=io.StringIO()) == 2
    assert main(["frobnicate"], stdout=io.StringIO(), stderr=io.StringIO()) == 2


def test_module_entry_point_in_a_real_process() -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "grpc_terminal", "decode", STD], capture_output=True, text=True, timeout=60
    )
    assert ok.returncode == 0, ok.stderr
    _check_text(ok.stdout)
    piped = subprocess.run(
        [sys.executable, "-m", "grpc_terminal", "decode", "--json"],
        input=RAW, capture_output=True, timeout=60,
    )
    assert piped.returncode == 0
    assert json.loads(piped.stdout)["reason"] == "USER_NOT_PROVISIONABLE"
    bad = subprocess.run(
        [sys.executable, "-m", "grpc_terminal", "decode", "%%%"], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert "not base64" in bad.stderr


def test_decodes_a_trailer_captured_from_a_real_call() -> None:
    def handler(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
        raise gt.LicenseExhausted("Jira: 100 of 100 seats used", quota_violations={"jira": "100/100"})

    handlers = grpc.method_handlers_generic_handler(
        "test.Cli",
        {"Call": grpc.unary_unary_rpc_method_handler(
            handler,
            request_deserializer=wrappers_pb2.StringValue.FromString,
            response_serializer=wrappers_pb2.StringValue.SerializeToString,
        )},
    )
    with loopback_server(handlers) as (channel, _port):
        call = channel.unary_unary(
            "/test.Cli/Call",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        with pytest.raises(gt.LicenseExhausted) as info:
            call(wrappers_pb2.StringValue(value="x"), timeout=10)
    captured = dict(info.value.trailing_metadata())[STATUS_DETAILS_KEY]
    assert isinstance(captured, bytes)
    status, out, _ = run(["decode", base64.b64encode(captured).decode()])
    assert status == 0
    assert "LicenseExhausted" in out
    assert "LICENSE_EXHAUSTED" in out
    assert "google.rpc.QuotaFailure" in out
    assert "100/100" in out
