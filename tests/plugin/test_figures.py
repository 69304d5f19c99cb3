"""Per-chat figures, badge formatting and the context-limit check."""

from __future__ import annotations

import importlib

import pytest


@pytest.fixture
def figures_module(plugin_tree):
    return importlib.import_module("token_meter.helpers.figures")


@pytest.fixture
def limits_module(plugin_tree):
    return importlib.import_module("token_meter.helpers.limits")


def record(**fields) -> dict:
    base = {
        "prompt_tokens": 1000,
        "completion_tokens": 50,
        "total_tokens": 1050,
        "cached_tokens": 200,
        "reasoning_tokens": 10,
        "cost": 0.002,
        "source": "provider",
        "source_reason": None,
        "outcome": "complete",
        "requested_model": "openai/gpt-4o-mini",
        "response_model": "gpt-4o-mini",
        "ended_at": 1.0,
        "flags": [],
    }
    base.update(fields)
    return base


def test_totals_per_role_and_agent(figures_module):
    figures = figures_module.new_figures()
    figures_module.apply_record(figures, record(), role="chat", agent_number=0)
    figures_module.apply_record(figures, record(prompt_tokens=300, cost=None), role="utility", agent_number=0)
    figures_module.apply_record(figures, record(prompt_tokens=70), role="chat", agent_number=1)

    assert figures["totals"]["chat"]["calls"] == 2
    assert figures["totals"]["chat"]["prompt"] == 1070
    assert figures["totals"]["utility"]["prompt"] == 300
    assert figures["totals"]["utility"]["unpriced"] == 1
    assert figures["totals"]["chat"]["cost"] == pytest.approx(0.004)
    assert figures["agents"]["0"]["calls"] == 2
    assert figures["agents"]["1"]["prompt"] == 70
    assert figures["history"] == [1000, 70]
    assert figures["last"]["agent"] == 1


def test_unknown_role_counts_as_other(figures_module):
    figures = figures_module.new_figures()
    figures_module.apply_record(figures, record(), role="compaction", agent_number=None)

    assert figures["totals"]["other"]["calls"] == 1
    assert figures["last"] is None, "only chat-model calls become the last call"
    assert "?" in figures["agents"]


def test_unknown_numbers_stay_unknown(figures_module):
    figures = figures_module.new_figures()
    limit = {"tokens": 128000, "configured": 128000, "model_window": None, "warning": None}
    unavailable = record(prompt_tokens=None, completion_tokens=None, total_tokens=None, source="unavailable")
    figures_module.apply_record(figures, unavailable, role="chat", agent_number=0, context_limit=limit)

    assert figures["last"]["prompt"] is None
    assert figures["last"]["fill_percent"] is None
    assert figures["history"] == [None]
    assert figures["totals"]["chat"]["unavailable"] == 1
    assert figures_module.badge_text(figures) == "? / 128k"


def test_history_is_bounded(figures_module):
    figures = figures_module.new_figures()
    for index in range(10):
        figures_module.apply_record(
            figures, record(prompt_tokens=index + 1), role="chat", agent_number=0, history_length=4
        )

    assert figures["history"] == [7, 8, 9, 10]


def test_agent_numbers_beyond_limit_summed(figures_module):
    figures = figures_module.new_figures()
    for number in range(figures_module.MAX_AGENTS + 5):
        figures_module.apply_record(figures, record(), role="utility", agent_number=number)

    assert len(figures["agents"]) == figures_module.MAX_AGENTS + 1
    assert figures["agents"]["more"]["calls"] == 5


def test_fill_percent_and_badge(figures_module):
    figures = figures_module.new_figures()
    limit = {"tokens": 200000, "configured": 200000, "model_window": 1047576, "warning": None}
    figures_module.apply_record(figures, record(prompt_tokens=53800), role="chat", agent_number=0, context_limit=limit)

    assert figures["last"]["fill_percent"] == 26.9
    assert figures_module.badge_text(figures) == "53.8k / 200k · 27%"


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "?"), (0, "0"), (950, "950"), (1000, "1k"), (53800, "53.8k"), (200000, "200k"), (1_200_000, "1.2M")],
)
def test_compact_number(figures_module, value, text):
    assert figures_module.compact_number(value) == text


@pytest.mark.parametrize(
    ("fill", "level"),
    [(None, "unknown"), (0.0, "ok"), (69.9, "ok"), (70.0, "warn"), (89.9, "warn"), (90.0, "critical")],
)
def test_fill_level_thresholds(figures_module, fill, level):
    assert figures_module.fill_level(fill, 70, 90) == level


@pytest.mark.parametrize("saved", [None, "text", {"version": 0}, {"version": 1, "totals": {}}, {"version": 1}])
def test_invalid_saved_figures_replaced(figures_module, saved):
    assert figures_module.valid_figures(saved) == figures_module.new_figures()


def test_limit_above_model_window_warns(limits_module):
    limit = limits_module.context_limit(1_000_000, "gpt-4o-mini", None)

    assert limit["tokens"] == 1_000_000
    assert limit["model_window"] == 128000
    assert "exceeds the model's input window of 128000" in limit["warning"]


def test_limit_within_model_window(limits_module):
    limit = limits_module.context_limit(100000, "gpt-4o-mini", None)

    assert limit == {"tokens": 100000, "configured": 100000, "model_window": 128000, "warning": None}


def test_unknown_model_limit_warns(limits_module):
    limit = limits_module.context_limit(120000, "openai/no-such-model-xyz", None)

    assert limit["tokens"] == 120000
    assert limit["model_window"] is None
    assert "unknown to litellm" in limit["warning"]


def test_missing_config_uses_model_window(limits_module):
    limit = limits_module.context_limit(0, "gpt-4o-mini", None)

    assert limit["tokens"] == 128000
    assert "no context length is configured" in limit["warning"]
