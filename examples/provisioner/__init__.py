"""A small Provisioner service (Grant/Revoke) whose upstream fails in realistic ways.

* :mod:`.upstream`: the simulated identity provider and its own exceptions;
* :mod:`.service`: the gRPC service (generic handlers, ``google.protobuf.Struct``
  messages, no code generation), sync and aio, behind grpc-terminal's interceptor;
* :mod:`.client`: a client with a ``RetryPolicy`` that records every attempt;
* :mod:`.demo`: ``python -m examples.provisioner.demo`` prints the transcript.
"""

import os

# grpc C-core logs a harmless INFO line when a stopping server says GOAWAY to a
# connection the just-closed aio client has not torn down yet; keep the
# transcript clean (errors still print). Set before grpc is first imported.
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
