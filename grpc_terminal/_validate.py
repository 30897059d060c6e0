"""``ServerOptions(validate=...)``: each request message checked before the handler sees it.

A validator is a plain function of one request message (``protovalidate.validate``,
a pydantic model's ``model_validate``, your own). It runs inside the wrapped
handler, so what it raises is translated exactly as if the handler had raised
it: map its exception class in ``errors=`` (``grpc_terminal.validation``
has the mappings for protovalidate and pydantic) or raise a
:class:`~grpc_terminal.StatusError` from it.

A unary request is checked before the handler is called; each message of a
request stream as the handler reads it (a stream is not read ahead), so the
messages before a bad one have been handled. A handler that reads with
``context.read()`` instead of its request iterator is not checked. What a
validator returns is ignored (raise to refuse), except that an awaitable
fails the call: a validator that checks asynchronously would check nothing.

Each wrapper keeps the kind of the behaviour it wraps (function, generator,
coroutine function, async generator function), since the interceptors pick
their edge by that kind.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

__all__ = ["Validator", "validating"]

#: A request validator: called with each request message; what it raises fails the RPC.
Validator = Callable[[Any], object]


def _check(validate: Validator, request: Any) -> None:
    """Run ``validate(request)``; a validator that returns something pending fails closed."""
    result = validate(request)
    if inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise TypeError(
            f"validate returned an awaitable ({type(result).__name__}), which would check nothing: "
            "the request is refused; a validator must check synchronously and raise"
        )


def _checked(requests: Iterator[Any], validate: Validator) -> Iterator[Any]:
    for request in requests:
        _check(validate, request)
        yield request


async def _achecked(requests: AsyncIterator[Any], validate: Validator) -> AsyncIterator[Any]:
    async for request in requests:
        _check(validate, request)
        yield request


def validating(
    behavior: Callable[..., Any], validate: Validator, request_streaming: bool
) -> Callable[..., Any]:
    """``behavior`` (a method handler's function) with its requests checked by ``validate``.

    Args:
        behavior: the handler's function, of any of the four kinds grpc runs.
        validate: called with each request message; what it raises fails the RPC.
        request_streaming: the method has a request stream (the first argument
            is an iterator, async for an ``async`` behaviour).
    """
    is_async = inspect.iscoroutinefunction(behavior) or inspect.isasyncgenfunction(behavior)

    def requests(request: Any) -> Any:
        if not request_streaming:
            _check(validate, request)
            return request
        return _achecked(request, validate) if is_async else _checked(request, validate)

    if inspect.isasyncgenfunction(behavior):

        async def agen(request: Any, context: Any) -> AsyncIterator[Any]:
            async for response in behavior(requests(request), context):
                yield response

        return agen
    if inspect.iscoroutinefunction(behavior):

        async def coroutine(request: Any, context: Any) -> Any:
            return await behavior(requests(request), context)

        return coroutine

    def function(request: Any, context: Any, *rest: Any) -> Any:
        return behavior(requests(request), context, *rest)

    return function
