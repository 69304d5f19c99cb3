"""Listener registry: callables that receive every finished UsageRecord."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

from .errors import report_error
from .runtime import RUNTIME

Listener = Callable[[Any], None]


def _default_key(callback: Listener) -> str:
    module = getattr(callback, "__module__", None) or "?"
    name = getattr(callback, "__qualname__", None) or repr(callback)
    return f"{module}.{name}"


def subscribe(callback: Listener, key: str | None = None) -> str:
    """Register ``callback`` to receive each record and return its key.

    A later subscription under the same key replaces the earlier one. The default key is the callback's
    module and qualified name, so a re-imported module that subscribes again replaces its old function
    instead of adding a second one. Callbacks run on the thread that finished the call. For a stream
    freed by the garbage collector they run on the shim's ``token_meter-finaliser`` thread, or on the
    event loop when the stream is read to its end first. They must be quick. Their exceptions (and a
    CancelledError) are logged once per kind and swallowed.
    """
    key = key or _default_key(callback)
    with RUNTIME.lock:
        RUNTIME.listeners[key] = callback
        RUNTIME.listener_tuple = _dispatch_tuple(RUNTIME.listeners.values())
    return key


def _dispatch_tuple(callbacks: Any) -> tuple[Listener, ...]:
    """Return the callables ``emit`` calls: the callbacks, with instances replaced by their bound ``__call__``.

    Calling an instance goes through its type's ``__call__`` slot, which costs more than calling the
    bound method (about 0.06 µs per record on Python 3.11). The behaviour is the same.
    """
    dispatch = []
    for callback in callbacks:
        method = getattr(type(callback), "__call__", None)  # noqa: B004 - the function behind the call slot
        if isinstance(method, types.FunctionType):
            callback = types.MethodType(method, callback)
        dispatch.append(callback)
    return tuple(dispatch)


def unsubscribe(callback_or_key: Listener | str) -> bool:
    """Remove a listener by key or by callable; return whether one was removed."""
    with RUNTIME.lock:
        if isinstance(callback_or_key, str):
            removed = RUNTIME.listeners.pop(callback_or_key, None) is not None
        else:
            keys = [key for key, value in RUNTIME.listeners.items() if value == callback_or_key]
            for key in keys:
                del RUNTIME.listeners[key]
            removed = bool(keys)
        RUNTIME.listener_tuple = _dispatch_tuple(RUNTIME.listeners.values())
    return removed


def emit(record: Any) -> None:
    """Deliver ``record`` to every listener; a listener's exception never reaches the caller."""
    for callback in RUNTIME.listener_tuple:
        try:
            callback(record)
        except (Exception, asyncio.CancelledError) as exc:
            report_error(f"listener {_default_key(callback)}", exc)
