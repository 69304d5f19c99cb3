"""The few Agent Zero functions the plugin calls, imported lazily in one place.

Each function degrades to a harmless no-op when A0 lacks the feature, so the plugin never breaks its
host. Unit tests replace this module's functions with stand-ins.
"""

from __future__ import annotations

from typing import Any

PLUGIN_NAME = "token_meter"


def log(level: str, message: str) -> None:
    """Write a line through A0's PrintStyle (``info``, ``warning`` or ``error``)."""
    try:
        from helpers.print_style import PrintStyle

        getattr(PrintStyle, level)(f"[token_meter] {message}")
    except Exception:
        print(f"[token_meter] {level}: {message}", flush=True)


def get_context(context_id: str) -> Any | None:
    """Return the AgentContext with this id, or None; never creates a chat."""
    try:
        from agent import AgentContext

        return AgentContext.get(context_id)
    except Exception:
        return None


def current_context_id() -> str | None:
    """Return the id of the chat the current request or task works for, when A0 tracks one."""
    try:
        from agent import AgentContext

        context = AgentContext.current()
    except Exception:
        return None
    return getattr(context, "id", None) or None


def mark_dirty(context_id: str) -> None:
    """Ask A0 to push a fresh state snapshot of this chat to the browser."""
    try:
        from helpers.state_monitor_integration import mark_dirty_for_context

        mark_dirty_for_context(context_id, reason="token_meter")
    except Exception:
        pass


def save_chat(context: Any) -> None:
    """Save the chat to disk (``usr/chats/<id>/chat.json``) so restarts keep the figures."""
    try:
        from helpers.persist_chat import save_tmp_chat

        save_tmp_chat(context)
    except Exception as exc:
        log("warning", f"saving chat {getattr(context, 'id', '?')} failed: {type(exc).__name__}: {exc}")


def is_running(context: Any) -> bool:
    """True while the chat's agent loop runs (it saves the chat itself when it ends)."""
    try:
        return bool(context.is_running())
    except Exception:
        return False


def plugin_config(agent: Any = None) -> dict[str, Any]:
    """Return the plugin's settings for ``agent`` (project and profile overrides included)."""
    try:
        from helpers import plugins

        return plugins.get_plugin_config(PLUGIN_NAME, agent=agent) or {}
    except Exception:
        return {}
