"""``python -m grpc_terminal decode`` against hostile input and unfriendly terminals (issue 12, 17-19).

17: every character that is not printable, whatever field of the status a
peer put it in, is escaped in every output mode (nothing can redraw, retitle
or reorder the terminal). 18: no output mode fails on a stdout or stderr
whose encoding cannot represent the text. 19: standard input is read up to
the 1 MiB limit plus one byte, never to its end.
"""

from __future__ import annotations

import base64
import io
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2

from grpc_terminal._cli import main

# What a hostile peer can put in a status: a carriage return and an erase-line
# sequence to overwrite the line, an OSC window title, a BEL, a bidi override,
# line and paragraph separators, C1 controls (NEL, CSI), DEL, a zero-width
# space; and non-ASCII text that is printable (kept, but not encodable in ASCII).
HOSTILE = (
    "ok\r\x1b[2K\x1b]0;pwned\x07FORGED \u202etxt.exe \u2028next\u2029 \x85\x9b31m\x7f \u200b"
    " caf\u00e9 \u65e5\u672c \u2713"
)
MESSAGE = f"denied: {HOSTILE}"
REASON = "X\x1b[31mRED"
DOMAIN = "evil\u202eexample.com"
META_KEY = "k\x1b[0m\nreason: FORGED"
META_VALUE = "v\r\n\u2029\x00"
TYPE_URL = "type.googleapis.com/acme\x1b[2J\n.Type"


def _hostile_status() -> status_pb2.Status:
    status = status_pb2.Status(code=9, message=MESSAGE)
    info = any_pb2.Any()
    info.Pack(
        error_details_pb2.ErrorInfo(reason=REASON, domain=DOMAIN, metadata={META_KEY: META_VALUE})
    )
    localized = any_pb2.Any()
    localized.Pack(error_details_pb2.LocalizedMessage(locale="en-US", message=HOSTILE))
    status.details.extend([info, localized, any_pb2.Any(type_url=TYPE_URL, value=b"\x08\x01")])
    return status


RAW = _hostile_status().SerializeToString()
VALUE = base64.b64encode(RAW).decode()
MODES = {"text": [], "json": ["--json"], "problem": ["--problem"]}


def _run(argv: list[str], stdin: bytes = b"") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(argv, stdin=io.BytesIO(stdin), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def _unprintable(text: str) -> list[str]:
    """Every character of ``text`` that may act on a terminal (newlines between lines excepted)."""
    return sorted({c for line in text.split("\n") for c in line if not c.isprintable()})


# -- 17: control characters ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("source", ["argument", "stdin"])
def test_no_unprintable_character_reaches_the_terminal(mode: str, source: str) -> None:
    argv = ["decode", *MODES[mode]]
    code, out, err = _run([*argv, VALUE]) if source == "argument" else _run(argv, RAW)
    assert (code, err) == (0, "")
    assert _unprintable(out) == [], f"raw control characters in the {mode} output: {_unprintable(out)}"
    # The escapes are visible as text, and printable non-ASCII text is kept as it is.
    for escape in ("\\u001b", "\\r", "\\u202e", "\\u2028", "\\u0085", "\\u009b", "\\u007f", "\\u200b"):
        assert escape in out, (escape, out)
    assert "caf\u00e9 \u65e5\u672c \u2713" in out


def test_text_report_lines_cannot_be_forged() -> None:
    code, out, _ = _run(["decode", VALUE])
    assert code == 0
    lines = out.splitlines()
    # One line per field, each peer string quoted on its own line (a JSON string literal).
    labels = [
        "<quoted key>" if line.lstrip().startswith('"') else line.split(":", 1)[0] for line in lines
    ]
    assert [label.strip() for label in labels] == [
        "code", "message", "error", "reason", "exit_code", "details",
        "[1] google.rpc.ErrorInfo", "reason", "domain", "metadata", "<quoted key>",
        "[2] google.rpc.LocalizedMessage", "locale", "message",
        "[3] \"acme\\u001b[2J\\n.Type\"", "value_base64",
    ]
    assert lines[1] == f"message:    {json.dumps(MESSAGE, ensure_ascii=False)}".translate(_ESCAPES)
    assert json.loads(lines[1].split(":", 1)[1]) == MESSAGE
    assert lines[3] == f"reason:     {json.dumps(REASON)}"
    assert lines[10].strip() == f"{json.dumps(META_KEY)}: {json.dumps(META_VALUE)}"


# The characters json.dumps leaves raw and the report escapes.
_ESCAPES = {ord(c): f"\\u{ord(c):04x}" for c in "\u202e\u2028\u2029\x85\x9b\x7f\u200b"}


@pytest.mark.parametrize("mode", ["json", "problem"])
def test_json_output_escapes_and_still_round_trips(mode: str) -> None:
    code, out, _ = _run(["decode", *MODES[mode], VALUE])
    assert code == 0
    body: dict[str, Any] = json.loads(out)
    if mode == "json":
        assert body["message"] == MESSAGE
        assert body["reason"] == REASON
        assert body["details"][0]["metadata"] == {META_KEY: META_VALUE}
        assert body["details"][0]["domain"] == DOMAIN
        assert body["details"][1]["message"] == HOSTILE
        assert body["details"][2]["@type"] == TYPE_URL
    else:
        assert body["detail"] == MESSAGE
        assert body["reason"] == REASON
        assert body["metadata"] == {META_KEY: META_VALUE}


# -- 18: the encoding of standard output ------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_survives_a_narrow_stdout_in_process(mode: str, encoding: str) -> None:
    buffer = io.BytesIO()
    out = io.TextIOWrapper(buffer, encoding=encoding)  # errors="strict", like a real console
    err = io.StringIO()
    code = main(["decode", *MODES[mode], VALUE], stdin=io.BytesIO(), stdout=out, stderr=err)
    out.flush()
    assert (code, err.getvalue()) == (0, "")
    text = buffer.getvalue().decode(encoding)
    _check_narrow_output(mode, encoding, text)


@pytest.mark.parametrize("encoding", ["ascii", "cp1252"])
@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_mode_survives_a_narrow_stdout_in_a_real_process(mode: str, encoding: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grpc_terminal", "decode", *MODES[mode], VALUE],
        capture_output=True, timeout=60, env=_env(PYTHONIOENCODING=encoding),
    )
    stderr = result.stderr.decode(encoding, "replace")
    assert result.returncode == 0, stderr
    assert "Traceback" not in stderr
    _check_narrow_output(mode, encoding, result.stdout.decode(encoding))


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONIOENCODING", "PYTHONUTF8"))}
    env.update(extra)
    return env


def _check_narrow_output(mode: str, encoding: str, text: str) -> None:
    assert _unprintable(text) == []
    if mode == "text":
        assert "FAILED_PRECONDITION" in text
        # What the encoding cannot hold is written as a backslash escape.
        assert "\\u65e5\\u672c \\u2713" in text
        assert ("caf\\xe9" if encoding == "ascii" else "caf\u00e9") in text
    else:
        body = json.loads(text)  # still valid JSON: not a backslash escape JSON would reject
        assert (body["message"] if mode == "json" else body["detail"]) == MESSAGE


# -- 19: bounded reading of standard input --------------------------------------------------------------

LIMIT = 1 << 20


class EndlessInput:
    """A binary stream that never ends, counting what was asked of it; an unbounded read fails."""

    def __init__(self) -> None:
        self.delivered = 0

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            raise AssertionError("read() without a size on an endless stream")
        chunk = b"\x00" * min(size, 1 << 16)
        self.delivered += len(chunk)
        return chunk


def test_endless_stdin_is_read_up_to_the_limit_plus_one_byte() -> None:
    endless = EndlessInput()
    out, err = io.StringIO(), io.StringIO()
    assert main(["decode"], stdin=endless, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == f"grpc_terminal decode: error: input too large (the limit is {LIMIT} bytes)\n"
    assert endless.delivered == LIMIT + 1


def test_input_at_the_limit_is_still_read() -> None:
    # A valid value padded with whitespace to exactly the limit: read whole, decoded.
    padded = (VALUE + "\n").encode().ljust(LIMIT, b" ")
    assert len(padded) == LIMIT
    assert _run(["decode", "--json"], padded)[0] == 0
    code, _, err = _run(["decode"], padded + b" ")
    assert code == 2
    assert "input too large" in err


def test_text_stdin_is_still_accepted() -> None:
    out = io.StringIO()
    assert main(["decode", "--json"], stdin=io.StringIO(VALUE), stdout=out, stderr=io.StringIO()) == 0
    assert json.loads(out.getvalue())["message"] == MESSAGE


def test_dev_zero_on_stdin_fails_fast_with_bounded_memory() -> None:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    with open("/dev/zero", "rb") as zero:
        result = subprocess.run(
            [sys.executable, "-m", "grpc_terminal", "decode"],
            stdin=zero, capture_output=True, text=True, timeout=30,
        )
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert "input too large" in result.stderr
    assert "Traceback" not in result.stderr
    assert elapsed < 15
    grown_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss - before
    assert grown_kib < 150 * 1024, f"the child's peak memory grew by {grown_kib} KiB"


# -- attacker trial: a status whose message is not UTF-8 is salvaged, as the client does ---------------


def _non_utf8_message_status() -> bytes:
    import grpc_terminal as gt

    detail = any_pb2.Any()
    detail.Pack(gt.ProvisionFailureDetail(reason=1, detail="user jdoe is SUSPENDED"))
    good = status_pb2.Status(code=9, message="MARK", details=[detail]).SerializeToString()
    return good.replace(b"MARK", b"\xff\xfe\x80M")  # same length: the framing stays valid


@pytest.mark.parametrize("mode", sorted(MODES))
def test_a_non_utf8_message_is_salvaged_like_the_client_does(mode: str) -> None:
    import grpc_terminal as gt

    from fakes import Received

    raw = _non_utf8_message_status()
    with pytest.raises(Exception):  # noqa: B017, PT011 - the strict parser refuses it
        status_pb2.Status.FromString(raw)
    trailers = [("grpc-status-details-bin", raw)]
    client = gt.from_rpc_error(Received(gt.FailedPrecondition.grpc_code, "x", trailers))
    assert isinstance(client, gt.UserNotProvisionable)
    code, out, err = _run(["decode", *MODES[mode], base64.b64encode(raw).decode()])
    assert (code, err) == (0, "")
    assert "USER_NOT_PROVISIONABLE" in out and "user jdoe is SUSPENDED" in out
    if mode != "problem":
        assert "not valid UTF-8" in out


def test_garbage_is_still_not_a_status() -> None:
    code, out, err = _run(["decode", base64.b64encode(b"\xff" * 7).decode()])
    assert code == 2 and out == "" and "not a google.rpc.Status" in err
