"""Tests of writing the proven A0 range into the plugin's README, compatibility.json and plugin.yaml."""

from __future__ import annotations

import datetime
import json
import shutil
from pathlib import Path

import pytest
import yaml

from compat_matrix import pinning
from compat_matrix.pinning import BEGIN_MARKER, END_MARKER, ReleaseOutcome, proven_ranges, write_proven_range
from compat_matrix.releases import load_releases

ROOT = Path(__file__).resolve().parent.parent
DAY_ONE = datetime.date(2026, 1, 2)
DAY_TWO = datetime.date(2026, 2, 3)

README = f"""# Token Meter

Intro text that must stay.

## Supported versions

{BEGIN_MARKER}
old generated text
{END_MARKER}

- a hand-written bullet after the block
"""

OUTCOMES = [
    ReleaseOutcome("v0.9.8", "unsupported"),
    ReleaseOutcome("v0.9.9.0", "supported"),
    ReleaseOutcome("v1.3", "supported", "passed", "local", "agent0ai/agent-zero:v1.3"),
    ReleaseOutcome("v1.7", "supported", "passed", "docker", "agent0ai/agent-zero:v1.7"),
    ReleaseOutcome("v1.10", "supported", "failed", "docker"),
    ReleaseOutcome("v2.0", "degraded", missing_features=("abandoned stream reading",)),
    ReleaseOutcome("v2.6", "degraded"),
    ReleaseOutcome("latest", "degraded", "passed", "docker"),
]


@pytest.fixture
def project(tmp_path) -> Path:
    """A project root with the plugin's real plugin.yaml, a small README and a pyproject.toml."""
    plugin = tmp_path / "a0_plugin"
    plugin.mkdir()
    shutil.copy(ROOT / "a0_plugin" / "plugin.yaml", plugin / "plugin.yaml")
    text = (plugin / "plugin.yaml").read_text(encoding="utf-8")
    text = "".join(line for line in text.splitlines(keepends=True) if not line.startswith(("a0_proven_range", "#")))
    (plugin / "plugin.yaml").write_text(text, encoding="utf-8")
    (plugin / "README.md").write_text(README, encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "9.8.7"\n', encoding="utf-8")
    return tmp_path


def write(project: Path, outcomes, **options) -> pinning.PinResult:
    """Run write_proven_range on exactly ``outcomes``, without the rows of the real matrix.toml."""
    options.setdefault("matrix_tags", ())
    return write_proven_range(project, outcomes, **options)


def read(project: Path, name: str) -> str:
    return (project / "a0_plugin" / name).read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("verdict", "live", "proof"),
    [
        ("supported", "passed", "live"),
        ("degraded", "passed", "live"),
        (None, "passed", "live"),
        ("supported", "not run", "contract"),
        ("degraded", "not run", "contract"),
        ("supported", "failed", None),
        ("unsupported", "passed", None),
        ("unsupported", "not run", None),
        (None, "not run", None),
        (None, "failed", None),
    ],
)
def test_proof_rule(verdict, live, proof):
    assert ReleaseOutcome("v1.3", verdict, live).proof == proof


def test_ranges_split_at_failures():
    assert proven_ranges(OUTCOMES) == [("v0.9.9.0", "v1.7"), ("v2.0", "v2.6")]


def test_latest_never_bounds():
    outcomes = [ReleaseOutcome("v2.6", "supported"), ReleaseOutcome("latest", "supported", "passed")]

    assert proven_ranges(outcomes) == [("v2.6", "v2.6")]
    assert proven_ranges([ReleaseOutcome("latest", "supported", "passed")]) == []


def test_unchecked_row_ends_range():
    outcomes = [
        ReleaseOutcome("v1.3", None, "passed"),
        ReleaseOutcome("v1.7", None),
        ReleaseOutcome("v1.10", "supported"),
    ]

    assert proven_ranges(outcomes) == [("v1.3", "v1.3"), ("v1.10", "v1.10")]


def test_ranges_follow_version_order():
    outcomes = [
        ReleaseOutcome("v1.10", "supported"),
        ReleaseOutcome("v1.9", "unsupported"),
        ReleaseOutcome("v1.20", "supported"),
    ]

    assert proven_ranges(outcomes) == [("v1.10", "v1.20")]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (("1.3", "supported"), "invalid tag"),
        (("v1.3", "fine"), "invalid verdict"),
        (("v1.3", "supported", "ok"), "invalid live check result"),
    ],
)
def test_outcome_validation(arguments, message):
    with pytest.raises(ValueError, match=message):
        ReleaseOutcome(*arguments)


def test_compatibility_json_content(project):
    write(project, OUTCOMES, today=DAY_ONE)

    data = json.loads(read(project, "compatibility.json"))
    assert data["schema"] == 1
    assert data["recorded_on"] == "2026-01-02"
    assert data["suite_version"] == "9.8.7"
    assert data["ranges"] == [{"from": "v0.9.9.0", "to": "v1.7"}, {"from": "v2.0", "to": "v2.6"}]
    rows = {row["tag"]: row for row in data["releases"]}
    assert list(rows) == [o.tag for o in OUTCOMES]
    assert rows["v1.3"] == {
        "tag": "v1.3",
        "verdict": "supported",
        "live": "passed",
        "live_backend": "local",
        "proven": "live",
        "image": "agent0ai/agent-zero:v1.3",
    }
    assert rows["v0.9.9.0"]["proven"] == "contract"
    assert rows["v1.10"]["proven"] is None
    assert rows["v2.0"]["missing_features"] == ["abandoned stream reading"]
    assert rows["latest"]["proven"] == "live"


def test_readme_block_content(project):
    write(project, OUTCOMES, today=DAY_ONE)

    text = read(project, "README.md")
    block = text[text.index(BEGIN_MARKER) + len(BEGIN_MARKER) : text.index(END_MARKER)]
    assert "**v0.9.9.0 to v1.7 and v2.0 to v2.6**" in " ".join(block.split())
    assert "for example the image `agent0ai/agent-zero:v1.7`" in " ".join(block.split())
    assert "| v1.3 | supported | passed (local backend) | yes, live |" in block
    assert "| v0.9.9.0 | supported | not run | yes, by contract only |" in block
    assert "| v1.10 | supported | failed (docker backend) | no |" in block
    assert "| v2.0 | degraded (lacks abandoned stream reading) | not run | yes, by contract only |" in block
    assert "| latest | degraded | passed (docker backend) | yes, live; `latest` moves" in block
    assert "old generated text" not in text


def test_only_marked_region_changes(project):
    write(project, OUTCOMES, today=DAY_ONE)

    text = read(project, "README.md")
    assert text.startswith(README[: README.index(BEGIN_MARKER) + len(BEGIN_MARKER)] + "\n")
    assert text.endswith(README[README.index(END_MARKER) :])


def test_plugin_yaml_key_only(project):
    original = read(project, "plugin.yaml")

    write(project, OUTCOMES, today=DAY_ONE)

    text = read(project, "plugin.yaml")
    assert text.startswith(original)
    assert text[len(original) :] == (
        "# Written by python -m compat_matrix.pinning; details in compatibility.json.\n"
        'a0_proven_range: "v0.9.9.0 to v1.7 and v2.0 to v2.6"\n'
    )
    data = yaml.safe_load(text)
    assert data["a0_proven_range"] == "v0.9.9.0 to v1.7 and v2.0 to v2.6"
    assert data["name"] == "token_meter"


def test_plugin_yaml_key_replaced_in_place(project):
    path = project / "a0_plugin" / "plugin.yaml"
    path.write_text('name: token_meter\na0_proven_range: "old"\nalways_enabled: false\n', encoding="utf-8")

    write(project, [ReleaseOutcome("v1.7", None, "passed")], today=DAY_ONE)

    assert read(project, "plugin.yaml") == 'name: token_meter\na0_proven_range: "v1.7"\nalways_enabled: false\n'


def test_plugin_yaml_block_value_rejected(project):
    path = project / "a0_plugin" / "plugin.yaml"
    path.write_text("name: token_meter\na0_proven_range:\n  from: v1.3\n", encoding="utf-8")

    with pytest.raises(ValueError, match="block value"):
        write(project, OUTCOMES, today=DAY_ONE)


def test_idempotent_bytes(project):
    first = write(project, OUTCOMES, today=DAY_ONE)
    snapshot = {name: read(project, name) for name in ("README.md", "compatibility.json", "plugin.yaml")}

    second = write(project, list(reversed(OUTCOMES)), today=DAY_TWO)

    assert len(first.changed) == 3
    assert second.changed == []
    for name, text in snapshot.items():
        assert read(project, name) == text, name


def test_changed_evidence_new_date(project):
    write(project, OUTCOMES, today=DAY_ONE)
    changed = [ReleaseOutcome("v1.10", "supported", "passed") if o.tag == "v1.10" else o for o in OUTCOMES]

    result = write(project, changed, today=DAY_TWO)

    data = json.loads(read(project, "compatibility.json"))
    assert data["recorded_on"] == "2026-02-03"
    assert data["ranges"] == [{"from": "v0.9.9.0", "to": "v2.6"}]
    assert result.ranges == [("v0.9.9.0", "v2.6")]
    assert "recorded 2026-02-03" in read(project, "README.md")


def test_check_only_writes_nothing(project):
    before = {name: read(project, name) for name in ("README.md", "plugin.yaml")}

    result = write(project, OUTCOMES, today=DAY_ONE, check_only=True)

    assert len(result.changed) == 3
    assert not (project / "a0_plugin" / "compatibility.json").exists()
    for name, text in before.items():
        assert read(project, name) == text


def test_no_proven_release(project):
    write(project, [ReleaseOutcome("v0.9.8", "unsupported")], today=DAY_ONE)

    assert json.loads(read(project, "compatibility.json"))["ranges"] == []
    assert 'a0_proven_range: "none"' in read(project, "plugin.yaml")
    assert "Proven A0 releases: **none**" in read(project, "README.md")


@pytest.mark.parametrize(
    ("readme", "message"),
    [
        ("no markers\n", "each proven-range marker once"),
        (f"{BEGIN_MARKER}\n{BEGIN_MARKER}\n{END_MARKER}\n", "found begin 2x"),
        (f"{END_MARKER}\n{BEGIN_MARKER}\n", "comes before"),
    ],
)
def test_bad_markers_rejected(project, readme, message):
    (project / "a0_plugin" / "README.md").write_text(readme, encoding="utf-8")

    with pytest.raises(ValueError, match=message):
        write(project, OUTCOMES, today=DAY_ONE)
    assert not (project / "a0_plugin" / "compatibility.json").exists()


def test_matrix_rows_without_outcome_unchecked(project):
    outcomes = [ReleaseOutcome("v1.3", None, "passed"), ReleaseOutcome("v1.7", None, "passed")]

    result = write(project, outcomes, today=DAY_ONE, matrix_tags=["v1.3", "v1.5", "v1.7", "latest"])

    assert result.ranges == [("v1.3", "v1.3"), ("v1.7", "v1.7")]
    rows = json.loads(read(project, "compatibility.json"))["releases"]
    assert [row["tag"] for row in rows] == ["v1.3", "v1.5", "v1.7", "latest"]
    assert rows[1] == {"tag": "v1.5", "verdict": None, "live": "not run", "proven": None}


def test_default_matrix_is_matrix_toml(project):
    tags = [release.tag for release in load_releases()]

    write_proven_range(project, [], today=DAY_ONE)

    rows = json.loads(read(project, "compatibility.json"))["releases"]
    assert [row["tag"] for row in rows] == tags


def test_duplicate_tags_rejected(project):
    with pytest.raises(ValueError, match="duplicate outcomes for v1.3"):
        write(project, [ReleaseOutcome("v1.3", "supported")] * 2, today=DAY_ONE)


def report_rows() -> dict:
    return {
        "rows": [
            {"tag": "v0.9.8", "verdict": "unsupported", "error": None, "live": {"status": "not run"}},
            {
                "tag": "v1.3",
                "verdict": "unsupported",
                "error": "baseline missing",
                "live": {"status": "passed", "backend": "local"},
            },
            {
                "tag": "v2.0",
                "verdict": "degraded",
                "image": "agent0ai/agent-zero:v2.0",
                "missing": [{"feature": "stream usage"}, {"feature": "stream usage"}, {"feature": "compaction"}],
                "live": {"status": "not run", "backend": None},
            },
        ]
    }


def test_outcomes_from_report():
    outcomes = pinning.outcomes_from_report(report_rows())

    assert outcomes[0] == ReleaseOutcome("v0.9.8", "unsupported")
    assert outcomes[1] == ReleaseOutcome("v1.3", None, "passed", "local")
    assert outcomes[2] == ReleaseOutcome(
        "v2.0", "degraded", image="agent0ai/agent-zero:v2.0", missing_features=("compaction", "stream usage")
    )


def test_report_without_rows_rejected():
    with pytest.raises(ValueError, match="no 'rows' list"):
        pinning.outcomes_from_report({"stage": "a0"})


MATRIX = """
[[a0_release]]
tag = "v0.9.8"
repository = "agent0ai/agent-zero"

[[a0_release]]
tag = "v1.3"
repository = "agent0ai/agent-zero"

[[a0_release]]
tag = "v1.7"
repository = "agent0ai/agent-zero"

[[a0_release]]
tag = "v2.0"
repository = "3clyp50/agent-zero"
"""


def test_command_line(project, tmp_path, capsys):
    report = tmp_path / "a0_matrix.json"
    report.write_text(json.dumps(report_rows()), encoding="utf-8")
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(MATRIX, encoding="utf-8")
    arguments = ["--from-report", str(report), "--project-root", str(project), "--matrix", str(matrix)]
    arguments += ["--date", "2026-01-02"]

    assert pinning.main([*arguments, "--check"]) == 1
    assert pinning.main(arguments) == 0
    assert pinning.main([*arguments, "--check"]) == 0

    output = capsys.readouterr().out
    # v1.7 is in the matrix but not in the report, so it ends the first range.
    assert "proven A0 range: v1.3 and v2.0" in output
    assert "all files up to date" in output
    assert "| v1.7 | not checked | not run | no |" in read(project, "README.md")


def test_command_line_invalid_report(project, tmp_path, capsys):
    report = tmp_path / "a0_matrix.json"
    report.write_text("[]", encoding="utf-8")

    assert pinning.main(["--from-report", str(report), "--project-root", str(project)]) == 2
    assert "error:" in capsys.readouterr().err


def test_repository_readme_has_markers():
    text = (ROOT / "a0_plugin" / "README.md").read_text(encoding="utf-8")

    assert text.count(BEGIN_MARKER) == 1
    assert text.count(END_MARKER) == 1


def test_merge_keeps_recorded_live_result() -> None:
    previous = {
        "v1.3": pinning.ReleaseOutcome("v1.3", "supported", "passed", backend="local"),
        "v1.7": pinning.ReleaseOutcome("v1.7", "supported", "passed", backend="local"),
        "v1.0": pinning.ReleaseOutcome("v1.0", "supported"),
        "v2.0": pinning.ReleaseOutcome("v2.0", "supported", "failed", backend="local"),
    }
    current = [
        pinning.ReleaseOutcome("v1.3", "supported"),  # no checkout on this machine
        pinning.ReleaseOutcome("v1.7", "supported", "failed", backend="docker-image"),  # ran and failed
        pinning.ReleaseOutcome("v2.0", "supported"),  # not run again: the recorded failure stays
    ]

    merged = {outcome.tag: outcome for outcome in pinning.merge_with_previous(current, previous)}

    assert (merged["v1.3"].live, merged["v1.3"].backend) == ("passed", "local")
    assert merged["v1.7"].live == "failed"
    assert merged["v1.0"] == previous["v1.0"]
    assert (merged["v2.0"].live, merged["v2.0"].proof) == ("failed", None)


def test_merge_drops_pass_when_unsupported() -> None:
    previous = {"v1.3": pinning.ReleaseOutcome("v1.3", "supported", "passed", backend="local")}
    merged = pinning.merge_with_previous([pinning.ReleaseOutcome("v1.3", "unsupported")], previous)
    assert merged == [pinning.ReleaseOutcome("v1.3", "unsupported")]
