"""Install and uninstall the wrappers around litellm's entry points.

Only the package attributes (``litellm.acompletion`` and so on) are wrapped: ``litellm.acompletion``
calls ``litellm.main.completion`` internally, so wrapping inside ``litellm.main`` would count calls
twice. Modules that bound a name with ``from litellm import acompletion`` before the install hold the
original function, so install rebinds every module-level name that is identical to an original, and
uninstall restores only the names that still hold the wrapper.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from typing import Any

import wrapt

from .compatibility import (
    ENTRY_POINTS,
    TESTED_LITELLM_RANGE,
    check_entry_point,
    check_stream_type,
    litellm_version,
    version_warning,
)
from .records import Api
from .runtime import RUNTIME
from .wrappers import WRAPPER_MARKER, make_async_wrapper, make_sync_wrapper

logger = logging.getLogger("token_meter.shim")

# A marker unique to this copy of the module: a re-imported copy replaces wrappers of older copies.
_GENERATION = object()

_WRAPPER_FACTORIES = {
    "acompletion": lambda: make_async_wrapper(Api.CHAT_COMPLETIONS),
    "completion": lambda: make_sync_wrapper(Api.CHAT_COMPLETIONS),
    "aresponses": lambda: make_async_wrapper(Api.RESPONSES),
    "responses": lambda: make_sync_wrapper(Api.RESPONSES),
}
# Packages whose own names are never rebound: litellm keeps its internal references.
_SKIPPED_PACKAGES = ("litellm", "wrapt", "_token_meter_shim_runtime")


@dataclass
class InstallReport:
    """Result of ``install``: patched targets, skipped targets with reasons, rebound module names."""

    patched: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    rebound: list[str] = field(default_factory=list)
    already_installed: bool = False
    litellm_version: str | None = None
    tested_range: str = TESTED_LITELLM_RANGE
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when at least one entry point is wrapped (now or by an earlier install)."""
        return bool(self.patched) or self.already_installed


def _our_wrapper(function: Any) -> Any | None:
    """Return the shim's FunctionWrapper in ``function``'s chain of ``__wrapped__`` objects, if any."""
    current = function
    for _ in range(16):
        if isinstance(current, wrapt.FunctionWrapper) and getattr(current._self_wrapper, WRAPPER_MARKER, False):
            return current
        current = getattr(current, "__wrapped__", None)
        if current is None:
            return None
    return None


def _in_package(module_name: str, packages: tuple[str, ...]) -> bool:
    return any(module_name == package or module_name.startswith(package + ".") for package in packages)


def _module_dicts(skipped_packages: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, module in list(sys.modules.items()):
        if module is None or _in_package(name, skipped_packages):
            continue
        namespace = getattr(module, "__dict__", None)
        if isinstance(namespace, dict):
            found.append((name, namespace))
    return found


def _package_prefix() -> str:
    return __name__.rsplit(".", 1)[0]


def _rebind(replacements: dict[int, tuple[Any, Any]]) -> list[str]:
    """Replace module-level names holding an old object by its new object; return "module.name" items.

    ``replacements`` maps ``id(old)`` to ``(old, new)``; identity is checked, not equality.
    """
    rebound: list[str] = []
    skip = (*_SKIPPED_PACKAGES, _package_prefix())
    for module_name, namespace in _module_dicts(skip):
        for attribute, value in list(namespace.items()):
            pair = replacements.get(id(value))
            if pair is not None and pair[0] is value:
                namespace[attribute] = pair[1]
                rebound.append(f"{module_name}.{attribute}")
    return rebound


def configure(
    *,
    request_stream_usage: bool | None = None,
    estimate: bool | None = None,
    drain_abandoned: bool | None = None,
) -> dict[str, Any]:
    """Change settings and return all of them.

    ``request_stream_usage``: ask providers for usage on streamed chat calls that did not set
    ``stream_options`` (see ``shim.stream_usage``). ``estimate``: count tokens with litellm's tokenizer
    when a stream carried no usage. ``drain_abandoned``: read the rest of an abandoned async stream in
    a background task so that usage in its last chunks is recorded (see ``Call.finish_abandoned``).
    """
    changes = {"request_stream_usage": request_stream_usage, "estimate": estimate, "drain_abandoned": drain_abandoned}
    with RUNTIME.lock:
        for name, value in changes.items():
            if value is not None:
                RUNTIME.settings[name] = bool(value)
        return dict(RUNTIME.settings)


def install(*, strict_version: bool = False, **settings: Any) -> InstallReport:
    """Wrap litellm's entry points; safe to call any number of times.

    Settings accepted by ``configure`` may be passed too. With ``strict_version`` a litellm release
    outside the tested range is not patched; otherwise it is patched with a warning in the report.
    Never raises: every problem is reported in ``InstallReport.skipped`` or ``warnings``.
    """
    report = InstallReport()
    try:
        if settings:
            configure(**settings)
        with RUNTIME.lock:
            _install(report, strict_version)
    except Exception as exc:
        logger.warning("token_meter shim: install failed: %s: %s", type(exc).__name__, exc)
        report.skipped["*"] = f"install failed: {type(exc).__name__}: {exc}"
    for warning in report.warnings:
        logger.warning("token_meter shim: %s", warning)
    return report


def _install(report: InstallReport, strict_version: bool) -> None:
    try:
        import litellm
    except Exception as exc:
        for name in ENTRY_POINTS:
            report.skipped[name] = f"litellm cannot be imported: {type(exc).__name__}: {exc}"
        return

    report.litellm_version = litellm_version()
    warning = version_warning(report.litellm_version)
    if warning:
        if strict_version:
            for name in ENTRY_POINTS:
                report.skipped[name] = warning
            return
        report.warnings.append(warning)

    stream_problem = check_stream_type(litellm)
    if stream_problem:
        for name in ENTRY_POINTS:
            report.skipped[name] = f"unexpected litellm shape: {stream_problem}"
        return

    # Check every target first: a single mismatch means nothing is patched.
    plan: list[tuple[str, Any, Any]] = []  # (name, original, stale wrapper of an older copy or None)
    for name, required in ENTRY_POINTS.items():
        current = getattr(litellm, name, None)
        if current is None:
            report.skipped[name] = f"litellm {report.litellm_version} has no {name}"
            continue
        ours = _our_wrapper(current)
        if ours is not None and getattr(ours._self_wrapper, "__token_meter_generation__", None) is _GENERATION:
            report.already_installed = True
            continue
        if ours is not None and current is not ours:
            report.skipped[name] = "wrapped by the shim inside another instrumentation's wrapper; left as is"
            report.already_installed = True
            continue
        original = ours.__wrapped__ if ours is not None else current
        problem = check_entry_point(original, required)
        if problem:
            report.skipped[name] = f"litellm.{name} has an unexpected shape: {problem}"
            continue
        plan.append((name, original, ours))

    mismatches = [name for name, reason in report.skipped.items() if "wrapped by the shim" not in reason]
    if mismatches:
        for name, _, _ in plan:
            report.skipped[name] = f"not patched because of the mismatch of {', '.join(mismatches)}"
        return

    installation = RUNTIME.installation or {"targets": {}}
    replacements: dict[int, tuple[Any, Any]] = {}
    for name, original, stale in plan:
        wrapper_function = _WRAPPER_FACTORIES[name]()
        wrapper_function.__token_meter_generation__ = _GENERATION
        if stale is not None:
            # A wrapper from an older copy of the shim: replace it instead of nesting a second one.
            setattr(litellm, name, original)
        wrapped = wrapt.wrap_function_wrapper(litellm, name, wrapper_function)
        installation["targets"][name] = {"original": original, "wrapper": wrapped}
        replacements[id(original)] = (original, wrapped)
        if stale is not None:
            replacements[id(stale)] = (stale, wrapped)
        report.patched.append(name)

    if replacements:
        report.rebound = _rebind(replacements)
    installation["generation"] = _GENERATION
    RUNTIME.installation = installation


def uninstall() -> list[str]:
    """Restore the originals where the shim's wrappers still sit; return the restored names.

    A package attribute that another library has wrapped again since the install is left alone.
    """
    restored: list[str] = []
    with RUNTIME.lock:
        installation = RUNTIME.installation
        if not installation:
            return restored
        import litellm

        replacements: dict[int, tuple[Any, Any]] = {}
        for name, target in installation["targets"].items():
            wrapper, original = target["wrapper"], target["original"]
            if getattr(litellm, name, None) is wrapper:
                setattr(litellm, name, original)
                restored.append(f"litellm.{name}")
            replacements[id(wrapper)] = (wrapper, original)
        restored.extend(_rebind(replacements))
        RUNTIME.installation = None
    return restored


def is_installed() -> bool:
    """True when the shim's wrapper is in place on at least one litellm entry point."""
    installation = RUNTIME.installation
    if not installation:
        return False
    litellm = sys.modules.get("litellm")
    if litellm is None:
        return False
    return any(getattr(litellm, name, None) is t["wrapper"] for name, t in installation["targets"].items())
