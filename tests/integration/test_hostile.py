"""Hostile input on the client: decoding never raises and stays honest."""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2 as ed
from google.rpc import status_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._encode import encode

from fakes import varint
from harness import LoopThread
from strategies import status_errors

FP = grpc.StatusCode.FAILED_PRECONDITION
KEY = gt.STATUS_DETAILS_KEY
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _any(msg: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(msg)
    return packed


def _status(code: grpc.StatusCode, message: str = "m", *details: Any) -> bytes:
    return status_pb2.Status(
        code=code.value[0], message=message, details=[_any(d) for d in details]
    ).SerializeToString()


PFD_USER = gt.ProvisionFailureDetail(reason=1, detail="suspended")
VALID = _status(FP, "m", PFD_USER, ed.ErrorInfo(reason="USER_NOT_PROVISIONABLE", domain="d"))


def _raw_status_with_bad_message(code: int, details: list[bytes]) -> bytes:
    """A Status whose message field is invalid UTF-8 (built by hand)."""
    out = bytes([0x08, code]) + bytes([0x12, 2, 0xC3, 0x28])
    for d in details:
        out += bytes([0x1A]) + varint(len(d)) + d
    return out


# (name, code, message, trailers, expected class, expected reason or None)
CASES: list[tuple[str, grpc.StatusCode, Any, Any, type[gt.StatusError], int | None]] = [
    ("valid", FP, "m", [(KEY, VALID)], gt.UserNotProvisionable, 1),
    ("garbage", FP, "m", [(KEY, b"\xff\xfe\x00garbage")], gt.FailedPrecondition, None),
    ("truncated", FP, "m", [(KEY, VALID[:-7])], gt.FailedPrecondition, None),
    ("empty-value", FP, "m", [(KEY, b"")], gt.FailedPrecondition, None),
    ("code-disagrees", grpc.StatusCode.NOT_FOUND, "m", [(KEY, VALID)], gt.NotFound, None),
    ("message-disagrees", FP, "other text", [(KEY, VALID)], gt.UserNotProvisionable, 1),
    (
        "pfd-on-ok-status",
        FP,
        "m",
        [(KEY, _status(grpc.StatusCode.OK, "m", PFD_USER))],
        gt.FailedPrecondition,
        None,
    ),
    ("pfd-on-ok-call", grpc.StatusCode.OK, "m", [(KEY, VALID)], gt.Unknown, None),
    (
        "unknown-reason",
        FP,
        "m",
        [(KEY, _status(FP, "m", gt.ProvisionFailureDetail(reason=77)))],
        gt.TerminalError,
        77,
    ),
    (
        "negative-reason",
        FP,
        "m",
        [(KEY, _status(FP, "m", gt.ProvisionFailureDetail(reason=-3)))],  # type: ignore[arg-type]
        gt.TerminalError,
        -3,
    ),
    (
        "reason-disagrees-with-code",
        grpc.StatusCode.NOT_FOUND,
        "m",
        [(KEY, _status(grpc.StatusCode.NOT_FOUND, "m", PFD_USER))],
        gt.TerminalError,
        1,
    ),
    (
        "invalid-utf8-message-in-status",
        FP,
        "m",
        [(KEY, _raw_status_with_bad_message(9, [_any(PFD_USER).SerializeToString()]))],
        gt.UserNotProvisionable,
        1,
    ),
    ("invalid-utf8-call-message", FP, b"\xc3\x28 bad", [(KEY, VALID)], gt.UserNotProvisionable, 1),
    ("duplicate-garbage-first", FP, "m", [(KEY, b"\x00junk"), (KEY, VALID)], gt.UserNotProvisionable, 1),
    (
        "duplicate-valid-first-wins",
        FP,
        "m",
        [(KEY, VALID), (KEY, _status(FP, "m", gt.ProvisionFailureDetail(reason=3)))],
        gt.UserNotProvisionable,
        1,
    ),
    (
        "non-any-payload",
        FP,
        "m",
        [(KEY, bytes([0x08, 9, 0x1A, 4]) + ed.ErrorInfo(reason="X").SerializeToString()[:4])],
        gt.FailedPrecondition,
        None,
    ),
    (
        "known-type-garbage-value",
        FP,
        "m",
        [
            (
                KEY,
                status_pb2.Status(
                    code=9,
                    details=[
                        any_pb2.Any(
                            type_url="type.googleapis.com/c1.connector.v2.ProvisionFailureDetail",
                            value=b"\xff\xff\xff",
                        )
                    ],
                ).SerializeToString(),
            )
        ],
        gt.FailedPrecondition,
        None,
    ),
    (
        "status-as-str-base64",
        FP,
        "m",
        [(KEY, base64.b64encode(VALID).decode())],
        gt.UserNotProvisionable,
        1,
    ),
    ("status-as-str-garbage", FP, "m", [(KEY, "not base64 at all ✓")], gt.FailedPrecondition, None),
    ("metadata-none", FP, "m", None, gt.FailedPrecondition, None),
    ("metadata-not-iterable", FP, "m", 42, gt.FailedPrecondition, None),
    ("metadata-bad-items", FP, "m", [1, ("a",), (b"k", b"v"), (KEY, VALID)], gt.UserNotProvisionable, 1),
    ("code-not-a-code", 9, "m", [(KEY, VALID)], gt.Unknown, None),
    ("message-none", FP, None, [(KEY, VALID)], gt.UserNotProvisionable, 1),
]


@pytest.mark.parametrize(
    ("name", "code", "message", "trailers", "cls", "reason"), CASES, ids=[c[0] for c in CASES]
)
def test_decode_is_honest(
    name: str, code: Any, message: Any, trailers: Any, cls: type[gt.StatusError], reason: int | None
) -> None:
    err = decode(code, message, trailers)
    assert type(err) is cls
    assert isinstance(err, grpc.RpcError)
    assert err.code() is (
        code
        if isinstance(code, grpc.StatusCode) and code is not grpc.StatusCode.OK
        else grpc.StatusCode.UNKNOWN
    )
    assert isinstance(err.details(), str)
    if reason is None:
        assert err.failure_detail is None
        assert not isinstance(err, gt.TerminalError)
    else:
        assert isinstance(err, gt.TerminalError) and int(err.reason) == reason
        assert gt.is_terminal(err)
    if isinstance(message, str):
        assert err.details() == message  # the call's message is authoritative
    repr(err), str(err)  # printing a hostile error never raises


def test_decode_huge_valid_status() -> None:
    big = gt.InvalidArgument("x", field_violations=[(f"f{i}", "d" * 20) for i in range(100_000)])
    raw = _status(grpc.StatusCode.INVALID_ARGUMENT, "x", big.bad_request)
    err = decode(grpc.StatusCode.INVALID_ARGUMENT, "x", [(KEY, raw)])
    assert type(err) is gt.InvalidArgument and len(err.field_violations) == 100_000


def test_from_rpc_error_survives_a_broken_call_object() -> None:
    class Broken(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            raise RuntimeError("no")

        def details(self) -> str:
            raise RuntimeError("no")

        def trailing_metadata(self) -> Any:
            raise RuntimeError("no")

    err = gt.from_rpc_error(Broken())
    assert type(err) is gt.Unknown and isinstance(err.__cause__, Broken)


_md_value = st.one_of(st.binary(max_size=300), st.text(max_size=50))
_md = st.lists(
    st.tuples(st.sampled_from([KEY, "x", "grpc-retry-pushback-ms", "k-bin"]), _md_value), max_size=4
)


@settings(max_examples=300, deadline=None)
@given(code=st.sampled_from(list(grpc.StatusCode)), message=st.one_of(st.text(), st.binary()), trailers=_md)
def test_decode_never_raises_on_random_input(code: grpc.StatusCode, message: Any, trailers: Any) -> None:
    err = decode(code, message, trailers)
    assert isinstance(err, gt.StatusError)
    assert err.code() is (code if code is not grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN)
    gt.is_retryable(err), gt.retry_delay(err), repr(err)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(err=status_errors(), data=st.data())
def test_decode_never_raises_on_mutated_encodings(err: gt.StatusError, data: st.DataObject) -> None:
    enc = encode(err)
    raw = next(v for k, v in enc.trailing_metadata if k == KEY)
    assert isinstance(raw, bytes)
    mutated = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 8))):
        action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
        pos = data.draw(st.integers(0, max(0, len(mutated) - 1)))
        if action == "flip" and mutated:
            mutated[pos] ^= data.draw(st.integers(1, 255))
        elif action == "cut":
            del mutated[pos:]
        else:
            mutated[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
    got = decode(enc.code, enc.message, [(KEY, bytes(mutated))])
    assert isinstance(got, gt.StatusError) and got.code() is enc.code
    gt.classify(got), repr(got)


def test_fuzz_target_and_corpus_under_pure_python_protobuf() -> None:
    """The checked-in corpus runs through the fuzz target with the pure-Python parser."""
    corpus = os.path.join(ROOT, "fuzz", "corpus")
    assert len(os.listdir(corpus)) >= 10
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="python")
    script = (
        "import os, sys; sys.path.insert(0, 'fuzz'); import fuzz_decode as f\n"
        "from google.protobuf.internal import api_implementation as a\n"
        "assert a.Type() == 'python', a.Type()\n"
        "names = sorted(os.listdir('fuzz/corpus'))\n"
        "[f.check(open(os.path.join('fuzz/corpus', n), 'rb').read()) for n in names]\n"
        "print(len(names))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 10


# -- end to end: a raw (non-intercepted) server sends what it likes ----------------------

RAW_SERVICE = "test.Raw"
_plans: dict[str, tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]] = {}
_plan_lock = threading.Lock()

E2E: list[tuple[str, grpc.StatusCode, str, tuple[tuple[str, Any], ...], type[gt.StatusError], int | None]] = [
    ("valid", FP, "m", ((KEY, VALID),), gt.UserNotProvisionable, 1),
    ("garbage", FP, "m", ((KEY, b"\xff\x00garbage"),), gt.FailedPrecondition, None),
    ("truncated", FP, "m", ((KEY, VALID[:-5]),), gt.FailedPrecondition, None),
    ("code-disagrees", grpc.StatusCode.UNAVAILABLE, "m", ((KEY, VALID),), gt.Unavailable, None),
    ("message-disagrees", FP, "another message", ((KEY, VALID),), gt.UserNotProvisionable, 1),
    (
        "pfd-on-ok-status",
        FP,
        "m",
        ((KEY, _status(grpc.StatusCode.OK, "m", PFD_USER)),),
        gt.FailedPrecondition,
        None,
    ),
    (
        "unknown-reason",
        FP,
        "m",
        ((KEY, _status(FP, "m", gt.ProvisionFailureDetail(reason=42))),),
        gt.TerminalError,
        42,
    ),
    (
        "invalid-utf8-status-message",
        FP,
        "m",
        ((KEY, _raw_status_with_bad_message(9, [_any(PFD_USER).SerializeToString()])),),
        gt.UserNotProvisionable,
        1,
    ),
    ("duplicates", FP, "m", ((KEY, b"\x00junk"), (KEY, VALID)), gt.UserNotProvisionable, 1),
    ("non-any", FP, "m", ((KEY, b"\x08\x09\x1a\x03\xff\xff\xff"),), gt.FailedPrecondition, None),
    # grpcio will not send a str for a -bin key; a peer can still send text where binary belongs.
    ("details-as-text", FP, "m", ((KEY, b'{"code": 9, "message": "json?"}'),), gt.FailedPrecondition, None),
    (
        "details-double-base64",
        FP,
        "m",
        ((KEY, base64.b64encode(VALID)),),
        gt.UserNotProvisionable,
        1,
    ),
    (
        "oversized-details",
        FP,
        "m",
        ((KEY, _status(FP, "m", PFD_USER, wrappers_pb2.BytesValue(value=b"z" * 6000))),),
        gt.UserNotProvisionable,
        1,
    ),
]


def _plan(key: str) -> tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]:
    with _plan_lock:
        return _plans[key]


def _sync_unary(request: wrappers_pb2.StringValue, context: grpc.ServicerContext) -> wrappers_pb2.StringValue:
    code, message, trailers = _plan(request.value)
    context.set_trailing_metadata(trailers)
    context.abort(code, message)
    raise AssertionError("not reached")


def _sync_stream(request: wrappers_pb2.StringValue, context: grpc.ServicerContext) -> Iterator[Any]:
    code, message, trailers = _plan(request.value)
    yield wrappers_pb2.StringValue(value="first")
    context.set_trailing_metadata(trailers)
    context.abort(code, message)


async def _aio_unary(request: wrappers_pb2.StringValue, context: Any) -> wrappers_pb2.StringValue:
    code, message, trailers = _plan(request.value)
    context.set_trailing_metadata(trailers)
    await context.abort(code, message)
    raise AssertionError("not reached")


async def _aio_stream(request: wrappers_pb2.StringValue, context: Any) -> Any:
    code, message, trailers = _plan(request.value)
    yield wrappers_pb2.StringValue(value="first")
    context.set_trailing_metadata(trailers)
    await context.abort(code, message)


def _generic(aio: bool) -> grpc.GenericRpcHandler:
    codec = {
        "request_deserializer": wrappers_pb2.StringValue.FromString,
        "response_serializer": wrappers_pb2.StringValue.SerializeToString,
    }
    unary, stream = (_aio_unary, _aio_stream) if aio else (_sync_unary, _sync_stream)
    return grpc.method_handlers_generic_handler(
        RAW_SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary, **codec),
            "Stream": grpc.unary_stream_rpc_method_handler(stream, **codec),
        },
    )


@pytest.fixture(scope="module", params=["sync-server", "aio-server"])
def raw_port(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[int]:
    if request.param == "sync-server":
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        server.add_generic_rpc_handlers((_generic(False),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        yield port
        server.stop(None)
        return

    async def start() -> tuple[Any, int]:
        srv = grpc.aio.server()
        srv.add_generic_rpc_handlers((_generic(True),))
        p = srv.add_insecure_port("127.0.0.1:0")
        await srv.start()
        return srv, p

    aio_server, port = loop_thread.run(start())
    yield port
    loop_thread.run(aio_server.stop(None))


def _sync_call(port: int, method: str, key: str) -> BaseException | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw:
        channel = gt.intercept_channel(raw)
        factory = channel.unary_unary if method == "Unary" else channel.unary_stream
        stub = factory(
            f"/{RAW_SERVICE}/{method}",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        try:
            result = stub(wrappers_pb2.StringValue(value=key), timeout=10)
            if method == "Stream":
                list(result)
        except Exception as exc:
            return exc
    return None


async def _aio_call(port: int, method: str, key: str) -> BaseException | None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=gt.aio_interceptors()) as channel:
        factory = channel.unary_unary if method == "Unary" else channel.unary_stream
        stub = factory(
            f"/{RAW_SERVICE}/{method}",
            request_serializer=wrappers_pb2.StringValue.SerializeToString,
            response_deserializer=wrappers_pb2.StringValue.FromString,
        )
        try:
            call = stub(wrappers_pb2.StringValue(value=key), timeout=10)
            if method == "Stream":
                async for _ in call:
                    pass
            else:
                await call
        except Exception as exc:
            return exc
    return None


@pytest.mark.parametrize("client", ["sync-client", "aio-client"])
@pytest.mark.parametrize("method", ["Unary", "Stream"])
@pytest.mark.parametrize(
    ("name", "code", "message", "trailers", "cls", "reason"), E2E, ids=[c[0] for c in E2E]
)
def test_hostile_server_end_to_end(
    raw_port: int,
    loop_thread: LoopThread,
    client: str,
    method: str,
    name: str,
    code: grpc.StatusCode,
    message: str,
    trailers: tuple[tuple[str, Any], ...],
    cls: type[gt.StatusError],
    reason: int | None,
) -> None:
    key = f"{name}-{method}-{client}-{raw_port}"
    with _plan_lock:
        _plans[key] = (code, message, trailers)
    if client == "sync-client":
        err = _sync_call(raw_port, method, key)
    else:
        err = loop_thread.run(asyncio.wait_for(_aio_call(raw_port, method, key), 20))
    assert type(err) is cls, err
    assert isinstance(err, grpc.RpcError) and err.code() is code and err.details() == message
    if reason is None:
        assert err.failure_detail is None
    else:
        assert isinstance(err, gt.TerminalError) and int(err.reason) == reason
