"""Fixtures for the interop tests: built peers, started once per session or module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import interop_peers as peers
import pytest


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"interop: {peers.go_version()}; @grpc/grpc-js {peers.node_module_version('@grpc/grpc-js')}, "
        f"protobufjs {peers.node_module_version('protobufjs')}; "
        f"GT_INTEROP_REQUIRED={'1' if peers.required() else '0'}",
    ]


@pytest.fixture(scope="session")
def go_peer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Go peer binary, built from Debian's grpc-go against Go types generated from proto/."""
    return peers.build_go_peer(tmp_path_factory.mktemp("go-peer"))


@pytest.fixture(scope="session")
def node_peer() -> list[str]:
    """``node peer.js --protos ...``: add ``server`` or ``client`` arguments."""
    return peers.node_command()


@pytest.fixture(scope="session")
def grpcurl() -> Path:
    return peers.grpcurl_binary()


@pytest.fixture(scope="module")
def go_server(go_peer: Path) -> Iterator[peers.Peer]:
    server = peers.Peer([str(go_peer), "server"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def node_server(node_peer: list[str]) -> Iterator[peers.Peer]:
    server = peers.Peer([node_peer[0], node_peer[1], "server", *node_peer[2:]], cwd=peers.NODE_DIR)
    yield server
    server.stop()
