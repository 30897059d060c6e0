"""The suite's one set of fakes: failures as grpc raises them, without a network.

Loopback servers (``grpc_terminal.testing``) are the rule; these stand in
only where a test is about decoding what arrived, not about sending it.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

import grpc_terminal as gt
from grpc_terminal._trailers import Encoded

Trailers = Sequence[tuple[str, str | bytes]]


class Received(grpc.RpcError):
    """A failure as grpcio raises it on the client: code, details and trailers only."""

    def __init__(self, code: grpc.StatusCode, details: str = "", trailers: Trailers = ()) -> None:
        super().__init__(details)
        self._code, self._details, self._trailers = code, details, tuple(trailers)

    @classmethod
    def of(cls, status: grpc.Status) -> Received:
        """What a client receives for ``status`` (from ``to_status`` or ``abort_with_status``)."""
        return cls(status.code, status.details, status.trailing_metadata)

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:  # type: ignore[override]
        return self._trailers


def client_error(enc: Encoded) -> gt.StatusError:
    """The typed error a client decodes from ``enc`` (as grpc would hand it over).

    Args:
        enc: what the encoder sends.
    """
    return gt.from_rpc_error(Received(enc.code, enc.message, enc.trailing_metadata))


def trailer(enc: Encoded, key: str) -> str | bytes | None:
    """The first trailer ``key`` of ``enc``, or None.

    Args:
        enc: what the encoder sends.
        key: a trailer key.
    """
    return next((v for k, v in enc.trailing_metadata if k == key), None)


def varint(n: int) -> bytes:
    """``n`` as a protobuf varint (a negative ``n`` as its 64-bit two's complement, as protobuf writes it).

    Args:
        n: the value.
    """
    out = bytearray()
    n &= 2**64 - 1
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | 0x80 if n else byte)
        if not n:
            return bytes(out)
