"""Drift: the contract items that changed between the probe facts of two A0 releases.

Each ``DriftItem`` names one change in one line, for example "litellm bindings: acompletion, completion
moved from models.py to helpers/litellm_transport.py" or "@extensible hooks added:
_functions/agent/Agent/call_chat_model_turn". ``requirements`` lists the ids of the plugin's
requirements that read the changed fact, so a report can tell contract-relevant drift from the rest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .contract import Requirement

# A summary line lists at most this many names of a set change. The item's fields keep them all.
MAX_NAMES_SHOWN = 10
WILDCARD = "*"


@dataclass(frozen=True)
class DriftItem:
    """One changed contract item.

    ``fact`` is the path of the changed fact in the probe output, ``change`` one of added, removed,
    moved or changed, ``names`` the names the change concerns (functions, hooks, slots, parameters).
    """

    fact: tuple[str, ...]
    change: str
    summary: str
    names: tuple[str, ...] = ()
    requirements: tuple[str, ...] = field(default=())

    def __str__(self) -> str:
        return self.summary


def _get(facts: Mapping[str, Any] | None, *path: str) -> Any:
    current: Any = facts
    for key in path:
        if not isinstance(current, Mapping):
            return None
        current = current.get(key)
    return current


def _names(values: Sequence[str]) -> str:
    values = list(values)
    if len(values) <= MAX_NAMES_SHOWN:
        return ", ".join(values)
    return ", ".join(values[:MAX_NAMES_SHOWN]) + f" and {len(values) - MAX_NAMES_SHOWN} more"


# ----- per-category comparisons ----------------------------------------------------------------------


def _file_bindings(
    label: str, fact: tuple[str, ...], before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> list[DriftItem]:
    """Compare ``{file: [names]}`` tables by the files that bind each name, grouping names that moved alike."""

    def by_name(table: Mapping[str, Any] | None) -> dict[str, set[str]]:
        files: dict[str, set[str]] = {}
        for path, names in (table or {}).items():
            for name in names:
                files.setdefault(name, set()).add(path)
        return files

    old, new = by_name(before), by_name(after)
    groups: dict[tuple[tuple[str, ...], tuple[str, ...], bool], list[str]] = {}
    for name in sorted(set(old) | set(new)):
        removed = tuple(sorted(old.get(name, set()) - new.get(name, set())))
        added = tuple(sorted(new.get(name, set()) - old.get(name, set())))
        if removed or added:
            still_bound = bool(new.get(name, set()) & old.get(name, set()))
            groups.setdefault((removed, added, still_bound), []).append(name)

    items = []
    for (removed, added, still_bound), names in groups.items():
        where_removed, where_added, subject = ", ".join(removed), ", ".join(added), ", ".join(names)
        if removed and added:
            change, text = "moved", f"{subject} moved from {where_removed} to {where_added}"
        elif added:
            change = "added"
            text = f"{subject} {'also ' if still_bound else ''}bound in {where_added}"
        else:
            change = "removed"
            text = f"{subject} no longer bound in {where_removed}"
        items.append(DriftItem(fact, change, f"{label}: {text}", tuple(names)))
    return items


def _key_sets(label: str, fact: tuple[str, ...], before: Any, after: Any) -> list[DriftItem]:
    old, new = set(before or ()), set(after or ())
    items = []
    added, removed = sorted(new - old), sorted(old - new)
    if added:
        items.append(DriftItem(fact, "added", f"{label} added: {_names(added)}", tuple(added)))
    if removed:
        items.append(DriftItem(fact, "removed", f"{label} removed: {_names(removed)}", tuple(removed)))
    return items


def _value(label: str, fact: tuple[str, ...], before: Any, after: Any) -> list[DriftItem]:
    if before == after:
        return []
    return [DriftItem(fact, "changed", f"{label}: {_show(before)} -> {_show(after)}")]


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def _loop_methods(value: Any) -> str | None:
    """Show ``{method: extensible}`` as "call_chat_model (@extensible)"."""
    if not value:
        return None
    return ", ".join(f"{name} ({'@extensible' if hook else 'not @extensible'})" for name, hook in sorted(value.items()))


def _signature_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """Return (changes as short phrases, names of the parameters concerned)."""
    phrases: list[str] = []
    names: list[str] = []
    if before.get("kind") != after.get("kind"):
        phrases.append(f"{before.get('kind')} -> {after.get('kind')}")
    if before.get("async") != after.get("async"):
        phrases.append("now async" if after.get("async") else "no longer async")
    if before.get("decorators") != after.get("decorators"):
        phrases.append(f"decorators {_show(before.get('decorators'))} -> {_show(after.get('decorators'))}")

    old = {parameter["name"]: parameter for parameter in before.get("parameters", [])}
    new = {parameter["name"]: parameter for parameter in after.get("parameters", [])}
    for name, parameter in new.items():
        if name not in old:
            default = f", default {parameter['default']}" if parameter.get("default") is not None else ""
            phrases.append(f"parameter {name} added ({parameter['kind']}{default})")
            names.append(name)
    for name in old:
        if name not in new:
            phrases.append(f"parameter {name} removed")
            names.append(name)
    for name in new.keys() & old.keys():
        if new[name]["kind"] != old[name]["kind"]:
            phrases.append(f"parameter {name} {old[name]['kind']} -> {new[name]['kind']}")
            names.append(name)
        if new[name].get("default") != old[name].get("default"):
            phrases.append(f"parameter {name} default {old[name].get('default')} -> {new[name].get('default')}")
            names.append(name)
    if not phrases and [*old] != [*new]:
        phrases.append("parameters reordered: " + ", ".join(new))
    return phrases, names


def _symbols(label: str, fact: tuple[str, ...], before: Any, after: Any) -> list[DriftItem]:
    """Compare ``{symbol: description or null}`` tables (signatures, A0 APIs)."""
    old = {key: value for key, value in (before or {}).items() if value is not None}
    new = {key: value for key, value in (after or {}).items() if value is not None}
    items = []
    for key in sorted(new.keys() - old.keys()):
        items.append(DriftItem(fact + (key,), "added", f"{label}: {key} added", (key,)))
    for key in sorted(old.keys() - new.keys()):
        items.append(DriftItem(fact + (key,), "removed", f"{label}: {key} removed", (key,)))
    for key in sorted(new.keys() & old.keys()):
        before_file, after_file = old[key].get("file"), new[key].get("file")
        phrases, names = _signature_changes(old[key], new[key])
        if before_file != after_file:
            phrases.insert(0, f"moved from {before_file} to {after_file}")
        if phrases:
            items.append(DriftItem(fact + (key,), "changed", f"{label}: {key}: " + "; ".join(phrases), (key, *names)))
    return items


def _call_data_keys(before: Any, after: Any) -> list[DriftItem]:
    items = []
    for point in sorted(set(before or {}) & set(after or {})):
        old = set(before[point].get("call_data_keys", []))
        new = set(after[point].get("call_data_keys", []))
        if old == new:
            continue
        phrases = []
        if new - old:
            phrases.append("added " + ", ".join(sorted(new - old)))
        if old - new:
            phrases.append("removed " + ", ".join(sorted(old - new)))
        items.append(
            DriftItem(
                ("extension_points", point, "call_data_keys"),
                "changed",
                f"extension point {point}: call_data keys " + "; ".join(phrases),
                tuple(sorted(new ^ old)),
            )
        )
    return items


def _model_wrappers(before: Any, after: Any) -> list[DriftItem]:
    items = _key_sets("model wrapper classes", ("model_wrappers",), before, after)
    for key in sorted(set(before or {}) & set(after or {})):
        items += _key_sets(
            f"model wrapper {key} methods",
            ("model_wrappers", key, "methods"),
            before[key].get("methods"),
            after[key].get("methods"),
        )
        items += _value(
            f"model wrapper {key} holds a0_model_conf",
            ("model_wrappers", key, "holds_model_conf"),
            before[key].get("holds_model_conf"),
            after[key].get("holds_model_conf"),
        )
    return items


def _submodule_table(table: Any) -> dict[str, list[str]]:
    """Flatten ``{file: {submodule: [names]}}`` into ``{file: ["submodule.name", ...]}``."""
    return {
        path: sorted(f"{module}.{name}" for module, names in modules.items() for name in names)
        for path, modules in (table or {}).items()
    }


# ----- requirement matching --------------------------------------------------------------------------


def _reads(requirement: Requirement, item: DriftItem) -> bool:
    """True when the requirement reads the fact the item changed and, where both name things, the names overlap.

    A requirement reading below the changed fact (``extension_points/chat_model_call_before/...`` for a
    change of ``extension_points``) matches when the item names that key.
    """
    names = set(item.names)
    mentioned = {str(value) for value in (*requirement.values, *(requirement.within or ()))}
    for path in requirement.paths:
        width = min(len(path), len(item.fact))
        if not all(a == b or WILDCARD in (a, b) for a, b in zip(path[:width], item.fact[:width], strict=True)):
            continue
        below = path[len(item.fact)] if len(path) > len(item.fact) else WILDCARD
        if below != WILDCARD:
            if not names or below in names:
                return True
            continue
        if not names or not mentioned or mentioned & names:
            return True
    return False


# ----- entry point -----------------------------------------------------------------------------------


def drift(
    previous: Mapping[str, Any], current: Mapping[str, Any], requirements: Sequence[Requirement] = ()
) -> list[DriftItem]:
    """Return the contract items that differ between two releases' facts, in a fixed order.

    ``requirements`` fills each item's ``requirements`` with the ids of the requirements that read it.
    """
    old, new = previous, current
    items: list[DriftItem] = []

    items += _value(
        "helpers package",
        ("layout", "helpers_package"),
        _get(old, "layout", "helpers_package"),
        _get(new, "layout", "helpers_package"),
    )
    items += _value(
        "plugin system",
        ("plugin_system", "present"),
        _get(old, "plugin_system", "present"),
        _get(new, "plugin_system", "present"),
    )
    items += _value(
        "plugin folders",
        ("plugin_system", "roots"),
        _get(old, "plugin_system", "roots"),
        _get(new, "plugin_system", "roots"),
    )
    items += _value(
        "plugin API route",
        ("plugin_system", "api_route"),
        _get(old, "plugin_system", "api_route"),
        _get(new, "plugin_system", "api_route"),
    )
    items += _key_sets(
        "plugin asset routes",
        ("plugin_system", "asset_routes"),
        _get(old, "plugin_system", "asset_routes"),
        _get(new, "plugin_system", "asset_routes"),
    )
    items += _key_sets(
        "extension folders",
        ("extension_system", "folders"),
        _get(old, "extension_system", "folders"),
        _get(new, "extension_system", "folders"),
    )

    items += _file_bindings(
        "litellm bindings", ("litellm", "bindings"), _get(old, "litellm", "bindings"), _get(new, "litellm", "bindings")
    )
    items += _file_bindings(
        "litellm imports inside functions",
        ("litellm", "local_bindings"),
        _get(old, "litellm", "local_bindings"),
        _get(new, "litellm", "local_bindings"),
    )
    items += _file_bindings(
        "litellm attribute calls",
        ("litellm", "attribute_calls"),
        _get(old, "litellm", "attribute_calls"),
        _get(new, "litellm", "attribute_calls"),
    )
    items += _file_bindings(
        "litellm submodule imports",
        ("litellm", "submodule_bindings"),
        _submodule_table(_get(old, "litellm", "submodule_bindings")),
        _submodule_table(_get(new, "litellm", "submodule_bindings")),
    )

    items += _value(
        "agent loop chat call",
        ("agent_loop", "chat_methods"),
        _loop_methods(_get(old, "agent_loop", "chat_methods")),
        _loop_methods(_get(new, "agent_loop", "chat_methods")),
    )
    items += _symbols("signature", ("signatures",), _get(old, "signatures"), _get(new, "signatures"))
    items += _model_wrappers(_get(old, "model_wrappers"), _get(new, "model_wrappers"))
    items += _key_sets(
        "@extensible hooks",
        ("extensible_functions",),
        _get(old, "extensible_functions"),
        _get(new, "extensible_functions"),
    )
    items += _key_sets(
        "extension points", ("extension_points",), _get(old, "extension_points"), _get(new, "extension_points")
    )
    items += _call_data_keys(_get(old, "extension_points"), _get(new, "extension_points"))

    for key in ("config_classes", "conf_holders", "default_chat_ctx_length"):
        items += _value(
            f"context limit {key}",
            ("context_limit", key),
            _get(old, "context_limit", key),
            _get(new, "context_limit", key),
        )
    for key in ("output_data", "output_data_in_snapshot", "output_data_saved"):
        items += _value(
            f"AgentContext {key}",
            ("agent_context", key),
            _get(old, "agent_context", key),
            _get(new, "agent_context", key),
        )
    items += _symbols("A0 API", ("apis",), _get(old, "apis"), _get(new, "apis"))

    items += _key_sets("web UI slots", ("webui", "slots"), _get(old, "webui", "slots"), _get(new, "webui", "slots"))
    for key in ("alpine_store_module", "chats_selected_context"):
        items += _value(f"web UI {key}", ("webui", key), _get(old, "webui", key), _get(new, "webui", key))

    for package in ("litellm", "wrapt"):
        items += _value(
            f"{package} pin",
            ("pins", package),
            _get(old, "pins", package, "spec"),
            _get(new, "pins", package, "spec"),
        )
    if _get(old, "environment") is not None and _get(new, "environment") is not None:
        for key in sorted(set(old["environment"]) | set(new["environment"])):
            items += _value(
                f"installed {key}", ("environment", key), _get(old, "environment", key), _get(new, "environment", key)
            )

    if requirements:
        items = [
            DriftItem(
                item.fact,
                item.change,
                item.summary,
                item.names,
                tuple(requirement.id for requirement in requirements if _reads(requirement, item)),
            )
            for item in items
        ]
    return items
