"""Result model and reports of the A0 axis: one row per A0 release.

A row holds the release's contract verdict (from its probe facts), the drift from the release
before it, and the live end-to-end check's outcome. The stage renders a console table, Markdown,
JSON and JUnit XML, like the litellm axis.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .reports import _XML_ILLEGAL, _md_table, plural

LIVE_PASSED = "passed"
LIVE_FAILED = "failed"
LIVE_NOT_RUN = "not run"

UNSUPPORTED = "unsupported"


@dataclass
class LiveOutcome:
    """Outcome of one release's live check. ``detail`` gives the reason it did not run, or what failed."""

    status: str = LIVE_NOT_RUN
    backend: str | None = None
    detail: str = ""
    passed: int = 0
    total: int = 0
    duration_s: float = 0.0
    log_dir: str | None = None
    failures: list[str] = field(default_factory=list)
    log_excerpt: str | None = None
    summary: list[str] = field(default_factory=list)

    def cell(self) -> str:
        if self.status == LIVE_NOT_RUN:
            return LIVE_NOT_RUN
        return f"{self.status} {self.passed}/{self.total} ({self.backend})"


@dataclass
class MissingItem:
    """A requirement of the plugin that a release does not meet."""

    id: str
    feature: str
    severity: str
    reason: str


@dataclass
class ReleaseRow:
    """One A0 release: contract verdict, drift from the release before, live check."""

    tag: str
    image: str
    litellm_pin: str
    expect: str | None
    verdict: str | None = None
    facts_from: str = ""
    missing: list[MissingItem] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)
    drift: list[str] = field(default_factory=list)
    drift_from: str | None = None
    live: LiveOutcome = field(default_factory=LiveOutcome)
    error: str | None = None

    @property
    def expect_ok(self) -> bool:
        """True when the row states no expected verdict, matches it, or has no verdict (``error`` gives the reason)."""
        return self.expect is None or self.verdict is None or self.expect == self.verdict

    @property
    def ok(self) -> bool:
        """False when the contract could not be checked, the verdict is not the expected one, or a
        release the contract supports failed its live check."""
        live_failed = self.verdict != UNSUPPORTED and self.live.status == LIVE_FAILED
        return self.error is None and self.expect_ok and not live_failed

    def failure_reasons(self) -> list[str]:
        reasons = []
        if self.error:
            reasons.append(self.error)
        if not self.expect_ok:
            reasons.append(f"verdict {self.verdict}, but matrix.toml expects {self.expect}")
        if self.verdict != UNSUPPORTED and self.live.status == LIVE_FAILED:
            reasons.append(f"live check failed: {self.live.detail}")
        return reasons

    def verdict_cell(self) -> str:
        if self.error:
            return "error"
        if self.verdict == "degraded":
            features = sorted({item.feature for item in self.missing})
            return "degraded: " + ", ".join(features)
        return self.verdict


@dataclass
class A0StageResult:
    """The A0 axis: rows in release order, notes and what the stage skipped."""

    name: str
    title: str
    rows: list[ReleaseRow] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def failed_rows(self) -> list[ReleaseRow]:
        return [row for row in self.rows if not row.ok]

    def counts(self) -> tuple[int, int, int]:
        """Passed, failed and skipped checks: one contract check per row, one live check per row."""
        passed = failed = skipped = 0
        for row in self.rows:
            if row.error is None and row.expect_ok:
                passed += 1
            else:
                failed += 1
            if row.live.status == LIVE_PASSED:
                passed += 1
            elif row.live.status == LIVE_FAILED:
                failed += 1
            else:
                skipped += 1
        return passed, failed, skipped


# --- console -----------------------------------------------------------------------------


def _matrix(result: A0StageResult) -> tuple[list[str], list[list[str]]]:
    header = ["release", "result", "verdict", "expected", "live check", "litellm pin"]
    body = [
        [
            row.tag,
            "ok" if row.ok else "FAIL",
            row.verdict_cell(),
            row.expect or "",
            row.live.cell(),
            row.litellm_pin,
        ]
        for row in result.rows
    ]
    return header, body


def render_table(result: A0StageResult) -> str:
    """Render the releases as a plain-text table with aligned columns."""
    header, body = _matrix(result)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return "\n".join([line(header), line(["-" * width for width in widths]), *(line(cells) for cells in body)])


def console_lines(result: A0StageResult) -> list[str]:
    """Return the table, the reasons behind each verdict other than supported, drift and failures."""
    lines = [render_table(result)]
    verdicts = _verdict_lines(result)
    if verdicts:
        lines += ["", "Verdicts:", *verdicts]
    drift = [f"{row.drift_from} -> {row.tag}: {item}" for row in result.rows for item in row.drift]
    if drift:
        lines += ["", "Drift between consecutive releases:", *(f"  {item}" for item in drift)]
    not_run = [f"  {row.tag}: {row.live.detail}" for row in result.rows if row.live.status == LIVE_NOT_RUN]
    if not_run:
        lines += ["", "Live checks not run:", *not_run]
    failures = [f"  {row.tag}: {reason}" for row in result.failed_rows for reason in row.failure_reasons()]
    if failures:
        lines += ["", "Failures:", *failures]
    return lines


def _verdict_lines(result: A0StageResult) -> list[str]:
    """Return one line per missing item, only the required ones for an unsupported release.

    The Markdown report lists every item.
    """
    lines = []
    for row in result.rows:
        shown = [item for item in row.missing if row.verdict != UNSUPPORTED or item.severity == "required"]
        for item in shown:
            lines.append(f"  {row.tag} ({row.verdict}): {item.feature}: {item.reason}")
        hidden = len(row.missing) - len(shown)
        if hidden:
            lines.append(f"  {row.tag}: {plural(hidden, 'optional item')} more in the Markdown report")
    return lines


# --- Markdown ----------------------------------------------------------------------------


def render_markdown(result: A0StageResult) -> str:
    """Render the stage as Markdown: summary, matrix, verdict reasons, drift, live checks."""
    failed = len(result.failed_rows)
    lines = [f"# Compatibility suite: {result.title}", ""]
    lines.append(
        f"Started {result.started_at}, took {result.duration_s:.1f} s. "
        f"{plural(len(result.rows), 'release')}, {len(result.rows) - failed} ok, {failed} failed."
    )
    lines.append("")
    lines.extend(f"- {note}" for note in result.notes)
    if result.notes:
        lines.append("")

    header, body = _matrix(result)
    lines.extend(_md_table(header, body))

    lines += ["", "## Verdicts", ""]
    for row in result.rows:
        source = f" (facts: {row.facts_from})" if row.facts_from else ""
        if row.error:
            lines.append(f"- **{row.tag}**: contract not checked: {row.error}")
        elif not row.missing:
            lines.append(f"- **{row.tag}**: {row.verdict}; every probed requirement met{source}.")
        else:
            lines.append(f"- **{row.tag}**: {row.verdict}{source}:")
            for item in row.missing:
                lines.append(f"  - {item.feature} (`{item.id}`, {item.severity}): {item.reason}")
        if row.unchecked:
            names = ", ".join(f"`{name}`" for name in row.unchecked)
            lines.append(f"  - not probed in these facts (checked only inside the release's environment): {names}")

    lines += ["", "## Drift", ""]
    drift_rows = [row for row in result.rows if row.drift_from]
    if not any(row.drift for row in drift_rows):
        lines.append("No contract item changed between consecutive releases.")
    for row in drift_rows:
        if row.drift:
            lines.append(f"### {row.drift_from} → {row.tag}")
            lines.append("")
            lines.extend(f"- {item}" for item in row.drift)
            lines.append("")

    lines += ["", "## Live checks", ""]
    for row in result.rows:
        live = row.live
        if live.status == LIVE_NOT_RUN:
            lines.append(f"- **{row.tag}**: not run: {live.detail}")
            continue
        lines.append(
            f"- **{row.tag}**: {live.status}, {live.passed}/{live.total} assertions, {live.backend} backend, "
            f"{live.duration_s:.0f} s" + (f", logs `{live.log_dir}`" if live.log_dir else "")
        )
        if live.detail and live.status == LIVE_FAILED:
            lines.append(f"  - {live.detail}")
        lines.extend(f"  - failed: {failure}" for failure in live.failures)
        if live.log_excerpt and live.status == LIVE_FAILED:
            lines += [
                "",
                "  A0 log excerpt:",
                "",
                "  ```",
                *("  " + text for text in live.log_excerpt.splitlines()),
                "  ```",
            ]
    return "\n".join(lines).rstrip() + "\n"


# --- JSON and JUnit ----------------------------------------------------------------------


def to_dict(result: A0StageResult) -> dict[str, Any]:
    """Return the stage as JSON-ready data."""
    rows = []
    for row in result.rows:
        data = asdict(row)
        data["ok"] = row.ok
        data["failure_reasons"] = row.failure_reasons()
        rows.append(data)
    return {
        "stage": result.name,
        "title": result.title,
        "ok": result.ok,
        "started_at": result.started_at,
        "duration_s": round(result.duration_s, 3),
        "notes": result.notes,
        "rows": rows,
    }


def _clean(text: str) -> str:
    return _XML_ILLEGAL.sub("", text)


def build_junit(result: A0StageResult) -> ET.ElementTree:
    """Build a JUnit XML tree: one ``<testsuite>`` per release, with a contract and a live check test case."""
    root = ET.Element("testsuites", {"name": f"compatibility suite: {result.title}"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for row in result.rows:
        suite = ET.SubElement(root, "testsuite", {"name": f"A0 {row.tag}", "timestamp": result.started_at})
        properties = ET.SubElement(suite, "properties")
        for name, value in (("image", row.image), ("litellm pin", row.litellm_pin), ("verdict", row.verdict or "")):
            ET.SubElement(properties, "property", {"name": name, "value": value})

        counts = {"tests": 2, "failures": 0, "errors": 0, "skipped": 0}
        contract = ET.SubElement(suite, "testcase", {"classname": f"a0.{row.tag}", "name": "contract", "time": "0"})
        if row.error:
            ET.SubElement(contract, "error", {"message": _clean(row.error)})
            counts["errors"] += 1
        elif not row.expect_ok:
            ET.SubElement(contract, "failure", {"message": f"verdict {row.verdict}, expected {row.expect}"})
            counts["failures"] += 1

        live = ET.SubElement(
            suite,
            "testcase",
            {"classname": f"a0.{row.tag}", "name": "live check", "time": f"{row.live.duration_s:.3f}"},
        )
        if row.live.status == LIVE_NOT_RUN:
            ET.SubElement(live, "skipped", {"message": _clean(row.live.detail)})
            counts["skipped"] += 1
        elif row.live.status == LIVE_FAILED:
            failure = ET.SubElement(live, "failure", {"message": _clean(row.live.detail)})
            failure.text = _clean("\n".join(row.live.summary)) or None
            counts["failures"] += 1

        for name, value in counts.items():
            suite.set(name, str(value))
            totals[name] += value
    for name, value in totals.items():
        root.set(name, str(value))
    root.set("time", f"{result.duration_s:.3f}")
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


def write_reports(result: A0StageResult, reports_dir: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.json`` and ``<name>.junit.xml``; return their paths."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = reports_dir / f"{result.name}.md"
    json_path = reports_dir / f"{result.name}.json"
    junit_path = reports_dir / f"{result.name}.junit.xml"
    markdown_path.write_text(render_markdown(result), encoding="utf-8")
    json_path.write_text(json.dumps(to_dict(result), indent=2, default=str) + "\n", encoding="utf-8")
    build_junit(result).write(junit_path, encoding="utf-8", xml_declaration=True)
    return [markdown_path, json_path, junit_path]
