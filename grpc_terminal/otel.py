"""OpenTelemetry hooks: say on the current span why a call failed, and how it was retried.

::

    import grpc_terminal as gt
    from grpc_terminal import otel

    server_interceptor = gt.ServerInterceptor(on_error=otel.on_error)
    policy = gt.RetryPolicy(on_retry=otel.on_retry, on_give_up=otel.on_give_up)

Each hook writes to the span that is current where it runs: the one
opentelemetry-instrumentation-grpc opens for the RPC (put its interceptor
*outside* grpc-terminal's, so its span is open while ours run), or your
own (``with tracer.start_as_current_span(...)``). With no current span, or
one that is not recording (sampled out, or no SDK installed), a hook
returns at once. A hook never raises.

What a failure leaves on the span (:func:`on_error` on the server,
:func:`on_give_up` on the client):

* ``grpc_terminal.reason``: the ProvisionFailureDetail reason
  (``USER_NOT_PROVISIONABLE``), else the ErrorInfo reason, else the code's
  name (``UNAVAILABLE``); a reason not in AIP-193's form (UPPER_SNAKE_CASE,
  2 to 63 characters: free text a peer relayed) is written as ``OTHER``;
* ``grpc_terminal.terminal``, ``grpc_terminal.retryable`` (booleans);
* ``grpc_terminal.request_id`` for a failure the server did not expect;
* ``error.type``: the status code's name (``FAILED_PRECONDITION``), or the
  exception's fully qualified class name when there is no gRPC status;
* ``rpc.response.status_code``: the code the caller got, as a string;
* server: ``grpc_terminal.masked`` when a PERMISSION_DENIED went out as NOT_FOUND;
* client: ``grpc_terminal.stop_reason`` (a :class:`grpc_terminal.StopReason`
  value) and ``grpc_terminal.attempt`` (the attempts made);
* the span's status: ERROR, described by the code and the reason only
  (never an exception's text).

``error.type`` and ``rpc.response.status_code`` are the names of the
OpenTelemetry semantic conventions for RPC as reworked after v1.37.0 (checked
against v1.45.0); the grpc instrumentation (0.66b2) still writes the older,
now deprecated integer ``rpc.grpc.status_code``, which these hooks leave to
it.

:func:`on_retry` adds one span event, ``grpc_terminal.retry``, per retry,
with the attempt that failed, its code and the wait before the next one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import grpc

import grpc_terminal as gt
from grpc_terminal._details import is_error_reason
from grpc_terminal._reason import reason_name

try:
    from opentelemetry import trace
    from opentelemetry.trace import Span, Status, StatusCode
    from opentelemetry.util.types import AttributeValue
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "grpc_terminal.otel needs opentelemetry-api: pip install 'grpc-terminal[otel]'"
    ) from exc

__all__ = ["on_error", "on_give_up", "on_retry"]

_log = logging.getLogger("grpc_terminal.otel")

# Attribute: the reason of the failure (a Reason name, an ErrorInfo reason, or the code's name).
_REASON = "grpc_terminal.reason"
# Attribute: True when the failure carries a ProvisionFailureDetail.
_TERMINAL = "grpc_terminal.terminal"
# Attribute: True when the failure may succeed if retried (:func:`grpc_terminal.is_retryable`).
_RETRYABLE = "grpc_terminal.retryable"
# Attribute: the request id of a failure the server did not expect.
_REQUEST_ID = "grpc_terminal.request_id"
# Attribute (server): True when a PERMISSION_DENIED was sent as NOT_FOUND.
_MASKED = "grpc_terminal.masked"
# Attribute (client): why retrying stopped, a :class:`grpc_terminal.StopReason` value.
_STOP_REASON = "grpc_terminal.stop_reason"
# Attribute (client): the attempt number (on a retry event), or the attempts made (on the span).
_ATTEMPT = "grpc_terminal.attempt"
# Attribute (retry event): seconds waited before the next attempt.
_WAIT = "grpc_terminal.wait"
# Attribute (retry event): the classification rule that decided (:attr:`grpc_terminal.Verdict.rule`).
_RULE = "grpc_terminal.rule"
# Attribute (retry event): the server's suggested delay in seconds, when it sent one.
_SERVER_DELAY = "grpc_terminal.server_delay"
# The name of the span event :func:`on_retry` adds.
_RETRY_EVENT = "grpc_terminal.retry"
# Semantic-convention attribute: the class of error (the status code's name).
_ERROR_TYPE = "error.type"
# Semantic-convention attribute: the status code the caller got, as a string.
_RPC_RESPONSE_STATUS_CODE = "rpc.response.status_code"

# The longest text written (a class name); a longer one is cut.
_MAX_REASON = 128
# A reason a peer relays in another shape than AIP-193's may be free text: written as OTHER.
_OTHER = "OTHER"

_Attributes = dict[str, AttributeValue]


def _recording_span() -> Span | None:
    span = trace.get_current_span()
    return span if span.is_recording() else None


def _text(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text[:_MAX_REASON]


def _safe_reason(value: object) -> str:
    """``value`` when it is a reason in AIP-193's form, else ``OTHER``."""
    return value if is_error_reason(value) else _OTHER


def _code_name(code: object) -> str | None:
    return code.name if isinstance(code, grpc.StatusCode) else None


def _class_name(exc: BaseException) -> str:
    cls = type(exc)
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _reason_of(exc: BaseException, status: gt.StatusError | None) -> str:
    """What the server's ``ErrorEvent.reason`` would say: the Reason, the ErrorInfo reason, the code."""
    detail = gt.failure_detail(exc)
    if detail is not None:
        return reason_name(detail.reason)
    if status is None:
        return type(exc).__name__
    info = status.error_info
    reason: object = info.reason if info is not None else None
    if isinstance(reason, str) and reason:
        return _safe_reason(reason)
    return _code_name(status.code()) or "UNKNOWN"


def _describe(code: str | None, reason: str) -> str:
    if code is None or code == reason:
        return reason
    return f"{code}: {reason}"


def _mark(span: Span, attributes: Mapping[str, AttributeValue], description: str) -> None:
    span.set_attributes(attributes)
    span.set_status(Status(StatusCode.ERROR, description))


def on_error(event: gt.ErrorEvent) -> None:
    """Server hook: record one failed RPC on the current span and mark the span as failed.

    Pass it as ``on_error=`` to :class:`grpc_terminal.ServerInterceptor` or
    :class:`grpc_terminal.AioServerInterceptor`. The server calls it inside
    the RPC, where the span of opentelemetry-instrumentation-grpc's server
    interceptor (listed before grpc-terminal's) is current.

    For a masked failure, ``error.type`` and ``grpc_terminal.reason`` are the
    real ones (the span is the server's own telemetry), and
    ``rpc.response.status_code`` is what the caller got (``NOT_FOUND``), with
    ``grpc_terminal.masked`` True. The status description is the code and
    the reason, never the exception's text.

    Args:
        event: the failure, as the server interceptor reports it.
    """
    try:
        span = _recording_span()
        if span is None or not isinstance(event, gt.ErrorEvent):
            return
        code = _code_name(event.code) or "UNKNOWN"
        reason = _safe_reason(event.reason)
        attributes: _Attributes = {
            _REASON: reason,
            _TERMINAL: bool(event.terminal),
            _RETRYABLE: bool(event.retryable),
            _ERROR_TYPE: code,
            _RPC_RESPONSE_STATUS_CODE: _code_name(event.sent_code) or code,
        }
        if event.request_id is not None:
            attributes[_REQUEST_ID] = _text(event.request_id)
        if event.masked:
            attributes[_MASKED] = True
        _mark(span, attributes, _describe(code, reason))
    except Exception:
        _log.debug("grpc_terminal.otel: on_error could not record the failure", exc_info=True)


def on_retry(attempt: int, wait: float, verdict: gt.Verdict, error: BaseException) -> None:
    """Client hook: add a ``grpc_terminal.retry`` event to the current span for one retry.

    Pass it as ``on_retry=`` to :class:`grpc_terminal.RetryPolicy`. The event
    carries ``grpc_terminal.attempt`` (the attempt that failed, 1 for the
    first), ``grpc_terminal.wait`` (seconds before the next attempt),
    ``rpc.response.status_code`` and ``error.type`` (the failure's code, or
    its class when it has none), ``grpc_terminal.reason``,
    ``grpc_terminal.rule`` and, when the server suggested a delay,
    ``grpc_terminal.server_delay``. The span's status is left alone: the
    call may still succeed.

    Args:
        attempt: the number of the attempt that failed.
        wait: seconds the policy waits before the next attempt.
        verdict: what the classification decided about the failure.
        error: the failure.
    """
    try:
        span = _recording_span()
        if span is None:
            return
        status = gt.find_status(error) if isinstance(error, BaseException) else None
        code = _code_name(getattr(verdict, "code", None))
        if code is None and status is not None:
            code = _code_name(status.code())
        attributes: _Attributes = {
            _ATTEMPT: int(attempt),
            _WAIT: float(wait),
        }
        if isinstance(error, BaseException):
            attributes[_REASON] = _text(_reason_of(error, status))
            attributes[_ERROR_TYPE] = code or _class_name(error)
        if code is not None:
            attributes[_RPC_RESPONSE_STATUS_CODE] = code
        rule = getattr(verdict, "rule", None)
        if isinstance(rule, str):
            attributes[_RULE] = _text(rule)
        delay = getattr(verdict, "delay", None)
        if isinstance(delay, int | float) and not isinstance(delay, bool):
            attributes[_SERVER_DELAY] = float(delay)
        span.add_event(_RETRY_EVENT, attributes)
    except Exception:
        _log.debug("grpc_terminal.otel: on_retry could not record the retry", exc_info=True)


def on_give_up(history: gt.RetryHistory, error: BaseException) -> None:
    """Client hook: record the final failure of a retried call on the current span.

    Pass it as ``on_give_up=`` to :class:`grpc_terminal.RetryPolicy`; the
    policy calls it once, when it stops with an error (a terminal failure on
    the first attempt included). It sets the failure's attributes (as
    :func:`on_error` does on the server), ``grpc_terminal.stop_reason`` and
    ``grpc_terminal.attempt`` (the attempts made), and marks the span's
    status as ERROR, described by the code and the reason only.
    ``grpc_terminal.retryable`` is the policy's verdict on the last attempt
    (True for a transient failure that ran out of attempts).

    Args:
        history: every attempt, and why retrying stopped.
        error: the error the caller gets.
    """
    try:
        span = _recording_span()
        if span is None or not isinstance(error, BaseException):
            return
        status = gt.find_status(error)
        code = _code_name(status.code()) if status is not None else None
        reason = _text(_reason_of(error, status))
        known = isinstance(history, gt.RetryHistory)
        attempts = history.attempts if known else ()
        last = attempts[-1].verdict if attempts else None
        retryable = last.retryable if last is not None else gt.is_retryable(error)
        attributes: _Attributes = {
            _REASON: reason,
            _TERMINAL: gt.is_terminal(error),
            _RETRYABLE: bool(retryable),
            _ERROR_TYPE: code or _class_name(error),
        }
        if code is not None:
            attributes[_RPC_RESPONSE_STATUS_CODE] = code
        if status is not None and status.request_id:
            attributes[_REQUEST_ID] = _text(status.request_id)
        if known:
            attributes[_STOP_REASON] = str(history.stopped.value)
            attributes[_ATTEMPT] = len(attempts)
        _mark(span, attributes, _describe(code, reason))
    except Exception:
        _log.debug("grpc_terminal.otel: on_give_up could not record the failure", exc_info=True)
