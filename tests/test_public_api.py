"""The public surface: sorted ``__all__`` that matches what is exported."""

from __future__ import annotations

import grpc_terminal as gt


def test_all_is_sorted_and_complete() -> None:
    assert list(gt.__all__) == sorted(gt.__all__)
    public = {name for name in vars(gt) if not name.startswith("_")}
    modules = {name for name in public if type(getattr(gt, name)).__name__ == "module"}
    assert set(gt.__all__) - {"__version__"} == public - modules
    for name in gt.__all__:
        assert hasattr(gt, name), name


DESIGN_NAMES = """
Reason ProvisionFailureDetail code_for_reason StatusError TerminalError terminal_error
failure_detail is_terminal is_retryable retry_delay from_rpc_error to_status
ServerInterceptor AsyncServerInterceptor intercept_channel aio_interceptors
""".split()


def test_design_names_exist() -> None:
    for name in DESIGN_NAMES:
        assert hasattr(gt, name), name


def test_version() -> None:
    assert gt.__version__.count(".") == 2
