"""Process-wide shim state that survives a re-import of the shim's own modules.

A host may purge and re-import the modules that vendor this package (Agent Zero does so when a plugin
file changes). A re-imported copy would otherwise create a second ContextVar and listener registry while
the wrappers installed by the first copy keep using the old ones. All such state therefore lives in one
module object registered in ``sys.modules`` under a fixed name, created by whichever copy runs first.
Only builtin types are stored there, so copies of different ages can share it.
"""

from __future__ import annotations

import contextvars
import sys
import threading
import types

_RUNTIME_MODULE = "_token_meter_shim_runtime"


def _create() -> types.ModuleType:
    state = types.ModuleType(_RUNTIME_MODULE, "Shared state of the token_meter shim; do not import.")
    state.scope_var = contextvars.ContextVar("token_meter_scope", default=None)
    # The owner (Task or thread id) of the wrapped call in progress, or None: the re-entry guard.
    state.depth_var = contextvars.ContextVar("token_meter_depth", default=None)
    state.lock = threading.RLock()
    state.listeners = {}  # key -> callable(record)
    state.listener_tuple = ()  # the callables emit() calls, rebuilt from listeners on every change
    state.installation = None  # dict describing the active install, or None
    state.settings = {"request_stream_usage": False, "estimate": True, "drain_abandoned": False}
    state.scope_fallback = None  # callable returning attributes for calls made outside any scope
    state.rejected_stream_options = set()  # (provider, api_base, model) that rejected stream_options with HTTP 400
    state.error_counts = {}  # (where, exception type name) -> count
    return state


def get_runtime() -> types.ModuleType:
    """Return the shared state module, creating it on first use."""
    state = sys.modules.get(_RUNTIME_MODULE)
    if state is None:
        with threading.Lock():
            state = sys.modules.setdefault(_RUNTIME_MODULE, _create())
    return state


RUNTIME = get_runtime()
