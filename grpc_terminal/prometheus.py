"""Prometheus metrics: why calls fail on the server, and how clients retry and give up.

One :class:`Metrics` object holds the collectors; its methods are the hooks::

    import grpc_terminal as gt
    from grpc_terminal.prometheus import Metrics

    metrics = Metrics()  # on prometheus_client's default REGISTRY
    server_interceptor = gt.ServerInterceptor(on_error=metrics.on_error)
    policy = gt.RetryPolicy(on_retry=metrics.on_retry, on_give_up=metrics.on_give_up)

Expose them as usual, e.g. ``prometheus_client.start_http_server(9464)``.
The series (every label value comes from a closed set, so a hostile peer
cannot grow the number of series):

``grpc_terminal_server_failures_total{grpc_code, grpc_method, reason, terminal}``
    One per failed RPC the server interceptor reported. ``reason`` is a
    ProvisionFailureDetail reason name (``USER_NOT_PROVISIONABLE``), a gRPC
    code name, one of the ``reasons=`` you admitted, else ``OTHER``;
    ``terminal`` is ``"true"`` or ``"false"``.
``grpc_terminal_client_retries_total{grpc_code}``
    One per retry the policy decided on (before its wait).
``grpc_terminal_client_retry_wait_seconds``
    A histogram of those waits (buckets :data:`WAIT_BUCKETS`, up to the
    policy's default server-delay ceiling of 300 s).
``grpc_terminal_client_give_ups_total{grpc_code, stop_reason}``
    One per call that ended in an error: ``stop_reason`` is the
    :class:`grpc_terminal.StopReason` value (``terminal``, ``exhausted``,
    ...), ``grpc_code`` the code of the last attempt.

Several ``Metrics`` on one registry share its collectors (each keeps its own
``methods``/``reasons`` settings); a collector of the same name that
``Metrics`` did not register there is a :class:`ValueError`.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

import grpc
from google.protobuf.descriptor import ServiceDescriptor

import grpc_terminal as gt
from grpc_terminal._details import is_error_reason

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.prometheus needs prometheus-client: pip install 'grpc-terminal[prometheus]'"
    ) from exc

__all__ = ["Metrics", "OTHER", "WAIT_BUCKETS"]

#: The label value for anything outside a label's closed set: a reason a
#: service invented, an unknown reason number, a method name past the cap, a
#: failure with no gRPC code.
OTHER = "OTHER"

#: The buckets of ``grpc_terminal_client_retry_wait_seconds``, in seconds:
#: from a quick backoff to the longest server-suggested delay a
#: :class:`grpc_terminal.RetryPolicy` honours by default (300 s).
WAIT_BUCKETS: tuple[float, ...] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, math.inf,
)

_log = logging.getLogger("grpc_terminal.prometheus")

#: Method names admitted as they come when ``methods`` is not given.
_DEFAULT_MAX_METHODS = 100
_MAX_METHOD_LENGTH = 256
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_METHOD = re.compile(rf"/{_IDENT}(?:\.{_IDENT})*/{_IDENT}")

_CODES = frozenset(code.name for code in grpc.StatusCode)
_BUILTIN_REASONS = frozenset(reason.name for reason in gt.Reason) | _CODES


@dataclass(frozen=True)
class _Collectors:
    server_failures: Counter
    retries: Counter
    give_ups: Counter
    retry_wait: Histogram


_shared: weakref.WeakKeyDictionary[CollectorRegistry, _Collectors] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def _register(registry: CollectorRegistry) -> _Collectors:
    """The collectors of ``registry``, registered there on first use."""
    with _shared_lock:
        found = _shared.get(registry)
        if found is not None:
            return found
        made: list[Counter | Histogram] = []
        try:
            made.append(Counter(
                "grpc_terminal_server_failures",
                "Failed RPCs reported by the grpc-terminal server interceptor.",
                ("grpc_code", "grpc_method", "reason", "terminal"), registry=registry,
            ))
            made.append(Counter(
                "grpc_terminal_client_retries",
                "Retries decided by a grpc-terminal RetryPolicy, by the failure's code.",
                ("grpc_code",), registry=registry,
            ))
            made.append(Counter(
                "grpc_terminal_client_give_ups",
                "Calls a grpc-terminal RetryPolicy ended with an error, by why it stopped.",
                ("grpc_code", "stop_reason"), registry=registry,
            ))
            made.append(Histogram(
                "grpc_terminal_client_retry_wait_seconds",
                "Waits before retries decided by a grpc-terminal RetryPolicy.",
                registry=registry, buckets=WAIT_BUCKETS,
            ))
        except ValueError as error:
            for collector in made:
                registry.unregister(collector)
            raise ValueError(
                "this registry already has a collector with a grpc_terminal metric name that "
                f"grpc_terminal.prometheus did not register there ({error})"
            ) from None
        server_failures, retries, give_ups, retry_wait = made
        assert isinstance(server_failures, Counter) and isinstance(retries, Counter)
        assert isinstance(give_ups, Counter) and isinstance(retry_wait, Histogram)
        found = _Collectors(server_failures, retries, give_ups, retry_wait)
        _shared[registry] = found
        return found


def _code_name(code: object) -> str:
    return code.name if isinstance(code, grpc.StatusCode) else OTHER


def _method_names(methods: Iterable[str | ServiceDescriptor]) -> frozenset[str]:
    if isinstance(methods, str | bytes) or not isinstance(methods, Iterable):
        raise TypeError(
            "methods must be a collection of full method names ('/pkg.Service/Method') or "
            f"service descriptors, got {methods!r}"
        )
    names: set[str] = set()
    for entry in methods:
        if isinstance(entry, ServiceDescriptor):
            names.update(f"/{entry.full_name}/{method.name}" for method in entry.methods)
        elif isinstance(entry, str):
            if len(entry) > _MAX_METHOD_LENGTH or not _METHOD.fullmatch(entry):
                raise ValueError(f"methods: {entry!r} is not a full method name like '/pkg.Service/Method'")
            names.add(entry)
        else:
            raise TypeError(f"methods: {entry!r} is neither a method name nor a ServiceDescriptor")
    return frozenset(names)


def _reason_names(reasons: Iterable[str]) -> frozenset[str]:
    if isinstance(reasons, str | bytes) or not isinstance(reasons, Iterable):
        raise TypeError(f"reasons must be a collection of UPPER_SNAKE_CASE str, got {reasons!r}")
    names: set[str] = set()
    for reason in reasons:
        if not isinstance(reason, str):
            raise TypeError(f"reasons: {reason!r} is not a str")
        if not is_error_reason(reason):
            raise ValueError(f"reasons: {reason!r} is not an UPPER_SNAKE_CASE ErrorInfo reason")
        names.add(reason)
    return frozenset(names)


class Metrics:
    """Prometheus collectors for grpc-terminal, with the hooks that update them.

    Pass :meth:`on_error` to a server interceptor and :meth:`on_retry` and
    :meth:`on_give_up` to a :class:`grpc_terminal.RetryPolicy`. The hooks
    never raise and are safe from any thread or event loop.

    Label values are bounded: ``grpc_code`` is a code name; ``reason`` a
    ProvisionFailureDetail reason name, a code name or one of ``reasons``,
    else ``OTHER``; ``grpc_method`` a name of ``methods`` when given, else
    one of the first ``max_methods`` well-formed names seen, else ``OTHER``.

    About ``grpc_method``: grpc answers a method no handler serves with
    ``UNIMPLEMENTED`` before the interceptor runs, so those calls are not
    counted at all, and a server of registered handlers only ever reports
    its own method names. A generic handler that serves *any* name (a proxy,
    a catch-all) would let a peer invent names: the first ``max_methods``
    distinct ones get a series each, then every new name is ``OTHER`` (and a
    warning is logged once). Give ``methods`` to close the set from the start.

    Args:
        registry: the ``prometheus_client.CollectorRegistry`` to register on;
            ``None`` (unlike prometheus_client, where it means "none") is the
            default ``prometheus_client.REGISTRY``. A second ``Metrics`` on
            the same registry shares its collectors: both count into the same
            series.
        methods: the method names that get a ``grpc_method`` series of their
            own: full names (``"/pkg.Service/Method"``) or protobuf
            ``ServiceDescriptor`` objects (``pkg_pb2.DESCRIPTOR.services_by_name["Service"]``,
            meaning all of their methods). Every other name is ``OTHER``.
        max_methods: without ``methods``, how many distinct well-formed method
            names are admitted as they come (default 100; 0 makes every
            method ``OTHER``). Not allowed together with ``methods``.
        reasons: ErrorInfo reasons of your own service (UPPER_SNAKE_CASE, as
            ``error_reason=`` sends them) to count under their own name rather
            than ``OTHER``.

    Raises:
        TypeError: a ``registry`` that is not a ``CollectorRegistry``;
            ``methods`` or ``reasons`` given as a single str or holding
            something else than names; both ``methods`` and ``max_methods``.
        ValueError: a malformed method name or reason, a negative
            ``max_methods``, or a registry holding a collector of one of
            these metric names that ``Metrics`` did not register there.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        methods: Iterable[str | ServiceDescriptor] | None = None,
        max_methods: int | None = None,
        reasons: Iterable[str] = (),
    ) -> None:
        if registry is None:
            registry = REGISTRY
        if not isinstance(registry, CollectorRegistry):
            raise TypeError(f"registry must be a prometheus_client.CollectorRegistry, got {registry!r}")
        if methods is not None and max_methods is not None:
            raise TypeError("give methods (a closed set) or max_methods (a cap), not both")
        if max_methods is None:
            max_methods = _DEFAULT_MAX_METHODS
        if isinstance(max_methods, bool) or not isinstance(max_methods, int) or max_methods < 0:
            raise ValueError(f"max_methods must be an int >= 0, got {max_methods!r}")
        self._reasons = _BUILTIN_REASONS | _reason_names(reasons)
        self._methods: set[str] = set() if methods is None else set(_method_names(methods))
        self._open = methods is None
        self._max_methods = max_methods
        self._methods_lock = threading.Lock()
        self._warned = False
        self._collectors = _register(registry)
        self._registry = registry

    def __repr__(self) -> str:
        count = len(self._methods)
        names = f"{count} method name{'' if count == 1 else 's'}"
        kind = f"open up to {self._max_methods}" if self._open else "closed"
        return f"<grpc_terminal.prometheus.Metrics: {names}, {kind}>"

    @property
    def registry(self) -> CollectorRegistry:
        """The registry the collectors are registered on."""
        return self._registry

    @property
    def server_failures(self) -> Counter:
        """The counter ``grpc_terminal_server_failures_total``."""
        return self._collectors.server_failures

    @property
    def retries(self) -> Counter:
        """The counter ``grpc_terminal_client_retries_total``."""
        return self._collectors.retries

    @property
    def give_ups(self) -> Counter:
        """The counter ``grpc_terminal_client_give_ups_total``."""
        return self._collectors.give_ups

    @property
    def retry_wait(self) -> Histogram:
        """The histogram ``grpc_terminal_client_retry_wait_seconds``."""
        return self._collectors.retry_wait

    def on_error(self, event: gt.ErrorEvent) -> None:
        """Count one failed RPC (the server interceptors' ``on_error`` hook).

        Args:
            event: the failure, as the interceptor reports it; the real code
                and reason are counted even when the caller got a masked
                ``NOT_FOUND``.
        """
        try:
            method = self._method_label(getattr(event, "method", None))
            reason = getattr(event, "reason", None)
            self._collectors.server_failures.labels(
                grpc_method=method,
                grpc_code=_code_name(getattr(event, "code", None)),
                reason=reason if isinstance(reason, str) and reason in self._reasons else OTHER,
                terminal="true" if getattr(event, "terminal", False) is True else "false",
            ).inc()
        except Exception:  # a hook must never change the RPC's outcome
            _log.exception("grpc_terminal.prometheus: on_error could not count a failure")

    def on_retry(self, attempt: int, wait: float, verdict: gt.Verdict, error: BaseException) -> None:
        """Count one retry and observe its wait (a :class:`grpc_terminal.RetryPolicy` ``on_retry`` hook).

        Args:
            attempt: the number of the attempt that failed (1 for the first).
            wait: the seconds the policy will wait before the next attempt.
            verdict: what classification decided; its ``code`` is the label.
            error: the failure (not used: the verdict says what counts).
        """
        del attempt, error
        try:
            self._collectors.retries.labels(grpc_code=_code_name(getattr(verdict, "code", None))).inc()
            if isinstance(wait, int | float) and not isinstance(wait, bool) and 0 <= wait < math.inf:
                self._collectors.retry_wait.observe(wait)
        except Exception:
            _log.exception("grpc_terminal.prometheus: on_retry could not count a retry")

    def on_give_up(self, history: gt.RetryHistory, error: BaseException) -> None:
        """Count one call that ended in an error (a :class:`grpc_terminal.RetryPolicy` ``on_give_up`` hook).

        Args:
            history: the attempts and why retrying stopped: ``stopped`` is the
                ``stop_reason`` label, the last attempt's code the ``grpc_code``.
            error: the error the call raises (not used).
        """
        del error
        try:
            stopped = getattr(history, "stopped", None)
            stop_reason = str(stopped.value) if isinstance(stopped, gt.StopReason) else OTHER
            attempts: object = getattr(history, "attempts", ())
            code: object = None
            if isinstance(attempts, tuple):
                for attempt in cast(tuple[object, ...], attempts):
                    code = getattr(attempt, "code", None)
            self._collectors.give_ups.labels(
                stop_reason=stop_reason,
                grpc_code=_code_name(code),
            ).inc()
        except Exception:
            _log.exception("grpc_terminal.prometheus: on_give_up could not count a give-up")

    def _method_label(self, method: object) -> str:
        if not isinstance(method, str):
            return OTHER
        if method in self._methods:
            return method
        if not self._open or len(method) > _MAX_METHOD_LENGTH or not _METHOD.fullmatch(method):
            return OTHER
        with self._methods_lock:
            if method in self._methods:
                return method
            if len(self._methods) < self._max_methods:
                self._methods.add(method)
                return method
            warn, self._warned = not self._warned, True
        if warn:
            _log.warning(
                "grpc_terminal.prometheus: %d method names have a series; further ones are counted "
                'as grpc_method="OTHER" (give Metrics(methods=...) to choose them)',
                self._max_methods,
            )
        return OTHER
