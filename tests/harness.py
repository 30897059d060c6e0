"""Real loopback servers and clients for the tests, sync and aio alike.

A test registers a :class:`Scenario` (what the handler does) under a key and
calls a method with that key; the same scenario runs on a sync server
(``grpc.server``) or an aio server (``grpc.aio.server``, on a loop in its own
thread), reached by a sync client (``intercept_channel``) or an aio client
(``aio_interceptors``). So every integration test is written once and run on
every combination.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from google.protobuf import wrappers_pb2

import grpc_terminal as gt
from grpc_terminal.testing import loopback_server

SERVICE = "test.Probe"
KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_METHOD = {
    "unary_unary": "Unary",
    "unary_stream": "ServerStream",
    "stream_unary": "ClientStream",
    "stream_stream": "BidiStream",
}
Msg = wrappers_pb2.StringValue


@dataclass
class Scenario:
    """What a handler does: send ``responses`` replies, then fail (or not)."""

    responses: int = 0
    raise_: BaseException | None = None
    abort: tuple[grpc.StatusCode, str] | None = None
    set_code: grpc.StatusCode | None = None
    set_details: str | None = None
    trailers: tuple[tuple[str, str | bytes], ...] = ()
    sleep: float = 0.0
    before: Callable[[], None] | None = None
    calls: list[int] = field(default_factory=list)


_registry: dict[str, Scenario] = {}
_keys = itertools.count()
_lock = threading.Lock()


def register(scenario: Scenario) -> str:
    with _lock:
        key = f"s{next(_keys)}"
        _registry[key] = scenario
    return key


def _scenario(key: str) -> Scenario:
    sc = _registry[key]
    sc.calls.append(1)
    return sc


def _key_of(request_or_iterator: Any, streaming: bool) -> tuple[str, int]:
    if not streaming:
        return request_or_iterator.value, 0
    count, key = 0, ""
    for req in request_or_iterator:
        key = key or req.value
        count += 1
    return key, count


# -- sync handlers ----------------------------------------------------------------

def _sync_prologue(sc: Scenario, context: Any) -> None:
    if sc.before:
        sc.before()
    if sc.sleep:
        import time

        time.sleep(sc.sleep)
    if sc.trailers:
        context.set_trailing_metadata(sc.trailers)


def _sync_finish(sc: Scenario, context: Any) -> None:
    if sc.set_code is not None:
        context.set_code(sc.set_code)
    if sc.set_details is not None:
        context.set_details(sc.set_details)
    if sc.abort is not None:
        context.abort(*sc.abort)
    if sc.raise_ is not None:
        raise sc.raise_


def _sync_unary(streaming: bool) -> Callable[..., Any]:
    def handler(request: Any, context: Any) -> Msg:
        key, _ = _key_of(request, streaming)
        sc = _scenario(key)
        _sync_prologue(sc, context)
        _sync_finish(sc, context)
        return Msg(value="ok")

    return handler


def _sync_stream(streaming: bool) -> Callable[..., Any]:
    def handler(request: Any, context: Any) -> Iterator[Msg]:
        key, _ = _key_of(request, streaming)
        sc = _scenario(key)
        _sync_prologue(sc, context)
        for i in range(sc.responses):
            yield Msg(value=f"r{i}")
        _sync_finish(sc, context)

    return handler


# -- aio handlers -------------------------------------------------------------------

async def _aio_key(request: Any, streaming: bool) -> str:
    if not streaming:
        return str(request.value)
    key = ""
    async for req in request:
        key = key or req.value
    return key


async def _aio_prologue(sc: Scenario, context: Any) -> None:
    if sc.before:
        sc.before()
    if sc.sleep:
        await asyncio.sleep(sc.sleep)
    if sc.trailers:
        context.set_trailing_metadata(sc.trailers)


async def _aio_finish(sc: Scenario, context: Any) -> None:
    if sc.set_code is not None:
        context.set_code(sc.set_code)
    if sc.set_details is not None:
        context.set_details(sc.set_details)
    if sc.abort is not None:
        await context.abort(*sc.abort)
    if sc.raise_ is not None:
        raise sc.raise_


def _aio_unary(streaming: bool) -> Callable[..., Any]:
    async def handler(request: Any, context: Any) -> Msg:
        sc = _scenario(await _aio_key(request, streaming))
        await _aio_prologue(sc, context)
        await _aio_finish(sc, context)
        return Msg(value="ok")

    return handler


def _aio_stream(streaming: bool) -> Callable[..., Any]:
    async def handler(request: Any, context: Any) -> Any:
        sc = _scenario(await _aio_key(request, streaming))
        await _aio_prologue(sc, context)
        for i in range(sc.responses):
            yield Msg(value=f"r{i}")
        await _aio_finish(sc, context)

    return handler


def _handlers(aio: bool, sync_on_aio: bool = False) -> grpc.GenericRpcHandler:
    unary, stream = (_aio_unary, _aio_stream) if aio and not sync_on_aio else (_sync_unary, _sync_stream)
    codec = {"request_deserializer": Msg.FromString, "response_serializer": Msg.SerializeToString}
    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary(False), **codec),
            "ServerStream": grpc.unary_stream_rpc_method_handler(stream(False), **codec),
            "ClientStream": grpc.stream_unary_rpc_method_handler(unary(True), **codec),
            "BidiStream": grpc.stream_stream_rpc_method_handler(stream(True), **codec),
        },
    )


# -- the event loop thread ------------------------------------------------------------

class LoopThread:
    """An asyncio loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# -- servers --------------------------------------------------------------------------

class _Served:
    """A :func:`grpc_terminal.testing.loopback_server` kept open until :meth:`stop`.

    The suite's servers are the ones the library ships to its users; this only
    holds one open across a module-scoped fixture instead of a ``with`` block.
    """

    def __init__(self, handlers: grpc.GenericRpcHandler, aio: bool, workers: int, options: Any) -> None:
        self._stack = contextlib.ExitStack()
        served = self._stack.enter_context(
            loopback_server(handlers, aio=aio, interceptor_options=options, workers=workers)
        )
        self.port = served.port

    def stop(self) -> None:
        self._stack.close()


class SyncServer(_Served):
    """The scenario handlers on a ``grpc.server`` behind ``ServerInterceptor(**options)``."""

    def __init__(self, workers: int = 16, **options: Any) -> None:
        super().__init__(_handlers(aio=False), False, workers, options)


class AioServer(_Served):
    """The scenario handlers on a ``grpc.aio`` server behind ``AioServerInterceptor(**options)``.

    The server runs on a loop of its own (``loopback_server``'s); ``loop`` is
    the clients' and is not used here. ``sync_handlers`` serves sync handlers
    on the aio server.
    """

    def __init__(self, loop: LoopThread, sync_handlers: bool = False, **options: Any) -> None:
        super().__init__(_handlers(aio=True, sync_on_aio=sync_handlers), True, 16, options)


# -- clients --------------------------------------------------------------------------

def _requests(key: str, n: int = 3) -> Iterator[Msg]:
    yield Msg(value=key)
    for i in range(n - 1):
        yield Msg(value=f"more{i}")


@dataclass
class Outcome:
    responses: list[str]
    error: BaseException | None


class SyncClient:
    def __init__(self, port: int, **options: Any) -> None:
        self.raw = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.channel = gt.intercept_channel(self.raw, **options)

    def method(self, kind: str) -> Any:
        path = f"/{SERVICE}/{_METHOD[kind]}"
        factory = getattr(self.channel, kind)
        return factory(path, request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString)

    def call(self, kind: str, key: str, timeout: float = 10) -> Outcome:
        stub = self.method(kind)
        got: list[str] = []
        try:
            if kind == "unary_unary":
                got.append(stub(Msg(value=key), timeout=timeout).value)
            elif kind == "stream_unary":
                got.append(stub(_requests(key), timeout=timeout).value)
            else:
                arg = Msg(value=key) if kind == "unary_stream" else _requests(key)
                for r in stub(arg, timeout=timeout):
                    got.append(r.value)
        except Exception as exc:
            return Outcome(got, exc)
        return Outcome(got, None)

    def close(self) -> None:
        self.raw.close()


class AioClient:
    """An aio client: ``aio_interceptors(**options)``, or ``aio_intercept_channel`` when ``wrap``."""

    def __init__(self, loop: LoopThread, port: int, wrap: bool = False, **options: Any) -> None:
        self.lt = loop

        async def make() -> Any:
            if wrap:
                return gt.aio_intercept_channel(grpc.aio.insecure_channel(f"127.0.0.1:{port}"))
            return grpc.aio.insecure_channel(
                f"127.0.0.1:{port}", interceptors=gt.aio_interceptors(**options)
            )

        self.channel = loop.run(make())

    def method(self, kind: str) -> Any:
        path = f"/{SERVICE}/{_METHOD[kind]}"
        factory = getattr(self.channel, kind)
        return factory(path, request_serializer=Msg.SerializeToString, response_deserializer=Msg.FromString)

    async def acall(self, kind: str, key: str, timeout: float = 10) -> Outcome:
        stub = self.method(kind)
        got: list[str] = []
        try:
            if kind == "unary_unary":
                got.append((await stub(Msg(value=key), timeout=timeout)).value)
            elif kind == "stream_unary":
                got.append((await stub(_requests(key), timeout=timeout)).value)
            else:
                arg = Msg(value=key) if kind == "unary_stream" else _requests(key)
                async for r in stub(arg, timeout=timeout):
                    got.append(r.value)
        except Exception as exc:
            return Outcome(got, exc)
        return Outcome(got, None)

    def call(self, kind: str, key: str, timeout: float = 10) -> Outcome:
        return self.lt.run(self.acall(kind, key, timeout))  # type: ignore[no-any-return]

    def close(self) -> None:
        self.lt.run(self.channel.close())


class Pair:
    """One server and one client of the chosen flavours."""

    def __init__(self, server_kind: str, client_kind: str, loop: LoopThread,
                 server_options: dict[str, Any] | None = None,
                 client_options: dict[str, Any] | None = None) -> None:
        so = server_options or {}
        co = client_options or {}
        if server_kind == "sync":
            self.server: Any = SyncServer(**so)
        else:
            self.server = AioServer(loop, sync_handlers=(server_kind == "aio-sync-handlers"), **so)
        if client_kind == "sync":
            self.client: Any = SyncClient(self.server.port, **co)
        else:
            self.client = AioClient(loop, self.server.port, wrap=(client_kind == "aio-channel"), **co)
        self.server_kind, self.client_kind = server_kind, client_kind

    def run(self, kind: str, scenario: Scenario, timeout: float = 10) -> Outcome:
        return self.client.call(kind, register(scenario), timeout)  # type: ignore[no-any-return]

    def close(self) -> None:
        self.client.close()
        self.server.stop()
