"""Fuzz target: grpc_terminal's client decoder must never raise.

Run (the pure-Python protobuf parser is the one with the most Python paths):

    PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=python python fuzz/fuzz_decode.py \
        -max_total_time=60 fuzz/corpus

Any libFuzzer argument works. The input's first byte picks the call's status
code, the next two the split between the call's message and the
``grpc-status-details-bin`` value; the rest is both. Every input is decoded
as sent and again with the details' code forced to agree with the call, so
the fuzzer reaches the detail parsing instead of stopping at the code check.
"""

from __future__ import annotations

import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import grpc_terminal as gt
from grpc_terminal._decode import decode
from grpc_terminal._trailers import STATUS_DETAILS_KEY

_CODES = list(grpc.StatusCode)


def _agreeing(code: grpc.StatusCode, raw: bytes) -> bytes:
    """``raw`` with ``code`` appended: for a scalar field the last value on the wire wins."""
    return raw + bytes([0x08, code.value[0]])


def check(data: bytes) -> None:
    """Decode ``data`` as a failed call; raise AssertionError on a broken promise."""
    if len(data) < 3:
        return
    code = _CODES[data[0] % len(_CODES)]
    split = int.from_bytes(data[1:3], "big") % (len(data) - 2)
    body = data[3:]
    message, details = body[:split], body[split:]
    for trailers in (
        [(STATUS_DETAILS_KEY, details)],
        [(STATUS_DETAILS_KEY, _agreeing(code, details))],
        [(STATUS_DETAILS_KEY, details), ("x-other", message.decode("latin-1")), (STATUS_DETAILS_KEY, body)],
    ):
        err = decode(code, message, trailers)  # must not raise
        assert isinstance(err, gt.StatusError), type(err)
        expected = code if code is not grpc.StatusCode.OK else grpc.StatusCode.UNKNOWN
        assert err.code() is expected, (err.code(), expected)
        assert isinstance(err.details(), str)
        if err.failure_detail is not None:
            assert isinstance(err, gt.TerminalError)
        # What users do next with an error must not raise either.
        gt.classify(err)
        gt.is_retryable(err)
        gt.retry_delay(err)
        gt.failure_detail(err)
        repr(err)
        str(err)


def main() -> None:
    import atheris  # only the fuzz run needs it

    def one_input(data: bytes) -> None:
        check(data)

    atheris.instrument_all()
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
