"""gRPC's own retry: a :class:`RetryPolicy` written as a ``grpc.service_config``.

gRPC decides by code alone (gRFC A6); what it cannot express (a RetryInfo
delay, the ProvisionFailureDetail) it learns from the ``grpc-retry-pushback-ms``
trailer the server interceptors send.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Collection
from typing import Any

import grpc

from grpc_terminal._retry import MAX_DURATION, RetryBudget, RetryPolicy, is_duration

__all__ = ["NATIVE_MAX_ATTEMPTS", "NATIVE_MIN_BACKOFF", "service_config"]

#: gRPC's retry implementations clamp ``maxAttempts`` to this (gRFC A6).
NATIVE_MAX_ATTEMPTS = 5

#: The shortest backoff :func:`service_config` writes, in seconds. With 1 ms
#: backoffs grpcio's own retry (measured on 1.85) left 5 to 7 calls in 10 waiting
#: out their deadline against a server that fails at once; with 5 ms and more, none.
NATIVE_MIN_BACKOFF = 0.01

#: The largest ``tokenRatio`` worth writing: a success can never give back more
#: than ``maxTokens`` (at most 1000) tokens anyway.
_MAX_TOKEN_RATIO_MILLIS = 1000 * 1000


def _duration(seconds: float, what: str) -> str:
    """``seconds`` as the JSON of a ``google.protobuf.Duration`` (``"1.5s"``), at least 1 ms.

    gRPC reads at most 9 decimals and at most :data:`MAX_DURATION` seconds;
    anything else is a ValueError naming ``what``.
    """
    if not is_duration(seconds):
        raise ValueError(
            f"{what} of {seconds!r} s cannot be written in a service config: gRPC accepts "
            f"durations of at most {MAX_DURATION:.0f} s"
        )
    seconds = max(float(seconds), 0.001)
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, 0
    if whole > MAX_DURATION:  # only reachable by rounding up at the very limit
        whole, nanos = int(MAX_DURATION), 0
    text = str(whole) if nanos == 0 else f"{whole}.{nanos:09d}".rstrip("0")
    return text + "s"


def _throttling(budget: RetryBudget) -> dict[str, Any]:
    """``retryThrottling`` for ``budget``, or a ValueError when gRPC cannot express it.

    gRPC (gRFC A6) takes an integer ``maxTokens`` in 1..1000 and reads
    ``tokenRatio`` to 3 decimals, refusing one that reads as 0.
    """
    max_tokens = budget.max_tokens
    if not max_tokens.is_integer() or not 1 <= max_tokens <= 1000:
        raise ValueError(
            f"gRPC's retryThrottling needs an integer maxTokens in 1..1000, and the budget has "
            f"max_tokens={max_tokens!r}: use a whole number of tokens for service_config"
        )
    millis = math.floor(round(budget.token_ratio * 1000, 6))
    if millis < 1:
        raise ValueError(
            f"gRPC's retryThrottling reads tokenRatio to 3 decimals, so token_ratio="
            f"{budget.token_ratio!r} would be 0, which gRPC rejects: use at least 0.001"
        )
    # A ratio above maxTokens refills the bucket at once, like maxTokens itself.
    millis = min(millis, int(max_tokens) * 1000, _MAX_TOKEN_RATIO_MILLIS)
    return {"maxTokens": int(max_tokens), "tokenRatio": millis / 1000}


def _method_names(services: Collection[str], methods: Collection[tuple[str, str]]) -> list[dict[str, str]]:
    """The ``name`` list: each service or method once, none empty (gRPC rejects duplicates)."""
    if isinstance(services, str) or isinstance(methods, str):
        raise TypeError("services and methods must be collections (a list of names), not one str")
    names: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    entries = [(s, None) for s in services] + [(s, m) for s, m in methods]
    for service, method in entries:
        if not isinstance(service, str) or not service:
            raise ValueError(f"a service name must be a non-empty str like 'pkg.Service', got {service!r}")
        if method is not None and (not isinstance(method, str) or not method):
            raise ValueError(f"a method name must be a non-empty str, got {method!r} for {service}")
        key = (service, method or "")
        if key in seen:
            continue
        seen.add(key)
        names.append({"service": service} if method is None else {"service": service, "method": method})
    return names


def service_config(
    policy: RetryPolicy,
    *,
    services: Collection[str] = (),
    methods: Collection[tuple[str, str]] = (),
    retryable_codes: Collection[grpc.StatusCode] | None = None,
) -> str:
    """The JSON for the ``grpc.service_config`` channel option: gRPC's own retry.

    ``policy``: the :class:`RetryPolicy` to express. ``retryableStatusCodes``
    come from ``retryable_codes`` (default: the policy's code table, the one
    :func:`is_retryable` uses). The config applies to every method unless
    ``services`` (``"pkg.Service"``) or ``methods`` (``("pkg.Service",
    "Method")``) narrow it; each is written once.

    gRPC caps ``maxAttempts`` at 5 (gRFC A6): a policy allowing more (or no
    limit) gets 5 here, with a :class:`UserWarning`. gRPC always uses full
    jitter and needs backoffs > 0, so ``jitter`` is not expressed and a
    backoff under :data:`NATIVE_MIN_BACKOFF` (10 ms) becomes 10 ms (with
    1 ms, grpcio's retry left calls waiting out their deadline). ``timeout``
    becomes the per-call ``timeout``, and a :class:`RetryBudget` becomes ``retryThrottling``. A
    policy with ``max_attempts=1``, or with no retryable code, gives no
    ``retryPolicy`` (gRPC rejects an empty code list). Predicates and
    ``max_server_delay`` cannot travel: gRPC decides by code alone, except
    that it stops at once when the server sends ``grpc-retry-pushback-ms:
    -1``, as our servers do for every terminal failure, so a terminal
    failure costs one attempt even when its code is listed. Native retry
    needs ``grpc.enable_retries`` (on by default in current grpcio).

    Only JSON gRPC accepts is returned. What gRPC cannot express raises
    :class:`ValueError`: a budget whose ``max_tokens`` is not a whole number
    in 1..1000, or whose ``token_ratio`` reads as 0 at gRPC's 3 decimals
    (below 0.001); a ``tokenRatio`` above ``maxTokens`` is written as
    ``maxTokens`` (the same bucket); an empty service or method name.
    """
    if not isinstance(policy, RetryPolicy):
        raise TypeError(f"policy must be a RetryPolicy, got {type(policy).__name__}")
    table = policy.retryable_codes if retryable_codes is None else retryable_codes
    if isinstance(table, grpc.StatusCode) or not all(isinstance(c, grpc.StatusCode) for c in table):
        raise TypeError("retryable_codes must be a collection of grpc.StatusCode")
    codes = sorted({c.name for c in table})
    names = _method_names(services, methods)
    attempts = policy.max_attempts
    if attempts is None or attempts > NATIVE_MAX_ATTEMPTS:
        warnings.warn(
            f"gRPC caps maxAttempts at {NATIVE_MAX_ATTEMPTS}; "
            f"the policy's max_attempts={attempts!r} becomes {NATIVE_MAX_ATTEMPTS} in the service config",
            UserWarning,
            stacklevel=2,
        )
        attempts = NATIVE_MAX_ATTEMPTS
    method_config: dict[str, Any] = {"name": names or [{}]}
    if attempts > 1 and codes:
        method_config["retryPolicy"] = {
            "maxAttempts": attempts,
            "initialBackoff": _duration(max(policy.initial_backoff, NATIVE_MIN_BACKOFF), "initial_backoff"),
            "maxBackoff": _duration(
                max(policy.max_backoff, policy.initial_backoff, NATIVE_MIN_BACKOFF), "max_backoff"
            ),
            "backoffMultiplier": float(policy.multiplier),
            "retryableStatusCodes": codes,
        }
    if policy.timeout is not None:
        method_config["timeout"] = _duration(policy.timeout, "timeout")
    config: dict[str, Any] = {"methodConfig": [method_config]}
    if policy.budget is not None:
        config["retryThrottling"] = _throttling(policy.budget)
    return json.dumps(config, sort_keys=True)
