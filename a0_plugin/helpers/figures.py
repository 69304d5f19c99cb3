"""Per-chat token figures: a small JSON-ready dict updated from usage records.

The dict travels in every A0 state snapshot (``context.output_data``), so it stays small: fixed keys,
totals per role and per agent number, and a bounded history of chat-call prompt sizes. No prompt or
response text is ever stored. Pure functions without A0 imports, so they can be unit-tested alone.
"""

from __future__ import annotations

import time
from typing import Any

FORMAT_VERSION = 1
ROLES = ("chat", "utility", "other")
DEFAULT_HISTORY_LENGTH = 40
MAX_AGENTS = 32  # agent numbers beyond this are summed under "more"


def new_figures() -> dict[str, Any]:
    """Return empty figures for a chat."""
    return {
        "version": FORMAT_VERSION,
        "last": None,
        "totals": {role: _new_totals() for role in ROLES},
        "agents": {},
        "history": [],
        "updated_at": None,
    }


def _new_totals() -> dict[str, Any]:
    return {
        "calls": 0,
        "prompt": 0,
        "completion": 0,
        "cached": 0,
        "reasoning": 0,
        "cost": 0.0,
        "estimated": 0,
        "unavailable": 0,
        "unpriced": 0,
    }


def valid_figures(value: Any) -> dict[str, Any]:
    """Return ``value`` when it is figures of the current format, else new figures.

    Used when figures come back from a saved chat, which may be from an older plugin version or edited
    by hand.
    """
    if not isinstance(value, dict) or value.get("version") != FORMAT_VERSION:
        return new_figures()
    totals = value.get("totals")
    if not isinstance(totals, dict) or any(not isinstance(totals.get(role), dict) for role in ROLES):
        return new_figures()
    if not isinstance(value.get("agents"), dict) or not isinstance(value.get("history"), list):
        return new_figures()
    return value


def _add(totals: dict[str, Any], record: dict[str, Any]) -> None:
    totals["calls"] += 1
    source = record.get("source")
    if source == "estimated":
        totals["estimated"] += 1
    elif source == "unavailable":
        totals["unavailable"] += 1
    totals["prompt"] += record.get("prompt_tokens") or 0
    totals["completion"] += record.get("completion_tokens") or 0
    totals["cached"] += record.get("cached_tokens") or 0
    totals["reasoning"] += record.get("reasoning_tokens") or 0
    cost = record.get("cost")
    if cost is None:
        totals["unpriced"] += 1
    else:
        totals["cost"] = round(totals["cost"] + float(cost), 8)


def apply_record(
    figures: dict[str, Any],
    record: dict[str, Any],
    *,
    role: str,
    agent_number: int | None,
    context_limit: dict[str, Any] | None = None,
    history_length: int = DEFAULT_HISTORY_LENGTH,
) -> dict[str, Any]:
    """Add one usage record (``UsageRecord.to_dict()``) to ``figures`` in place and return them.

    ``role`` is "chat", "utility" or anything else (counted as "other"). A chat-model record also
    becomes the "last call" and a history point. ``context_limit`` is the dict from
    ``limits.context_limit`` for the chat model in use; the fill percentage is computed against its
    ``tokens``.
    """
    role = role if role in ROLES else "other"
    _add(figures["totals"][role], record)

    agent_key = str(agent_number) if agent_number is not None else "?"
    agents = figures["agents"]
    if agent_key not in agents and len(agents) >= MAX_AGENTS:
        agent_key = "more"
    agent_totals = agents.setdefault(agent_key, _new_totals())
    _add(agent_totals, record)

    if role == "chat":
        figures["last"] = _last_call(record, agent_number, context_limit)
        prompt = record.get("prompt_tokens")
        figures["history"].append(prompt if isinstance(prompt, int) else None)
        del figures["history"][:-history_length]

    figures["updated_at"] = round(time.time(), 3)
    return figures


def _last_call(
    record: dict[str, Any], agent_number: int | None, context_limit: dict[str, Any] | None
) -> dict[str, Any]:
    prompt = record.get("prompt_tokens")
    limit_tokens = (context_limit or {}).get("tokens")
    fill = None
    if isinstance(prompt, int) and isinstance(limit_tokens, int) and limit_tokens > 0:
        fill = round(100.0 * prompt / limit_tokens, 1)
    return {
        "prompt": prompt,
        "cached": record.get("cached_tokens"),
        "completion": record.get("completion_tokens"),
        "reasoning": record.get("reasoning_tokens"),
        "total": record.get("total_tokens"),
        "cost": record.get("cost"),
        "model": record.get("response_model") or record.get("requested_model"),
        "source": record.get("source"),
        "reason": record.get("source_reason"),
        "outcome": record.get("outcome"),
        "error": record.get("error_type"),
        "flags": list(record.get("flags") or ()),
        "agent": agent_number,
        "at": record.get("ended_at"),
        "limit": context_limit,
        "fill_percent": fill,
    }


def compact_number(value: int | float | None) -> str:
    """Format a token count the way the badge shows it: 950, 53.8k, 1.2M; "?" when unknown."""
    if value is None:
        return "?"
    number = float(value)
    for threshold, suffix in ((1_000_000_000, "B"), (1_000_000, "M"), (1_000, "k")):
        if abs(number) >= threshold:
            scaled = number / threshold
            text = f"{scaled:.1f}" if abs(scaled) < 100 else f"{scaled:.0f}"
            return text.removesuffix(".0") + suffix
    return str(int(number))


def fill_level(fill_percent: float | None, warn_at: float, critical_at: float) -> str:
    """Return "ok", "warn", "critical" or "unknown" for a fill percentage and two thresholds."""
    if fill_percent is None:
        return "unknown"
    if fill_percent >= critical_at:
        return "critical"
    if fill_percent >= warn_at:
        return "warn"
    return "ok"


def badge_text(figures: dict[str, Any]) -> str:
    """Return the badge line, e.g. "53.8k / 200k · 27%", or "no calls yet"."""
    last = figures.get("last")
    if not last:
        return "no calls yet"
    limit = (last.get("limit") or {}).get("tokens")
    text = f"{compact_number(last.get('prompt'))} / {compact_number(limit)}"
    if last.get("fill_percent") is not None:
        text += f" · {last['fill_percent']:.0f}%"
    return text
