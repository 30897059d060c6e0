"""The public surface: sorted ``__all__`` that matches what is exported."""

from __future__ import annotations

import grpc
import pytest

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
ServerInterceptor AioServerInterceptor intercept_channel aio_interceptors
""".split()


def test_design_names_exist() -> None:
    for name in DESIGN_NAMES:
        assert hasattr(gt, name), name


def test_version() -> None:
    assert gt.__version__.count(".") == 2


def test_exported_names_say_grpc_terminal_not_a_private_module() -> None:
    for name in gt.__all__:
        obj = getattr(gt, name)
        if isinstance(obj, type) or (callable(obj) and hasattr(obj, "__code__")):
            module = obj.__module__
            assert module == "grpc_terminal" or module.endswith("_pb2"), (name, module)
    assert "grpc_terminal.LicenseExhausted" in repr(gt.LicenseExhausted)


def test_the_class_registry_is_written_by_the_definitions() -> None:
    # Every code and every known reason has exactly one class, found by class_for.
    from grpc_terminal._errors import class_for

    for code in grpc.StatusCode:
        if code is not grpc.StatusCode.OK:
            cls = class_for(code)
            assert cls.grpc_code is code and cls.__name__.lower() == code.name.replace("_", "").lower()
    for reason in gt.Reason:
        if reason is not gt.Reason.UNSPECIFIED:
            cls = class_for(gt.code_for_reason(reason), int(reason))
            assert issubclass(cls, gt.TerminalError) and cls._reason is reason
    with pytest.raises(TypeError, match="NOT_FOUND already has its class: NotFound"):

        class Again(gt.StatusError, code=grpc.StatusCode.NOT_FOUND):
            pass

    class Mine(gt.NotFound):  # a user's subclass inherits the code and registers nothing
        pass

    assert Mine.grpc_code is grpc.StatusCode.NOT_FOUND and class_for(grpc.StatusCode.NOT_FOUND) is gt.NotFound


def test_find_status_and_attempt_are_public() -> None:
    # What the adapters use, users can use: the first gRPC failure in a chain, typed.
    inner = gt.Unavailable("upstream 503", retry_delay=0.5)
    outer = RuntimeError("wrapped")
    outer.__cause__ = inner
    assert gt.find_status(outer) is inner
    assert gt.find_status(ExceptionGroup("g", [ValueError("v"), outer])) is inner
    assert gt.find_status(ValueError("no grpc here")) is None
    policy = gt.RetryPolicy(max_attempts=2, initial_backoff=0, jitter=0, sleep=lambda _: None)
    with pytest.raises(gt.Unavailable) as caught:
        policy.call(lambda: (_ for _ in ()).throw(gt.Unavailable("down")))
    history = caught.value.retry_history
    assert history is not None and all(isinstance(a, gt.Attempt) for a in history.attempts)
    assert [a.number for a in history.attempts] == [1, 2]
