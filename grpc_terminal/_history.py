"""What a retry run leaves behind: the verdict on each failure, the attempts, why it stopped.

Plain values with no behaviour beyond describing themselves. They sit below
the exception hierarchy (a :class:`~grpc_terminal.StatusError` carries its
``retry_history``) and are produced by the classification and the retry
policy, which sit above it.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import grpc

__all__ = ["NOTE_PREFIX", "Attempt", "RetryHistory", "StopReason", "Verdict"]

#: How the one-line note a retried error carries begins.
NOTE_PREFIX = "grpc-terminal retry:"


@dataclass(frozen=True, slots=True)
class Verdict:
    """What classification decided for one failure, and by which rule."""

    retryable: bool
    rule: str
    code: grpc.StatusCode | None
    delay: float | None


class StopReason(enum.StrEnum):
    """Why retrying stopped.

    The values are what ``RetryHistory.describe()`` prints, with ``_`` shown
    as a space: ``stopped (not retryable)``.
    """

    #: The failure is terminal: it carries a ProvisionFailureDetail
    #: (:func:`grpc_terminal.is_terminal` is True), so retrying cannot help.
    TERMINAL = "terminal"
    #: The failure is not retryable, and not terminal in the ProvisionFailureDetail
    #: sense: a code outside the retryable table (``NOT_FOUND``, ``INVALID_ARGUMENT``),
    #: a negative pushback, the client's own metadata limit, an exception with no
    #: gRPC status, or the policy's ``retryable`` predicate said no.
    NOT_RETRYABLE = "not_retryable"
    #: ``max_attempts`` attempts were made.
    EXHAUSTED = "exhausted"
    #: The next wait would reach the overall deadline (policy ``timeout`` or the call's).
    DEADLINE = "deadline"
    #: The retry budget (:class:`RetryBudget`) has too few tokens left.
    THROTTLED = "throttled"
    #: A response already reached the caller; the call cannot be repeated.
    COMMITTED = "committed"
    #: The server asked for a wait longer than the policy's ``max_server_delay``
    #: (or one that cannot be read as a finite number of seconds).
    SERVER_DELAY_TOO_LONG = "server_delay_too_long"


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt."""

    #: 1 for the first attempt.
    number: int
    #: The gRPC code, or None for an exception that carries no gRPC status.
    code: grpc.StatusCode | None
    #: The exception's class name.
    error: str
    #: What the policy decided about this failure.
    verdict: Verdict
    #: Seconds waited before the next attempt; None for the last one.
    wait: float | None


@dataclass(frozen=True, slots=True)
class RetryHistory:
    """Every failed attempt of one retried call, and why retrying stopped."""

    attempts: tuple[Attempt, ...]
    stopped: StopReason
    #: Seconds from the first attempt until retrying stopped (policy clock).
    elapsed: float

    @property
    def count(self) -> int:
        """How many attempts were made."""
        return len(self.attempts)

    @property
    def codes(self) -> tuple[grpc.StatusCode | None, ...]:
        """The code of each attempt, in order."""
        return tuple(a.code for a in self.attempts)

    @property
    def waits(self) -> tuple[float, ...]:
        """The waits between attempts, in order (one fewer than attempts)."""
        return tuple(a.wait for a in self.attempts if a.wait is not None)

    def describe(self) -> str:
        """One line: attempts, codes, waits and the stop reason."""
        codes = ", ".join(a.code.name if a.code is not None else a.error for a in self.attempts)
        waits = ", ".join(f"{w:.3g}s" for w in self.waits) or "none"
        plural = "attempt" if self.count == 1 else "attempts"
        stopped = str(self.stopped.value).replace("_", " ")
        if self.stopped is StopReason.SERVER_DELAY_TOO_LONG and self.attempts:
            delay = self.attempts[-1].verdict.delay
            asked = f"{delay:.3g}s" if delay is not None and math.isfinite(delay) else "an unreadable delay"
            stopped += f": the server asked for {asked}"
        return (
            f"{NOTE_PREFIX} stopped ({stopped}) after {self.count} {plural}"
            f" [{codes}]; waits: {waits}; {self.elapsed:.3g}s elapsed"
        )
