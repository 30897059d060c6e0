from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

sys.path.insert(0, os.path.dirname(__file__))

from harness import LoopThread, Pair

# (server, client): "aio-sync-handlers" is an aio server whose handlers are plain functions.
COMBOS = [
    ("sync", "sync"),
    ("aio", "aio"),
    ("sync", "aio"),
    ("aio", "sync"),
    ("aio-sync-handlers", "aio"),
    ("aio-sync-handlers", "sync"),
]


@pytest.fixture(scope="session")
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture(scope="module", params=COMBOS, ids=["-".join(c) for c in COMBOS])
def pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    server_kind, client_kind = request.param
    p = Pair(server_kind, client_kind, loop_thread)
    yield p
    p.close()
