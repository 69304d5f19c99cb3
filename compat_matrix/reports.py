"""Result model and report writers of the compatibility suite.

A stage of the suite (for example the litellm axis) returns a StageResult: a matrix with one
row per environment and one column per test group. This module parses pytest's JUnit XML into
that model and renders it as a console table, Markdown, JSON and a merged JUnit XML file.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

OUTCOMES = ("passed", "failed", "error", "skipped")

# Characters that XML 1.0 does not allow, such as ANSI escape codes in installer output.
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f]")

# Maximum length of a failure message in the console and Markdown failure lists. The JUnit
# report keeps the full text.
MESSAGE_PREVIEW_CHARS = 200


@dataclass
class TestCaseResult:
    """One test case as pytest reported it in JUnit XML."""

    __test__ = False  # not a pytest test class, despite the name

    group: str
    classname: str
    name: str
    outcome: str  # one of OUTCOMES
    time_s: float = 0.0
    file: str = ""
    message: str = ""
    details: str = ""

    @property
    def test_id(self) -> str:
        """Readable test id, such as ``tests.shim.test_stream_proxy::test_close``."""
        prefix = self.classname or self.file or self.group
        return f"{prefix}::{self.name}"


@dataclass
class GroupCounts:
    """Test case counts of one test group (or of a whole row)."""

    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0

    @property
    def total(self) -> int:
        return self.passed + self.failed + self.errors + self.skipped

    @property
    def ok(self) -> bool:
        """True when no test failed or raised an error. Skipped tests do not count against it."""
        return self.failed == 0 and self.errors == 0

    def add(self, outcome: str) -> None:
        if outcome == "passed":
            self.passed += 1
        elif outcome == "failed":
            self.failed += 1
        elif outcome == "error":
            self.errors += 1
        elif outcome == "skipped":
            self.skipped += 1
        else:
            raise ValueError(f"unknown test outcome {outcome!r}, expected one of {OUTCOMES}")

    def to_dict(self) -> dict[str, int]:
        return {
            "passed": self.passed,
            "failed": self.failed,
            "errors": self.errors,
            "skipped": self.skipped,
            "total": self.total,
        }


@dataclass
class MatrixRow:
    """Results of one environment: its test cases, or the reason it could not run.

    ``params`` describe the environment as requested (versions, installer) and ``packages``
    the versions installed in it. ``error`` is set when the environment could not be built or
    the test run itself failed (timeout, crash, no JUnit report). A row with an error fails
    even if its tests passed.
    """

    label: str
    key: str
    params: dict[str, str] = field(default_factory=dict)
    packages: dict[str, str] = field(default_factory=dict)
    testcases: list[TestCaseResult] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    log_path: str | None = None

    @property
    def groups(self) -> dict[str, GroupCounts]:
        counts: dict[str, GroupCounts] = {}
        for case in self.testcases:
            counts.setdefault(case.group, GroupCounts()).add(case.outcome)
        return counts

    @property
    def totals(self) -> GroupCounts:
        counts = GroupCounts()
        for case in self.testcases:
            counts.add(case.outcome)
        return counts

    @property
    def ok(self) -> bool:
        return self.error is None and self.totals.ok

    @property
    def failing_cases(self) -> list[TestCaseResult]:
        return [case for case in self.testcases if case.outcome in ("failed", "error")]


@dataclass
class StageResult:
    """Matrix of one stage: rows are environments, columns are test groups.

    ``name`` is the file stem of the stage's reports (``litellm_axis``), ``title`` its
    heading (``litellm axis``). ``notes`` are facts shown under the table, such as how the
    newest litellm release was resolved.
    """

    name: str
    title: str
    rows: list[MatrixRow] = field(default_factory=list)
    started_at: str = ""
    duration_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    tests_path: str = ""

    @property
    def columns(self) -> list[str]:
        return sorted({case.group for row in self.rows for case in row.testcases})

    @property
    def ok(self) -> bool:
        return bool(self.rows) and all(row.ok for row in self.rows)

    @property
    def failed_rows(self) -> list[MatrixRow]:
        return [row for row in self.rows if not row.ok]


# --- JUnit XML input ---------------------------------------------------------------------


def group_of(file: str, classname: str) -> str:
    """Return the test group of a test case: the file name of its test module without ``.py``.

    pytest writes the ``file`` attribute with ``-o junit_family=xunit1``. Without it, the
    group is taken from the dotted ``classname`` (``tests.shim.test_x.TestY`` gives
    ``test_x``): the last part that starts with ``test_`` or ends with ``_test``.
    """
    if file:
        return PurePosixPath(file.replace("\\", "/")).stem
    parts = [part for part in classname.split(".") if part]
    for part in reversed(parts):
        if part.startswith("test_") or part.endswith("_test"):
            return part
    return parts[-1] if parts else "unknown"


def _outcome_of(testcase: ET.Element) -> tuple[str, ET.Element | None]:
    for tag, outcome in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
        child = testcase.find(tag)
        if child is not None:
            return outcome, child
    return "passed", None


def parse_junit(path: Path) -> list[TestCaseResult]:
    """Read the test cases of a pytest JUnit XML file.

    Accepts a ``<testsuites>`` or a single ``<testsuite>`` root. A test that passes but
    fails in teardown is one test case with an ``<error>`` and counts as an error, as pytest
    writes it. pytest writes xfail as skipped and xpass as passed.
    Raises ``ET.ParseError`` for a malformed file and ``OSError`` when it cannot be read.
    """
    root = ET.parse(path).getroot()
    results: list[TestCaseResult] = []
    for testcase in root.iter("testcase"):
        outcome, child = _outcome_of(testcase)
        file = testcase.get("file", "")
        classname = testcase.get("classname", "")
        try:
            time_s = float(testcase.get("time", "0") or 0)
        except ValueError:
            time_s = 0.0
        results.append(
            TestCaseResult(
                group=group_of(file, classname),
                classname=classname,
                name=testcase.get("name", ""),
                outcome=outcome,
                time_s=time_s,
                file=file,
                message=(child.get("message", "") if child is not None else ""),
                details=((child.text or "") if child is not None else ""),
            )
        )
    return results


# --- cell and summary text ---------------------------------------------------------------


def format_cell(counts: GroupCounts | None) -> str:
    """Return the matrix cell text: ``passed/total``, prefixed with ``FAIL`` when a test failed.

    Skipped tests count in the total and are named in brackets: ``10/12 (2 skipped)``.
    A group that did not run in this environment is ``-``.
    """
    if counts is None:
        return "-"
    text = f"{counts.passed}/{counts.total}"
    if counts.skipped:
        text += f" ({counts.skipped} skipped)"
    if not counts.ok:
        text = "FAIL " + text
    return text


def format_total_cell(row: MatrixRow) -> str:
    if row.error is not None and not row.testcases:
        return "FAIL (no tests ran)"
    text = format_cell(row.totals)
    if row.error is not None and row.totals.ok:
        text = "FAIL " + text
    return text


def format_counts(counts: GroupCounts) -> str:
    """Return ``143 passed, 0 failed``, adding errors and skipped only when there are any."""
    parts = [f"{counts.passed} passed", f"{counts.failed} failed"]
    if counts.errors:
        parts.append(f"{counts.errors} errors")
    if counts.skipped:
        parts.append(f"{counts.skipped} skipped")
    return ", ".join(parts)


def plural(count: int, noun: str) -> str:
    """Return ``1 environment`` or ``2 environments``."""
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _preview(text: str) -> str:
    """Return the first non-empty line of a failure message, cut to MESSAGE_PREVIEW_CHARS."""
    line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(line) > MESSAGE_PREVIEW_CHARS:
        line = line[: MESSAGE_PREVIEW_CHARS - 3] + "..."
    return line


CELL_LEGEND = (
    "Cells: passed/total test cases per test module; FAIL marks a module with failed or erroring "
    "tests; '-' means the module did not run in that environment."
)


# --- console -----------------------------------------------------------------------------


def _matrix_lines(stage: StageResult) -> tuple[list[str], list[list[str]]]:
    header = ["environment", "total", *stage.columns]
    body = []
    for row in stage.rows:
        groups = row.groups
        body.append([row.label, format_total_cell(row), *(format_cell(groups.get(c)) for c in stage.columns)])
    return header, body


def render_table(stage: StageResult) -> str:
    """Render the stage's matrix as a plain-text table with aligned columns."""
    header, body = _matrix_lines(stage)
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def format_line(cells: list[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    lines = [format_line(header), format_line(["-" * width for width in widths])]
    lines.extend(format_line(cells) for cells in body)
    return "\n".join(lines)


def render_failures(stage: StageResult, max_cases: int = 20) -> list[str]:
    """Return console lines naming each failed row and up to ``max_cases`` failing tests."""
    lines: list[str] = []
    failing_count = 0
    for row in stage.failed_rows:
        if row.error:
            lines.append(f"{row.label}: {row.error}")
        for case in row.failing_cases:
            if failing_count < max_cases:
                lines.append(f"{row.label}: {case.outcome.upper()} {case.test_id}: {_preview(case.message)}")
            failing_count += 1
    if failing_count > max_cases:
        lines.append(f"... and {failing_count - max_cases} more failing tests (see the Markdown report)")
    return lines


# --- Markdown ----------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(header: list[str], body: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(_md_escape(cell) for cell in header) + " |"]
    lines.append("|" + "|".join("---" for _ in header) + "|")
    lines.extend("| " + " | ".join(_md_escape(cell) for cell in cells) + " |" for cells in body)
    return lines


def render_markdown(stage: StageResult) -> str:
    """Render the stage as a Markdown report: summary, matrix, environments and failures."""
    failed = len(stage.failed_rows)
    lines = [f"# Compatibility suite: {stage.title}", ""]
    lines.append(
        f"Started {stage.started_at}, took {stage.duration_s:.1f} s. "
        f"{plural(len(stage.rows), 'environment')}, {len(stage.rows) - failed} passed, {failed} failed. "
        f"Tests: `{stage.tests_path}`."
    )
    lines.append("")
    lines.extend(f"- {note}" for note in stage.notes)
    if stage.notes:
        lines.append("")

    header, body = _matrix_lines(stage)
    lines.extend(_md_table(header, body))
    lines += ["", CELL_LEGEND, "", "## Environments", ""]

    param_names = list(dict.fromkeys(name for row in stage.rows for name in row.params))
    env_body = []
    for row in stage.rows:
        result = "passed" if row.ok else "failed"
        packages = ", ".join(f"{name} {version}" for name, version in row.packages.items())
        env_body.append(
            [
                row.label,
                result,
                *(row.params.get(name, "") for name in param_names),
                packages,
                f"{row.duration_s:.1f}",
                f"`{row.log_path}`" if row.log_path else "",
            ]
        )
    header = ["environment", "result", *param_names, "installed packages", "time (s)", "log"]
    lines.extend(_md_table(header, env_body))

    if stage.failed_rows:
        lines += ["", "## Failures", ""]
        for row in stage.failed_rows:
            lines.append(f"### {row.label}")
            lines.append("")
            if row.error:
                lines.append(f"- Environment: {_md_escape(row.error)}")
            for case in row.failing_cases:
                lines.append(f"- `{case.test_id}` ({case.outcome}): {_md_escape(_preview(case.message))}")
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


# --- JSON --------------------------------------------------------------------------------


def stage_to_dict(stage: StageResult) -> dict:
    """Return the stage as JSON-ready data. Cells are keyed by test group name."""
    rows = []
    for row in stage.rows:
        rows.append(
            {
                "label": row.label,
                "key": row.key,
                "ok": row.ok,
                "error": row.error,
                "params": row.params,
                "packages": row.packages,
                "duration_s": round(row.duration_s, 3),
                "log": row.log_path,
                "totals": row.totals.to_dict(),
                "cells": {group: counts.to_dict() for group, counts in sorted(row.groups.items())},
                "failing_tests": [
                    {"id": case.test_id, "outcome": case.outcome, "message": case.message} for case in row.failing_cases
                ],
            }
        )
    return {
        "stage": stage.name,
        "title": stage.title,
        "ok": stage.ok,
        "started_at": stage.started_at,
        "duration_s": round(stage.duration_s, 3),
        "tests_path": stage.tests_path,
        "notes": stage.notes,
        "columns": stage.columns,
        "rows": rows,
    }


# --- merged JUnit XML --------------------------------------------------------------------


def _testsuite_element(row: MatrixRow, timestamp: str) -> ET.Element:
    totals = row.totals
    errors = totals.errors + (1 if row.error else 0)
    suite = ET.Element(
        "testsuite",
        {
            "name": row.label,
            "tests": str(totals.total + (1 if row.error else 0)),
            "failures": str(totals.failed),
            "errors": str(errors),
            "skipped": str(totals.skipped),
            "time": f"{row.duration_s:.3f}",
            "timestamp": timestamp,
        },
    )
    properties = ET.SubElement(suite, "properties")
    ET.SubElement(properties, "property", {"name": "key", "value": row.key})
    for name, value in row.params.items():
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for name, version in row.packages.items():
        ET.SubElement(properties, "property", {"name": f"installed {name}", "value": version})

    for case in row.testcases:
        attributes = {"classname": case.classname, "name": case.name, "time": f"{case.time_s:.3f}"}
        if case.file:
            attributes["file"] = case.file
        element = ET.SubElement(suite, "testcase", attributes)
        if case.outcome != "passed":
            tag = {"failed": "failure", "error": "error", "skipped": "skipped"}[case.outcome]
            child = ET.SubElement(element, tag, {"message": case.message})
            child.text = case.details or None

    if row.error:
        # The environment's own failure (build, timeout, crash) as a test case, so that JUnit
        # consumers show it next to the test failures.
        element = ET.SubElement(suite, "testcase", {"classname": "compat_matrix", "name": "environment", "time": "0"})
        ET.SubElement(element, "error", {"message": _XML_ILLEGAL.sub("", row.error)})
    return suite


def build_junit(stage: StageResult) -> ET.ElementTree:
    """Build a JUnit XML tree with one ``<testsuite>`` per environment of the stage."""
    root = ET.Element("testsuites", {"name": f"compatibility suite: {stage.title}"})
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for row in stage.rows:
        suite = _testsuite_element(row, stage.started_at)
        root.append(suite)
        for name in totals:
            totals[name] += int(suite.get(name, "0"))
    for name, value in totals.items():
        root.set(name, str(value))
    root.set("time", f"{stage.duration_s:.3f}")
    tree = ET.ElementTree(root)
    ET.indent(tree)
    return tree


# --- files -------------------------------------------------------------------------------


def write_reports(stage: StageResult, reports_dir: Path) -> list[Path]:
    """Write ``<name>.md``, ``<name>.json`` and ``<name>.junit.xml`` and return their paths.

    Creates ``reports_dir`` when missing and overwrites earlier reports of the same stage.
    """
    reports_dir.mkdir(parents=True, exist_ok=True)
    markdown_path = reports_dir / f"{stage.name}.md"
    json_path = reports_dir / f"{stage.name}.json"
    junit_path = reports_dir / f"{stage.name}.junit.xml"

    markdown_path.write_text(render_markdown(stage), encoding="utf-8")
    json_path.write_text(json.dumps(stage_to_dict(stage), indent=2) + "\n", encoding="utf-8")
    build_junit(stage).write(junit_path, encoding="utf-8", xml_declaration=True)
    return [markdown_path, json_path, junit_path]
