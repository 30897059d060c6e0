"""Property: any error that fits the budget survives encode -> decode unchanged."""

from __future__ import annotations

import pickle

from hypothesis import given, settings

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._encode import DEFAULT_DOMAIN, encode
from grpc_terminal._errors import DETAIL_SLOTS

from strategies import status_errors

SLOTS = [attr for attr, _ in DETAIL_SLOTS.values() if attr not in ("error_info", "debug_info")]


@settings(max_examples=300, deadline=None)
@given(status_errors(max_items=3, max_text=20))
def test_encode_decode_round_trip(err: gt.StatusError) -> None:
    encoded = encode(err)
    assert encoded.size() <= gt.TRAILER_BUDGET
    received = decode(encoded.code, encoded.message, encoded.trailing_metadata)
    assert type(received) is type(err)
    assert received.code() is err.code()
    assert received.details() == err.details()
    for attr in SLOTS:
        assert getattr(received, attr) == getattr(err, attr), attr
    assert received.debug_info is None  # DebugInfo only in debug mode
    assert received.retry_delay == err.retry_delay
    assert received.extra_details == err.extra_details
    assert received.error_info is not None
    assert err.error_info is not None
    assert received.error_info.reason == err.error_info.reason
    assert received.error_info.domain == (err.error_info.domain or DEFAULT_DOMAIN)
    assert dict(received.error_info.metadata) == dict(err.error_info.metadata)
    if isinstance(err, gt.TerminalError):
        assert isinstance(received, gt.TerminalError)
        assert received.reason == err.reason
        assert received.detail == err.detail
    assert gt.is_terminal(received) == (err.failure_detail is not None)
    clone = pickle.loads(pickle.dumps(received))
    assert repr(clone) == repr(received)
