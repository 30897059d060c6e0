"""Helpers for testing code that uses grpc-terminal, with or without pytest.

Assertions::

    from grpc_terminal.testing import assert_terminal, raises_terminal

    err = assert_terminal(lambda: stub.Grant(request), "USER_NOT_PROVISIONABLE")
    with raises_terminal(gt.Reason.LICENSE_EXHAUSTED) as caught:
        stub.Grant(request)
    assert "seats" in caught.error.detail

A real server on loopback (``127.0.0.1``, an ephemeral port), stopped when
the block ends::

    options = {"errors": {KeyError: gt.NotFound}}
    with loopback_server(handlers, interceptor_options=options) as (channel, port):
        ...

``handlers`` is a ``grpc.GenericRpcHandler``, a sequence of them, or a
function called with the server (e.g. ``lambda s: add_FooServicer_to_server(servicer, s)``).
``channel`` is a sync channel whose calls raise typed errors.

pytest plugin: the ``grpc_terminal_server`` fixture is a factory taking the
same arguments as :func:`loopback_server` (``interceptor_options=``; the
interceptor's options may also be given as keywords of their own), and
returning the :class:`Loopback`; every server it starts is stopped at the
end of the test. It is registered by the ``pytest11`` entry point, or
with ``-p grpc_terminal.testing`` / ``pytest_plugins = ["grpc_terminal.testing"]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent import futures
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

import grpc
import grpc.aio

from grpc_terminal._classify import find_status, is_retryable
from grpc_terminal._client import aio_interceptors, intercept_channel
from grpc_terminal._errors import StatusError
from grpc_terminal._reason import Reason, coerce_reason, reason_name
from grpc_terminal._retry import RetryPolicy
from grpc_terminal._server import AioServerInterceptor, ServerInterceptor

__all__ = [
    "Caught",
    "Loopback",
    "assert_retryable",
    "assert_terminal",
    "loopback_server",
    "raises_terminal",
]

ReasonLike: TypeAlias = Reason | int | str
Handlers: TypeAlias = (
    "grpc.GenericRpcHandler[Any, Any] | Iterable[grpc.GenericRpcHandler[Any, Any]] | Callable[[Any], object]"
)

_HOST = "127.0.0.1"


# -- assertions -------------------------------------------------------------------


def _reason_number(reason: ReasonLike) -> int:
    if isinstance(reason, bool):
        raise TypeError(f"reason must be a Reason, an int or a name, got {reason!r}")
    if isinstance(reason, int):
        return int(reason)
    if isinstance(reason, str):
        name = reason.strip().upper()
        if name.startswith("REASON_") and name[len("REASON_") :] in Reason.__members__:
            name = name[len("REASON_") :]
        if name in Reason.__members__:
            return int(Reason[name])
        raise ValueError(f"unknown reason {reason!r}; known: {', '.join(Reason.__members__)}")
    raise TypeError(f"reason must be a Reason, an int or a name, got {reason!r}")


def _caught(exc_or_callable: BaseException | Callable[[], object]) -> BaseException:
    if isinstance(exc_or_callable, BaseException):
        return exc_or_callable
    if not callable(exc_or_callable):
        raise TypeError(f"expected an exception or a callable, got {exc_or_callable!r}")
    try:
        result = exc_or_callable()
    except Exception as exc:
        return exc
    raise AssertionError(f"expected a failure, but the call returned {result!r}")


def assert_terminal(
    exc_or_callable: BaseException | Callable[[], object], reason: ReasonLike | None = None
) -> StatusError:
    """Assert a terminal failure (with ``reason``, when given); return it typed.

    ``exc_or_callable`` is the exception (a typed error, a raw
    ``grpc.RpcError`` or anything wrapping one) or a function that must raise
    it. ``reason`` is a :class:`~grpc_terminal.Reason`, its number or its name
    (``"USER_NOT_PROVISIONABLE"``, ``"REASON_USER_NOT_PROVISIONABLE"``).
    """
    exc = _caught(exc_or_callable)
    want = None if reason is None else _reason_number(reason)
    wanted = "a terminal failure" if want is None else f"a terminal {reason_name(want)} failure"
    status = find_status(exc)
    if status is None:
        raise AssertionError(f"expected {wanted}, got a non-gRPC {type(exc).__name__}: {exc!r}") from exc
    pfd = status.failure_detail
    if pfd is None:
        raise AssertionError(
            f"expected {wanted}, got {status!r} (no ProvisionFailureDetail: not terminal)"
        ) from exc
    if want is not None and int(pfd.reason) != want:
        raise AssertionError(
            f"expected {wanted}, got reason {reason_name(pfd.reason)}: {status!r}"
        ) from exc
    return status


def assert_retryable(exc_or_callable: BaseException | Callable[[], object]) -> StatusError:
    """Assert a failure that the default classification retries; return it typed."""
    exc = _caught(exc_or_callable)
    status = find_status(exc)
    if status is None or not is_retryable(exc):
        raise AssertionError(f"expected a retryable gRPC failure, got {status or exc!r}") from exc
    return status


@dataclass
class Caught:
    """What :func:`raises_terminal` caught: the original exception and it typed."""

    exception: BaseException | None = None
    error: StatusError | None = None

    @property
    def reason(self) -> Reason | int | None:
        """The reason of the caught failure."""
        pfd = self.error.failure_detail if self.error is not None else None
        return coerce_reason(pfd.reason) if pfd is not None else None


@contextlib.contextmanager
def raises_terminal(reason: ReasonLike | None = None) -> Generator[Caught, None, None]:
    """Fail unless the block raises a terminal failure (with ``reason``, when given).

    The failure is swallowed and recorded on the yielded :class:`Caught`;
    anything else (including no failure at all) raises ``AssertionError``.
    """
    if reason is not None:
        _reason_number(reason)  # reject a bad reason before running the block
    caught = Caught()
    try:
        yield caught
    except Exception as exc:
        caught.exception = exc
        caught.error = assert_terminal(exc, reason)
        return
    wanted = "a terminal failure"
    if reason is not None:
        wanted = f"a terminal {reason_name(_reason_number(reason))} failure"
    raise AssertionError(f"expected {wanted}, but nothing was raised")


# -- loopback servers ------------------------------------------------------------------


class Loopback(NamedTuple):
    """A running loopback server: a typed sync ``channel`` to it and its ``port``."""

    channel: grpc.Channel
    port: int

    @property
    def target(self) -> str:
        """``127.0.0.1:<port>``."""
        return f"{_HOST}:{self.port}"

    def aio_channel(self, *, retry: RetryPolicy | None = None) -> grpc.aio.Channel:
        """A new grpc.aio channel raising typed errors; call it inside your event loop and close it.

        ``retry`` is a :class:`~grpc_terminal.RetryPolicy` applied inside the
        channel (see :func:`~grpc_terminal.aio_interceptors`); ``None`` never retries.
        """
        return grpc.aio.insecure_channel(self.target, interceptors=aio_interceptors(retry=retry))


def _add_handlers(server: Any, handlers: Handlers) -> None:
    if isinstance(handlers, grpc.GenericRpcHandler):
        server.add_generic_rpc_handlers((handlers,))
    elif callable(handlers):
        handlers(server)
    else:
        items = tuple(handlers)
        if not items or not all(isinstance(h, grpc.GenericRpcHandler) for h in items):
            raise TypeError(
                "handlers must be a grpc.GenericRpcHandler, a non-empty sequence of them, "
                "or a function taking the server"
            )
        server.add_generic_rpc_handlers(items)


@contextlib.contextmanager
def _sync_server(handlers: Handlers, options: Mapping[str, Any], workers: int) -> Generator[int, None, None]:
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gt-loopback")
    # grpc-stubs leave the handler and interceptor lists' type arguments unknown.
    server = grpc.server(pool, interceptors=[ServerInterceptor(**options)])  # pyright: ignore[reportUnknownMemberType]
    try:
        _add_handlers(server, handlers)
        port = server.add_insecure_port(f"{_HOST}:0")
        if not port:
            raise RuntimeError("could not bind a loopback port")
        server.start()
        yield port
    finally:
        server.stop(None).wait(10)
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _aio_server(handlers: Handlers, options: Mapping[str, Any], workers: int) -> Generator[int, None, None]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="gt-loopback-aio", daemon=True)
    thread.start()
    pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gt-loopback-aio")

    def run(coro: Any, timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)

    async def start() -> tuple[grpc.aio.Server, int]:
        # grpc-stubs leave the handler and interceptor lists' type arguments unknown.
        server = grpc.aio.server(migration_thread_pool=pool, interceptors=[AioServerInterceptor(**options)])  # pyright: ignore[reportUnknownMemberType]
        _add_handlers(server, handlers)
        port = server.add_insecure_port(f"{_HOST}:0")
        if not port:
            raise RuntimeError("could not bind a loopback port")
        await server.start()
        return server, port

    server: grpc.aio.Server | None = None
    try:
        server, port = run(start())
        yield port
    finally:
        if server is not None:
            run(server.stop(None))
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
        pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def loopback_server(
    handlers: Handlers,
    *,
    aio: bool = False,
    interceptor_options: Mapping[str, object] | None = None,
    retry: RetryPolicy | None = None,
    workers: int = 4,
) -> Generator[Loopback, None, None]:
    """Run ``handlers`` on a real server on ``127.0.0.1:0`` behind grpc-terminal's interceptor.

    ``handlers`` is a ``grpc.GenericRpcHandler``, a non-empty sequence of
    them, or a function called with the server (for generated code:
    ``lambda server: add_FooServicer_to_server(servicer, server)``).
    ``aio=True`` runs a ``grpc.aio`` server (with :class:`AioServerInterceptor`)
    on an event loop in a thread of its own; otherwise a ``grpc.server``.
    ``interceptor_options`` are the interceptor's keyword arguments
    (``errors``, ``domain``, ``on_error``, ...). ``retry`` is a
    :class:`~grpc_terminal.RetryPolicy` for the client channel (``None``: no
    retry). ``workers`` is the size of the server's thread pool.
    Yields a :class:`Loopback` ``(channel, port)``; the channel is closed and
    the server stopped when the block ends, whatever happens in it.
    """
    options = dict(interceptor_options or {})
    serve = _aio_server if aio else _sync_server
    with serve(handlers, options, workers) as port:
        raw = grpc.insecure_channel(f"{_HOST}:{port}")
        try:
            yield Loopback(intercept_channel(raw, retry=retry), port)
        finally:
            raw.close()


# -- the pytest plugin -------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is optional
    pass
else:

    @pytest.fixture
    def grpc_terminal_server() -> Iterator[Callable[..., Loopback]]:
        """Factory taking the arguments of :func:`loopback_server`, returning its :class:`Loopback`.

        ``grpc_terminal_server(handlers, *, aio=False, interceptor_options=None,
        retry=None, workers=4)``; the interceptor's options may instead be
        given as keywords of their own (``errors=...``), but not both ways at
        once. Every server started is stopped after the test.
        """
        with contextlib.ExitStack() as stack:

            def start(
                handlers: Handlers,
                *,
                aio: bool = False,
                interceptor_options: Mapping[str, object] | None = None,
                retry: RetryPolicy | None = None,
                workers: int = 4,
                **options: Any,
            ) -> Loopback:
                if options and interceptor_options is not None:
                    raise TypeError(
                        "grpc_terminal_server() takes the interceptor's options either as "
                        "interceptor_options= or as keywords, not both: got interceptor_options= "
                        f"and {', '.join(sorted(options))}"
                    )
                return stack.enter_context(
                    loopback_server(
                        handlers,
                        aio=aio,
                        interceptor_options=options if options else interceptor_options,
                        retry=retry,
                        workers=workers,
                    )
                )

            yield start
