"""Tests of the compatibility suite's JUnit parsing and report writers."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compat_matrix import reports
from compat_matrix.reports import GroupCounts, MatrixRow, StageResult, TestCaseResult

SAMPLE_TESTS = {
    "test_alpha.py": """
        import pytest

        def test_ok():
            pass

        def test_fail():
            assert 1 == 2, "numbers differ"

        @pytest.mark.skip(reason="not today")
        def test_skip():
            pass

        @pytest.mark.xfail
        def test_expected_failure():
            assert False

        class TestGroup:
            def test_method(self):
                pass

        @pytest.fixture
        def broken_teardown():
            yield
            raise RuntimeError("teardown broke")

        def test_teardown_error(broken_teardown):
            pass
    """,
    "test_beta.py": """
        def test_one():
            pass
    """,
    "test_broken_import.py": """
        import module_that_does_not_exist
    """,
}


@pytest.fixture(scope="module")
def pytest_junit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run real pytest on SAMPLE_TESTS the way the litellm axis does and return its JUnit file."""
    folder = tmp_path_factory.mktemp("sample_tests")
    for name, source in SAMPLE_TESTS.items():
        (folder / name).write_text(textwrap.dedent(source), encoding="utf-8")
    junit = folder / "junit.xml"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            str(folder),
            "-p",
            "no:cacheprovider",
            f"--junitxml={junit}",
            "-o",
            "junit_family=xunit1",
            "--continue-on-collection-errors",
            "--rootdir",
            str(folder),
            "-q",
        ],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 1, completed.stdout + completed.stderr
    return junit


def _case(group: str, outcome: str, name: str = "test_x", message: str = "") -> TestCaseResult:
    return TestCaseResult(group=group, classname=f"tests.shim.{group}", name=name, outcome=outcome, message=message)


def _stage() -> StageResult:
    good = MatrixRow(
        label="litellm 1.79.3 + wrapt 2.x",
        key="py3.11-litellm-1.79.3-wrapt-2.x",
        params={"litellm": "1.79.3", "wrapt": ">=2,<3"},
        packages={"litellm": "1.79.3", "wrapt": "2.5.2"},
        testcases=[
            _case("test_a", "passed", "test_1"),
            _case("test_a", "passed", "test_2"),
            _case("test_b", "skipped", "test_3"),
        ],
        duration_s=3.25,
        log_path="reports/litellm_axis/good.log",
    )
    failing = MatrixRow(
        label="litellm 1.79.3 + wrapt 1.17.x",
        key="py3.11-litellm-1.79.3-wrapt-1.17.x",
        params={"litellm": "1.79.3", "wrapt": ">=1.17,<1.18"},
        testcases=[
            _case("test_a", "passed", "test_1"),
            _case("test_a", "failed", "test_2", message="AssertionError: a | b\nmore detail"),
        ],
    )
    broken = MatrixRow(
        label="litellm 9.9.9 + wrapt 2.x",
        key="py3.11-litellm-9.9.9-wrapt-2.x",
        error="environment not built: 'uv pip install' failed with exit code 1: \x1b[31mno version\x1b[0m",
    )
    return StageResult(
        name="litellm_axis",
        title="litellm axis",
        rows=[good, failing, broken],
        started_at="2025-01-01T00:00:00Z",
        duration_s=12.5,
        notes=["Newest litellm release: 1.110.2."],
        tests_path="tests/shim",
    )


# --- JUnit parsing -----------------------------------------------------------------------


def test_parse_junit_groups_by_module(pytest_junit: Path) -> None:
    cases = reports.parse_junit(pytest_junit)
    groups = {case.group for case in cases}
    assert groups == {"test_alpha", "test_beta", "test_broken_import"}


def test_parse_junit_outcomes(pytest_junit: Path) -> None:
    outcomes = {case.name: case.outcome for case in reports.parse_junit(pytest_junit)}
    assert outcomes["test_ok"] == "passed"
    assert outcomes["test_fail"] == "failed"
    assert outcomes["test_skip"] == "skipped"
    assert outcomes["test_expected_failure"] == "skipped"  # pytest writes xfail as skipped
    assert outcomes["test_method"] == "passed"
    assert outcomes["test_teardown_error"] == "error"
    assert outcomes["test_one"] == "passed"


def test_parse_junit_collection_error(pytest_junit: Path) -> None:
    cases = [case for case in reports.parse_junit(pytest_junit) if case.group == "test_broken_import"]
    assert len(cases) == 1
    assert cases[0].outcome == "error"
    assert "module_that_does_not_exist" in cases[0].details


def test_parse_junit_keeps_failure_message(pytest_junit: Path) -> None:
    failed = next(case for case in reports.parse_junit(pytest_junit) if case.name == "test_fail")
    assert "numbers differ" in failed.message
    assert "assert 1 == 2" in failed.details
    assert failed.file.endswith("test_alpha.py")


def test_row_counts_from_pytest_run(pytest_junit: Path) -> None:
    row = MatrixRow(label="env", key="env", testcases=reports.parse_junit(pytest_junit))
    alpha = row.groups["test_alpha"]
    assert (alpha.passed, alpha.failed, alpha.errors, alpha.skipped) == (2, 1, 1, 2)
    assert row.groups["test_beta"].to_dict() == {"passed": 1, "failed": 0, "errors": 0, "skipped": 0, "total": 1}
    assert row.totals.total == 8
    assert not row.ok


def test_parse_junit_single_testsuite_root(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text(
        '<testsuite name="pytest" tests="2">'
        '<testcase classname="tests.shim.test_stream_proxy.TestClose" name="test_aclose" time="0.5"/>'
        '<testcase classname="tests.shim.test_records" name="test_zero" time="bad">'
        '<failure message="boom">trace</failure></testcase>'
        "</testsuite>",
        encoding="utf-8",
    )
    cases = reports.parse_junit(junit)
    assert [case.group for case in cases] == ["test_stream_proxy", "test_records"]
    assert cases[0].time_s == 0.5
    assert cases[1].time_s == 0.0
    assert cases[1].outcome == "failed"
    assert cases[1].details == "trace"


def test_parse_junit_malformed_raises(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    junit.write_text("<testsuites><testsuite>", encoding="utf-8")
    with pytest.raises(ET.ParseError):
        reports.parse_junit(junit)


@pytest.mark.parametrize(
    ("file", "classname", "group"),
    [
        ("tests/shim/test_stream_proxy.py", "tests.shim.test_stream_proxy", "test_stream_proxy"),
        ("", "tests.shim.test_stream_proxy.TestAclose", "test_stream_proxy"),
        ("", "tests.shim.records_test", "records_test"),
        ("", "helpers", "helpers"),
        ("", "", "unknown"),
        ("tests\\shim\\test_windows.py", "", "test_windows"),
    ],
)
def test_group_of(file: str, classname: str, group: str) -> None:
    assert reports.group_of(file, classname) == group


# --- cells and console -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "text"),
    [
        (GroupCounts(passed=12), "12/12"),
        (GroupCounts(passed=10, skipped=2), "10/12 (2 skipped)"),
        (GroupCounts(passed=3, failed=9), "FAIL 3/12"),
        (GroupCounts(passed=3, errors=1), "FAIL 3/4"),
        (GroupCounts(passed=1, failed=1, skipped=1), "FAIL 1/3 (1 skipped)"),
        (None, "-"),
    ],
)
def test_format_cell(counts: GroupCounts | None, text: str) -> None:
    assert reports.format_cell(counts) == text


def test_group_counts_rejects_unknown_outcome() -> None:
    with pytest.raises(ValueError, match="unknown test outcome"):
        GroupCounts().add("xpassed")


def test_format_total_cell_for_errors() -> None:
    stage = _stage()
    assert reports.format_total_cell(stage.rows[2]) == "FAIL (no tests ran)"
    timed_out = MatrixRow(label="x", key="x", testcases=[_case("test_a", "passed")], error="tests timed out")
    assert reports.format_total_cell(timed_out) == "FAIL 1/1"


def test_format_counts() -> None:
    assert reports.format_counts(GroupCounts(passed=143)) == "143 passed, 0 failed"
    assert reports.format_counts(GroupCounts(passed=1, failed=2, errors=3, skipped=4)) == (
        "1 passed, 2 failed, 3 errors, 4 skipped"
    )


def test_stage_columns_and_status() -> None:
    stage = _stage()
    assert stage.columns == ["test_a", "test_b"]
    assert [row.ok for row in stage.rows] == [True, False, False]
    assert not stage.ok
    assert not StageResult(name="empty", title="empty").ok


def test_render_table_aligns_cells() -> None:
    lines = reports.render_table(_stage()).splitlines()
    assert lines[0].split() == ["environment", "total", "test_a", "test_b"]
    assert lines[2].startswith("litellm 1.79.3 + wrapt 2.x ")
    assert "FAIL 1/2" in lines[3]
    assert "FAIL (no tests ran)" in lines[4]
    column = lines[0].index("test_a")
    assert lines[2][column:].startswith("2/2")
    assert lines[4][column:].startswith("-")


def test_render_failures_lists_rows_and_tests() -> None:
    lines = reports.render_failures(_stage())
    assert lines[0] == "litellm 1.79.3 + wrapt 1.17.x: FAILED tests.shim.test_a::test_2: AssertionError: a | b"
    assert lines[1].startswith("litellm 9.9.9 + wrapt 2.x: environment not built")


def test_render_failures_caps_test_count() -> None:
    row = MatrixRow(label="env", key="env", testcases=[_case("test_a", "failed", f"test_{i}") for i in range(5)])
    lines = reports.render_failures(StageResult(name="s", title="s", rows=[row]), max_cases=2)
    assert len(lines) == 3
    assert lines[-1] == "... and 3 more failing tests (see the Markdown report)"


# --- Markdown and JSON -------------------------------------------------------------------


def test_render_markdown_sections() -> None:
    text = reports.render_markdown(_stage())
    assert text.startswith("# Compatibility suite: litellm axis\n")
    assert "3 environments, 1 passed, 2 failed" in text
    assert "| environment | total | test_a | test_b |" in text
    assert "| litellm 1.79.3 + wrapt 2.x | 2/3 (1 skipped) | 2/2 | 0/1 (1 skipped) |" in text
    assert "- Newest litellm release: 1.110.2." in text
    assert "litellm 1.79.3, wrapt 2.5.2" in text
    assert "## Failures" in text
    assert "AssertionError: a \\| b" in text  # a pipe would split the table cell


def test_stage_to_dict_round_trips_json() -> None:
    data = json.loads(json.dumps(reports.stage_to_dict(_stage())))
    assert data["ok"] is False
    assert data["columns"] == ["test_a", "test_b"]
    good, failing, broken = data["rows"]
    assert good["cells"]["test_a"] == {"passed": 2, "failed": 0, "errors": 0, "skipped": 0, "total": 2}
    assert good["packages"] == {"litellm": "1.79.3", "wrapt": "2.5.2"}
    assert failing["failing_tests"] == [
        {"id": "tests.shim.test_a::test_2", "outcome": "failed", "message": "AssertionError: a | b\nmore detail"}
    ]
    assert broken["error"].startswith("environment not built")
    assert broken["cells"] == {}


# --- merged JUnit ------------------------------------------------------------------------


def test_build_junit_one_suite_per_environment() -> None:
    root = reports.build_junit(_stage()).getroot()
    suites = root.findall("testsuite")
    assert [suite.get("name") for suite in suites] == [row.label for row in _stage().rows]
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("6", "1", "1", "1")
    properties = {p.get("name"): p.get("value") for p in suites[0].iter("property")}
    assert properties["key"] == "py3.11-litellm-1.79.3-wrapt-2.x"
    assert properties["installed wrapt"] == "2.5.2"


def test_build_junit_reports_environment_error() -> None:
    broken_suite = reports.build_junit(_stage()).getroot().findall("testsuite")[2]
    error = broken_suite.find("testcase/error")
    assert error is not None
    assert error.get("message").startswith("environment not built")
    assert "\x1b" not in error.get("message")


def test_written_junit_parses_back(tmp_path: Path) -> None:
    paths = reports.write_reports(_stage(), tmp_path / "out")
    assert [path.name for path in paths] == ["litellm_axis.md", "litellm_axis.json", "litellm_axis.junit.xml"]
    cases = reports.parse_junit(paths[2])
    outcomes = [case.outcome for case in cases]
    assert outcomes == ["passed", "passed", "skipped", "passed", "failed", "error"]
    assert cases[4].message == "AssertionError: a | b\nmore detail"


def test_merged_junit_keeps_pytest_cases(pytest_junit: Path, tmp_path: Path) -> None:
    row = MatrixRow(label="env", key="env", testcases=reports.parse_junit(pytest_junit))
    stage = StageResult(name="axis", title="axis", rows=[row])
    junit = reports.write_reports(stage, tmp_path)[2]
    again = reports.parse_junit(junit)
    assert [(c.group, c.name, c.outcome) for c in again] == [(c.group, c.name, c.outcome) for c in row.testcases]
