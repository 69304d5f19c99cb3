"""Browser tests of the token meter widget (a0_plugin/extensions/webui/chat-top-end/token-meter.html).

Each test loads tests/widget/widget_page.html in Debian's headless Chromium. The page loads Alpine.js,
a stand-in of A0's "chats" store and a stand-in of A0's extension loader, which fetches the real
component and store from a0_plugin/. Snapshot values come from the plugin's own figure functions
(tests/widget/meter_data.py).
"""

from __future__ import annotations

import colorsys
import os
from pathlib import Path
from typing import Any

import pytest

from tests.widget.meter_data import LIMIT, build_meter, context_limit, single_call_meter, usage_record

pytestmark = pytest.mark.browser

DESKTOP_VIEWPORT = {"width": 1280, "height": 800}
NARROW_VIEWPORT = {"width": 360, "height": 640}
SMALLEST_VIEWPORT = {"width": 320, "height": 568}
MARKUP = "<img src=x onerror=alert(1)>"
# The reason the shim gives a chat stream that A0 1.7 stopped reading and the plugin read to its end.
ABANDONED_REASON = "abandoned (garbage collected); 2 unread chunks read in the background"
UNKNOWN_MODEL_WARNING = (
    "model 'openai/fake-model' is unknown to litellm's model map, so the configured context length cannot be checked"
)

# Returns the points of a grid over the popover's visible box (12px in from its rounded edges) where
# document.elementFromPoint hits something outside the popover, as [x, y, "tag#id.class"].
COVERED_POINTS_JS = """
(popover) => {
  const box = popover.getBoundingClientRect();
  const describe = (node) => node ? node.tagName.toLowerCase() + (node.id ? '#' + node.id : '') +
    (typeof node.className === 'string' && node.className ? '.' + node.className.split(' ')[0] : '') : 'nothing';
  const covered = [];
  const xs = [box.left + 12, (box.left + box.right) / 2, box.right - 12];
  for (let y = box.top + 12; y <= box.bottom - 12; y += 16) {
    for (const x of xs) {
      const hit = document.elementFromPoint(x, y);
      if (!hit || !popover.contains(hit)) covered.push([Math.round(x), Math.round(y), describe(hit)]);
    }
  }
  return covered;
}
"""

# Reads computed colours (rgb(), rgba() or color(srgb ...)), composites the element's background over
# its ancestors' and returns the WCAG contrast ratio of the text, plus the background's luminance.
CONTRAST_JS = """
(element) => {
  const parse = (value) => {
    let match = value.match(/^rgba?\\(([^)]*)\\)$/);
    if (match) {
      const parts = match[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
      return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
    }
    match = value.match(/^color\\(srgb ([^)]*)\\)$/);
    if (match) {
      const parts = match[1].split(/[\\s\\/]+/).filter(Boolean).map(Number);
      return [parts[0] * 255, parts[1] * 255, parts[2] * 255, parts.length > 3 ? parts[3] : 1];
    }
    throw new Error('cannot parse colour ' + value);
  };
  const over = (top, bottom) => {
    const alpha = top[3];
    return [0, 1, 2].map((i) => top[i] * alpha + bottom[i] * (1 - alpha)).concat([1]);
  };
  const layers = [];
  for (let node = element; node; node = node.parentElement) {
    const colour = parse(getComputedStyle(node).backgroundColor);
    if (colour[3] > 0) layers.push(colour);
    if (colour[3] >= 1) break;
  }
  let background = [255, 255, 255, 1];
  for (const layer of layers.reverse()) background = over(layer, background);
  const text = over(parse(getComputedStyle(element).color), background);
  const luminance = (rgb) => {
    const [r, g, b] = rgb.slice(0, 3).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const [light, dark] = [luminance(text), luminance(background)].sort((a, b) => b - a);
  return { ratio: (light + 0.05) / (dark + 0.05), background: luminance(background) };
}
"""


def parse_rgb(value: str) -> tuple[float, float, float]:
    """Return (r, g, b) in 0..255 from a computed rgb()/rgba() colour."""
    inner = value[value.index("(") + 1 : value.index(")")]
    parts = [float(part) for part in inner.replace(",", " ").replace("/", " ").split()]
    return parts[0], parts[1], parts[2]


def hue_and_saturation(value: str) -> tuple[float, float]:
    """Return (hue in degrees, saturation 0..1) of a computed colour."""
    red, green, blue = (channel / 255 for channel in parse_rgb(value))
    hue, _lightness, saturation = colorsys.rgb_to_hls(red, green, blue)
    return hue * 360, saturation


def a0_reply_meter(chat_calls: int = 2) -> dict[str, Any]:
    """Return figures as A0 1.7 produces them with an unpriced model: six utility calls, then
    ``chat_calls`` chat calls whose streams A0 stopped reading (outcome "abandoned", provider figures)."""
    utility = [("utility", 0, usage_record(790, completion=20, cached=197, reasoning=5, cost=None)) for _ in range(6)]
    chat = [
        (
            "chat",
            0,
            usage_record(
                6_182 + 400 * number,
                completion=20,
                cached=1_545,
                reasoning=5,
                cost=None,
                model="fake-model",
                outcome="abandoned",
                reason=ABANDONED_REASON,
            ),
        )
        for number in range(chat_calls)
    ]
    return build_meter(utility + chat, limit=context_limit(LIMIT, UNKNOWN_MODEL_WARNING))


def multi_call_meter(*, show_cost: bool = True) -> dict[str, Any]:
    """Return figures after a utility call, a chat call of agent 1, an unattributed estimated call and a
    chat call of agent 0 (the last call)."""
    return build_meter(
        [
            ("utility", 0, usage_record(1_200, completion=80, cached=0, reasoning=0, cost=None)),
            ("chat", 1, usage_record(61_000, completion=900, cached=0, reasoning=0, cost=0.02)),
            ("other", None, usage_record(500, completion=20, cached=0, reasoning=0, cost=0.001, source="estimated")),
            ("chat", 0, usage_record(53_812)),
        ],
        show_cost=show_cost,
    )


# ----- badge ---------------------------------------------------------------------------------------


def test_badge_text_equals_view_badge(widget):
    widget.open()
    meter = single_call_meter(53_812)
    widget.select_chat(meter)

    assert meter["view"]["badge"] == "53.8k / 200k · 27%"
    assert widget.page.locator(".tm-badge-full").inner_text() == meter["view"]["badge"]
    assert widget.badge.get_attribute("aria-expanded") == "false"
    assert widget.badge.get_attribute("aria-label") == "Token meter: 53.8k / 200k · 27%"


@pytest.mark.parametrize(
    ("prompt", "level", "hue_range"),
    [
        (53_812, "ok", (80, 160)),
        (139_800, "ok", (80, 160)),
        (140_000, "warn", (20, 55)),
        (179_800, "warn", (20, 55)),
        (180_000, "critical", (-20, 15)),
        (260_000, "critical", (-20, 15)),
    ],
    ids=["26.9%", "69.9%", "70%", "89.9%", "90%", "130%"],
)
def test_fill_bar_level_and_colour(widget, prompt, level, hue_range):
    widget.open()
    meter = single_call_meter(prompt)
    widget.select_chat(meter)

    assert meter["view"]["level"] == level
    root_classes = widget.page.locator(".tm-root").get_attribute("class").split()
    assert f"tm-level-{level}" in root_classes

    colour = widget.page.locator(".tm-fill").evaluate("node => getComputedStyle(node).backgroundColor")
    hue, saturation = hue_and_saturation(colour)
    hue = hue - 360 if hue > 180 else hue
    assert hue_range[0] <= hue <= hue_range[1], f"{level} fill colour {colour} has hue {hue:.0f}"
    assert saturation > 0.3, f"{level} fill colour {colour} is grey"

    fill = widget.page.locator(".tm-fill").bounding_box()
    track = widget.page.locator(".tm-fill-track").bounding_box()
    expected = min(100.0, meter["last"]["fill_percent"]) / 100
    assert abs(fill["width"] / track["width"] - expected) < 0.02


def test_fill_bar_unknown_level_is_grey_and_empty(widget):
    widget.open()
    meter = build_meter([("chat", 0, usage_record(53_812))], limit=context_limit(None, "no context length"))
    widget.select_chat(meter)

    assert meter["view"]["badge"] == "53.8k / ?"
    assert meter["view"]["level"] == "unknown"
    assert widget.page.locator(".tm-badge-full").inner_text() == "53.8k / ?"
    assert "tm-level-unknown" in widget.page.locator(".tm-root").get_attribute("class").split()
    assert widget.page.locator(".tm-fill").bounding_box()["width"] == 0


def test_estimate_mark_only_for_estimated(widget):
    widget.open()
    widget.select_chat(single_call_meter(53_812))
    assert widget.page.locator(".tm-estimate-mark").is_hidden()

    estimated = single_call_meter(53_812, source="estimated", reason="provider sent no usage")
    widget.select_chat(estimated)

    mark = widget.page.locator(".tm-estimate-mark")
    assert estimated["view"]["estimated"] is True
    assert mark.is_visible()
    assert mark.inner_text() == "≈"
    assert widget.badge.get_attribute("aria-label").endswith("(estimated)")
    description_id = widget.badge.get_attribute("aria-describedby")
    description = widget.page.locator(f"[id='{description_id}']").text_content()
    assert description == "The last call's figures are estimated. Reason: provider sent no usage."
    widget.open_popover()
    assert widget.last_row("source") == "estimated"
    assert widget.last_row("prompt") == "≈53,812"
    assert widget.last_row("fill") == "≈26.9%"
    note = widget.page.locator(".tm-last .tm-note[data-key='last-estimated']")
    assert note.locator(".tm-note-text").inner_text() == "The last call's figures are estimated from the text."
    assert note.locator(".tm-note-detail").inner_text() == "Reason: provider sent no usage"


# ----- popover: opening and closing ----------------------------------------------------------------


def test_popover_opens_on_click_closes_outside(widget):
    widget.open()
    widget.select_chat(single_call_meter(53_812))
    assert widget.popover.is_hidden()

    widget.open_popover()
    assert widget.badge.get_attribute("aria-expanded") == "true"
    assert widget.popover.get_attribute("role") == "dialog"
    label_id = widget.popover.get_attribute("aria-labelledby")
    assert widget.page.locator(f"[id='{label_id}']").inner_text() == "Token usage of this chat"
    assert widget.badge.get_attribute("aria-controls") == widget.popover.get_attribute("id")

    widget.page.locator(".tm-totals").click()
    assert widget.popover.is_visible(), "a click inside the popover closed it"

    widget.page.locator("#fixture-outside").click()
    widget.popover.wait_for(state="hidden")
    assert widget.badge.get_attribute("aria-expanded") == "false"

    widget.open_popover()
    widget.page.locator(".tm-close").click()
    widget.popover.wait_for(state="hidden")
    assert widget.page.evaluate("document.activeElement.classList.contains('tm-badge')")


def test_popover_keyboard_enter_space_escape(widget):
    widget.open()
    widget.select_chat(single_call_meter(53_812))
    widget.badge.focus()

    widget.page.keyboard.press("Enter")
    widget.popover.wait_for(state="visible")
    assert widget.badge.get_attribute("aria-expanded") == "true"
    assert widget.page.evaluate("document.activeElement.getAttribute('role')") == "dialog"

    widget.page.keyboard.press("Escape")
    widget.popover.wait_for(state="hidden")
    assert widget.badge.get_attribute("aria-expanded") == "false"
    assert widget.page.evaluate("document.activeElement.classList.contains('tm-badge')")

    widget.page.keyboard.press("Space")
    widget.popover.wait_for(state="visible")
    widget.page.keyboard.press("Escape")
    widget.popover.wait_for(state="hidden")


# ----- popover: content ----------------------------------------------------------------------------


def test_popover_last_call_breakdown(widget):
    widget.open()
    widget.select_chat(multi_call_meter())
    widget.open_popover()

    expected = {
        "model": "openai/gpt-4.1-mini",
        "prompt": "53,812",
        "cached": "40,960",
        "completion": "1,204",
        "reasoning": "312",
        "total": "55,016",
        "fill": "26.9%",
        "agent": "0",
        "cost": "$0.0123",
        "limit": "200,000 (configured in A0)",
        "source": "provider",
        "outcome": "complete",
    }
    for key, value in expected.items():
        assert widget.last_row(key) == value, key
    assert widget.page.locator(".tm-last .tm-note").count() == 0


def test_abandoned_provider_call_reads_normal(widget):
    widget.open()
    meter = a0_reply_meter(chat_calls=1)
    widget.select_chat(meter)
    widget.open_popover()

    assert meter["last"]["outcome"] == "abandoned"
    assert meter["last"]["reason"] == ABANDONED_REASON
    assert widget.last_row("outcome") == "A0 stopped reading early (normal)"
    assert widget.last_row("source") == "provider"
    note = widget.page.locator(".tm-last .tm-note[data-key='last-abandoned']")
    note_text = note.locator(".tm-note-text").inner_text()
    assert note_text == "A0 1.7 and later stop reading a reply once its tool call is complete."
    assert note.locator(".tm-note-detail").inner_text() == f"Detail: {ABANDONED_REASON}"
    values = widget.page.locator(".tm-last .tm-row dd").all_inner_texts()
    assert not [value for value in values if "(" in value and value.count("(") > 1], "nested brackets in a row"
    assert not [value for value in values if "abandoned" in value], "the raw outcome is shown as a value"


def test_abandoned_estimated_call_keeps_reason(widget):
    widget.open()
    reason = "abandoned (garbage collected)"
    widget.select_chat(single_call_meter(53_812, source="estimated", reason=reason, outcome="abandoned"))
    widget.open_popover()

    assert widget.last_row("outcome") == "A0 stopped reading early"
    assert widget.last_row("source") == "estimated"
    note = widget.page.locator(".tm-last .tm-note[data-key='last-estimated']")
    assert note.locator(".tm-note-detail").inner_text() == f"Reason: {reason}"
    assert widget.page.locator(".tm-note[data-key='last-abandoned']").count() == 0


@pytest.mark.parametrize(
    ("outcome", "error", "text"),
    [
        ("closed_early", None, "closed early"),
        ("error", "RateLimitError", "error: RateLimitError"),
        ("cancelled", None, "cancelled"),
    ],
)
def test_outcome_in_words(widget, outcome, error, text):
    widget.open()
    widget.select_chat(single_call_meter(53_812, outcome=outcome, error=error))
    widget.open_popover()

    assert widget.last_row("outcome") == text


def test_popover_totals_by_role_and_agent(widget):
    widget.open()
    widget.select_chat(multi_call_meter())
    widget.open_popover()

    assert widget.table_cells("role-chat") == ["Chat", "2", "115k", "41k", "2.1k", "$0.0323"]
    assert widget.table_cells("role-utility") == ["Utility", "1", "1.2k", "0", "80", "not priced"]
    assert widget.table_cells("role-other") == ["Other", "1", "≈500", "≈0", "≈20", "$0.0010"]
    assert widget.table_cells("agent-0") == ["Agent 0", "2", "55k", "41k", "1.3k", "$0.0123 + ?"]
    assert widget.table_cells("agent-1") == ["Agent 1", "1", "61k", "0", "900", "$0.0200"]
    assert widget.table_cells("agent-?") == ["unknown agent", "1", "≈500", "≈0", "≈20", "$0.0010"]
    agent_rows = widget.page.locator(".tm-agents tr[data-key]")
    agent_order = agent_rows.evaluate_all("rows => rows.map(row => row.dataset.key)")
    assert agent_order == ["agent-0", "agent-1", "agent-?"]

    assert widget.page.locator(".tm-cost-value").inner_text() == "$0.0333 + 1 call not priced"
    assert set(widget.note_keys()) == {"estimated", "unpriced"}
    assert "1 of 4 calls" in widget.page.locator(".tm-note[data-key='unpriced']").inner_text()


def test_popover_hides_cost_when_disabled(widget):
    widget.open()
    widget.select_chat(multi_call_meter(show_cost=False))
    widget.open_popover()

    assert widget.page.locator(".tm-last .tm-row[data-key='cost']").count() == 0
    assert widget.table_cells("role-chat") == ["Chat", "2", "115k", "41k", "2.1k"]
    assert widget.page.locator(".tm-cost-total").is_hidden()
    assert "unpriced" not in widget.note_keys()


def test_sparkline_one_point_per_known_entry(widget):
    widget.open()
    prompts = [1_000, None, 3_000, 5_000, None, 8_000]
    meter = build_meter([("chat", 0, usage_record(prompt)) for prompt in prompts])
    widget.select_chat(meter)
    widget.open_popover()

    assert meter["history"] == prompts
    points = widget.page.locator(".tm-sparkline-line").get_attribute("points").split()
    assert len(points) == 4
    xs = [float(point.split(",")[0]) for point in points]
    ys = [float(point.split(",")[1]) for point in points]
    assert xs == sorted(xs), "points are not in call order"
    assert ys[0] > ys[1] > ys[2] > ys[3], "a larger prompt is not drawn higher"
    last_x = float(widget.page.locator(".tm-sparkline-last").get_attribute("cx"))
    assert last_x == xs[-1]


def test_sparkline_hidden_when_disabled_or_empty(widget):
    widget.open()
    meter = build_meter([("chat", 0, usage_record(1_000)), ("chat", 0, usage_record(2_000))], show_sparkline=False)
    widget.select_chat(meter)
    widget.open_popover()
    assert widget.page.locator(".tm-sparkline").count() == 0

    widget.select_chat(build_meter([("chat", 0, usage_record(None, source="unavailable"))]))
    assert widget.page.locator(".tm-sparkline").count() == 0


def test_sparkline_needs_two_points(widget):
    widget.open()
    widget.select_chat(build_meter([("chat", 0, usage_record(1_000))]))
    widget.open_popover()
    assert widget.page.locator(".tm-history").count() == 0, "one point is drawn as a chart"

    unknown_second = [("chat", 0, usage_record(1_000)), ("chat", 0, usage_record(None, source="unavailable"))]
    widget.select_chat(build_meter(unknown_second))
    assert widget.page.locator(".tm-history").count() == 0, "one known point is drawn as a chart"

    widget.select_chat(build_meter([("chat", 0, usage_record(1_000)), ("chat", 0, usage_record(2_000))]))
    assert widget.page.locator(".tm-sparkline-line").get_attribute("points").count(",") == 2


def test_unknown_numbers_show_question_mark(widget):
    widget.open()
    meter = single_call_meter(
        None,
        completion=None,
        cached=None,
        reasoning=None,
        total=None,
        cost=None,
        model=None,
        source="unavailable",
        reason="the provider sent no usage and estimation is off",
    )
    widget.select_chat(meter)

    assert widget.page.locator(".tm-badge-full").inner_text() == "? / 200k"
    widget.open_popover()
    for key in ("prompt", "cached", "completion", "reasoning", "total", "fill"):
        assert widget.last_row(key) == "?", key
    assert widget.last_row("model") == "unknown"
    assert widget.last_row("cost") == "not priced"
    assert widget.table_cells("role-chat") == ["Chat", "1", "?", "?", "?", "not priced"]
    values = widget.page.locator(".tm-last .tm-row:not([data-key='agent']) dd").all_inner_texts()
    assert "0" not in values
    assert {"last-unavailable", "unavailable"} <= set(widget.note_keys())


def test_markup_renders_as_text(widget):
    widget.open()
    meter = single_call_meter(53_812, model=MARKUP, source="estimated", reason=MARKUP)
    meter["a0_range_warning"] = MARKUP
    meter["agents"][MARKUP] = meter["agents"]["0"]
    widget.select_chat(meter)
    widget.open_popover()

    assert widget.last_row("model") == MARKUP
    assert widget.last_row("source") == "estimated"
    reason_detail = widget.page.locator(".tm-note[data-key='last-estimated'] .tm-note-detail").inner_text()
    assert reason_detail == f"Reason: {MARKUP}"
    assert widget.page.locator(".tm-note[data-key='a0-range']").inner_text() == MARKUP
    badge_description = widget.page.locator(".tm-badge-description").text_content()
    assert badge_description == f"The last call's figures are estimated. Reason: {MARKUP}."
    assert widget.table_cells(f"agent-{MARKUP}")[0] == f"Agent {MARKUP}"
    assert widget.page.locator("img").count() == 0


def test_limit_and_a0_range_warnings_shown(widget):
    widget.open()
    warning = "the configured context length 200000 exceeds the model's input window of 128000 tokens"
    meter = build_meter(
        [("chat", 0, usage_record(53_812))],
        limit=context_limit(LIMIT, warning),
        a0_range_warning="A0 v0.9.8 has no plugin system",
    )
    widget.select_chat(meter)
    widget.open_popover()

    assert widget.page.locator(".tm-note[data-key='limit']").inner_text() == f"Context limit: {warning}."
    assert widget.page.locator(".tm-note[data-key='a0-range']").inner_text() == "A0 v0.9.8 has no plugin system"


def test_no_title_attributes(widget):
    """A0 turns every title attribute into a Bootstrap tooltip, which covers the header."""
    widget.open()
    meter = build_meter(
        [
            ("chat", 0, usage_record(53_812, source="estimated", reason="provider sent no usage")),
            ("utility", 1, usage_record(None, source="unavailable", reason="provider sent no usage")),
        ]
    )
    widget.select_chat(meter)
    widget.open_popover()

    selector = ".tm-root, .tm-root *, .tm-popover, .tm-popover *"
    titled = widget.page.locator(selector).evaluate_all(
        "nodes => nodes.filter(node => node.hasAttribute('title') || node.hasAttribute('data-bs-original-title'))"
        ".map(node => node.className.baseVal ?? node.className)"
    )
    assert titled == []
    assert widget.table_cells("role-chat")[2] == "≈53.8k"
    assert "(marked ≈)" in widget.page.locator(".tm-note[data-key='estimated']").inner_text()
    assert "(marked ≥)" in widget.page.locator(".tm-note[data-key='unavailable']").inner_text()


# ----- states ---------------------------------------------------------------------------------------


def test_unavailable_status_shows_message(widget):
    widget.open()
    message = "token usage cannot be recorded: litellm.acompletion: not callable"
    meter = single_call_meter(53_812)
    meter["status"] = {"state": "unavailable", "message": message}
    widget.select_chat(meter)

    assert widget.page.locator(".tm-badge-full").inner_text() == "unavailable"
    assert "tm-state-unavailable" in widget.page.locator(".tm-root").get_attribute("class").split()
    assert widget.page.locator(".tm-fill").bounding_box()["width"] == 0
    widget.open_popover()
    assert widget.page.locator(".tm-message").inner_text() == message
    assert widget.last_row("prompt") == "53,812", "figures counted before are hidden"


def test_unknown_format_version_is_unavailable(widget):
    widget.open()
    widget.select_chat({"version": 2, "last": None})

    assert widget.page.locator(".tm-badge-full").inner_text() == "unavailable"
    widget.open_popover()
    assert widget.page.locator(".tm-message").inner_text() == "The figures have an unknown format (version 2)."


def test_no_calls_yet_and_no_chat(widget):
    widget.open()
    assert widget.page.locator(".tm-root").count() == 0, "widget shown with no chat selected"

    widget.select_chat(None)
    assert widget.page.locator(".tm-badge-full").inner_text() == "no calls yet"
    assert "tm-quiet" in widget.page.locator(".tm-root").get_attribute("class").split()

    widget.select_chat(build_meter([]))
    assert widget.page.locator(".tm-badge-full").inner_text() == "no calls yet"

    widget.clear_chat()
    assert widget.page.locator(".tm-root").count() == 0


def test_without_chats_store_renders_nothing(widget):
    widget.open("no-chats=1")

    assert widget.page.evaluate("typeof Alpine.store('tokenMeter').describe") == "function"
    assert widget.page.evaluate("Alpine.store('chats') === undefined")
    assert widget.page.locator(".tm-root").count() == 0
    assert widget.page.locator(".tm-host").count() == 0


def test_reactivity_without_reload_or_timer(widget, page_server):
    widget.open()
    widget.page.evaluate("window.fixtureMarker = 'same page'")
    widget.select_chat(single_call_meter(53_812))
    widget.open_popover()

    second = single_call_meter(150_000)
    widget.page.evaluate(
        "meter => { Alpine.store('chats').selectedContext.token_meter = meter; }",
        second,
    )
    widget.settle()
    assert widget.page.locator(".tm-badge-full").inner_text() == second["view"]["badge"] == "150k / 200k · 75%"
    assert widget.last_row("prompt") == "150,000"
    assert "tm-level-warn" in widget.page.locator(".tm-root").get_attribute("class").split()

    third = single_call_meter(190_000)
    widget.select_chat(third, chat_id="chat-2")
    assert widget.page.locator(".tm-badge-full").inner_text() == "190k / 200k · 95%"
    assert widget.last_row("prompt") == "190,000"
    assert widget.page.evaluate("window.fixtureMarker") == "same page"

    requests_before = len(page_server.requests)
    widget.page.wait_for_timeout(500)
    assert len(page_server.requests) == requests_before, "the widget made requests on its own"
    assert widget.page.evaluate("fixtureTimers.intervals") == 0, "the widget started an interval timer"


# ----- layout and themes ----------------------------------------------------------------------------


@pytest.mark.viewport(NARROW_VIEWPORT)
@pytest.mark.parametrize("bar_side", ["right", "left"])
def test_narrow_viewport_keeps_popover_inside(widget, bar_side):
    widget.open()
    if bar_side == "left":
        widget.page.locator("#fixture-top-bar").evaluate("bar => { bar.style.right = 'auto'; bar.style.left = '4px'; }")
    widget.select_chat(multi_call_meter())

    assert widget.page.locator(".tm-badge-full").is_hidden()
    assert widget.page.locator(".tm-badge-short").inner_text() == "27%"
    widget.open_popover()
    widget.settle()
    box = widget.popover.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= NARROW_VIEWPORT["width"]
    overflow = widget.popover.evaluate("node => node.scrollWidth - node.clientWidth")
    assert overflow <= 1, "popover content is wider than the popover"


@pytest.mark.viewport(SMALLEST_VIEWPORT)
def test_smallest_viewport_keeps_popover_inside(widget):
    widget.open()
    widget.select_chat(multi_call_meter())
    widget.open_popover()
    widget.settle()

    box = widget.popover.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= SMALLEST_VIEWPORT["width"]
    overflow = widget.popover.evaluate("node => node.scrollWidth - node.clientWidth")
    assert overflow <= 1, "popover content is wider than the popover"
    assert widget.table_cells("role-chat") == ["Chat", "2", "115k", "2.1k", "$0.0323"]


A0_WINDOW_SIZES = [
    {"width": 1280, "height": 640},
    {"width": 1024, "height": 700},
    {"width": 560, "height": 800},
    {"width": 390, "height": 844},
]


@pytest.mark.parametrize(
    "size",
    [pytest.param(size, marks=pytest.mark.viewport(size)) for size in A0_WINDOW_SIZES],
    ids=[f"{size['width']}x{size['height']}" for size in A0_WINDOW_SIZES],
)
def test_popover_above_a0_layers(widget, size):
    """The stand-ins of A0's chat input and sidebar header panel must not cover any part of the popover."""
    widget.open()
    widget.select_chat(a0_reply_meter())
    widget.open_popover()
    widget.settle()

    box = widget.popover.bounding_box()
    assert box["x"] >= 0
    assert box["y"] >= 0
    assert box["x"] + box["width"] <= size["width"]
    assert box["y"] + box["height"] <= size["height"] - 8
    assert widget.popover.evaluate(COVERED_POINTS_JS) == []

    widget.popover.evaluate("node => { node.scrollTop = node.scrollHeight; }")
    widget.settle()
    assert widget.popover.evaluate(COVERED_POINTS_JS) == [], "covered after scrolling to the end"
    last_line = widget.page.locator(".tm-updated").bounding_box()
    box = widget.popover.bounding_box()
    last_line_bottom = last_line["y"] + last_line["height"]
    assert last_line_bottom <= box["y"] + box["height"], "the last line cannot be scrolled into view"


@pytest.mark.viewport(DESKTOP_VIEWPORT)
def test_popover_scrolls_only_without_room(widget):
    widget.open()
    widget.select_chat(a0_reply_meter())
    widget.open_popover()
    widget.settle()

    scroll_height, client_height = widget.popover.evaluate("node => [node.scrollHeight, node.clientHeight]")
    box = widget.popover.bounding_box()
    room = DESKTOP_VIEWPORT["height"] - 8 - box["y"]
    assert scroll_height + 2 <= room, f"the test content ({scroll_height}px) does not fit below the badge ({room}px)"
    assert scroll_height <= client_height, f"the popover scrolls by {scroll_height - client_height}px"


@pytest.mark.viewport({"width": 1024, "height": 420})
def test_popover_scrolls_when_window_short(widget):
    widget.open()
    widget.select_chat(a0_reply_meter())
    widget.open_popover()
    widget.settle()

    scroll_height, client_height = widget.popover.evaluate("node => [node.scrollHeight, node.clientHeight]")
    box = widget.popover.bounding_box()
    assert scroll_height > client_height
    assert box["y"] + box["height"] == pytest.approx(420 - 8, abs=1)


def test_popover_follows_window_resize(widget):
    widget.open()
    widget.select_chat(a0_reply_meter())
    widget.open_popover()
    widget.page.set_viewport_size({"width": 700, "height": 500})
    widget.settle()
    widget.settle()

    badge = widget.badge.bounding_box()
    box = widget.popover.bounding_box()
    assert box["x"] + box["width"] == pytest.approx(badge["x"] + badge["width"], abs=1)
    assert box["y"] + box["height"] <= 500 - 8 + 1


def _save_screenshot(widget, name: str) -> None:
    folder = os.environ.get("TOKEN_METER_SCREENSHOT_DIR")
    if not folder:
        return
    badge = widget.badge.bounding_box()
    popover = widget.popover.bounding_box()
    left = max(0, min(badge["x"], popover["x"]) - 12)
    top = max(0, badge["y"] - 12)
    right = max(badge["x"] + badge["width"], popover["x"] + popover["width"]) + 12
    bottom = popover["y"] + popover["height"] + 12
    clip = {"x": left, "y": top, "width": right - left, "height": bottom - top}
    widget.page.screenshot(path=str(Path(folder) / f"{name}.png"), clip=clip)


@pytest.mark.parametrize(
    "a0_css",
    [False, pytest.param(True, marks=pytest.mark.a0)],
    ids=["fallback-colours", "a0-index-css"],
)
@pytest.mark.parametrize("theme", ["dark-mode", "light-mode"])
def test_theme_contrast_readable(widget, a0_checkout, theme, a0_css):
    if a0_css and a0_checkout is None:
        pytest.skip("set TOKEN_METER_A0_CHECKOUT to an A0 source tree to test with A0's index.css")
    widget.open("a0-css=1" if a0_css else "")
    widget.set_theme(theme)
    meter = multi_call_meter()
    meter["last"]["limit"]["warning"] = "the model's window is unknown"
    widget.select_chat(meter)
    widget.open_popover()

    targets = {
        "badge text": ".tm-badge-full",
        "popover title": ".tm-title",
        "row label": ".tm-last .tm-row[data-key='prompt'] dt",
        "row value": ".tm-last .tm-row[data-key='prompt'] dd",
        "table header": ".tm-totals thead th >> nth=1",
        "table cell": ".tm-roles tr >> nth=0 >> td >> nth=0",
        "table subheading": ".tm-subhead th",
        "note": ".tm-note >> nth=0",
    }
    for name, selector in targets.items():
        result = widget.page.locator(selector).evaluate(CONTRAST_JS)
        assert result["ratio"] >= 4.5, f"{theme}: {name} contrast {result['ratio']:.2f} is below 4.5"

    surface = widget.popover.evaluate(CONTRAST_JS)["background"]
    if theme == "dark-mode":
        assert surface < 0.1, f"dark theme popover background luminance {surface:.2f}"
    else:
        assert surface > 0.6, f"light theme popover background luminance {surface:.2f}"

    _save_screenshot(widget, f"widget-{theme}{'-a0css' if a0_css else ''}")
