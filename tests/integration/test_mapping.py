"""Domain exceptions mapped once, at the interceptor."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import pytest

import grpc_terminal as gt

from fakes import Received
from harness import KINDS, LoopThread, Pair, Scenario


class UpstreamError(Exception):
    """A connector's own exception."""


class OktaSuspended(UpstreamError):
    """Okta E0000038."""


class OktaRuleManaged(UpstreamError):
    """Okta E0000001 on group membership."""


def _rule_managed(exc: BaseException) -> gt.StatusError:
    return gt.terminal_error(gt.Reason.TARGET_MANAGED_EXTERNALLY, "group rule: %s", exc)


MAPPING = {
    LookupError: gt.InvalidArgument,
    KeyError: gt.NotFound,
    OktaSuspended: gt.UserNotProvisionable,
    OktaRuleManaged: _rule_managed,
    UpstreamError: gt.Unavailable,
}


@pytest.fixture(scope="module", params=["sync", "aio"])
def mapped(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    p = Pair(request.param, "sync", loop_thread, server_options={"errors": MAPPING, "domain": "okta.example"})
    yield p
    p.close()


@pytest.mark.parametrize("kind", KINDS)
def test_most_specific_class_wins(mapped: Pair, kind: str) -> None:
    cases: list[tuple[BaseException, type[gt.StatusError]]] = [
        (KeyError("user 7"), gt.NotFound),
        (IndexError("row 3"), gt.InvalidArgument),
        (OktaSuspended("E0000038: jdoe is SUSPENDED"), gt.UserNotProvisionable),
        (OktaRuleManaged("E0000001"), gt.TargetManagedExternally),
        (UpstreamError("503"), gt.Unavailable),
        (ValueError("SECRET"), gt.Unknown),
    ]
    for raised, expected in cases:
        err = mapped.run(kind, Scenario(raise_=raised)).error
        assert type(err) is expected, (raised, err)
        assert err.error_info is not None
        assert err.error_info.domain == "okta.example"
    suspended = mapped.run(kind, Scenario(raise_=OktaSuspended("E0000038: jdoe is SUSPENDED"))).error
    assert isinstance(suspended, gt.UserNotProvisionable)
    assert suspended.detail == "E0000038: jdoe is SUSPENDED"
    managed = mapped.run(kind, Scenario(raise_=OktaRuleManaged("E0000001"))).error
    assert isinstance(managed, gt.TargetManagedExternally)
    assert managed.detail == "group rule: E0000001"


@pytest.mark.parametrize(
    ("errors", "match"),
    [
        ({"KeyError": gt.NotFound}, "not an exception class"),
        ({KeyError: ValueError}, "not a grpc_terminal.StatusError"),
        ({KeyError: gt.TerminalError}, "needs a reason"),
        ({KeyError: "NotFound"}, "StatusError class or a callable"),
        ([(KeyError, gt.NotFound)], "must be a mapping"),
    ],
)
def test_wrong_mapping_is_rejected_at_construction(errors: object, match: str) -> None:
    for interceptor in (gt.ServerInterceptor, gt.AioServerInterceptor):
        with pytest.raises(TypeError, match=match):
            interceptor(errors=errors)  # type: ignore[arg-type]


def test_wrong_options_are_rejected() -> None:
    with pytest.raises(ValueError, match="domain"):
        gt.ServerInterceptor(domain="")
    with pytest.raises(ValueError, match="budget"):
        gt.ServerInterceptor(budget=10)
    # Under 1024 bytes the irreducible status may not fit: refused, so the budget is a promise.
    with pytest.raises(ValueError, match="of 1024 to 8192 bytes"):
        gt.ServerInterceptor(budget=1023)
    with pytest.raises(ValueError, match="budget"):
        gt.ServerInterceptor(budget=True)  # type: ignore[arg-type]
    gt.ServerInterceptor(budget=1024)
    with pytest.raises(TypeError, match="on_error"):
        gt.ServerInterceptor(on_error="print")  # type: ignore[arg-type]


class Seats(Exception):
    pass


def test_one_options_value_for_both_interceptors_and_to_status() -> None:
    options = gt.ServerOptions({Seats: gt.LicenseExhausted}, domain="seats.example.com")
    sync = gt.ServerInterceptor({Seats: gt.LicenseExhausted}, domain="seats.example.com")
    aio = gt.AioServerInterceptor({Seats: gt.LicenseExhausted}, domain="seats.example.com")
    # The interceptors are ServerOptions: the same fields, checked the same way.
    assert isinstance(sync, gt.ServerOptions) and isinstance(aio, gt.ServerOptions)
    assert (sync.domain, sync.budget, dict(sync.errors or {})) == (
        options.domain, options.budget, dict(options.errors or {}))
    # An interceptor is equal only to itself (and hashable); an options value compares by value.
    assert sync != gt.ServerInterceptor({Seats: gt.LicenseExhausted}, domain="seats.example.com")
    assert len({sync, aio}) == 2
    assert options == gt.ServerOptions({Seats: gt.LicenseExhausted}, domain="seats.example.com")
    assert hash(options) == hash(gt.ServerOptions({Seats: gt.LicenseExhausted}, domain="seats.example.com"))
    # to_status encodes with the options (or an interceptor) it is given.
    for given in (options, sync, aio):
        status = gt.to_status(Seats("no seats left"), options=given)
        assert status.code is grpc.StatusCode.FAILED_PRECONDITION
        err = gt.from_rpc_error(Received.of(status))
        assert isinstance(err, gt.LicenseExhausted) and err.error_info is not None
        assert err.error_info.domain == "seats.example.com"
    assert gt.to_status(Seats("x")).code is grpc.StatusCode.UNKNOWN  # default options: unmapped
    # The mapping is a read-only copy: changing the dict afterwards changes nothing.
    mapping: dict[type[BaseException], gt.ErrorFactory] = {Seats: gt.LicenseExhausted}
    frozen = gt.ServerOptions(mapping)
    mapping[KeyError] = gt.NotFound
    assert KeyError not in (frozen.errors or {})
    with pytest.raises(TypeError):
        frozen.errors[KeyError] = gt.NotFound  # type: ignore[index]


def test_options_are_checked_when_built() -> None:
    with pytest.raises(ValueError, match="of 1024 to 8192 bytes"):
        gt.ServerOptions(budget=1000)
    # Over 8 KiB grpc clients refuse the trailers: a terminal failure would arrive as RESOURCE_EXHAUSTED.
    with pytest.raises(ValueError, match="of 1024 to 8192 bytes"):
        gt.ServerOptions(budget=8193)
    assert gt.ServerOptions(budget=8192).budget == 8192
    # A str is not a bool: "no" must not turn debug on.
    for name in ("debug", "mask_permission_denied"):
        for value in ("no", 1, None):
            with pytest.raises(TypeError, match=rf"^{name} must be True or False"):
                gt.ServerOptions(**{name: value})
    with pytest.raises(TypeError, match=r"^logger must be a logging.Logger"):
        gt.ServerOptions(logger="x")  # type: ignore[arg-type]
    adapter = logging.LoggerAdapter(logging.getLogger("app"), {"service": "seats"})
    assert gt.ServerOptions(logger=adapter).logger is adapter
    with pytest.raises(ValueError, match="printable"):
        gt.ServerOptions(domain="a\nb")
    with pytest.raises(ValueError, match="domain"):
        gt.ServerOptions(domain="x" * 254)
    with pytest.raises(TypeError, match="not an exception class"):
        gt.ServerOptions({"KeyError": gt.NotFound})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="on_error"):
        gt.ServerOptions(on_error=42)  # type: ignore[arg-type]
    # A bare StatusError has no code of its own: mapping to it is a mistake, refused.
    with pytest.raises(TypeError, match="StatusError itself has no code"):
        gt.ServerOptions({Seats: gt.StatusError})
    with pytest.raises(TypeError, match="TerminalError needs a reason"):
        gt.ServerInterceptor({Seats: gt.TerminalError})
    with pytest.raises(TypeError, match="thread_pool"):
        gt.AioServerInterceptor(thread_pool=object())  # type: ignore[arg-type]
