"""Token Meter shim: records provider-reported token usage of every litellm call.

The shim wraps ``litellm.acompletion``, ``litellm.completion``, ``litellm.aresponses`` and
``litellm.responses`` with wrapt. Callers receive exactly the objects they would get without it (streams
become transparent proxies); each finished call produces one ``UsageRecord`` delivered to the
subscribed listeners. The shim never raises into its host: its own failures are logged once per kind
and swallowed. It imports nothing outside the standard library, wrapt and litellm, and only relative
imports inside, so it can be vendored under another package name.
"""

from .aggregator import Aggregator, Totals, totals_of
from .compatibility import TESTED_LITELLM_RANGE
from .errors import error_counts
from .instrumentor import InstallReport, configure, install, is_installed, uninstall
from .listeners import subscribe, unsubscribe
from .records import Api, Outcome, Source, UsageRecord
from .scope import Scope, ScopeToken, current_scope, enter_scope, exit_scope, scope, set_scope_fallback

__all__ = [
    "Aggregator",
    "Api",
    "InstallReport",
    "Outcome",
    "Scope",
    "ScopeToken",
    "Source",
    "TESTED_LITELLM_RANGE",
    "Totals",
    "UsageRecord",
    "configure",
    "current_scope",
    "enter_scope",
    "error_counts",
    "exit_scope",
    "install",
    "is_installed",
    "scope",
    "set_scope_fallback",
    "subscribe",
    "totals_of",
    "uninstall",
    "unsubscribe",
]
