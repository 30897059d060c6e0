"""Safe by default: nothing of an unexpected exception reaches the wire; hostile configuration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2 as ed

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._encode import encode

from harness import KINDS, LoopThread, Pair, Scenario

SECRET = "S3CR3T"

OPTION_COMBOS = [("sync", "sync"), ("aio", "aio"), ("aio-sync-handlers", "sync")]


class LeakyError(Exception):
    """An exception that carries secrets everywhere it can."""

    def __init__(self) -> None:
        super().__init__(f"{SECRET}-arg0", {"password": f"{SECRET}-arg1"})
        self.token = f"{SECRET}-attr"

    def __str__(self) -> str:
        return f"{SECRET}-str"

    def __repr__(self) -> str:
        return f"{SECRET}-repr"


def _leaky() -> BaseException:
    exc = LeakyError()
    exc.add_note(f"{SECRET}-note")
    try:
        try:
            try:
                raise KeyError(f"{SECRET}-context")
            except KeyError:
                raise RuntimeError(f"{SECRET}-cause") from OSError(f"{SECRET}-cause-of-cause")
        except RuntimeError as cause:
            raise exc from cause
    except LeakyError as raised:
        return raised


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError(f"{SECRET}-from-str")

    def __repr__(self) -> str:
        raise RuntimeError(f"{SECRET}-from-repr")


def _wire(err: BaseException) -> str:
    """Everything the client received, as text (raw trailers included)."""
    assert isinstance(err, gt.StatusError)
    parts: list[str] = [err.details(), repr(err), str(err)]
    raw = err.__cause__
    if isinstance(raw, grpc.RpcError):
        call: Any = raw
        parts += [repr(call.details()), repr(call.trailing_metadata())]
    for key, value in err.trailing_metadata():
        parts.append(key)
        parts.append(value.decode("latin-1") if isinstance(value, bytes) else value)
    return "\n".join(parts)


def _assert_generic_unknown(err: BaseException | None) -> None:
    assert type(err) is gt.Unknown, err
    wire = _wire(err)
    assert SECRET not in wire
    assert "LeakyError" not in wire and "StrRaises" not in wire and "Traceback" not in wire
    assert err.debug_info is None
    assert err.request_id and err.request_id in err.details()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("responses", [0, 2], ids=["before-responses", "mid-stream"])
def test_unexpected_exception_leaks_nothing(pair: Pair, kind: str, responses: int) -> None:
    out = pair.run(kind, Scenario(responses=responses, raise_=_leaky()))
    _assert_generic_unknown(out.error)
    if kind.endswith("stream") and responses:
        assert out.responses == ["r0", "r1"]


@pytest.mark.parametrize("kind", KINDS)
def test_exception_group_and_broken_str_leak_nothing(pair: Pair, kind: str) -> None:
    group = ExceptionGroup(f"{SECRET}-group", [_leaky(), ValueError(f"{SECRET}-member")])
    _assert_generic_unknown(pair.run(kind, Scenario(raise_=group)).error)
    _assert_generic_unknown(pair.run(kind, Scenario(responses=1, raise_=StrRaises())).error)


def test_unexpected_exception_is_logged_server_side(pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="grpc_terminal"):
        err = pair.run("unary_unary", Scenario(raise_=_leaky())).error
    assert isinstance(err, gt.StatusError) and err.request_id
    logged = [r for r in caplog.records if err.request_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # the traceback stays on the server


# -- opt-in debug mode --------------------------------------------------------------------


def _pair(request: pytest.FixtureRequest, loop_thread: LoopThread, **options: Any) -> Pair:
    server_kind, client_kind = request.param
    return Pair(server_kind, client_kind, loop_thread, server_options=options)


@pytest.fixture(scope="module", params=OPTION_COMBOS, ids=["-".join(c) for c in OPTION_COMBOS])
def debug_pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    p = _pair(request, loop_thread, debug=True)
    yield p
    p.close()


@pytest.mark.parametrize("kind", KINDS)
def test_debug_mode_sends_debug_info(debug_pair: Pair, kind: str) -> None:
    err = debug_pair.run(kind, Scenario(responses=1, raise_=ValueError("visible in debug"))).error
    assert type(err) is gt.Unknown
    assert err.debug_info is not None
    assert "ValueError: visible in debug" in err.debug_info.detail
    assert any("Traceback" in line or "ValueError" in line for line in err.debug_info.stack_entries)


@pytest.mark.parametrize("interceptor", [gt.ServerInterceptor, gt.AioServerInterceptor])
def test_debug_mode_is_off_by_default_and_loud_when_on(
    interceptor: type[Any], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        interceptor()
    assert not [r for r in caplog.records if "DEBUG MODE" in r.getMessage()]
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        interceptor(debug=True)
    loud = [r for r in caplog.records if "DEBUG MODE" in r.getMessage()]
    assert loud and loud[0].levelno >= logging.WARNING


def test_debug_info_attached_by_a_raiser_is_not_sent_without_debug(pair: Pair) -> None:
    raised = gt.Internal("x", extra_details=[ed.DebugInfo(detail=f"{SECRET}-debug", stack_entries=[SECRET])])
    err = pair.run("unary_unary", Scenario(raise_=raised)).error
    assert type(err) is gt.Internal and err.debug_info is None
    assert SECRET not in _wire(err)


# -- mask_permission_denied ---------------------------------------------------------------


@pytest.fixture(scope="module", params=OPTION_COMBOS, ids=["-".join(c) for c in OPTION_COMBOS])
def masked_pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    p = _pair(
        request, loop_thread, mask_permission_denied=True, errors={PermissionError: gt.PermissionDenied}
    )
    yield p
    p.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "raised",
    [
        lambda: gt.OperationNotPermitted(
            f"{SECRET}: group 'admins' exists but you may not join it",
            resource_info=("group", f"{SECRET}-admins"),
        ),
        lambda: gt.PermissionDenied(
            f"{SECRET} denied",
            metadata={"resource": SECRET},
            help_links={"request access": f"https://{SECRET}/"},
        ),
        lambda: PermissionError(f"{SECRET} mapped"),
    ],
    ids=["terminal", "plain", "mapped"],
)
def test_mask_permission_denied_sends_a_bare_not_found(masked_pair: Pair, kind: str, raised: Any) -> None:
    out = masked_pair.run(kind, Scenario(responses=1, raise_=raised()))
    err = out.error
    assert type(err) is gt.NotFound, err
    assert err.failure_detail is None and err.resource_info is None and err.help is None
    assert err.error_info is not None and err.error_info.reason == "NOT_FOUND"
    assert not err.error_info.metadata
    wire = _wire(err)
    assert SECRET not in wire and "PERMISSION" not in wire and "NOT_PERMITTED" not in wire
    assert not any(k == gt.PUSHBACK_KEY for k, _ in err.trailing_metadata())


def test_mask_leaves_other_codes_alone(masked_pair: Pair) -> None:
    err = masked_pair.run("unary_unary", Scenario(raise_=gt.UserNotProvisionable("suspended"))).error
    assert type(err) is gt.UserNotProvisionable and err.detail == "suspended"


# -- hostile configuration on the server ------------------------------------------------

BAD_TRAILERS: tuple[tuple[Any, Any], ...] = (
    ("Upper-Case", "v"),
    ("has space", "v"),
    ("ctl-value", "line\nbreak"),
    ("non-ascii", "é"),
    ("x-bin", "str for a binary key"),
    ("grpc-status", "0"),
    ("grpc-status-details-bin", b"\x00forged"),
    ("", "empty key"),
    ("good-key", "fine"),
    ("good-bin", b"\x00\x01"),
)


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_metadata_from_the_raiser_is_dropped_and_logged(
    pair: Pair, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    raised = gt.NotFound("user 7", trailing_metadata=BAD_TRAILERS)
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        err = pair.run(kind, Scenario(responses=1, raise_=raised)).error
    assert type(err) is gt.NotFound and err.details() == "user 7"
    got = dict(err.trailing_metadata())
    assert got.get("good-key") == "fine" and got.get("good-bin") == b"\x00\x01"
    assert "Upper-Case" not in got and "upper-case" not in got and "x-bin" not in got
    assert [v for k, v in err.trailing_metadata() if k == "grpc-status-details-bin"] != [b"\x00forged"]
    assert any("dropping trailing metadata" in r.getMessage() for r in caplog.records)


HANDLER_TRAILERS: tuple[tuple[str, str | bytes], ...] = (
    ("good-key", "fine"),
    ("x-bin", "str for a binary key"),
    ("ctl-value", "line\nbreak"),
)


@pytest.mark.parametrize("kind", KINDS)
def test_invalid_metadata_set_by_the_handler_is_dropped_and_logged(
    pair: Pair, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        out = pair.run(kind, Scenario(trailers=HANDLER_TRAILERS, raise_=gt.UserNotProvisionable("suspended")))
    err = out.error
    assert type(err) is gt.UserNotProvisionable and err.detail == "suspended"
    got = dict(err.trailing_metadata())
    assert got.get("good-key") == "fine"
    assert "x-bin" not in got and "ctl-value" not in got
    assert any("dropping trailing metadata" in r.getMessage() for r in caplog.records)


class Boom(Exception):
    pass


class Bang(Exception):
    pass


def _returns_wrong_type(exc: BaseException) -> Any:
    return f"{SECRET}-not-an-error"


def _raises(exc: BaseException) -> gt.StatusError:
    raise RuntimeError(f"{SECRET}-mapping-bug")


@pytest.fixture(scope="module", params=OPTION_COMBOS, ids=["-".join(c) for c in OPTION_COMBOS])
def broken_mapping_pair(request: pytest.FixtureRequest, loop_thread: LoopThread) -> Iterator[Pair]:
    p = _pair(request, loop_thread, errors={Boom: _returns_wrong_type, Bang: _raises, StrRaises: gt.NotFound})
    yield p
    p.close()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raised", [Boom, Bang], ids=["wrong-type", "raises"])
def test_broken_mapping_function_gives_a_sane_status(
    broken_mapping_pair: Pair, kind: str, raised: type[Exception], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="grpc_terminal"):
        err = broken_mapping_pair.run(kind, Scenario(responses=1, raise_=raised(SECRET))).error
    _assert_generic_unknown(err)
    assert any("error mapping failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", KINDS)
def test_mapped_exception_whose_str_raises(broken_mapping_pair: Pair, kind: str) -> None:
    err = broken_mapping_pair.run(kind, Scenario(raise_=StrRaises())).error
    assert type(err) is gt.NotFound
    assert SECRET not in _wire(err)


def _broken_errors() -> list[gt.StatusError]:
    wrong_detail = gt.InvalidArgument("bad detail type")
    wrong_detail.help = "not a Help message"  # type: ignore[assignment]
    wrong_message = gt.LicenseExhausted("seats")
    wrong_message.message = 42  # type: ignore[assignment]
    surrogate = gt.UserNotProvisionable("suspended", message="lone \ud800 surrogate")
    broken_md = gt.NotFound("md")
    broken_md._trailing_metadata = 5  # type: ignore[assignment]
    return [wrong_detail, wrong_message, surrogate, broken_md]


@pytest.mark.parametrize("index", range(4))
def test_broken_status_errors_still_encode(index: int, caplog: pytest.LogCaptureFixture) -> None:
    err = _broken_errors()[index]
    with caplog.at_level(logging.WARNING, logger="grpc_terminal"):
        enc = encode(err)
    assert enc.code == err.code()
    assert enc.size() <= gt.TRAILER_BUDGET
    enc.message.encode("utf-8")  # sendable
    if index != 2:
        assert caplog.records  # the problem is logged


@pytest.mark.parametrize("kind", KINDS)
def test_broken_status_errors_end_to_end(pair: Pair, kind: str) -> None:
    for raised in _broken_errors()[:3]:
        err = pair.run(kind, Scenario(responses=1, raise_=raised)).error
        assert type(err) is type(raised), (raised, err)
        if isinstance(raised, gt.TerminalError):
            assert isinstance(err, gt.TerminalError) and err.reason == raised.reason


def test_status_error_with_broken_trailing_metadata_end_to_end(pair: Pair) -> None:
    raised = _broken_errors()[3]
    err = pair.run("unary_unary", Scenario(raise_=raised)).error
    assert type(err) is gt.NotFound, err
    assert "Exception calling application" not in _wire(err)


def test_terminal_error_with_a_lone_surrogate_in_its_detail_can_be_built() -> None:
    err = gt.UserNotProvisionable("user \udcff from os.fsdecode?")
    assert err.detail == "user \N{REPLACEMENT CHARACTER} from os.fsdecode?"
    assert encode(err).code is grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"errors": {KeyError: gt.TerminalError}}, TypeError),
        ({"errors": {KeyError: 3}}, TypeError),
        ({"errors": {"KeyError": gt.NotFound}}, TypeError),
        ({"errors": {KeyError: dict}}, TypeError),
        ({"errors": [KeyError]}, TypeError),
        ({"domain": ""}, ValueError),
        ({"budget": 10}, ValueError),
        ({"on_error": "print"}, TypeError),
    ],
)
def test_wrong_configuration_is_rejected_at_construction(
    options: dict[str, Any], error: type[Exception]
) -> None:
    for interceptor in (gt.ServerInterceptor, gt.AioServerInterceptor):
        with pytest.raises(error) as info:
            interceptor(**options)
        assert str(info.value)  # a clear message, not a bare exception


def test_lone_surrogates_become_replacement_characters_and_nothing_else_changes() -> None:
    err = gt.InvalidArgument(
        "why? \ud800",
        field_violations={"name\udcff": "what? \udfff"},
        localized_message="¿qué? \ud800",
    )
    enc = encode(err)
    assert enc.message == "why? \N{REPLACEMENT CHARACTER}"
    back = decode(enc.code, enc.message, enc.trailing_metadata)
    assert back.field_violations == [("name\N{REPLACEMENT CHARACTER}", "what? \N{REPLACEMENT CHARACTER}")]
    assert back.localized_message is not None
    assert back.localized_message.message == "¿qué? \N{REPLACEMENT CHARACTER}"
