"""``python -m grpc_terminal``: command-line tools.

``decode [VALUE]`` reads one ``grpc-status-details-bin`` value and prints
what it carries. VALUE (or standard input when it is absent or ``-``) is
base64, standard or URL-safe, padded or not, possibly wrapped over lines,
possibly still prefixed by its trailer name as ``grpcurl -v`` or a proxy log
prints it (``grpc-status-details-bin: CAkS...``); on standard input it may
also be the raw binary ``google.rpc.Status``. At most 1 MiB is read: larger
input is refused without being read to its end. Exit status: 0 decoded, 2 bad
input or usage.

Everything printed is safe on a terminal whatever the peer put in the status:
every character that is not printable (C0 and C1 controls such as ``ESC``,
``CR`` or ``DEL``, bidirectional overrides such as U+202E, line separators,
other invisible format characters) is escaped as ``\\uXXXX`` text, and a
text-report value holding one is shown as a quoted JSON string. Output never
fails on the encoding of standard output: characters it cannot represent
are written as backslash escapes (JSON output then falls back to
``\\uXXXX`` escapes, so it stays valid JSON).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import sys
from collections.abc import Sequence
from typing import Any, TextIO, TypeAlias

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from google.rpc import status_pb2

from grpc_terminal._classify import classify, is_terminal
from grpc_terminal._decode import decode, salvage_status
from grpc_terminal._problem import exit_code, problem
from grpc_terminal._reason import reason_name
from grpc_terminal._trailers import STATUS_DETAILS_KEY

__all__ = ["BadInput", "main", "parse_status", "read_value"]

_CODES = {c.value[0]: c for c in grpc.StatusCode}
_PREFIX = re.compile(r"grpc-status-details-bin\s*[:=]\s*", re.IGNORECASE)
_MAX_INPUT = 1 << 20

#: A JSON value as :func:`summary` and protobuf's ``MessageToDict`` build it.
_Json: TypeAlias = "dict[str, _Json] | list[_Json] | str | int | float | bool | None"


class BadInput(ValueError):
    """The input is not a grpc-status-details-bin value."""


def _strip_text(text: str) -> str:
    """The base64 payload of ``text``: after a trailer-name prefix, quotes and whitespace removed."""
    match = _PREFIX.search(text)
    if match is not None:
        rest = text[match.end() :]
        text = rest.splitlines()[0] if rest.strip() else rest
    text = text.strip().strip("\"'`").strip()
    return "".join(text.split())


def _as_text(data: bytes) -> str | None:
    """``data`` as text when it is printable ASCII (whitespace allowed), else None."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        return None
    return text if all(c.isprintable() or c in "\r\n\t" for c in text) else None


def read_value(data: bytes, *, allow_raw: bool = True) -> bytes:
    """The serialized ``google.rpc.Status`` in ``data``: base64 text, or raw bytes if ``allow_raw``."""
    if not data.strip():
        raise BadInput("no input: pass a grpc-status-details-bin value or pipe one on stdin")
    if len(data) > _MAX_INPUT:
        raise BadInput(f"input too large (the limit is {_MAX_INPUT} bytes)")
    text = _as_text(data)
    if text is None:
        if allow_raw:
            return data  # not text: the raw binary Status
        raise BadInput("the value is not base64 text")
    payload = _strip_text(text)
    if not payload:
        raise BadInput("no base64 value after the trailer name")
    if not re.fullmatch(r"[A-Za-z0-9+/_\-]+=*", payload):
        bad = sorted({c for c in payload if not (c.isalnum() or c in "+/_-=")})
        shown = "".join(bad) if bad else "="
        raise BadInput(f"not base64: unexpected character(s) {shown!r}")
    if any(c in payload for c in "+/") and any(c in payload for c in "-_"):
        raise BadInput("not base64: the value mixes the standard and URL-safe alphabets")
    unpadded = payload.rstrip("=")
    if len(unpadded) % 4 == 1:
        raise BadInput("not base64: the length is impossible (truncated value?)")
    padded = unpadded + "=" * (-len(unpadded) % 4)
    try:
        if "-" in padded or "_" in padded:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"not base64: {exc}") from None


#: Shown in place of a status message that is not valid UTF-8 (the rest is salvaged).
UNREADABLE_MESSAGE = "(the status message is not valid UTF-8; not shown)"


def parse_status(raw: bytes) -> status_pb2.Status:
    """``raw`` as a ``google.rpc.Status``; ``BadInput`` when it is not one.

    A status the strict parser rejects is salvaged field by field, as the
    client does (a message that is not UTF-8 is replaced by
    :data:`UNREADABLE_MESSAGE`; the code and every well-formed detail are kept).
    """
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception as exc:  # DecodeError, UnicodeDecodeError; pure-python protobuf raises odd things
        try:
            status = salvage_status(raw)
        except Exception:
            status = status_pb2.Status()
        if status.ByteSize() == 0:
            known = isinstance(exc, DecodeError | UnicodeDecodeError | ValueError)
            reason = str(exc) if known and str(exc) else f"{type(exc).__name__}: {exc or 'malformed'}"
            raise BadInput(f"not a google.rpc.Status: {reason}") from None
        status.message = UNREADABLE_MESSAGE
    if status.ByteSize() == 0:
        raise BadInput("not a google.rpc.Status: it decodes to an empty status")
    return status


def _detail_dict(packed: Any) -> dict[str, Any]:
    try:
        result: dict[str, Any] = json_format.MessageToDict(packed, preserving_proto_field_name=True)
        return result
    except Exception:
        return {"@type": packed.type_url, "value_base64": base64.b64encode(packed.value).decode()}


def summary(status: status_pb2.Status) -> dict[str, Any]:
    """Everything ``decode`` reports about ``status``, JSON-ready."""
    code = _CODES.get(status.code)
    out: dict[str, Any] = {
        "code": status.code,
        "code_name": code.name if code is not None else f"CODE_{status.code}",
        "message": status.message,
    }
    if code is not None and code is not grpc.StatusCode.OK:
        err = decode(code, status.message, ((STATUS_DETAILS_KEY, status.SerializeToString()),))
        verdict = classify(err)
        out["error_class"] = type(err).__name__
        pfd = err.failure_detail
        if pfd is not None:
            out["reason"] = reason_name(pfd.reason)
            out["detail"] = pfd.detail
        elif err.error_info is not None and err.error_info.reason:
            out["reason"] = err.error_info.reason
        out["terminal"] = is_terminal(err)
        out["retryable"] = verdict.retryable
        out["rule"] = verdict.rule
        if verdict.delay is not None:
            out["retry_delay"] = verdict.delay
        if err.request_id:
            out["request_id"] = err.request_id
        out["exit_code"] = exit_code(err)
    out["details"] = [_detail_dict(packed) for packed in status.details]
    return out


def _escape_char(char: str) -> str:
    """``char`` as a JSON escape (a surrogate pair beyond the BMP)."""
    number = ord(char)
    if number < 0x10000:
        return f"\\u{number:04x}"
    number -= 0x10000
    return f"\\u{0xD800 + (number >> 10):04x}\\u{0xDC00 + (number & 0x3FF):04x}"


def _escape_unprintable(text: str, keep: str = "") -> str:
    """``text`` with every character that is not printable (but ``keep`` and spaces) escaped.

    Not printable is Python's ``str.isprintable`` rule: C0 and C1 controls
    (``ESC``, ``CR``, ``DEL``, ``CSI``...), format characters (bidirectional
    overrides such as U+202E, zero-width characters), line and paragraph
    separators, surrogates, private-use and unassigned code points, and
    spaces other than U+0020. None of them reaches a terminal raw.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() or c == " " or c in keep else _escape_char(c) for c in text)


def _quoted(value: str) -> str:
    """``value`` as a JSON string literal holding only printable characters."""
    return _escape_unprintable(json.dumps(value, ensure_ascii=False))


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        plain = value and value.strip() == value and value.isprintable()
        return value if plain else _quoted(value)
    return _escape_unprintable(json.dumps(value, ensure_ascii=False))


def _key(value: Any) -> str:
    """A mapping key or a type name in the text report: as is when printable, else quoted."""
    text = str(value)
    return text if text and text.isprintable() and ":" not in text else _quoted(text)


def _render(value: _Json, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{_key(key)}:")
                _render(item, indent + 2, lines)
            else:
                lines.append(f"{pad}{_key(key)}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                sub: list[str] = []
                _render(item, indent + 2, sub)
                sub[0] = f"{pad}- {sub[0].lstrip()}"
                lines.extend(sub)
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    else:
        lines.append(f"{pad}{_scalar(value)}")


def format_text(info: dict[str, Any]) -> str:
    """The human-readable report of :func:`summary`."""
    lines = [
        f"code:       {info['code']} {info['code_name']}",
        f"message:    {_scalar(info['message'])}",
    ]
    if "error_class" in info:
        if info["terminal"]:
            verdict = "terminal: retrying cannot help"
        elif info["retryable"]:
            verdict = "transient: retrying may help"
        else:
            verdict = "not retryable"
        lines.append(f"error:      {info['error_class']} ({verdict}; rule {info['rule']})")
    for key in ("reason", "detail", "retry_delay", "request_id", "exit_code"):
        if key in info:
            value = info[key]
            shown = f"{value:g} s" if key == "retry_delay" else _scalar(value)
            lines.append(f"{key + ':':<11} {shown}")
    details = info["details"]
    lines.append(f"details:    {len(details)}")
    for index, detail in enumerate(details, 1):
        body = dict(detail)
        type_url = str(body.pop("@type", "?"))
        lines.append(f"  [{index}] {_key(type_url.rsplit('/', 1)[-1])}")
        _render(body, 6, lines)
    # Every peer value above is already escaped; this pass is the guarantee.
    return "\n".join(_escape_unprintable(line) for line in lines)


def format_json(value: Any, *, ascii_only: bool = False) -> str:
    """``value`` as indented JSON with every unprintable character escaped.

    ``json.dumps`` escapes only C0 controls; DEL, C1 controls, U+2028/U+2029
    and bidirectional overrides would reach the terminal raw. With
    ``ascii_only`` every non-ASCII character is escaped too.
    """
    text = json.dumps(value, indent=2, ensure_ascii=ascii_only)
    # Raw newlines left by json.dumps are its own indentation: those in strings are escaped.
    return _escape_unprintable(text, keep="\n")


def _encodable(stream: TextIO, text: str) -> bool:
    """Whether ``stream`` can encode ``text`` (streams without an encoding take any str)."""
    encoding = getattr(stream, "encoding", None)
    if not isinstance(encoding, str):
        return True
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    except LookupError:
        return True
    return True


def _write(stream: TextIO, text: str) -> None:
    """Write ``text``; characters the stream's encoding cannot represent go as backslash escapes."""
    if not _encodable(stream, text):
        encoding = str(stream.encoding)
        text = text.encode(encoding, "backslashreplace").decode(encoding, "replace")
    stream.write(text)


def _write_json(stream: TextIO, value: Any) -> None:
    """Write ``value`` as JSON that stays valid JSON whatever the stream's encoding."""
    text = format_json(value) + "\n"
    if not _encodable(stream, text):
        text = format_json(value, ascii_only=True) + "\n"
    _write(stream, text)


def _read_limited(stdin: Any) -> bytes:
    """At most ``_MAX_INPUT + 1`` bytes of ``stdin`` (bytes or text): never the whole of a huge input."""
    want = _MAX_INPUT + 1
    chunks: list[bytes] = []
    size = 0
    while size < want:
        chunk = stdin.read(want - size)
        if not chunk:
            break
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8", "surrogateescape")
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _cmd_decode(args: argparse.Namespace, stdin: Any, out: TextIO) -> int:
    if args.value is None or args.value == "-":
        raw = read_value(_read_limited(stdin))
    else:
        raw = read_value(args.value.encode("utf-8", "surrogateescape"), allow_raw=False)
    status = parse_status(raw)
    if args.problem:
        code = _CODES.get(status.code)
        if code is None or code is grpc.StatusCode.OK:
            raise BadInput(f"a problem object needs a failure code, not {status.code}")
        err = decode(code, status.message, ((STATUS_DETAILS_KEY, raw),))
        _write_json(out, problem(err))
        return 0
    info = summary(status)
    if args.json:
        _write_json(out, info)
    else:
        _write(out, format_text(info) + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m grpc_terminal``."""
    parser = argparse.ArgumentParser(
        prog="python -m grpc_terminal",
        description="grpc-terminal command-line tools.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    dec = commands.add_parser(
        "decode",
        help="decode a grpc-status-details-bin value",
        description=(
            "Decode one grpc-status-details-bin trailer value (base64, standard or URL-safe, "
            "padded or not, as grpcurl -v or a proxy log prints it; or the raw binary status "
            "on stdin) and print its code, message, reason, detail and every detail."
        ),
    )
    dec.add_argument("value", nargs="?", help="the value; read from stdin when absent or '-'")
    fmt = dec.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of text")
    fmt.add_argument("--problem", action="store_true", help="print an RFC 9457 problem object")
    return parser


def main(argv: Sequence[str] | None = None, *, stdin: Any = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 2 bad input or usage).

    ``argv`` is the argument list without the program name (default: the
    process's). ``stdin`` is a binary (or text) stream read for a value
    when none is given, at most 1 MiB of it (default: ``sys.stdin.buffer``).
    ``stdout`` and ``stderr`` are text streams for the report and for errors
    (default: the process's); what their encoding cannot represent is
    written as backslash escapes, never an error.
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    source = stdin if stdin is not None else sys.stdin.buffer
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return _cmd_decode(args, source, out)
    except BadInput as exc:
        _write(err, f"grpc_terminal decode: error: {_escape_unprintable(str(exc))}\n")
        return 2
