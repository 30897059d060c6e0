"""Overhead and error-path benchmarks for grpc-terminal (``python -m benchmarks``)."""
