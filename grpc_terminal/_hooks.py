"""Hooks: ``on_error``, ``on_retry`` and ``on_give_up`` take one callable or several.

The server's :class:`~grpc_terminal.ServerOptions` and the client's
:class:`~grpc_terminal.RetryPolicy` both accept a hook argument as one
callable, or as a sequence of them (a list or tuple: a log hook, then
OpenTelemetry, then Prometheus). :func:`checked` checks the argument once,
when the options are built, and gives what they keep (a list becomes a
tuple); :func:`notify` calls each hook in order, and a hook
that raises is logged and skipped, so it never changes what the RPC returns
and never stops the hooks after it.

A hook is called synchronously, on the thread or task of the call it
reports, so a slow hook delays the response it reports (and, on an aio
server, blocks the event loop): hand slow work to a queue or a thread. An
``async def`` hook (or async generator function) would return something
nobody runs, so it is refused when the options are built (and a coroutine
returned anyway is closed and logged).

Whatever a hook raises is logged and skipped, ``BaseException`` subclasses
too (a green-thread timeout, ``asyncio.CancelledError``, ``GeneratorExit``):
only ``KeyboardInterrupt`` and ``SystemExit`` raised on the main thread go
up, since there they are how a program is stopped. Raised on any other
thread they cannot come from a signal, and would leave the call unanswered.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, cast

__all__ = ["checked", "notify"]


def checked(value: object, name: str) -> object:
    """``value`` (None, one callable, or a list or tuple of callables) as options keep it.

    A list is kept as a tuple (options are frozen and hashable); anything
    else is kept as given.

    Args:
        value: what the user passed as the hook argument.
        name: the argument's name, for the error message.

    Raises:
        TypeError: ``value`` is not None, a callable, or a list or tuple of
            callables; or one of them is an ``async def`` function.
    """
    if value is None:
        return None
    items: Sequence[object]
    single = callable(value)
    if single:
        items = (value,)
    elif isinstance(value, list | tuple):
        items = cast("Sequence[object]", value)  # isinstance leaves the item type unknown
    else:
        raise TypeError(f"{name} must be a callable or a list or tuple of callables, got {value!r}")
    for index, item in enumerate(items):
        where = name if single else f"{name}[{index}]"
        if not callable(item):
            raise TypeError(f"{where} must be callable, got {item!r}")
        if _is_async(item):
            raise TypeError(
                f"{where} is an async function ({item!r}): it is called synchronously, so its "
                "coroutine would never run; pass a plain function (it may schedule work itself)"
            )
    return value if single else tuple(items)


def _async_function(item: object) -> bool:
    return inspect.iscoroutinefunction(item) or inspect.isasyncgenfunction(item)


def _is_async(item: object) -> bool:
    """An ``async def`` function, async generator function, method or partial, or a callable object of one."""
    if _async_function(item):
        return True
    if inspect.isroutine(item) or isinstance(item, type):
        return False
    return _async_function(inspect.getattr_static(type(item), "__call__", None))


def _stops_the_program(exc: BaseException) -> bool:
    """KeyboardInterrupt or SystemExit on the main thread: the way a program is stopped."""
    return isinstance(exc, KeyboardInterrupt | SystemExit) and (
        threading.current_thread() is threading.main_thread()
    )


def notify(value: object, log: logging.Logger, name: str, *args: Any) -> None:
    """Call each hook of ``value`` with ``args``; what one raises is logged and skipped.

    ``KeyboardInterrupt`` and ``SystemExit`` raised on the main thread go up.

    Args:
        value: a hook argument as :func:`checked` returned it (None, one
            callable, or a tuple of callables).
        log: where a failing hook's traceback goes.
        name: the hook argument's name, for the log line.
        args: the arguments every hook gets.
    """
    if value is None:
        return
    callables = cast("tuple[Callable[..., object], ...]", value if isinstance(value, tuple) else (value,))
    for hook in callables:
        try:
            result = hook(*args)
        except BaseException as exc:
            if _stops_the_program(exc):
                raise
            log.error("%s hook failed: %r", name, hook, exc_info=exc)
            continue
        if inspect.iscoroutine(result):
            result.close()
            log.error("%s hook returned a coroutine, which was not run: %r", name, hook)
