"""Tests of the A0 axis's plan (where live checks run) and its reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from compat_matrix import a0_report
from compat_matrix.a0_live_plan import EngineState, LiveOptions, parse_checkouts, plan_live
from compat_matrix.a0_report import A0StageResult, LiveOutcome, MissingItem, ReleaseRow
from compat_matrix.releases import A0Release, load_releases, version_key


def _release(tag: str, expect: str | None = None) -> A0Release:
    return A0Release(tag, f"agent0ai/agent-zero:{tag}", "agent0ai/agent-zero", tag, "1.79.3", expect)


class FakeEngine(EngineState):
    """Stand-in for a reachable Docker engine that contains the listed images."""

    def __init__(self, images: set[str]) -> None:
        super().__init__(True, "stand-in engine")
        object.__setattr__(self, "images", images)

    def has_image(self, reference: str) -> bool:
        return reference in self.images  # type: ignore[attr-defined]


# ----- matrix file -------------------------------------------------------------------------------


def test_matrix_lists_the_required_releases_in_order() -> None:
    tags = [release.tag for release in load_releases()]
    for required in ("v0.9.8", "v0.9.9.0", "v1.0", "v1.3", "v1.7", "v1.10", "v1.20", "v2.0", "v2.6", "latest"):
        assert required in tags
    assert tags == sorted(tags, key=version_key)
    latest = next(release for release in load_releases() if release.tag == "latest")
    assert latest.image == "agent0ai/agent-zero:latest"
    assert latest.baseline == "v2.6"


def test_matrix_row_with_bad_expect_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text('[[a0_release]]\ntag = "v1.0"\nrepository = "a/b"\nexpect = "fine"\n')
    with pytest.raises(ValueError, match=r"a0_release 1 \(v1.0\): expect must be one of"):
        load_releases(path)


def test_matrix_duplicate_tag_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "matrix.toml"
    path.write_text('[[a0_release]]\ntag = "v1.0"\nrepository = "a/b"\n' * 2)
    with pytest.raises(ValueError, match="duplicate a0_release tags: v1.0"):
        load_releases(path)


# ----- plan --------------------------------------------------------------------------------------


def test_checkout_items_parse_and_reject_missing_dir() -> None:
    assert parse_checkouts(["v1.7=/srv/a0"]) == {"v1.7": Path("/srv/a0")}
    with pytest.raises(ValueError, match="expected TAG=DIR"):
        parse_checkouts(["v1.7"])


def test_plan_checkout_runs_locally() -> None:
    releases = [_release("v0.9.8"), _release("v1.3"), _release("v1.7")]
    options = LiveOptions(checkouts={"v1.7": Path("/srv/v1.7")}, python="/venv/bin/python")
    no_engine = EngineState(False, "no Docker engine: stand-in reason")

    targets, reasons = plan_live(releases, {"v0.9.8": "no plugin system"}, options, no_engine)

    assert list(targets) == ["v1.7"]
    assert targets["v1.7"].backend == "local"
    assert targets["v1.7"].checkout == Path("/srv/v1.7")
    assert reasons["v0.9.8"] == "not run: the contract check found it unsupported (no plugin system)"
    assert reasons["v1.3"] == "no checkout configured for v1.3 and no Docker engine: stand-in reason"


def test_plan_pulls_only_when_allowed() -> None:
    releases = [_release("v1.3"), _release("v1.7")]
    engine = FakeEngine({"agent0ai/agent-zero:v1.7"})

    targets, reasons = plan_live(releases, {}, LiveOptions(), engine)
    assert targets["v1.7"].backend == "docker-image"
    assert reasons["v1.3"] == "image agent0ai/agent-zero:v1.3 is not present locally; pass --a0-pull to pull it"

    targets, reasons = plan_live(releases, {}, LiveOptions(pull=True), engine)
    assert sorted(targets) == ["v1.3", "v1.7"]
    assert reasons == {}


def test_plan_docker_mode_mounts_checkout_into_base_image() -> None:
    options = LiveOptions(mode="docker", checkouts={"v1.7": Path("/srv/v1.7")}, python="/venv/bin/python")
    targets, _ = plan_live([_release("v1.7")], {}, options, FakeEngine({options.base_image}))
    assert targets["v1.7"].backend == "docker-checkout"
    assert targets["v1.7"].image == options.base_image

    _, reasons = plan_live([_release("v1.7")], {}, options, FakeEngine(set()))
    assert "base image token-meter/a0-base:bookworm not present" in reasons["v1.7"]


def test_plan_off_runs_nothing() -> None:
    targets, reasons = plan_live([_release("v1.7")], {}, LiveOptions(mode="off"), None)
    assert targets == {}
    assert reasons == {"v1.7": "live check turned off (--a0-live off)"}


# ----- rows and reports --------------------------------------------------------------------------


def _stage() -> A0StageResult:
    unsupported = ReleaseRow("v0.9.8", "img:v0.9.8", "1.79.3", "unsupported", verdict="unsupported")
    unsupported.missing = [MissingItem("plugin_system", "install", "required", "no plugin loader")]
    unsupported.live = LiveOutcome(detail="not run: unsupported")
    passed = ReleaseRow("v1.7", "img:v1.7", "1.79.3", None, verdict="supported", drift_from="v0.9.8")
    passed.drift = ["hook call_chat_model added"]
    passed.live = LiveOutcome("passed", "local", passed=44, total=44, duration_s=180)
    failed = ReleaseRow("v2.0", "img:v2.0", "1.88.1", None, verdict="degraded", drift_from="v1.7")
    failed.missing = [MissingItem("reset_hook", "reset", "optional", "no AgentContext reset hook")]
    failed.live = LiveOutcome("failed", "docker-image", detail="2 of 44 assertions failed", passed=42, total=44)
    failed.live.log_excerpt = "Traceback: <stand-in log line>"
    return A0StageResult("a0_matrix", "A0 releases", [unsupported, passed, failed], "2026-12-04T00:00:00Z", 200.0)


def test_row_failure_reasons() -> None:
    stage = _stage()
    assert [row.ok for row in stage.rows] == [True, True, False]
    assert stage.rows[2].failure_reasons() == ["live check failed: 2 of 44 assertions failed"]

    stage.rows[0].verdict = "degraded"
    assert stage.rows[0].failure_reasons() == ["verdict degraded, but matrix.toml expects unsupported"]
    assert stage.counts() == (3, 2, 1)


def test_console_and_markdown_name_verdicts_drift_and_failures() -> None:
    stage = _stage()
    console = "\n".join(a0_report.console_lines(stage))
    assert "v2.0     FAIL    degraded: reset" in console
    assert "v0.9.8 -> v1.7: hook call_chat_model added" in console
    assert "v2.0: live check failed: 2 of 44 assertions failed" in console

    markdown = a0_report.render_markdown(stage)
    assert "### v0.9.8 → v1.7\n\n- hook call_chat_model added" in markdown
    assert "- **v1.7**: passed, 44/44 assertions, local backend, 180 s" in markdown
    assert "Traceback: <stand-in log line>" in markdown


def test_reports_written_in_three_formats(tmp_path: Path) -> None:
    paths = a0_report.write_reports(_stage(), tmp_path)
    assert [path.name for path in paths] == ["a0_matrix.md", "a0_matrix.json", "a0_matrix.junit.xml"]

    data = json.loads(paths[1].read_text())
    assert data["ok"] is False
    assert [row["tag"] for row in data["rows"]] == ["v0.9.8", "v1.7", "v2.0"]
    assert data["rows"][2]["live"]["passed"] == 42

    root = ET.parse(paths[2]).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "1", "1")
    suite = root.find("testsuite[@name='A0 v2.0']")
    assert suite.find("testcase[@name='live check']/failure").get("message") == "2 of 44 assertions failed"
