"""Fixtures for the plugin's unit tests: the built plugin tree and stand-ins for A0 objects.

The stand-ins (``StandInContext``, ``StandInAgent``) imitate only the attributes the plugin reads. They
prove the plugin's own logic; that the plugin works inside Agent Zero is checked by tests/a0 against a
real A0 checkout.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def plugin_tree(tmp_path_factory) -> Path:
    """Build the installable plugin into a temporary folder and make ``token_meter`` importable."""
    loader = importlib.machinery.SourceFileLoader("build_plugin", str(ROOT / "scripts" / "build_plugin"))
    build_plugin = types.ModuleType(loader.name)
    build_plugin.__file__ = loader.path
    loader.exec_module(build_plugin)
    out = tmp_path_factory.mktemp("plugin_build")
    tree, _ = build_plugin.build(out)
    sys.path.insert(0, str(out))
    return tree


class StandInContext:
    """Stand-in for A0's AgentContext: an id, output_data, agent0 and a running flag."""

    def __init__(self, context_id: str, running: bool = True) -> None:
        self.id = context_id
        self.output_data: dict[str, Any] = {}
        self.agent0 = StandInAgent(self, 0)
        self.running = running

    def is_running(self) -> bool:
        return self.running


class StandInAgent:
    """Stand-in for A0's Agent: its context and agent number."""

    def __init__(self, context: StandInContext, number: int) -> None:
        self.context = context
        self.number = number


class StandInA0:
    """Replaces the plugin's a0_bridge functions; records what the plugin asked A0 to do."""

    def __init__(self) -> None:
        self.contexts: dict[str, StandInContext] = {}
        self.dirty: list[str] = []
        self.saved: list[str] = []
        self.logs: list[tuple[str, str]] = []
        self.config: dict[str, Any] = {}
        self.current: str | None = None
        self.lock = threading.Lock()

    def add(self, context_id: str, running: bool = True) -> StandInContext:
        context = StandInContext(context_id, running)
        self.contexts[context_id] = context
        return context


@pytest.fixture
def plugin(plugin_tree, monkeypatch):
    """The plugin's helper modules with a0_bridge pointed at a StandInA0; yields (meter, hooks, a0)."""
    bridge = importlib.import_module("token_meter.helpers.a0_bridge")
    meter = importlib.import_module("token_meter.helpers.meter")
    hooks = importlib.import_module("token_meter.helpers.hooks")
    a0 = StandInA0()
    monkeypatch.setattr(bridge, "get_context", lambda context_id: a0.contexts.get(context_id))
    monkeypatch.setattr(bridge, "current_context_id", lambda: a0.current)
    monkeypatch.setattr(bridge, "mark_dirty", a0.dirty.append)
    monkeypatch.setattr(bridge, "save_chat", lambda context: a0.saved.append(context.id))
    monkeypatch.setattr(bridge, "plugin_config", lambda agent=None: dict(a0.config))
    monkeypatch.setattr(bridge, "log", lambda level, message: a0.logs.append((level, message)))
    monkeypatch.setattr(meter, "_unattributed", meter.new_figures())
    monkeypatch.setitem(meter._install_state, "status", None)
    monkeypatch.setitem(meter._install_state, "a0_range", None)
    try:
        yield meter, hooks, a0
    finally:
        meter.shim.unsubscribe(meter.LISTENER_KEY)
        meter.shim.set_scope_fallback(None)
        meter.shim.uninstall()
        meter.shim.configure(request_stream_usage=False, estimate=True, drain_abandoned=False)
