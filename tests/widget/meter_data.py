"""Build ``token_meter`` snapshot values for the widget tests with the plugin's own figure functions.

``figures.apply_record`` and ``figures.badge_text`` / ``fill_level`` are the functions the plugin uses
on the server, so the widget is tested against the real format (version 1), not a hand-written copy.
"""

from __future__ import annotations

import copy
from typing import Any

from a0_plugin.helpers import figures

WARN_AT = 70
CRITICAL_AT = 90
LIMIT = 200_000


def usage_record(
    prompt: int | None = 53_812,
    *,
    completion: int | None = 1_204,
    cached: int | None = 40_960,
    reasoning: int | None = 312,
    total: int | None = None,
    cost: float | None = 0.0123,
    model: str | None = "openai/gpt-4.1-mini",
    source: str = "provider",
    reason: str | None = None,
    outcome: str = "complete",
    error: str | None = None,
    flags: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Return a record dict in the shape of ``UsageRecord.to_dict()`` (the keys ``apply_record`` reads)."""
    if total is None and prompt is not None and completion is not None:
        total = prompt + completion
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "cached_tokens": cached,
        "reasoning_tokens": reasoning,
        "total_tokens": total,
        "cost": cost,
        "response_model": model,
        "requested_model": model,
        "source": source,
        "source_reason": reason,
        "outcome": outcome,
        "error_type": error,
        "flags": list(flags),
        "ended_at": 1_765_000_000.0,
    }


def context_limit(tokens: int | None = LIMIT, warning: str | None = None) -> dict[str, Any]:
    """Return a limit dict as ``limits.context_limit`` builds it, for a configured limit."""
    return {"tokens": tokens, "configured": tokens, "model_window": None, "warning": warning}


def build_meter(
    calls: list[tuple[str, int | None, dict[str, Any]]] | None = None,
    *,
    limit: dict[str, Any] | None = None,
    show_cost: bool = True,
    show_sparkline: bool = True,
    status: dict[str, Any] | None = None,
    a0_range_warning: str | None = None,
) -> dict[str, Any]:
    """Return a ``token_meter`` value after ``calls``: (role, agent number, usage record) tuples.

    Chat calls use ``limit`` (default: a configured 200,000-token limit). The ``view`` is computed the
    way the plugin publishes it, with the thresholds 70 and 90.
    """
    meter = figures.new_figures()
    for role, agent_number, record in calls or []:
        figures.apply_record(
            meter,
            record,
            role=role,
            agent_number=agent_number,
            context_limit=copy.deepcopy(limit if limit is not None else context_limit()),
        )
    last = meter.get("last") or {}
    meter["status"] = status or {"state": "ok", "message": None}
    meter["view"] = {
        "badge": figures.badge_text(meter),
        "level": figures.fill_level(last.get("fill_percent"), WARN_AT, CRITICAL_AT),
        "estimated": last.get("source") == "estimated",
        "warn_at": WARN_AT,
        "critical_at": CRITICAL_AT,
        "show_cost": show_cost,
        "show_sparkline": show_sparkline,
    }
    meter["a0_range_warning"] = a0_range_warning
    return meter


def single_call_meter(prompt: int | None, **record_options: Any) -> dict[str, Any]:
    """Return a ``token_meter`` value after one chat call of agent 0 with ``prompt`` tokens."""
    return build_meter([("chat", 0, usage_record(prompt, **record_options))])
