"""service_config: the JSON a RetryPolicy becomes for gRPC's own retry, pinned exactly.

Each group pins what gRPC is given (gRFC A6): the ``retryPolicy`` fields and
when there is none, the durations as protobuf Durations, the ``name`` list,
``retryThrottling`` from a RetryBudget, and the errors and the warning for
what gRPC cannot express. In process only: the JSON is read back with json.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import grpc
import pytest

from grpc_terminal import RetryBudget, RetryPolicy, service_config
from grpc_terminal._retry import MAX_DURATION

C = grpc.StatusCode


def exactly(message: str) -> str:
    """A ``match=`` pattern for exactly ``message``."""
    return f"^{re.escape(message)}$"


def _method_config(config: str) -> dict[str, Any]:
    method: dict[str, Any] = json.loads(config)["methodConfig"][0]
    return method


# -- service_config -----------------------------------------------------------------------


def _retry_policy(config: str) -> dict[str, Any]:
    policy: dict[str, Any] = _method_config(config)["retryPolicy"]
    return policy


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.7, "0.7s"), (1.9999999999, "2s"), (0.0001, "0.01s"), (0.0, "0.01s"), (1.5, "1.5s"), (3.0, "3s")],
)
def test_durations_are_written_as_protobuf_durations(seconds: float, text: str) -> None:
    policy = RetryPolicy(max_attempts=2, initial_backoff=seconds, max_backoff=max(seconds, 3.0))
    assert _retry_policy(service_config(policy))["initialBackoff"] == text


def test_the_config_is_canonical_json() -> None:
    """Sorted keys: the same policy always gives the same string."""
    config = service_config(RetryPolicy(max_attempts=3, timeout=2.0, budget=RetryBudget(5, 0.5)))
    assert config == json.dumps(json.loads(config), sort_keys=True)
    assert list(_retry_policy(config)) == sorted(_retry_policy(config))


def test_two_attempts_is_a_retry_policy() -> None:
    assert _retry_policy(service_config(RetryPolicy(max_attempts=2)))["maxAttempts"] == 2


def test_retryable_codes_override_the_policys_table() -> None:
    config = service_config(RetryPolicy(max_attempts=2), retryable_codes=[C.ABORTED])
    assert _retry_policy(config)["retryableStatusCodes"] == ["ABORTED"]


def test_codes_that_are_not_status_codes_are_refused() -> None:
    with pytest.raises(TypeError, match=r"^retryable_codes must be a collection of grpc\.StatusCode$"):
        service_config(RetryPolicy(), retryable_codes=["UNAVAILABLE"])  # type: ignore[list-item]


def test_a_policy_is_required() -> None:
    with pytest.raises(TypeError, match=r"^policy must be a RetryPolicy, got str$"):
        service_config("policy")  # type: ignore[arg-type]


def test_the_attempt_cap_warning_points_at_the_caller() -> None:
    with pytest.warns(UserWarning, match="gRPC caps maxAttempts at 5") as record:
        service_config(RetryPolicy(max_attempts=9))
    # Under mutmut a trampoline frame sits between the caller and the module.
    if "MUTANT_UNDER_TEST" not in os.environ:
        assert [w.filename for w in record] == [__file__]
    assert not any("grpc_terminal" in w.filename for w in record)


@pytest.mark.parametrize(
    ("budget", "ratio"),
    [
        (RetryBudget(10, 1.0), 1.0),
        (RetryBudget(2, 5.0), 2.0),  # above maxTokens: written as maxTokens
        (RetryBudget(10, 0.0029999996), 0.003),  # float noise below a millis boundary
        (RetryBudget(10, 0.0025), 0.002),  # otherwise read to 3 decimals
    ],
)
def test_throttling_token_ratio(budget: RetryBudget, ratio: float) -> None:
    throttling = json.loads(service_config(RetryPolicy(budget=budget)))["retryThrottling"]
    assert throttling == {"maxTokens": int(budget.max_tokens), "tokenRatio": ratio}


def test_every_distinct_method_is_listed_once_beside_its_service() -> None:
    methods = [("pkg.S", "Get"), ("pkg.S", "Put"), ("pkg.S", "XXXX"), ("pkg.S", "Get")]
    config = service_config(RetryPolicy(), services=["pkg.S"], methods=methods)
    assert json.loads(config)["methodConfig"][0]["name"] == [
        {"service": "pkg.S"},
        {"service": "pkg.S", "method": "Get"},
        {"service": "pkg.S", "method": "Put"},
        {"service": "pkg.S", "method": "XXXX"},
    ]


def test_an_empty_method_name_is_refused() -> None:
    with pytest.raises(ValueError, match=exactly("a method name must be a non-empty str, got '' for pkg.S")):
        service_config(RetryPolicy(), methods=[("pkg.S", "")])


def test_one_str_is_not_a_list_of_services() -> None:
    message = "services and methods must be collections (a list of names), not one str"
    with pytest.raises(TypeError, match=exactly(message)):
        service_config(RetryPolicy(), services="pkg.S")


# -- what gRPC's retryThrottling can express ------------------------------------------------


def _throttling_of(budget: RetryBudget) -> dict[str, Any]:
    throttling: dict[str, Any] = json.loads(service_config(RetryPolicy(budget=budget)))["retryThrottling"]
    return throttling


@pytest.mark.parametrize("max_tokens", [1, 1000])
def test_throttling_accepts_max_tokens_from_one_to_a_thousand(max_tokens: int) -> None:
    assert _throttling_of(RetryBudget(max_tokens, 1.0)) == {"maxTokens": max_tokens, "tokenRatio": 1.0}


@pytest.mark.parametrize("max_tokens", [0.5, 2.5])
def test_throttling_refuses_a_fractional_max_tokens(max_tokens: float) -> None:
    message = (
        "gRPC's retryThrottling needs an integer maxTokens in 1..1000, and the budget has "
        f"max_tokens={max_tokens!r}: use a whole number of tokens for service_config"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        service_config(RetryPolicy(budget=RetryBudget(max_tokens)))


@pytest.mark.parametrize(("token_ratio", "written"), [(0.001, 0.001), (0.0016, 0.001), (0.0019, 0.001)])
def test_throttling_truncates_the_token_ratio_to_millis(token_ratio: float, written: float) -> None:
    assert _throttling_of(RetryBudget(10, token_ratio))["tokenRatio"] == written


def test_throttling_refuses_a_token_ratio_that_reads_as_zero() -> None:
    message = (
        "gRPC's retryThrottling reads tokenRatio to 3 decimals, so token_ratio=0.0009 would be 0, "
        "which gRPC rejects: use at least 0.001"
    )
    with pytest.raises(ValueError, match=exactly(message)):
        service_config(RetryPolicy(budget=RetryBudget(10, 0.0009)))


# -- the names and backoffs service_config writes ----------------------------------------------


def test_a_name_repeated_before_others_is_written_once_and_the_rest_kept() -> None:
    config = service_config(RetryPolicy(), services=["a.S", "a.S", "b.S"])
    assert json.loads(config)["methodConfig"][0]["name"] == [{"service": "a.S"}, {"service": "b.S"}]


@pytest.mark.parametrize("service", ["", 5])
def test_a_service_name_must_be_a_non_empty_str(service: object) -> None:
    message = f"a service name must be a non-empty str like 'pkg.Service', got {service!r}"
    with pytest.raises(ValueError, match=exactly(message)):
        service_config(RetryPolicy(), services=[service])  # type: ignore[list-item]


@pytest.mark.parametrize(("max_backoff", "text"), [(0.0, "0.01s"), (0.005, "0.01s"), (0.02, "0.02s")])
def test_max_backoff_is_written_as_at_least_ten_milliseconds(max_backoff: float, text: str) -> None:
    policy = RetryPolicy(max_attempts=2, initial_backoff=0.0, max_backoff=max_backoff)
    assert _retry_policy(service_config(policy))["maxBackoff"] == text




# -- the retryPolicy written, and when there is none ---------------------------------------


def test_a_retry_policy_lists_every_field_grpc_reads() -> None:
    policy = RetryPolicy(max_attempts=4, initial_backoff=0.2, max_backoff=3.0, multiplier=1.5)
    assert _retry_policy(service_config(policy, retryable_codes=[C.UNAVAILABLE, C.ABORTED])) == {
        "maxAttempts": 4,
        "initialBackoff": "0.2s",
        "maxBackoff": "3s",
        "backoffMultiplier": 1.5,
        "retryableStatusCodes": ["ABORTED", "UNAVAILABLE"],
    }


@pytest.mark.parametrize(
    ("max_attempts", "codes"),
    [(1, [C.UNAVAILABLE]), (2, [])],
    ids=["one_attempt", "no_codes"],
)
def test_no_retry_policy_for_one_attempt_or_no_retryable_code(
    max_attempts: int, codes: list[grpc.StatusCode]
) -> None:
    """gRPC rejects maxAttempts 1 and an empty code list: the method config has only its names."""
    config = service_config(RetryPolicy(max_attempts=max_attempts), retryable_codes=codes)
    assert _method_config(config) == {"name": [{}]}


def test_the_longest_protobuf_duration_is_written_as_the_timeout() -> None:
    """MAX_DURATION itself (10,000 years) is a valid timeout, written whole."""
    config = service_config(RetryPolicy(max_attempts=2, timeout=MAX_DURATION))
    assert _method_config(config)["timeout"] == "315576000000s"
