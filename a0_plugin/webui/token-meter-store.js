/**
 * Alpine store "tokenMeter": turns a chat's token figures into what the chat header widget shows.
 *
 * The figures arrive in A0's state snapshot as `$store.chats.selectedContext.token_meter` (format
 * version 1, written by the plugin's Python side). This store keeps no copy of them and runs no timer:
 * the widget calls `describe()` from an Alpine effect, so it re-renders whenever A0 replaces the
 * selected chat's snapshot entry. The server computes the badge text and fill level; the number
 * formats of the details popover are computed here. Unknown numbers (null, missing, not finite) are
 * shown as "?", never as 0.
 */
import { createStore } from "/js/AlpineStore.js";

export const FORMAT_VERSION = 1;
export const UNKNOWN = "?";
export const ROLES = [
  { key: "chat", label: "Chat" },
  { key: "utility", label: "Utility" },
  { key: "other", label: "Other" },
];

const SPARKLINE_WIDTH = 300;
const SPARKLINE_HEIGHT = 32;
const SPARKLINE_PADDING = 3;
const LEVELS = new Set(["ok", "warn", "critical", "unknown"]);
const integerFormat = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** Return true for a finite number; null, strings and NaN are unknown values. */
export function isKnownNumber(value) {
  return typeof value === "number" && Number.isFinite(value);
}

/** Format a token count compactly, like the badge: 950, 53.8k, 1.2M, 3B; "?" when unknown. */
export function formatCompact(value) {
  if (!isKnownNumber(value)) return UNKNOWN;
  const steps = [
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "k"],
  ];
  for (const [threshold, suffix] of steps) {
    if (Math.abs(value) >= threshold) {
      const scaled = value / threshold;
      const text = Math.abs(scaled) < 100 ? scaled.toFixed(1) : scaled.toFixed(0);
      return text.replace(/\.0$/, "") + suffix;
    }
  }
  return String(Math.round(value));
}

/** Format a count with thousands separators: 53,812; "?" when unknown. */
export function formatInteger(value) {
  if (!isKnownNumber(value)) return UNKNOWN;
  return integerFormat.format(Math.round(value));
}

/** Format a cost in US dollars: $0.0123 below $10, $12.35 from $10 on; "?" when unknown. */
export function formatCost(value) {
  if (!isKnownNumber(value)) return UNKNOWN;
  if (value === 0) return "$0.00";
  if (Math.abs(value) < 0.0001) return "<$0.0001";
  const digits = Math.abs(value) < 10 ? 4 : 2;
  return "$" + value.toFixed(digits);
}

/** Format a percentage with at most one decimal: 27%, 26.9%; "?" when unknown. */
export function formatPercent(value) {
  if (!isKnownNumber(value)) return UNKNOWN;
  return value.toFixed(1).replace(/\.0$/, "") + "%";
}

/** Return the fill bar width in percent: the value clamped to 0..100, and 0 when unknown. */
export function fillWidth(percent) {
  if (!isKnownNumber(percent)) return 0;
  return Math.min(100, Math.max(0, percent));
}

/**
 * Return the sparkline of `history` (prompt tokens, oldest first) as SVG polyline points.
 *
 * Null entries are skipped but keep their slot on the x axis, so a gap stays visible as a longer
 * segment. The y axis runs from 0 to `limit` (the context window), or to the largest value when that
 * is larger or the limit is unknown. Returns {points: "x,y x,y", count, last: {x, y} | null, ...}.
 */
export function sparkline(history, limit) {
  const entries = Array.isArray(history) ? history : [];
  const known = entries.filter(isKnownNumber);
  const largest = known.length ? Math.max(...known) : 0;
  const top = Math.max(isKnownNumber(limit) && limit > 0 ? limit : 0, largest, 1);
  const innerWidth = SPARKLINE_WIDTH - 2 * SPARKLINE_PADDING;
  const innerHeight = SPARKLINE_HEIGHT - 2 * SPARKLINE_PADDING;
  const step = entries.length > 1 ? innerWidth / (entries.length - 1) : 0;

  const coordinates = [];
  entries.forEach((value, index) => {
    if (!isKnownNumber(value)) return;
    const x = SPARKLINE_PADDING + (entries.length > 1 ? index * step : innerWidth / 2);
    const y = SPARKLINE_PADDING + innerHeight * (1 - Math.max(0, value) / top);
    coordinates.push({ x: Number(x.toFixed(1)), y: Number(y.toFixed(1)) });
  });

  return {
    width: SPARKLINE_WIDTH,
    height: SPARKLINE_HEIGHT,
    points: coordinates.map((point) => `${point.x},${point.y}`).join(" "),
    count: coordinates.length,
    skipped: entries.length - coordinates.length,
    last: coordinates.length ? coordinates[coordinates.length - 1] : null,
    top,
  };
}

function countOf(totals, key) {
  return totals && isKnownNumber(totals[key]) ? totals[key] : null;
}

function costCell(totals, showCost) {
  if (!showCost) return "";
  const calls = countOf(totals, "calls");
  const unpriced = countOf(totals, "unpriced") ?? 0;
  if (!calls) return "–";
  if (unpriced >= calls) return "not priced";
  const text = formatCost(countOf(totals, "cost"));
  return unpriced > 0 ? `${text} + ?` : text;
}

/**
 * Return one row of a totals table. Token sums are marked "≥" when some calls of the row had no
 * figures (the sum is a lower bound), "≈" when some were estimated, and are "?" when no call had figures.
 * The notes below the table explain both marks.
 */
function totalsRow(key, label, totals, showCost) {
  const value = totals && typeof totals === "object" ? totals : {};
  const calls = countOf(value, "calls");
  const unavailable = countOf(value, "unavailable") ?? 0;
  const estimated = countOf(value, "estimated") ?? 0;
  const noFigures = calls !== null && calls > 0 && unavailable >= calls;
  let mark = "";
  if (unavailable > 0) {
    mark = "≥";
  } else if (estimated > 0) {
    mark = "≈";
  }
  const cell = (field) => {
    const amount = noFigures ? null : countOf(value, field);
    return isKnownNumber(amount) ? mark + formatCompact(amount) : UNKNOWN;
  };
  return {
    key,
    label,
    calls: formatInteger(calls),
    prompt: cell("prompt"),
    cached: cell("cached"),
    completion: cell("completion"),
    cost: costCell(value, showCost),
  };
}

function agentLabel(key) {
  if (key === "?") return "unknown agent";
  if (key === "more") return "other agents";
  return `Agent ${key}`;
}

function agentOrder(key) {
  const number = Number(key);
  if (key !== "" && Number.isInteger(number)) return number;
  return key === "?" ? Number.MAX_SAFE_INTEGER - 1 : Number.MAX_SAFE_INTEGER;
}

/** Return table rows for `agents` ({"0": totals, "1": totals, "?": ..., "more": ...}) in agent order. */
export function agentRows(agents, showCost) {
  if (!agents || typeof agents !== "object") return [];
  return Object.keys(agents)
    .sort((a, b) => agentOrder(a) - agentOrder(b) || a.localeCompare(b))
    .map((key) => totalsRow(`agent-${key}`, agentLabel(key), agents[key], showCost));
}

/** Return table rows for the chat, utility and other totals, in that order. */
export function roleRows(totals, showCost) {
  const byRole = totals && typeof totals === "object" ? totals : {};
  return ROLES.map((role) => totalsRow(`role-${role.key}`, role.label, byRole[role.key], showCost));
}

function sumOver(totals, key) {
  if (!totals || typeof totals !== "object") return 0;
  return ROLES.reduce((sum, role) => sum + (countOf(totals[role.key], key) ?? 0), 0);
}

/** Return the record's source: "provider", "estimated" or "unavailable". Its reason goes into a note. */
function sourceText(last) {
  return typeof last.source === "string" && last.source ? last.source : "unknown";
}

/**
 * Return the outcome in words. "abandoned" means the caller stopped reading the stream before its end.
 * A0 1.7 and later do that for every chat reply once the tool call is complete, so with provider
 * figures it is the normal case, not an error.
 */
function outcomeText(last) {
  const outcome = typeof last.outcome === "string" && last.outcome ? last.outcome : "unknown";
  if (outcome === "abandoned") {
    return last.source === "provider" ? "A0 stopped reading early (normal)" : "A0 stopped reading early";
  }
  const words = { complete: "complete", closed_early: "closed early", cancelled: "cancelled", error: "error" };
  const text = Object.hasOwn(words, outcome) ? words[outcome] : outcome;
  return last.error ? `${text}: ${last.error}` : text;
}

function limitText(limit) {
  if (!limit || typeof limit !== "object" || !isKnownNumber(limit.tokens)) return "unknown";
  let text = formatInteger(limit.tokens);
  if (isKnownNumber(limit.configured) && limit.configured === limit.tokens) {
    text += " (configured in A0)";
  } else if (isKnownNumber(limit.model_window) && limit.model_window === limit.tokens) {
    text += " (model window from litellm)";
  }
  return text;
}

function lastCallRows(last, showCost) {
  // Estimated token counts carry the same "≈" mark as the badge.
  const mark = last.source === "estimated" ? "≈" : "";
  const tokens = (value) => (isKnownNumber(value) ? mark + formatInteger(value) : UNKNOWN);
  // Wide rows hold text and take the popover's full width; the others pair up in two columns.
  const rows = [
    { key: "model", label: "Model", wide: true, value: typeof last.model === "string" && last.model ? last.model : "unknown" },
    { key: "prompt", label: "Prompt", value: tokens(last.prompt) },
    { key: "cached", label: "Cached", value: tokens(last.cached) },
    { key: "completion", label: "Completion", value: tokens(last.completion) },
    { key: "reasoning", label: "Reasoning", value: tokens(last.reasoning) },
    { key: "total", label: "Total", value: tokens(last.total) },
    { key: "fill", label: "Context used", value: isKnownNumber(last.fill_percent) ? mark + formatPercent(last.fill_percent) : UNKNOWN },
  ];
  if (isKnownNumber(last.agent)) {
    rows.push({ key: "agent", label: "Agent", value: String(last.agent) });
  }
  if (showCost) {
    rows.push({ key: "cost", label: "Cost", value: isKnownNumber(last.cost) ? formatCost(last.cost) : "not priced" });
  }
  rows.push(
    { key: "limit", label: "Context limit", wide: true, value: limitText(last.limit) },
    { key: "source", label: "Source", wide: true, value: sourceText(last) },
    { key: "outcome", label: "Outcome", wide: true, value: outcomeText(last) },
  );
  if (Array.isArray(last.flags) && last.flags.length) {
    rows.push({ key: "flags", label: "Flags", wide: true, value: last.flags.map(String).join(", ") });
  }
  return rows.map((row) => ({ wide: false, ...row }));
}

function plural(count, noun) {
  return `${count} ${noun}${count === 1 ? "" : "s"}`;
}

/**
 * Return the notes shown under the last call's rows: why its figures are estimated or missing, and
 * what an abandoned stream means. Each note is {key, level, text, detail}. The detail is the record's
 * `reason` with a label ("Reason: ...", "Detail: ..."), or "" when there is none.
 */
function lastCallNotes(last) {
  if (!last) return [];
  const reason = typeof last.reason === "string" ? last.reason : "";
  if (last.source === "estimated") {
    return [{ key: "last-estimated", level: "info", text: "The last call's figures are estimated from the text.", detail: reasonDetail(reason) }];
  }
  if (last.source === "unavailable") {
    return [{ key: "last-unavailable", level: "warn", text: "The last call has no token figures.", detail: reasonDetail(reason) }];
  }
  if (last.outcome === "abandoned") {
    return [
      {
        key: "last-abandoned",
        level: "info",
        text: "A0 1.7 and later stop reading a reply once its tool call is complete.",
        detail: reason ? `Detail: ${reason}` : "",
      },
    ];
  }
  if (reason) {
    return [{ key: "last-source", level: "info", text: `Source detail: ${reason}`, detail: "" }];
  }
  return [];
}

function reasonDetail(reason) {
  return reason ? `Reason: ${reason}` : "";
}

function notesFor(meter, last, showCost) {
  const notes = [];
  const status = meter.status || {};
  if (status.state === "unavailable") {
    notes.push({ key: "status", level: "critical", text: status.message || "Token figures are unavailable." });
  }

  const calls = sumOver(meter.totals, "calls");
  const estimated = sumOver(meter.totals, "estimated");
  const unavailable = sumOver(meter.totals, "unavailable");
  const unpriced = sumOver(meter.totals, "unpriced");
  if (estimated > 0) {
    notes.push({
      key: "estimated",
      level: "info",
      text: `Estimated from the text because the provider sent no usage (marked ≈): ${estimated} of ${calls} calls.`,
    });
  }
  if (unavailable > 0) {
    notes.push({
      key: "unavailable",
      level: "warn",
      text: `No token figures, so the totals are too low (marked ≥): ${unavailable} of ${calls} calls.`,
    });
  }
  if (showCost && unpriced > 0) {
    notes.push({
      key: "unpriced",
      level: "info",
      text: `Not priced by litellm, so the cost is a lower bound: ${unpriced} of ${calls} calls.`,
    });
  }
  const limitWarning = last && last.limit && last.limit.warning;
  if (limitWarning) {
    notes.push({ key: "limit", level: "warn", text: `Context limit: ${limitWarning}.` });
  }
  if (meter.a0_range_warning) {
    notes.push({ key: "a0-range", level: "warn", text: String(meter.a0_range_warning) });
  }
  return notes;
}

function updatedText(updatedAt) {
  if (!isKnownNumber(updatedAt)) return "";
  return "Updated " + new Date(updatedAt * 1000).toLocaleTimeString();
}

function costSummary(meter, showCost) {
  if (!showCost) return null;
  const calls = sumOver(meter.totals, "calls");
  const unpriced = sumOver(meter.totals, "unpriced");
  if (calls === 0) return null;
  if (unpriced >= calls) return "not priced";
  const cost = ROLES.reduce((sum, role) => sum + (countOf(meter.totals?.[role.key], "cost") ?? 0), 0);
  const text = formatCost(cost);
  return unpriced > 0 ? `${text} + ${plural(unpriced, "call")} not priced` : text;
}

/**
 * Describe the selected chat for the widget, or return null when no chat is selected.
 *
 * `context` is A0's snapshot entry of the selected chat; its `token_meter` may be absent (no calls yet),
 * of another format version, or report status "unavailable". The result contains only strings, numbers,
 * booleans and arrays of plain rows, which the template binds with x-text and attribute bindings.
 */
export function describe(context) {
  if (!context || typeof context !== "object") return null;
  const meter = context.token_meter;

  if (meter === undefined || meter === null) {
    return idleDescription("no calls yet", "No model calls have been counted in this chat yet.");
  }
  if (typeof meter !== "object" || meter.version !== FORMAT_VERSION) {
    const version = meter && typeof meter === "object" ? meter.version : typeof meter;
    return unavailableDescription(meter, `The figures have an unknown format (version ${version}).`);
  }
  if (meter.status && meter.status.state === "unavailable") {
    return unavailableDescription(meter, meter.status.message || "Token figures are unavailable.");
  }
  return figuresDescription(meter);
}

function baseDescription() {
  return {
    state: "ok",
    badge: "",
    shortBadge: "",
    level: "unknown",
    quiet: false,
    estimated: false,
    badgeDescription: "",
    fillWidth: 0,
    message: "",
    hasLast: false,
    lastRows: [],
    lastNotes: [],
    roleRows: [],
    agentRows: [],
    showCost: false,
    costTotal: null,
    showSparkline: false,
    sparkline: sparkline([], null),
    notes: [],
    updated: "",
  };
}

function idleDescription(badge, message) {
  return { ...baseDescription(), state: "idle", badge, shortBadge: "–", level: "unknown", quiet: true, message };
}

function unavailableDescription(meter, message) {
  const description = {
    ...baseDescription(),
    state: "unavailable",
    badge: "unavailable",
    shortBadge: "n/a",
    level: "unknown",
    message,
    badgeDescription: message,
  };
  if (meter && typeof meter === "object" && meter.version === FORMAT_VERSION) {
    // Figures counted before the meter became unavailable are still worth showing.
    Object.assign(description, detailsFor(meter));
    description.notes = description.notes.filter((note) => note.key !== "status");
  }
  return description;
}

function figuresDescription(meter) {
  const view = meter.view && typeof meter.view === "object" ? meter.view : {};
  const last = meter.last && typeof meter.last === "object" ? meter.last : null;
  const level = LEVELS.has(view.level) ? view.level : "unknown";
  const estimated = Boolean(view.estimated);
  const reason = last && last.reason ? last.reason : "no reason given";
  const badge = typeof view.badge === "string" && view.badge ? view.badge : fallbackBadge(last);
  const percent = last ? last.fill_percent : null;

  return {
    ...baseDescription(),
    ...detailsFor(meter),
    state: last ? "ok" : "idle",
    badge,
    shortBadge: shortBadge(last, percent),
    level: last ? level : "unknown",
    quiet: !last,
    estimated,
    badgeDescription: estimated ? `The last call's figures are estimated. Reason: ${reason}.` : "",
    fillWidth: fillWidth(percent),
  };
}

/** Return the badge text for narrow windows: the fill percentage, "?" when it is unknown, "–" before any call. */
function shortBadge(last, percent) {
  if (isKnownNumber(percent)) return `${Math.round(percent)}%`;
  if (last) return UNKNOWN;
  return "–";
}

function fallbackBadge(last) {
  if (!last) return "no calls yet";
  const limit = last.limit && typeof last.limit === "object" ? last.limit.tokens : null;
  let text = `${formatCompact(last.prompt)} / ${formatCompact(limit)}`;
  if (isKnownNumber(last.fill_percent)) text += ` · ${Math.round(last.fill_percent)}%`;
  return text;
}

function detailsFor(meter) {
  const view = meter.view && typeof meter.view === "object" ? meter.view : {};
  const last = meter.last && typeof meter.last === "object" ? meter.last : null;
  const showCost = Boolean(view.show_cost);
  const limit = last && last.limit && typeof last.limit === "object" ? last.limit.tokens : null;
  const history = sparkline(view.show_sparkline !== false ? meter.history : [], limit);
  return {
    hasLast: Boolean(last),
    lastRows: last ? lastCallRows(last, showCost) : [],
    lastNotes: lastCallNotes(last),
    roleRows: roleRows(meter.totals, showCost),
    agentRows: agentRows(meter.agents, showCost),
    showCost,
    costTotal: costSummary(meter, showCost),
    // One point draws no line, so the chart starts with the second chat call.
    showSparkline: history.count >= 2,
    sparkline: history,
    notes: notesFor(meter, last, showCost),
    updated: updatedText(meter.updated_at),
  };
}

export const store = createStore("tokenMeter", {
  describe,
  formatCompact,
  formatInteger,
  formatCost,
  formatPercent,
  fillWidth,
  sparkline,
});
