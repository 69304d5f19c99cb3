"""Actions of the plugin's extension files, kept here so that each extension file stays a thin shell.

A0 runs ``start`` and ``end`` extensions of an ``@extensible`` function inline in the caller's Task, so a
scope entered in ``start`` is active during the model call and left in ``end``. The scope token travels
in the hook's ``data`` dict under ``TOKEN_KEY``. ``end`` does not run when the call is cancelled. The
stream proxy then records the call as cancelled, and the Task's scope ends with the Task.
"""

from __future__ import annotations

from typing import Any

from . import a0_bridge, meter

TOKEN_KEY = "token_meter_scope"


def start_scope(agent: Any, data: Any, role: str) -> None:
    """Install if needed and enter a scope for ``agent`` in ``role``; never raises."""
    try:
        status = meter.ensure_installed(agent)
        if status["state"] != "ok":
            meter.publish_status(getattr(agent, "context", None))
            return
        if isinstance(data, dict):
            data[TOKEN_KEY] = meter.shim.enter_scope(**meter.agent_attributes(agent, role))
    except Exception as exc:
        a0_bridge.log("warning", f"starting a usage scope failed: {type(exc).__name__}: {exc}")


def end_scope(data: Any) -> None:
    """Leave the scope entered by ``start_scope``; streams still open are recorded now."""
    try:
        token = data.pop(TOKEN_KEY, None) if isinstance(data, dict) else None
        if token is not None:
            meter.shim.exit_scope(token, finalize_open_streams=True)
    except Exception as exc:
        a0_bridge.log("warning", f"ending a usage scope failed: {type(exc).__name__}: {exc}")


def agent_from(data: Any, fallback: Any) -> Any:
    """Return the Agent of an ``@extensible`` method call (its first positional argument)."""
    if fallback is not None:
        return fallback
    args = data.get("args") if isinstance(data, dict) else None
    return args[0] if args else None


def startup() -> None:
    """Install at A0 start-up; never raises."""
    try:
        meter.ensure_installed(None)
    except Exception as exc:
        a0_bridge.log("error", f"installing the usage recorder failed: {type(exc).__name__}: {exc}")


def remember_chat_model(agent: Any, call_data: Any) -> None:
    """Keep the chat model's context length for the meter; never raises."""
    try:
        if isinstance(call_data, dict):
            meter.remember_chat_model(agent, call_data.get("model"))
    except Exception as exc:
        a0_bridge.log("warning", f"reading the chat model config failed: {type(exc).__name__}: {exc}")


def reset(data: Any) -> None:
    """Clear the figures of a chat that A0 reset; never raises."""
    try:
        args = data.get("args") if isinstance(data, dict) else None
        meter.reset_chat(args[0] if args else None)
    except Exception as exc:
        a0_bridge.log("warning", f"resetting usage figures failed: {type(exc).__name__}: {exc}")
