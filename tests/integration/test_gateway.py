"""Pass-through: a gateway relays what its upstream said, unblurred.

The upstream is a real sync server; the gateway is every server/client
combination of ``pair``. Its handler calls the upstream (through our client
interceptor, or through a bare channel) and lets the failure escape, or
catches it and raises it again. The gateway's caller must see the upstream's
code, message, reason, detail and every detail, as if it had called the
upstream itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import wrappers_pb2

import grpc_terminal as gt

from harness import KINDS, Pair, Scenario, SyncClient, SyncServer, register

RICH_TERMINAL = gt.UserNotProvisionable(
    "Okta E0000038: user 'jdoe' is SUSPENDED",
    message="grant failed: Okta E0000038: user 'jdoe' is SUSPENDED",
    precondition_violations=[("STATUS", "user:jdoe", "SUSPENDED")],
    help_links={"Unsuspend": "https://admin.example.invalid/users/jdoe"},
    localized_message="This account is suspended.",
    metadata={"user_id": "jdoe"},
    domain="okta.example.invalid",
    extra_details=[wrappers_pb2.Int64Value(value=38)],
)
RICH_TRANSIENT = gt.Unavailable(
    "upstream 503",
    retry_delay=0.75,
    quota_violations={"tenant:acme": "burst"},
    resource_info=("tenant", "acme"),
)


def _wire_view(err: gt.StatusError) -> dict[str, Any]:
    """What a caller can observe of a failure, trailers apart."""
    return {
        "class": type(err),
        "code": err.code(),
        "message": err.details(),
        "failure_detail": err.failure_detail,
        "error_info": err.error_info,
        "retry_delay": err.retry_delay,
        "precondition_failure": err.precondition_failure,
        "quota_failure": err.quota_failure,
        "resource_info": err.resource_info,
        "help": err.help,
        "localized_message": err.localized_message,
        "extra_details": [(a.type_url, a.value) for a in err.extra_details],
        "retryable": gt.is_retryable(err),
        "delay": gt.retry_delay(err),
    }


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[SyncClient, grpc.Channel]]:
    server = SyncServer(domain="upstream.example.invalid")
    typed = SyncClient(server.port)
    bare = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    yield typed, bare
    bare.close()
    typed.close()
    server.stop()


def _upstream_failure(upstream: tuple[SyncClient, grpc.Channel], raised: gt.StatusError, typed: bool) -> Any:
    """Call the upstream once; return the exception its failure raised."""
    client, bare = upstream
    key = register(Scenario(raise_=raised))
    if typed:
        return client.call("unary_unary", key).error
    stub = bare.unary_unary(
        "/test.Probe/Unary",
        request_serializer=wrappers_pb2.StringValue.SerializeToString,
        response_deserializer=wrappers_pb2.StringValue.FromString,
    )
    try:
        stub(wrappers_pb2.StringValue(value=key), timeout=10)
    except grpc.RpcError as exc:
        return exc
    raise AssertionError("the upstream call succeeded")


def _escape(exc: BaseException) -> Callable[[], None]:
    def before() -> None:
        raise exc

    return before


def _catch_and_reraise(exc: BaseException) -> Callable[[], None]:
    def before() -> None:
        try:
            raise exc
        except gt.StatusError as caught:
            raise caught from None

    return before


@pytest.mark.parametrize("raised", [RICH_TERMINAL, RICH_TRANSIENT], ids=["terminal", "transient"])
@pytest.mark.parametrize("typed", [True, False], ids=["typed-upstream", "bare-upstream"])
@pytest.mark.parametrize("kind", KINDS)
def test_gateway_relays_the_upstream_failure_unchanged(
    pair: Pair, upstream: tuple[SyncClient, grpc.Channel], raised: gt.StatusError, typed: bool, kind: str
) -> None:
    direct = _upstream_failure(upstream, raised, typed=True)
    assert isinstance(direct, gt.StatusError)
    relayed_exc = _upstream_failure(upstream, raised, typed=typed)
    assert isinstance(relayed_exc, grpc.RpcError)
    out = pair.run(kind, Scenario(before=_escape(relayed_exc)))
    assert isinstance(out.error, gt.StatusError), out.error
    assert _wire_view(out.error) == _wire_view(direct)
    # The upstream's domain is kept, not replaced by the gateway's.
    assert out.error.error_info is not None
    assert out.error.error_info.domain == (raised.error_info.domain or "upstream.example.invalid")


@pytest.mark.parametrize("kind", ["unary_unary", "stream_stream"])
def test_gateway_that_catches_and_reraises_relays_the_same(
    pair: Pair, upstream: tuple[SyncClient, grpc.Channel], kind: str
) -> None:
    direct = _upstream_failure(upstream, RICH_TERMINAL, typed=True)
    out = pair.run(kind, Scenario(before=_catch_and_reraise(direct)))
    assert isinstance(out.error, gt.UserNotProvisionable), out.error
    assert _wire_view(out.error) == _wire_view(direct)
    assert out.error.reason is gt.Reason.USER_NOT_PROVISIONABLE
    assert out.error.detail == "Okta E0000038: user 'jdoe' is SUSPENDED"
    assert not gt.is_retryable(out.error)
