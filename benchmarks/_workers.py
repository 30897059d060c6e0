"""Server and client processes, each commanded over a pipe.

A server process serves one (style, variant) on 127.0.0.1 port 0 and answers
``cpu`` with its own ``time.process_time()`` (all its threads). A client
process drives a number of RPCs of one kind against a port and reports its own
CPU and wall time for exactly those RPCs. The orchestrator reads the server's
CPU before and after a client run, so each sample is the CPU one process spent
on a fixed number of RPCs, with nothing else in that process.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import os
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

import grpc_terminal as gt
from benchmarks import _service as svc

__all__ = ["ClientProc", "ServerProc"]

_CTX = multiprocessing.get_context("spawn")

# With two CPUs or more, servers run on CPU 0 and clients on CPU 1, so a
# sample's client and server do not take turns on one core (and the numbers
# say what one process spent, not how the scheduler placed it).
SERVER_CPU, CLIENT_CPU = 0, 1


def _pin(cpu: int) -> None:
    available = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set()
    if len(available) >= 2 and cpu in available:
        os.sched_setaffinity(0, {cpu})
_TIMEOUT = 60.0
_RPC_TIMEOUT = 10.0


# -- processes (child side) ------------------------------------------------------------


def _serve(conn: multiprocessing.connection.Connection, style: str, variant: str, workers: int) -> None:
    _pin(SERVER_CPU)
    if style == "sync":
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=workers),
            interceptors=svc.sync_server_interceptors(variant),
        )
        server.add_generic_rpc_handlers((svc.sync_handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()

        def stop() -> None:
            server.stop(None)
    else:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()

        async def start() -> tuple[grpc.aio.Server, int]:
            aserver = grpc.aio.server(interceptors=svc.aio_server_interceptors(variant))
            aserver.add_generic_rpc_handlers((svc.aio_handlers(),))
            aport = aserver.add_insecure_port("127.0.0.1:0")
            await aserver.start()
            return aserver, aport

        aserver, port = asyncio.run_coroutine_threadsafe(start(), loop).result(_TIMEOUT)

        def stop() -> None:
            asyncio.run_coroutine_threadsafe(aserver.stop(None), loop).result(_TIMEOUT)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)

    conn.send(port)
    try:
        while conn.poll(_TIMEOUT * 5):
            command = conn.recv()
            if command == "cpu":
                conn.send(time.process_time())
            else:
                break
    finally:
        stop()
        conn.close()


def _expect(kind: str, mode: str, outcome: BaseException | int) -> str:
    """Outcome class name; raises when the RPC did not do what the benchmark asked."""
    if mode == "ok":
        if isinstance(outcome, BaseException):
            raise RuntimeError(f"{kind} call failed: {outcome!r}")
        expected = 1 if kind == "unary" else svc.STREAM_RESPONSES
        if outcome != expected:
            raise RuntimeError(f"{kind} call got {outcome} responses, expected {expected}")
        return "ok"
    if not isinstance(outcome, grpc.RpcError):
        raise RuntimeError(f"{kind} {mode} call did not fail with an RpcError: {outcome!r}")
    return type(outcome).__name__


class _SyncDriver:
    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.channels: dict[int, tuple[grpc.Channel, grpc.Channel]] = {}

    def _channel(self, port: int) -> grpc.Channel:
        if port not in self.channels:
            raw = grpc.insecure_channel(f"127.0.0.1:{port}")
            grpc.channel_ready_future(raw).result(_TIMEOUT)
            extra = svc.sync_client_interceptors(self.variant)
            if extra is None:
                channel = raw
            elif self.variant == "ours":
                channel = gt.intercept_channel(raw)
            elif self.variant == "proxy":
                channel = svc.SyncProxyChannel(raw)  # type: ignore[assignment]
            else:
                channel = grpc.intercept_channel(raw, *extra)
            self.channels[port] = (raw, channel)
        return self.channels[port][1]

    def run(self, port: int, kind: str, mode: str, n: int, concurrency: int) -> dict[str, Any]:
        channel = self._channel(port)
        factory = channel.unary_unary if kind == "unary" else channel.unary_stream
        stub = factory(
            svc.method_path(kind),
            request_serializer=svc.Msg.SerializeToString,
            response_deserializer=svc.Msg.FromString,
        )
        request = svc.Msg(value=mode)
        outcomes: set[str] = set()

        def one() -> BaseException | int:
            try:
                if kind == "unary":
                    stub(request, timeout=_RPC_TIMEOUT)
                    return 1
                count = 0
                for _ in stub(request, timeout=_RPC_TIMEOUT):
                    count += 1
                return count
            except grpc.RpcError as err:
                if self.variant == "grpcio-status":
                    svc.hand_written_decode(err)
                return err

        wall0, cpu0 = time.perf_counter(), time.process_time()
        if concurrency <= 1:
            # One thread: a sync client's cost per call, without thread contention.
            results = [one() for _ in range(n)]
        else:
            # Under load: ``concurrency`` threads share the calls.
            with futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
                results = list(pool.map(lambda _: one(), range(n)))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        for outcome in results:
            outcomes.add(_expect(kind, mode, outcome))
        return {"cpu": cpu1 - cpu0, "wall": wall1 - wall0, "outcomes": sorted(outcomes)}

    def close(self) -> None:
        for raw, _ in self.channels.values():
            raw.close()


class _AioDriver:
    def __init__(self, variant: str) -> None:
        self.variant = variant
        self.loop = asyncio.new_event_loop()
        self.channels: dict[int, tuple[grpc.aio.Channel, Any]] = {}

    async def _channel(self, port: int) -> Any:
        if port not in self.channels:
            interceptors = svc.aio_client_interceptors(self.variant)
            raw = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=interceptors)
            await asyncio.wait_for(raw.channel_ready(), _TIMEOUT)
            wrapped: Any = raw
            if self.variant == "proxy":
                wrapped = svc.AioProxyChannel(raw)
            elif self.variant == "ours":
                wrapped = gt.aio_intercept_channel(raw)
            self.channels[port] = (raw, wrapped)
        return self.channels[port][1]

    async def _run(self, port: int, kind: str, mode: str, n: int, concurrency: int) -> dict[str, Any]:
        channel = await self._channel(port)
        factory = channel.unary_unary if kind == "unary" else channel.unary_stream
        stub: Any = factory(
            svc.method_path(kind),
            request_serializer=svc.Msg.SerializeToString,
            response_deserializer=svc.Msg.FromString,
        )
        request = svc.Msg(value=mode)
        results: list[BaseException | int] = []

        async def one() -> BaseException | int:
            try:
                if kind == "unary":
                    await stub(request, timeout=_RPC_TIMEOUT)
                    return 1
                count = 0
                async for _ in stub(request, timeout=_RPC_TIMEOUT):
                    count += 1
                return count
            except grpc.RpcError as err:
                if self.variant == "grpcio-status":
                    svc.hand_written_decode(err)
                return err

        async def worker(calls: int) -> None:
            for _ in range(calls):
                results.append(await one())

        shares = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
        wall0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker(s) for s in shares if s))
        cpu1, wall1 = time.process_time(), time.perf_counter()
        outcomes = {_expect(kind, mode, outcome) for outcome in results}
        return {"cpu": cpu1 - cpu0, "wall": wall1 - wall0, "outcomes": sorted(outcomes)}

    def run(self, port: int, kind: str, mode: str, n: int, concurrency: int) -> dict[str, Any]:
        return self.loop.run_until_complete(self._run(port, kind, mode, n, concurrency))

    def close(self) -> None:
        for raw, _ in self.channels.values():
            self.loop.run_until_complete(raw.close(None))
        self.loop.close()


def _drive(conn: multiprocessing.connection.Connection, style: str, variant: str) -> None:
    _pin(CLIENT_CPU)
    driver: _SyncDriver | _AioDriver = _SyncDriver(variant) if style == "sync" else _AioDriver(variant)
    conn.send("ready")
    try:
        while conn.poll(_TIMEOUT * 5):
            command = conn.recv()
            if command is None:
                break
            try:
                conn.send(driver.run(*command))
            except Exception as exc:
                conn.send({"error": repr(exc)})
    finally:
        driver.close()
        conn.close()


# -- proxies (orchestrator side) ---------------------------------------------------------


class _Proc:
    def __init__(self, target: Any, *args: Any) -> None:
        self.conn, child = _CTX.Pipe()
        self.proc = _CTX.Process(target=target, args=(child, *args), daemon=True)
        self.proc.start()
        child.close()

    def _recv(self, timeout: float = _TIMEOUT) -> Any:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"benchmark process {self.proc.pid} did not answer in {timeout}s")
        return self.conn.recv()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.proc.join(15)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
        self.conn.close()


class ServerProc(_Proc):
    """A server process of one style (``sync``/``aio``) and interceptor variant."""

    def __init__(self, style: str, variant: str, workers: int = 8) -> None:
        super().__init__(_serve, style, variant, workers)
        self.style, self.variant = style, variant
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The server's port (waits for the process to start serving)."""
        if self._port is None:
            self._port = int(self._recv())
        return self._port

    def cpu(self) -> float:
        self.conn.send("cpu")
        return float(self._recv())


class ClientProc(_Proc):
    """A client process of one style and client interceptor variant."""

    def __init__(self, style: str, variant: str) -> None:
        super().__init__(_drive, style, variant)
        self.style, self.variant = style, variant
        self._ready = False

    def wait_ready(self) -> None:
        if not self._ready:
            if self._recv() != "ready":
                raise RuntimeError("client process failed to start")
            self._ready = True

    def run(self, port: int, kind: str, mode: str, n: int, concurrency: int = 1) -> dict[str, Any]:
        self.wait_ready()
        self.conn.send((port, kind, mode, n, concurrency))
        result: dict[str, Any] = self._recv(_TIMEOUT * 5)
        if "error" in result:
            raise RuntimeError(f"{self.style}/{self.variant} client: {result['error']}")
        return result


def measure(server: ServerProc, client: ClientProc, kind: str, mode: str, n: int,
            concurrency: int) -> dict[str, Any]:
    """One sample: server and client CPU per RPC (µs) and wall per RPC (µs)."""
    before = server.cpu()
    result = client.run(server.port, kind, mode, n, concurrency)
    after = server.cpu()
    return {
        "server_us": (after - before) / n * 1e6,
        "client_us": result["cpu"] / n * 1e6,
        "wall_us": result["wall"] / n * 1e6,
        "outcomes": result["outcomes"],
    }
