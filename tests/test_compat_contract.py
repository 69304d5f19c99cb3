"""Tests of the plugin's contract: requirements, verdicts, drift and the committed baselines."""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from a0_standin import build_standin_v1, build_standin_v2

from compat_matrix import contract
from compat_matrix.contract_baselines import BaselineError, load_baseline, regenerate
from compat_matrix.releases import A0Release, load_releases
from shim import compatibility

# A local export of A0 v1.7 (agent0ai/agent-zero, tag v1.7) to regenerate its baseline from.
V17_TREE = Path(os.environ.get("TOKEN_METER_A0_V17_TREE", "/work/a0/v1.7"))


@pytest.fixture(scope="module")
def requirements() -> list[contract.Requirement]:
    return contract.load_requirements()


@pytest.fixture(scope="module")
def releases() -> list[A0Release]:
    return load_releases()


@pytest.fixture(scope="module")
def checked(releases: list[A0Release]) -> dict[str, contract.ReleaseContract]:
    return {result.release.tag: result for result in contract.check_releases(releases)}


@pytest.fixture(scope="module")
def supported_facts() -> dict[str, Any]:
    """The committed v2.6 facts with an environment section, as a probe inside the release gives."""
    facts = copy.deepcopy(load_baseline(_row("v2.6"))["facts"])
    facts["environment"] = {"python": "3.12.1", "litellm": "1.88.1", "wrapt": "2.5.2"}
    return facts


def _row(tag: str, **changes: Any) -> A0Release:
    row = next(release for release in load_releases() if release.tag == tag)
    return A0Release(**{**row.__dict__, **changes})


def _missing_ids(verdict: contract.Verdict) -> list[str]:
    return [item.id for item in verdict.missing]


# ----- requirements file ---------------------------------------------------------------------------


def test_requirements_load(requirements: list[contract.Requirement]) -> None:
    ids = [item.id for item in requirements]

    assert len(ids) == len(set(ids))
    assert {item.severity for item in requirements} == {"required", "optional"}
    assert all(item.feature and item.reason for item in requirements)


def test_requirements_match_shim_range(requirements: list[contract.Requirement]) -> None:
    by_id = {item.id: item for item in requirements}

    assert by_id["litellm-pin-tested"].range == compatibility.TESTED_LITELLM_RANGE
    assert by_id["litellm-installed-tested"].range == compatibility.TESTED_LITELLM_RANGE
    for ident in ("litellm-called", "litellm-bindings-wrapped", "litellm-attribute-calls-wrapped"):
        assert set(by_id[ident].values) == set(compatibility.ENTRY_POINTS), ident


VALID_ITEM = {
    "id": '"x"',
    "feature": '"f"',
    "severity": '"optional"',
    "check": '"present"',
    "fact": '["a"]',
    "reason": '"r"',
}


def requirement_toml(**changes: str | None) -> str:
    """Return one [[requirement]] table: VALID_ITEM with ``changes`` applied (None drops a key)."""
    fields = {**VALID_ITEM, **changes}
    return "[[requirement]]\n" + "".join(f"{key} = {value}\n" for key, value in fields.items() if value is not None)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"severity": '"fatal"'}, "severity"),
        ({"check": '"guess"'}, "check"),
        ({"fact": None}, "exactly one of fact"),
        ({"check": '"contains_all"'}, "values"),
        ({"fact": '["*"]'}, "cannot start"),
        ({"check": '"version_in"', "range": '"1.0"'}, "invalid version range"),
    ],
)
def test_requirements_invalid_item(tmp_path: Path, changes: dict[str, str | None], message: str) -> None:
    path = tmp_path / "requirements.toml"
    path.write_text(requirement_toml(**changes), encoding="utf-8")

    with pytest.raises(ValueError, match=message):
        contract.load_requirements(path)


def test_requirements_duplicate_id(tmp_path: Path) -> None:
    path = tmp_path / "requirements.toml"
    path.write_text(requirement_toml() + requirement_toml(), encoding="utf-8")

    with pytest.raises(ValueError, match="duplicate requirement ids: x"):
        contract.load_requirements(path)


def test_requirements_valid_item(tmp_path: Path) -> None:
    path = tmp_path / "requirements.toml"
    path.write_text(requirement_toml(), encoding="utf-8")

    assert [item.id for item in contract.load_requirements(path)] == ["x"]


# ----- evaluation on crafted facts -----------------------------------------------------------------


def test_evaluate_supported(supported_facts: dict[str, Any]) -> None:
    verdict = contract.evaluate(supported_facts)

    assert verdict.status == "supported"
    assert verdict.missing == []
    assert verdict.unchecked == []


def test_evaluate_environment_not_probed(supported_facts: dict[str, Any]) -> None:
    facts = dict(supported_facts, environment=None)

    verdict = contract.evaluate(facts)

    assert verdict.status == "supported"
    assert "wrapt-installed" in verdict.unchecked
    assert "python-version" in verdict.unchecked


def test_evaluate_missing_slot_degrades(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    del facts["webui"]["slots"]["chat-top-end"]

    verdict = contract.evaluate(facts)

    assert verdict.status == "degraded"
    assert _missing_ids(verdict) == ["header-slot"]
    assert verdict.degraded_features == ["header widget"]
    assert "chat-top-end" in verdict.missing[0].reason


def test_evaluate_unwrapped_litellm_function(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["litellm"]["bindings"]["helpers/other.py"] = ["atext_completion", "get_model_info"]

    verdict = contract.evaluate(facts)

    assert verdict.status == "unsupported"
    assert _missing_ids(verdict) == ["litellm-bindings-wrapped"]
    assert verdict.missing[0].reason.endswith("(found atext_completion)")


def test_evaluate_submodule_binding(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["litellm"]["submodule_bindings"]["helpers/x.py"] = {"litellm.main": ["acompletion"], "litellm.types": ["U"]}

    verdict = contract.evaluate(facts)

    assert _missing_ids(verdict) == ["litellm-submodule-bindings"]
    assert verdict.missing[0].reason.endswith("(found acompletion)")


def test_evaluate_no_litellm_calls(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["litellm"]["bindings"] = {"models.py": ["embedding"]}

    verdict = contract.evaluate(facts)

    assert verdict.status == "unsupported"
    assert _missing_ids(verdict) == ["litellm-called"]


def test_evaluate_unhooked_chat_method(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["agent_loop"]["chat_methods"] = {"call_chat_model_step": False}

    verdict = contract.evaluate(facts)

    assert verdict.status == "degraded"
    assert _missing_ids(verdict) == ["chat-loop-method-hooked", "chat-loop-method-extensible"]
    assert verdict.missing[0].reason.endswith("(found call_chat_model_step)")
    assert verdict.degraded_features == ["chat attribution"]


def test_evaluate_environment_versions(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["environment"] = {"python": "3.12.1", "litellm": "1.120.0", "wrapt": None}

    verdict = contract.evaluate(facts)

    assert verdict.status == "unsupported"
    assert _missing_ids(verdict) == ["wrapt-installed", "litellm-installed-tested", "wrapt-installed-tested"]
    assert "(found 1.120.0)" in verdict.missing[1].reason
    assert verdict.missing[2].reason.endswith("(not found)")


def test_evaluate_old_python(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    facts["environment"]["python"] = "3.9.18"

    verdict = contract.evaluate(facts)

    assert _missing_ids(verdict) == ["python-version"]
    assert verdict.status == "unsupported"


def test_evaluate_mark_dirty_without_reason(supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    signature = facts["apis"]["helpers/state_monitor_integration.py:mark_dirty_for_context"]
    signature["parameters"] = [{"name": "context_id", "kind": "positional_or_keyword", "default": None}]

    verdict = contract.evaluate(facts)

    assert _missing_ids(verdict) == ["mark-dirty"]
    assert verdict.missing[0].reason.endswith("(no parameter reason)")
    assert verdict.summary() == "degraded: live push"


def test_evaluate_standin_trees(tmp_path: Path) -> None:
    from compat_matrix import a0_probe

    v1 = a0_probe.probe(str(build_standin_v1(tmp_path / "v1")), with_environment=False)
    v2 = a0_probe.probe(str(build_standin_v2(tmp_path / "v2")), with_environment=False)

    # The stand-ins meet every requirement but one: their browser helper imports litellm.main.completion,
    # which the shim never patches.
    assert contract.evaluate(v1).status == "unsupported"
    assert _missing_ids(contract.evaluate(v1)) == ["litellm-submodule-bindings"]
    assert _missing_ids(contract.evaluate(v2)) == ["litellm-submodule-bindings"]


def test_version_ranges() -> None:
    assert contract.version_in_range((1, 79, 3), ">=1.79.3,<=1.110.2")
    assert contract.version_in_range((3, 10), ">=3.10")
    assert not contract.version_in_range((1, 110, 3), ">=1.79.3,<=1.110.2")
    assert not contract.version_in_range((2, 0), ">=1.17,<2")
    assert contract.parse_version("1.79.3.post1") == (1, 79, 3)
    assert contract.parse_version("dev") is None


# ----- drift on crafted facts ----------------------------------------------------------------------


def _crafted(**sections: Any) -> dict[str, Any]:
    return {"probe_version": 1, **sections}


def test_drift_names_binding_move(requirements: list[contract.Requirement]) -> None:
    before = _crafted(litellm={"bindings": {"models.py": ["acompletion", "completion", "embedding"]}})
    after = _crafted(
        litellm={"bindings": {"models.py": ["embedding"], "helpers/t.py": ["acompletion", "aresponses", "completion"]}}
    )

    items = contract.drift(before, after, requirements)

    assert [str(item) for item in items] == [
        "litellm bindings: acompletion, completion moved from models.py to helpers/t.py",
        "litellm bindings: aresponses bound in helpers/t.py",
    ]
    assert items[0].change == "moved"
    assert items[0].names == ("acompletion", "completion")
    assert "litellm-bindings-wrapped" in items[0].requirements


def test_drift_signature_and_hooks(requirements: list[contract.Requirement]) -> None:
    parameter = {"name": "messages", "kind": "positional_or_keyword", "default": None}
    signature = {"async": True, "decorators": [], "file": "agent.py", "kind": "function", "parameters": [parameter]}
    changed = copy.deepcopy(signature)
    changed["parameters"].append({"name": "background", "kind": "keyword_only", "default": "False"})
    before = _crafted(
        signatures={"Agent.call_chat_model": signature},
        extensible_functions={"_functions/agent/Agent/call_chat_model": {}},
        agent_loop={"chat_methods": {"call_chat_model": True}},
        webui={"slots": {"chat-top-end": ["a.html"], "old-slot": ["b.html"]}},
    )
    after = _crafted(
        signatures={"Agent.call_chat_model": changed, "Agent.call_chat_model_turn": signature},
        extensible_functions={
            "_functions/agent/Agent/call_chat_model": {},
            "_functions/agent/Agent/call_chat_model_turn": {},
        },
        agent_loop={"chat_methods": {"call_chat_model_turn": True}},
        webui={"slots": {"chat-top-end": ["a.html"]}},
    )

    items = {str(item): item for item in contract.drift(before, after, requirements)}

    assert list(items) == [
        "agent loop chat call: call_chat_model (@extensible) -> call_chat_model_turn (@extensible)",
        "signature: Agent.call_chat_model_turn added",
        "signature: Agent.call_chat_model: parameter background added (keyword_only, default False)",
        "@extensible hooks added: _functions/agent/Agent/call_chat_model_turn",
        "web UI slots removed: old-slot",
    ]
    loop = items["agent loop chat call: call_chat_model (@extensible) -> call_chat_model_turn (@extensible)"]
    assert set(loop.requirements) == {"chat-loop-method-hooked", "chat-loop-method-extensible"}
    assert items["web UI slots removed: old-slot"].requirements == ()


def test_drift_identical_facts_is_empty(supported_facts: dict[str, Any]) -> None:
    assert contract.drift(supported_facts, copy.deepcopy(supported_facts)) == []


# ----- committed baselines -------------------------------------------------------------------------


def test_every_row_has_a_baseline(releases: list[A0Release]) -> None:
    for release in releases:
        baseline = load_baseline(release)
        assert baseline["tag"] == release.baseline
        assert baseline["repository"] == release.repository
        assert len(baseline["commit"]) == 40, release.tag
        assert baseline["facts"]["environment"] is None


def test_latest_reads_its_baseline_tag(checked: dict[str, contract.ReleaseContract]) -> None:
    latest = checked["latest"]

    assert latest.release.baseline == "v2.6"
    assert latest.facts == checked["v2.6"].facts
    assert latest.facts_from == "baselines/v2.6.json (baseline of latest)"
    assert latest.drift == []


def test_v098_unsupported_without_plugin_system(checked: dict[str, contract.ReleaseContract]) -> None:
    result = checked["v0.9.8"]

    assert result.verdict.status == "unsupported"
    assert result.expect_matches is True
    required = [item for item in result.verdict.missing if item.severity == "required"]
    assert required[0].id == "plugin-system"
    assert required[0].reason.startswith("no plugin system")
    assert "helpers-package" in [item.id for item in required]


@pytest.mark.parametrize("tag", ["v2.0", "v2.6"])
def test_v2_supported(checked: dict[str, contract.ReleaseContract], tag: str) -> None:
    result = checked[tag]
    facts = result.facts

    # The shim rebinds the names helpers/litellm_transport.py imports, and the plugin hooks the new
    # chat turn method, so the move leaves every requirement met.
    assert result.verdict.status == "supported"
    assert facts["litellm"]["bindings"]["helpers/litellm_transport.py"] == [
        "acompletion",
        "adelete_responses",
        "aresponses",
        "completion",
        "delete_responses",
        "responses",
    ]
    assert "models.py" in facts["litellm"]["bindings"]  # embedding only
    assert facts["litellm"]["bindings"]["models.py"] == ["embedding"]
    assert facts["agent_loop"]["chat_methods"] == {"call_chat_model_turn": True}
    assert "_functions/agent/Agent/call_chat_model_turn" in facts["extensible_functions"]


def test_drift_v120_to_v20_names_binding_move(checked: dict[str, contract.ReleaseContract]) -> None:
    result = checked["v2.0"]

    assert result.previous_tag == "v1.20"
    summaries = [str(item) for item in result.drift]
    assert "litellm bindings: acompletion, completion moved from models.py to helpers/litellm_transport.py" in summaries
    assert "agent loop chat call: call_chat_model (@extensible) -> call_chat_model_turn (@extensible)" in summaries
    assert "signature: Agent.call_chat_model_turn added" in summaries


def test_rows_match_their_expect(checked: dict[str, contract.ReleaseContract]) -> None:
    for tag, result in checked.items():
        assert result.error is None, tag
        assert result.expect_matches in (None, True), f"{tag}: {result.verdict.summary()}"


def test_verdicts_of_all_rows(checked: dict[str, contract.ReleaseContract]) -> None:
    verdicts = {tag: result.verdict.status for tag, result in checked.items()}

    assert verdicts == {
        "v0.9.8": "unsupported",
        "v0.9.9.0": "supported",
        "v1.0": "supported",
        "v1.3": "supported",
        "v1.7": "supported",
        "v1.10": "supported",
        "v1.20": "supported",
        "v2.0": "supported",
        "v2.6": "supported",
        "latest": "supported",
    }


def test_missing_baseline_is_an_error(tmp_path: Path, releases: list[A0Release]) -> None:
    results = contract.check_releases(releases[:2], baselines_dir=tmp_path)

    assert [result.verdict for result in results] == [None, None]
    assert "no baseline for v0.9.8" in results[0].error
    assert results[0].expect_matches is False


def test_facts_override(tmp_path: Path, supported_facts: dict[str, Any]) -> None:
    facts = copy.deepcopy(supported_facts)
    del facts["webui"]["slots"]["chat-top-end"]
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts), encoding="utf-8")

    results = contract.check_releases([_row("v2.0"), _row("v2.6")], facts_overrides={"v2.6": path})

    assert results[1].facts_from == str(path)
    assert results[1].verdict.status == "degraded"
    assert "web UI slots removed: chat-top-end" in [str(item) for item in results[1].drift]


# ----- regeneration --------------------------------------------------------------------------------


def test_regenerate_v17_from_local_tree(tmp_path: Path) -> None:
    if not (V17_TREE / "agent.py").is_file():
        pytest.skip(f"no A0 v1.7 tree at {V17_TREE}: set TOKEN_METER_A0_V17_TREE to an export of tag v1.7")

    written = regenerate(
        [_row("v1.7")], sources={}, trees={"v1.7": V17_TREE}, python=sys.executable, baselines_dir=tmp_path
    )

    assert written == [tmp_path / "v1.7.json"]
    regenerated = json.loads(written[0].read_text(encoding="utf-8"))
    committed = load_baseline(_row("v1.7"))
    assert regenerated["facts"] == committed["facts"]
    assert regenerated["commit"] is None  # no --source given, so the tag's commit is unknown


def test_regenerate_exports_tag(tmp_path: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    tree = build_standin_v2(tmp_path / "work")
    (tree / "docs").mkdir(exist_ok=True)
    (tree / "docs" / "big.gif").write_bytes(b"GIF89a")
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stand-in"], check=True)
    subprocess.run([*git, "tag", "v9.1"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    rows = [
        A0Release("v9.1", "i:v9.1", "test/standin", "v9.1", "1.79.3", None),
        A0Release("latest", "i:latest", "test/standin", "v9.1", "1.79.3", None),
    ]

    written = regenerate(rows, sources={"test/standin": tree}, python=sys.executable, baselines_dir=tmp_path / "out")

    assert written == [tmp_path / "out" / "v9.1.json"]
    baseline = json.loads(written[0].read_text(encoding="utf-8"))
    assert baseline["commit"] == commit
    assert baseline["tag"] == "v9.1"
    assert baseline["facts"]["litellm"]["bindings"]["helpers/litellm_transport.py"] == [
        "acompletion",
        "aresponses",
        "completion",
        "responses",
    ]


def test_regenerate_without_source_fails(releases: list[A0Release], tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="no --source for repository agent0ai/agent-zero"):
        regenerate(releases, sources={}, baselines_dir=tmp_path)


def test_regenerate_unknown_only_tag(releases: list[A0Release], tmp_path: Path) -> None:
    with pytest.raises(BaselineError, match="not matrix rows: v0.1"):
        regenerate(releases, sources={}, only=["v0.1"], baselines_dir=tmp_path)


# ----- command line --------------------------------------------------------------------------------


def test_cli_check(capsys: pytest.CaptureFixture[str]) -> None:
    status = contract.main(["check"])

    output = capsys.readouterr().out
    assert status == 0
    assert "v0.9.8     unsupported (expected unsupported)" in output
    assert "drift from v1.20: litellm bindings: acompletion, completion moved" in output


def test_cli_check_facts_file(
    tmp_path: Path, supported_facts: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(supported_facts), encoding="utf-8")

    status = contract.main(["check", "--facts", str(path), "--release", "v2.6"])

    output = capsys.readouterr().out
    assert status == 0
    assert f"{path} supported" in output
    assert "drift from the v2.6 baseline: 0 items" in output


def test_cli_regenerate_bad_source(capsys: pytest.CaptureFixture[str]) -> None:
    status = contract.main(["regenerate", "--source", "no-equals-sign"])

    assert status == 2
    assert "invalid --source 'no-equals-sign', expected OWNER/NAME=PATH" in capsys.readouterr().err


def _copy_baselines(tmp_path: Path) -> Path:
    target = tmp_path / "baselines"
    shutil.copytree(contract.BASELINES_DIR, target)
    return target


def test_baseline_wrong_section_type_errors(tmp_path: Path) -> None:
    baselines = _copy_baselines(tmp_path)
    path = baselines / "v1.7.json"
    data = json.loads(path.read_text())
    data["facts"]["apis"] = "garbage"
    path.write_text(json.dumps(data))
    releases = [release for release in load_releases() if release.tag in ("v1.3", "v1.7", "v1.10")]

    results = {item.release.tag: item for item in contract.check_releases(releases, baselines_dir=baselines)}

    assert "probe output sections are not JSON objects: apis" in results["v1.7"].error
    assert results["v1.7"].verdict is None
    assert results["v1.10"].verdict.status == "supported"
    assert results["v1.10"].previous_tag == "v1.3"


def test_baseline_without_probe_sections_is_not_judged_supported(tmp_path: Path) -> None:
    baselines = _copy_baselines(tmp_path)
    (baselines / "v1.7.json").write_text(json.dumps({"tag": "v1.7", "facts": {"probe_version": 1, "x": 1}}))
    release = next(release for release in load_releases() if release.tag == "v1.7")

    (result,) = contract.check_releases([release], baselines_dir=baselines)

    assert result.verdict is None
    assert "probe output lacks agent_context" in result.error
