"""A small user service built from grpc-terminal's README alone: ``python -m examples.user_service``.

``seats.proto`` defines the service; ``seats_pb2*.py`` and their ``.pyi`` are
generated from it, here by grpcio-tools 1.62.3 (protoc 25, as for
``grpc_terminal/_gen``, so they load on protobuf 4.21 and newer) and
mypy-protobuf 5.1.0, whose stubs type ``SeatsStub(aio_channel)`` as the aio
stub; to regenerate, from the repository root::

    python -m grpc_tools.protoc -I. --python_out=. --grpc_python_out=. \\
        --mypy_out=. --mypy_grpc_out=. examples/user_service/seats.proto

``service.py`` has the sync and aio servicers and the error mapping,
``client.py`` the sync and aio clients. The hand-written modules pass
``mypy --strict`` with no cast and no ``type: ignore``.
"""
