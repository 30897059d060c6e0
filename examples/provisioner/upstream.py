"""A simulated identity provider with the failures real ones have.

Its exceptions are the connector's *own* domain exceptions: the service does
not know about gRPC codes; the interceptor maps them once (``ERRORS`` in
:mod:`.service`).
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field


class UpstreamError(Exception):
    """Base of everything the upstream reports."""


class UserSuspended(UpstreamError):
    """The user exists but is suspended: no grant can succeed until someone reactivates them."""


class GroupManagedByRule(UpstreamError):
    """Group membership is computed by a rule; direct changes are rejected."""


class SeatLimitReached(UpstreamError):
    """Every license seat is in use."""

    def __init__(self, app: str, used: int, total: int) -> None:
        super().__init__(f"{app}: {used} of {total} seats used")
        self.app, self.used, self.total = app, used, total


class UpstreamUnavailable(UpstreamError):
    """HTTP 503 with a Retry-After header."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass
class Directory:
    """The upstream's state. Thread-safe; one instance per server.

    * ``bob`` is SUSPENDED;
    * ``all-staff`` membership is managed by a group rule;
    * ``jira-users`` has no free license seat;
    * ``flaky-group`` answers 503 (Retry-After ``retry_after``) to the first
      ``flaky_failures`` calls for each user, then works;
    * ``ghost`` makes the connector hit a bug (a plain ``TypeError``).
    """

    retry_after: float = 0.2
    flaky_failures: int = 2
    suspended: frozenset[str] = frozenset({"bob"})
    rule_managed: dict[str, str] = field(default_factory=lambda: {"all-staff": "Everyone in HR system"})
    seats: dict[str, tuple[int, int]] = field(default_factory=lambda: {"jira-users": (100, 100)})
    members: dict[str, set[str]] = field(default_factory=dict[str, set[str]])
    calls: dict[tuple[str, str], int] = field(default_factory=dict[tuple[str, str], int])
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _lookup_user(self, user: str) -> dict[str, str] | None:
        if user == "ghost":
            return None  # the connector forgets this can happen: that is the bug
        return {"login": user, "status": "SUSPENDED" if user in self.suspended else "ACTIVE"}

    def _check(self, user: str, group: str) -> None:
        with self._lock:
            key = (user, group)
            self.calls[key] = self.calls.get(key, 0) + 1
            attempt = self.calls[key]
        if group == "flaky-group" and attempt <= self.flaky_failures:
            raise UpstreamUnavailable(
                f"Okta HTTP 503 Service Unavailable (Retry-After: {self.retry_after:g}s)", self.retry_after
            )
        profile = self._lookup_user(user)
        if profile["status"] == "SUSPENDED":  # type: ignore[index]  # the deliberate bug for 'ghost'
            raise UserSuspended(
                f"Okta E0000038: this operation is not allowed in the user's current status "
                f"(user '{user}' is SUSPENDED)"
            )
        if group in self.rule_managed:
            raise GroupManagedByRule(
                f"Okta E0000001: membership of group '{group}' is managed by group rule "
                f"'{self.rule_managed[group]}'"
            )

    def add_member(self, user: str, group: str) -> str:
        """Add ``user`` to ``group``; returns a grant id."""
        self._check(user, group)
        if group in self.seats:
            used, total = self.seats[group]
            if used >= total:
                raise SeatLimitReached("Jira Software", used, total)
        with self._lock:
            self.members.setdefault(group, set()).add(user)
            return f"grant-{next(self._ids)}"

    def remove_member(self, user: str, group: str) -> None:
        """Remove ``user`` from ``group`` (a no-op when absent)."""
        self._check(user, group)
        with self._lock:
            self.members.get(group, set()).discard(user)
