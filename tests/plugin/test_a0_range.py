"""The proven-range check: version ordering, compatibility.json handling and the popover warning."""

from __future__ import annotations

import importlib
import json
import zipfile

import pytest

RANGES = [{"from": "v0.9.9.0", "to": "v1.7"}, {"from": "v1.20", "to": "v2.6"}]
RELEASES = [
    {"tag": "v0.9.8", "verdict": "unsupported", "live": "not run", "proven": None},
    {"tag": "v0.9.9.0", "verdict": "supported", "live": "not run", "proven": "contract"},
    {"tag": "v1.7", "verdict": "supported", "live": "passed", "proven": "live"},
    {"tag": "v1.10", "verdict": "supported", "live": "failed", "proven": None},
    {"tag": "v1.20", "verdict": "degraded", "live": "not run", "proven": "contract"},
    {"tag": "v2.6", "verdict": "degraded", "live": "not run", "proven": "contract"},
    {"tag": "latest", "verdict": "degraded", "live": "not run", "proven": "contract"},
]


@pytest.fixture
def a0_range(plugin_tree):
    return importlib.import_module("token_meter.helpers.a0_range")


@pytest.fixture
def detected(plugin_tree):
    """Build a DetectedVersion for a version string (or None)."""
    module = importlib.import_module("token_meter.helpers.a0_version")

    def make(version: str | None, reason: str | None = None):
        return module.DetectedVersion(version, "test" if version else None, reason)

    return make


@pytest.fixture
def compatibility_file(tmp_path):
    path = tmp_path / "compatibility.json"
    path.write_text(json.dumps({"schema": 1, "ranges": RANGES, "releases": RELEASES}), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("smaller", "larger"),
    [
        ("v1.9", "v1.10"),
        ("v0.9.8", "v0.9.9.0"),
        ("v0.9.8-pre", "v0.9.8"),
        ("v1.7", "v1.7-3-gabc1234"),
        ("v1.7", "v1.7+3"),
        ("v1.7-3", "v1.8"),
        ("v2.6", "v2.6.1"),
    ],
)
def test_version_order(a0_range, smaller, larger):
    assert a0_range.version_key(smaller) < a0_range.version_key(larger)


def test_version_trailing_zeros_equal(a0_range):
    assert a0_range.version_key("v0.9.9") == a0_range.version_key("v0.9.9.0")
    assert a0_range.version_key("1.0") == a0_range.version_key("v1")


@pytest.mark.parametrize("text", ["unknown", "main", "", "D v1.7"])
def test_version_not_a_number(a0_range, text):
    assert a0_range.version_key(text) is None


@pytest.mark.parametrize("version", ["v0.9.9.0", "v0.9.9.3", "v1.3", "v1.7", "v1.7.0", "v1.20", "v2.3", "v2.6"])
def test_inside_range(a0_range, detected, compatibility_file, version):
    check = a0_range.check_version(detected(version), compatibility_file)

    assert check.state == a0_range.INSIDE
    assert check.warning is None
    assert check.version == version


def test_below_range(a0_range, detected, compatibility_file):
    check = a0_range.check_version(detected("v0.9.8"), compatibility_file)

    assert check.state == a0_range.OUTSIDE
    assert check.warning == (
        "Token Meter was checked with A0 v0.9.9.0 to v1.7 and v1.20 to v2.6, but this is A0 v0.9.8. "
        "The compatibility suite found this release unsupported."
    )


def test_above_range(a0_range, detected, compatibility_file):
    check = a0_range.check_version(detected("v2.7"), compatibility_file)

    assert check.state == a0_range.OUTSIDE
    assert check.warning == (
        "Token Meter was checked with A0 v0.9.9.0 to v1.7 and v1.20 to v2.6, but this is A0 v2.7. "
        "Figures may be missing or wrong."
    )


def test_commits_past_top_tag_outside(a0_range, detected, compatibility_file):
    check = a0_range.check_version(detected("v2.6-4-g0123abc"), compatibility_file)

    assert check.state == a0_range.OUTSIDE
    assert "this is A0 v2.6-4-g0123abc" in check.warning


def test_gap_between_ranges(a0_range, detected, compatibility_file):
    failed = a0_range.check_version(detected("v1.10"), compatibility_file)
    unchecked = a0_range.check_version(detected("v1.12"), compatibility_file)

    assert failed.state == a0_range.OUTSIDE
    assert failed.warning.endswith("This release failed the compatibility suite's live check.")
    assert unchecked.state == a0_range.OUTSIDE
    assert unchecked.warning.endswith("Figures may be missing or wrong.")


def test_no_proven_range(a0_range, detected, tmp_path):
    path = tmp_path / "compatibility.json"
    path.write_text(json.dumps({"schema": 1, "ranges": [], "releases": []}), encoding="utf-8")

    check = a0_range.check_version(detected("v1.7"), path)

    assert check.state == a0_range.OUTSIDE
    assert check.warning == "Token Meter has not been proven on any A0 release yet, and this is A0 v1.7."


def test_unknown_version_no_warning(a0_range, detected, compatibility_file):
    check = a0_range.check_version(detected(None, "no .git"), compatibility_file)

    assert check.state == a0_range.UNKNOWN_VERSION
    assert check.warning is None
    assert check.reason == "no .git"


def test_version_not_numeric_no_warning(a0_range, detected, compatibility_file):
    check = a0_range.check_version(detected("main"), compatibility_file)

    assert check.state == a0_range.UNKNOWN_VERSION
    assert check.warning is None
    assert check.reason == "version 'main' is not a dotted number"


def test_missing_file_flagged(a0_range, detected, tmp_path):
    check = a0_range.check_version(detected("v1.7"), tmp_path / "compatibility.json")

    assert check.state == a0_range.INVALID_METADATA
    assert check.warning == (
        "Token Meter cannot check the A0 version because compatibility.json is missing. Reinstall the plugin."
    )


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "cannot be read (JSONDecodeError"),
        ("[]", "has no schema 1 object"),
        ('{"schema": 2, "ranges": []}', "has no schema 1 object"),
        ('{"schema": 1}', "'ranges' must be a list"),
        ('{"schema": 1, "ranges": [{"from": "v1.3"}]}', "invalid range"),
        ('{"schema": 1, "ranges": [{"from": "latest", "to": "v1.7"}]}', "invalid range"),
        ('{"schema": 1, "ranges": [], "releases": {}}', "'releases' must be a list"),
    ],
)
def test_corrupt_file_flagged(a0_range, detected, tmp_path, content, reason):
    path = tmp_path / "compatibility.json"
    path.write_text(content, encoding="utf-8")

    check = a0_range.check_version(detected("v1.7"), path)

    assert check.state == a0_range.INVALID_METADATA
    assert reason in check.reason
    assert check.warning.startswith("Token Meter cannot check the A0 version because compatibility.json")


def test_unreadable_bytes_flagged(a0_range, detected, tmp_path):
    path = tmp_path / "compatibility.json"
    path.write_bytes(b"\xff\xfe\x00")

    check = a0_range.check_version(detected("v1.7"), path)

    assert check.state == a0_range.INVALID_METADATA


def test_shipped_file_valid(a0_range, plugin_tree):
    data = a0_range.load_compatibility(plugin_tree / "compatibility.json")

    assert data["ranges"], "the shipped compatibility.json should name at least one proven range"


def test_zip_contains_compatibility_file(plugin_tree):
    with zipfile.ZipFile(plugin_tree.parent / "token_meter.zip") as archive:
        assert "token_meter/compatibility.json" in archive.namelist()


# ----- wiring into the meter ----------------------------------------------------------------------------


def publish(meter, a0):
    context = a0.add("chat-range")
    meter.reset_chat(context)
    return context.output_data["token_meter"]


def test_meter_warns_outside(plugin, monkeypatch):
    meter, _, a0 = plugin
    monkeypatch.setenv("TOKEN_METER_A0_VERSION", "v99.0")

    figures = publish(meter, a0)

    assert figures["a0_range_warning"].startswith("Token Meter was checked with A0 ")
    assert "but this is A0 v99.0." in figures["a0_range_warning"]
    assert ("warning", figures["a0_range_warning"]) in a0.logs


def test_meter_quiet_inside(plugin, monkeypatch, a0_range):
    meter, _, a0 = plugin
    top = a0_range.load_compatibility()["ranges"][-1]["to"]
    monkeypatch.setenv("TOKEN_METER_A0_VERSION", top)

    figures = publish(meter, a0)

    assert figures["a0_range_warning"] is None
    assert any(level == "info" and "inside the proven range" in message for level, message in a0.logs)


def test_meter_unknown_version_logged(plugin, monkeypatch):
    meter, _, a0 = plugin
    monkeypatch.delenv("TOKEN_METER_A0_VERSION", raising=False)

    figures = publish(meter, a0)

    assert figures["a0_range_warning"] is None
    assert any(level == "info" and message.startswith("A0 version unknown") for level, message in a0.logs)


def test_meter_checks_once(plugin, monkeypatch):
    meter, _, a0 = plugin
    calls = []
    detect = meter.a0_version.detect_a0_version

    def counting_detect():
        calls.append(1)
        return detect()

    monkeypatch.setattr(meter.a0_version, "detect_a0_version", counting_detect)
    monkeypatch.setenv("TOKEN_METER_A0_VERSION", "v99.0")

    for _ in range(3):
        publish(meter, a0)
    meter.ensure_installed(None)

    assert len(calls) == 1
    assert sum(1 for level, _ in a0.logs if level == "warning") == 1


def test_meter_replaces_saved_warning(plugin, monkeypatch):
    meter, _, a0 = plugin
    monkeypatch.setenv("TOKEN_METER_A0_VERSION", "v99.0")
    context = a0.add("chat-saved")
    meter.reset_chat(context)
    saved = dict(context.output_data["token_meter"], a0_range_warning="a warning from an older A0")
    context.output_data["token_meter"] = saved
    monkeypatch.setitem(meter._install_state, "a0_range", None)
    monkeypatch.setenv("TOKEN_METER_A0_VERSION", meter.a0_range.load_compatibility()["ranges"][0]["from"])

    meter.publish_status(context)

    assert context.output_data["token_meter"]["a0_range_warning"] is None
