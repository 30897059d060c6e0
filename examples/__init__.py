"""Runnable examples for grpc-terminal (``make demo``)."""
