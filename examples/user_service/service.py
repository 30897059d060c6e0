"""The Seats service, written as grpc-terminal's README shows: sync and aio.

The handlers know nothing about gRPC statuses. They raise the service's own
exceptions, and the interceptor maps them once, through ``ERRORS``:

* ``SeatsFull`` goes through a mapping function typed with its own exception
  (``seats``), which builds the terminal ``LicenseExhausted``;
* ``NotInDirectory`` is mapped by class to ``NotFound``;
* ``BackendBusy`` becomes a transient ``Unavailable`` carrying the suggested
  retry delay, which a client's ``RetryPolicy`` honours.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import grpc.aio

import grpc_terminal as gt
from examples.user_service import seats_pb2, seats_pb2_grpc


class SeatsFull(Exception):
    """Every seat of the application is taken."""

    def __init__(self, app: str, used: int, total: int) -> None:
        super().__init__(f"{app}: {used} of {total} seats used")
        self.app = app
        self.used = used
        self.total = total


class NotInDirectory(LookupError):
    """The directory has no such user or application."""


class BackendBusy(Exception):
    """The licence backend is busy; it says when to come back."""

    def __init__(self, app: str, retry_after: float) -> None:
        super().__init__(f"{app}: licence backend busy, retry in {retry_after:g} s")
        self.retry_after = retry_after


def seats(e: SeatsFull) -> gt.StatusError:
    """``SeatsFull`` as the terminal ``LicenseExhausted``, with the quota that was hit."""
    return gt.terminal_error(
        gt.Reason.LICENSE_EXHAUSTED,
        "%s: %d of %d seats used",
        e.app,
        e.used,
        e.total,
        quota_violations={e.app: f"{e.used} of {e.total} seats used"},
        metadata={"app": e.app},
    )


def busy(e: BackendBusy) -> gt.StatusError:
    """``BackendBusy`` as a transient ``Unavailable`` with the backend's delay."""
    return gt.Unavailable(str(e), retry_delay=e.retry_after)


#: The service's exceptions and what each becomes on the wire.
ERRORS: gt.ErrorMapping = {SeatsFull: seats, NotInDirectory: gt.NotFound, BackendBusy: busy}

#: The service's ErrorInfo domain.
DOMAIN = "seats.example.com"


@dataclass
class Inventory:
    """Seats per application, shared by the sync and aio servicers."""

    totals: dict[str, int] = field(default_factory=lambda: {"jira": 2, "figma": 5})
    users: frozenset[str] = frozenset({"ann", "bob", "cid"})
    #: How many more times each application's backend answers "busy".
    busy: dict[str, int] = field(default_factory=lambda: {"figma": 2})
    taken: dict[str, list[str]] = field(default_factory=dict[str, list[str]])
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def reserve(self, user: str, app: str) -> str:
        """A new seat id for ``user`` in ``app``; raises the service's own exceptions."""
        if app not in self.totals:
            raise NotInDirectory(f"no application named {app!r}")
        if user not in self.users:
            raise NotInDirectory(f"no user named {user!r}")
        with self._lock:
            if self.busy.get(app, 0) > 0:
                self.busy[app] -= 1
                raise BackendBusy(app, retry_after=0.05)
            total = self.totals.get(app, 0)
            holders = self.taken.setdefault(app, [])
            if user not in holders:
                if len(holders) >= total:
                    raise SeatsFull(app, len(holders), total)
                holders.append(user)
            return f"{app}-{next(self._ids)}"

    def events(self, app: str) -> list[seats_pb2.SeatEvent]:
        """One event per seat taken in ``app``."""
        if app not in self.totals:
            raise NotInDirectory(f"no application named {app!r}")
        with self._lock:
            holders = list(self.taken.get(app, []))
            total = self.totals.get(app, 0)
        return [
            seats_pb2.SeatEvent(app=app, user=user, used=used, total=total)
            for used, user in enumerate(holders, 1)
        ]


class Seats(seats_pb2_grpc.SeatsServicer):
    """The sync servicer."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    def Reserve(
        self, request: seats_pb2.ReserveRequest, context: grpc.ServicerContext
    ) -> seats_pb2.ReserveReply:
        return seats_pb2.ReserveReply(seat_id=self.inventory.reserve(request.user, request.app))

    def Watch(
        self, request: seats_pb2.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[seats_pb2.SeatEvent]:
        yield from self.inventory.events(request.app)


class AsyncSeats(seats_pb2_grpc.SeatsServicer):
    """The aio servicer: the same logic, awaited."""

    def __init__(self, inventory: Inventory) -> None:
        self.inventory = inventory

    async def Reserve(
        self,
        request: seats_pb2.ReserveRequest,
        context: grpc.aio.ServicerContext[seats_pb2.ReserveRequest, seats_pb2.ReserveReply],
    ) -> seats_pb2.ReserveReply:
        await asyncio.sleep(0)  # a real service awaits its backend here
        return seats_pb2.ReserveReply(seat_id=self.inventory.reserve(request.user, request.app))

    async def Watch(
        self,
        request: seats_pb2.WatchRequest,
        context: grpc.aio.ServicerContext[seats_pb2.WatchRequest, seats_pb2.SeatEvent],
    ) -> AsyncIterator[seats_pb2.SeatEvent]:
        for event in self.inventory.events(request.app):
            yield event


def serve(inventory: Inventory, address: str = "127.0.0.1:0") -> tuple[grpc.Server, int]:
    """A started sync server for ``inventory`` and its port; stop it with ``server.stop(None)``."""
    # grpc-stubs leave the handler and interceptor types' type arguments unknown.
    server = grpc.server(  # pyright: ignore[reportUnknownMemberType]
        futures.ThreadPoolExecutor(max_workers=4),
        interceptors=[gt.ServerInterceptor(errors=ERRORS, domain=DOMAIN)],
    )
    seats_pb2_grpc.add_SeatsServicer_to_server(Seats(inventory), server)
    port = server.add_insecure_port(address)
    server.start()
    return server, port


async def serve_aio(inventory: Inventory, address: str = "127.0.0.1:0") -> tuple[grpc.aio.Server, int]:
    """A started aio server for ``inventory`` and its port; stop it with ``await server.stop(None)``."""
    # grpc-stubs leave the handler and interceptor types' type arguments unknown.
    server = grpc.aio.server(interceptors=[gt.AioServerInterceptor(errors=ERRORS, domain=DOMAIN)])  # pyright: ignore[reportUnknownMemberType]
    seats_pb2_grpc.add_SeatsServicer_to_server(AsyncSeats(inventory), server)
    port = server.add_insecure_port(address)
    await server.start()
    return server, port
