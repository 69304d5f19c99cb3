"""The plugin's runtime: installs the shim, scopes model calls, and keeps per-chat figures.

Records arrive from the shim's listener on whatever thread finished the call. Each chat's figures live
in ``context.output_data["token_meter"]``, which A0 copies into every state snapshot and saves with the
chat. Figures are replaced as a whole (copy, update, assign) under one lock, so a snapshot taken on
another thread never reads a half-updated dict.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

from . import a0_bridge, a0_range, a0_version
from .figures import apply_record, badge_text, fill_level, new_figures, valid_figures
from .limits import context_limit

try:
    from . import shim
except Exception as exc:  # wrapt or litellm missing or broken in A0's environment
    shim = None
    SHIM_IMPORT_ERROR: str | None = f"{type(exc).__name__}: {exc}"
else:
    SHIM_IMPORT_ERROR = None

OUTPUT_KEY = "token_meter"
LISTENER_KEY = "token_meter.plugin"
UNATTRIBUTED = "__unattributed__"

DEFAULT_CONFIG: dict[str, Any] = {
    "warn_at": 70,
    "critical_at": 90,
    "history_length": 40,
    "show_cost": True,
    "show_sparkline": True,
    "request_stream_usage": True,
    "read_abandoned_streams": True,
    "estimate": True,
}

# Browser-agent threads are named after their chat ("BrowserAgent<context id>").
_THREAD_CONTEXT = re.compile(r"^BrowserAgent(?P<id>[A-Za-z0-9_-]+)$")

_lock = threading.RLock()
_install_state: dict[str, Any] = {"report": None, "status": None, "a0_range": None}
_chat_models: dict[str, dict[str, Any]] = {}  # context id -> {"ctx_length", "provider", "name"}
_unattributed = new_figures()


_LIMITS = {"warn_at": (1, 100), "critical_at": (1, 100), "history_length": (2, 200)}


def config(agent: Any = None) -> dict[str, Any]:
    """Return the plugin settings, with defaults for missing or invalid values.

    A0 replaces the defaults with a saved config.json as a whole, so defaults are merged here. Numbers
    are clamped to their ranges (``_LIMITS``), a boolean is never taken for a number, and a warning
    threshold at or above the critical one falls back to both defaults.
    """
    merged = dict(DEFAULT_CONFIG)
    for key, value in a0_bridge.plugin_config(agent).items():
        if key not in DEFAULT_CONFIG:
            continue
        default = DEFAULT_CONFIG[key]
        if isinstance(default, bool):
            if isinstance(value, bool):
                merged[key] = value
        elif isinstance(value, int | float) and not isinstance(value, bool):
            low, high = _LIMITS[key]
            merged[key] = type(default)(min(max(value, low), high))
    if merged["warn_at"] >= merged["critical_at"]:
        merged["warn_at"], merged["critical_at"] = DEFAULT_CONFIG["warn_at"], DEFAULT_CONFIG["critical_at"]
    return merged


# ----- installation ---------------------------------------------------------------------------------


def ensure_installed(agent: Any = None) -> dict[str, Any]:
    """Install the shim and the listener once per process; return the status dict for the widget.

    Called at A0 start-up and again from every model-call hook, because a plugin enabled while A0 runs
    misses start-up and A0 re-executes extension files after its caches are trimmed. Cheap after the
    first call.
    """
    a0_range_check()
    status = _install_state["status"]
    if shim is None:
        if status is None:
            status = {
                "state": "unavailable",
                "message": f"the usage recorder cannot be loaded ({SHIM_IMPORT_ERROR}); "
                "A0's Python environment needs litellm and wrapt",
            }
            a0_bridge.log("error", status["message"])
            _install_state["status"] = status
        return status
    if status is not None and status["state"] == "ok" and shim.is_installed():
        return status
    with _lock:
        settings = config(agent)
        report = shim.install(
            request_stream_usage=settings["request_stream_usage"],
            estimate=settings["estimate"],
            drain_abandoned=settings["read_abandoned_streams"],
        )
        shim.subscribe(on_record, key=LISTENER_KEY)
        shim.set_scope_fallback(fallback_scope)
        status = _status_from(report)
        if _install_state["status"] != status:
            _log_install(report, status)
        _install_state.update(report=report, status=status)
        return status


def _status_from(report: Any) -> dict[str, Any]:
    if report.ok:
        message = "; ".join(report.warnings) or None
        return {"state": "ok", "message": message}
    reasons = "; ".join(f"{name}: {why}" for name, why in sorted(report.skipped.items()))
    return {"state": "unavailable", "message": f"token usage cannot be recorded: {reasons}"}


def _log_install(report: Any, status: dict[str, Any]) -> None:
    if status["state"] == "ok":
        a0_bridge.log(
            "info",
            f"recording token usage (litellm {report.litellm_version}; patched {report.patched or 'earlier'}; "
            f"rebound {len(report.rebound)} module names)",
        )
        for warning in report.warnings:
            a0_bridge.log("warning", warning)
    else:
        a0_bridge.log("error", status["message"])


def a0_range_check() -> a0_range.RangeCheck:
    """Compare the running A0's version with the proven range once per process, and log the outcome."""
    check = _install_state["a0_range"]
    if check is not None:
        return check
    with _lock:
        if _install_state["a0_range"] is None:
            detected = a0_version.detect_a0_version()
            check = a0_range.check_version(detected)
            _log_range_check(detected, check)
            _install_state["a0_range"] = check
        return _install_state["a0_range"]


def _log_range_check(detected: a0_version.DetectedVersion, check: a0_range.RangeCheck) -> None:
    if check.state == a0_range.INSIDE:
        a0_bridge.log("info", f"A0 {check.version} ({detected.source}) is inside the proven range")
    elif check.state == a0_range.OUTSIDE:
        a0_bridge.log("warning", check.warning)
    elif check.state == a0_range.UNKNOWN_VERSION:
        a0_bridge.log(
            "info",
            f"A0 version unknown ({check.reason}), so the proven-range check is skipped. "
            f"Set {a0_version.ENV_VARIABLE} to the A0 release to check it.",
        )
    else:
        a0_bridge.log("error", check.warning)


# ----- attribution ----------------------------------------------------------------------------------


def agent_attributes(agent: Any, role: str) -> dict[str, Any]:
    """Return scope attributes for a call made by ``agent`` in ``role`` ("chat", "utility", "other")."""
    context = getattr(agent, "context", None)
    return {
        "context_id": getattr(context, "id", None),
        "agent_number": getattr(agent, "number", None),
        "role": role,
    }


def fallback_scope() -> dict[str, Any] | None:
    """Attribute a call made outside the model hooks: the chat A0 is serving, or a browser-agent thread."""
    context_id = a0_bridge.current_context_id()
    if not context_id:
        match = _THREAD_CONTEXT.match(threading.current_thread().name)
        context_id = match.group("id") if match else None
    if not context_id:
        return None
    return {"context_id": context_id, "agent_number": None, "role": "other"}


def remember_chat_model(agent: Any, model: Any) -> None:
    """Store the chat model's A0 config (context length, provider, name) for the agent's chat."""
    context_id = getattr(getattr(agent, "context", None), "id", None)
    conf = getattr(model, "a0_model_conf", None)
    if not context_id or conf is None:
        return
    _chat_models[context_id] = {
        "ctx_length": getattr(conf, "ctx_length", None),
        "provider": getattr(conf, "provider", None),
        "name": getattr(conf, "name", None),
    }


# ----- records -> figures ---------------------------------------------------------------------------


def on_record(record: Any) -> None:
    """Shim listener: add one record to its chat's figures and push them to the browser."""
    scope = dict(record.scope)
    context_id = scope.get("context_id")
    role = scope.get("role") or "other"
    agent_number = scope.get("agent_number")
    data = record.to_dict()

    context = a0_bridge.get_context(context_id) if context_id else None
    if context is None:
        with _lock:
            apply_record(_unattributed, data, role=role, agent_number=agent_number)
        return

    settings = config(getattr(context, "agent0", None))
    limit = None
    if role == "chat":
        model_conf = _chat_models.get(context_id, {})
        limit = context_limit(model_conf.get("ctx_length"), record.requested_model, None)
    with _lock:
        figures = copy.deepcopy(valid_figures(context.output_data.get(OUTPUT_KEY)))
        apply_record(
            figures,
            data,
            role=role,
            agent_number=agent_number,
            context_limit=limit,
            history_length=settings["history_length"],
        )
        _publish(context, figures, settings)

    if not a0_bridge.is_running(context):
        # The agent loop saved the chat already (memory's background calls end later): save again.
        a0_bridge.save_chat(context)


def _publish(context: Any, figures: dict[str, Any], settings: dict[str, Any]) -> None:
    last = figures.get("last") or {}
    figures["status"] = _install_state["status"] or {"state": "ok", "message": None}
    figures["view"] = {
        "badge": badge_text(figures),
        "level": fill_level(last.get("fill_percent"), settings["warn_at"], settings["critical_at"]),
        "estimated": last.get("source") == "estimated",
        "warn_at": settings["warn_at"],
        "critical_at": settings["critical_at"],
        "show_cost": settings["show_cost"],
        "show_sparkline": settings["show_sparkline"],
    }
    figures["a0_range_warning"] = a0_range_check().warning
    context.output_data[OUTPUT_KEY] = figures
    a0_bridge.mark_dirty(context.id)


def publish_status(context: Any) -> None:
    """Write the install status into a chat's figures (used when the shim could not be installed)."""
    if context is None:
        return
    with _lock:
        figures = copy.deepcopy(valid_figures(context.output_data.get(OUTPUT_KEY)))
        _publish(context, figures, config(getattr(context, "agent0", None)))


def reset_chat(context: Any) -> None:
    """Forget a chat's figures (A0 reset the chat)."""
    if context is None:
        return
    with _lock:
        _publish(context, new_figures(), config(getattr(context, "agent0", None)))


def chat_figures(context_id: str) -> dict[str, Any] | None:
    """Return a copy of the figures of one chat, or None when the chat does not exist."""
    context = a0_bridge.get_context(context_id)
    if context is None:
        return None
    with _lock:
        return copy.deepcopy(valid_figures(context.output_data.get(OUTPUT_KEY)))


def unattributed_figures() -> dict[str, Any]:
    """Return a copy of the figures of calls whose chat could not be determined."""
    with _lock:
        return copy.deepcopy(_unattributed)
