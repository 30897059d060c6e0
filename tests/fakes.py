"""The suite's one set of fakes: failures as grpc raises them, without a network.

Loopback servers (``grpc_terminal.testing``) are the rule; these stand in
only where a test is about decoding what arrived, not about sending it.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

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
