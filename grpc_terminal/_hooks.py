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
reports: an ``async def`` hook would return a coroutine nobody awaits, so it
is refused when the options are built (and a coroutine returned anyway is
closed and logged).
"""

from __future__ import annotations

import inspect
import logging
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
                f"{where} is an async function ({item!r}): hooks are called synchronously, so its "
                "coroutine would never run; pass a plain function (it may schedule work itself)"
            )
    return value if single else tuple(items)


def _is_async(item: object) -> bool:
    """True for an ``async def`` function, method or partial, or an object whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(item):
        return True
    if inspect.isroutine(item) or isinstance(item, type):
        return False
    return inspect.iscoroutinefunction(inspect.getattr_static(type(item), "__call__", None))


def notify(value: object, log: logging.Logger, name: str, *args: Any) -> None:
    """Call each hook of ``value`` with ``args``; what one raises is logged and skipped.

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
        except Exception:
            log.exception("%s hook failed: %r", name, hook)
            continue
        if inspect.iscoroutine(result):
            result.close()
            log.error("%s hook returned a coroutine, which was not run: %r", name, hook)
