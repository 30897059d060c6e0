"""``python -m grpc_terminal``: see :mod:`grpc_terminal._cli`."""

from __future__ import annotations

import sys

from grpc_terminal._cli import main

if __name__ == "__main__":
    sys.exit(main())
