"""Call scopes: attributes that every call started inside them carries into its record.

Scopes live in a ContextVar, so concurrent asyncio Tasks and threads each see their own. A scope
inherits the attributes of the scope it is entered in. It also tracks the streams opened inside it, so a
host whose streams are done when the scope ends can finalise the open ones at once (outcome
"abandoned", ``exit_scope(..., finalize_open_streams=True)``) instead of waiting for the garbage collector.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import report_error
from .records import NO_SCOPE, ScopeAttributes
from .runtime import RUNTIME


class Scope:
    """One entered scope: its merged attributes (read-only) and the stream calls still open inside it."""

    __slots__ = ("attributes", "open_calls")

    def __init__(self, attributes: Mapping[str, Any]) -> None:
        self.attributes = ScopeAttributes(attributes)
        self.open_calls: set[Any] = set()


@dataclass(frozen=True, slots=True)
class ScopeToken:
    """Handle returned by ``enter_scope``; pass it to ``exit_scope``."""

    scope: Scope
    previous: Scope | None
    var_token: Any


def current_scope() -> Mapping[str, Any]:
    """Return the read-only attributes of the innermost scope, or an empty mapping outside any scope."""
    scope = RUNTIME.scope_var.get()
    return scope.attributes if scope is not None else NO_SCOPE


def enter_scope(**attributes: Any) -> ScopeToken:
    """Enter a scope whose attributes are the enclosing scope's updated with ``attributes``.

    For hosts whose "before" and "after" hooks are separate calls. Every ``enter_scope`` needs exactly
    one ``exit_scope`` in the same Task or thread.
    """
    previous = RUNTIME.scope_var.get()
    merged = {**previous.attributes, **attributes} if previous is not None else attributes
    scope = Scope(merged)
    return ScopeToken(scope, previous, RUNTIME.scope_var.set(scope))


def exit_scope(token: ScopeToken, *, finalize_open_streams: bool = False) -> int:
    """Leave the scope of ``token``; return how many open streams were finalised as abandoned.

    With ``finalize_open_streams`` the host declares that streams opened inside the scope and still open
    will not be read any further, so their records are produced now instead of when the garbage
    collector frees them. Reading such a stream later still works and yields every chunk, but produces
    no second record. With the ``drain_abandoned`` setting, an async stream among them is recorded one
    turn of the event loop later, so that a close the host already scheduled can still start the
    background read of its usage (``Call.finish_at_scope_end``).
    """
    try:
        RUNTIME.scope_var.reset(token.var_token)
    except ValueError:
        # The token was created in another Context (the host called exit from a different Task).
        RUNTIME.scope_var.set(token.previous)
    except Exception as exc:
        report_error("exit_scope", exc)

    if not finalize_open_streams:
        return 0
    finalised = 0
    for call in list(token.scope.open_calls):
        try:
            if call.finish_at_scope_end():
                finalised += 1
        except Exception as exc:
            report_error("exit_scope finalise", exc)
    return finalised


def _fallback_scope() -> Scope | None:
    """Build a detached scope from the host's fallback callable, for a call made outside any scope."""
    fallback = RUNTIME.scope_fallback
    if fallback is None:
        return None
    try:
        attributes = fallback()
    except Exception as exc:
        report_error("scope fallback", exc)
        return None
    return Scope(attributes) if attributes else None


_scope_get = RUNTIME.scope_var.get  # RUNTIME keeps one ContextVar for the life of the process


def call_scope() -> Scope | None:
    """Return the scope of a call that starts now: the innermost scope, else one from the host's fallback."""
    scope = _scope_get()
    if scope is None and RUNTIME.scope_fallback is not None:
        return _fallback_scope()
    return scope


def set_scope_fallback(provider: Callable[[], Mapping[str, Any] | None] | None) -> None:
    """Set the callable that supplies attributes for calls started outside any scope (None removes it).

    It runs at the start of each such call, on the caller's thread, and should return quickly. An
    exception it raises is logged once per kind, and the call is recorded without attributes.
    """
    RUNTIME.scope_fallback = provider


@contextlib.contextmanager
def scope(**attributes: Any) -> Iterator[Mapping[str, Any]]:
    """Context manager form of ``enter_scope``/``exit_scope``; yields the merged, read-only attributes.

    Works in sync and async code (the ContextVar follows the Task). Streams opened inside may still be
    read after the block; each produces its record when it ends or is garbage collected.
    """
    token = enter_scope(**attributes)
    try:
        yield token.scope.attributes
    finally:
        exit_scope(token)
