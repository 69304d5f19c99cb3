"""Tests of the litellm axis's data file, environment plan and newest-release fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from compat_matrix import litellm_axis
from compat_matrix.envs import STAMP_NAME
from compat_matrix.litellm_axis import AxisConfig, AxisEntry, filter_environments, plan_environments

PROJECT_ROOT = Path(__file__).resolve().parents[1]

CONFIG = AxisConfig(
    python="3.11",
    wrapt_variants={"2.x": ">=2,<3", "1.17.x": ">=1.17,<1.18"},
    entries=(AxisEntry("1.79.3", "2.x"), AxisEntry("1.79.3", "1.17.x"), AxisEntry("newest", "2.x")),
)


def test_shipped_data_file_loads() -> None:
    config = litellm_axis.load_axis_config()
    assert config.python == "3.11"
    assert config.wrapt_variants == {"2.x": ">=2,<3", "1.17.x": ">=1.17,<1.18"}
    assert [(entry.litellm, entry.wrapt) for entry in config.entries] == [
        ("1.79.3", "2.x"),
        ("1.79.3", "1.17.x"),
        ("1.88.1", "2.x"),
        ("newest", "2.x"),
    ]


def test_data_file_unknown_variant(tmp_path: Path) -> None:
    path = tmp_path / "axis.toml"
    path.write_text(
        '[litellm_axis.wrapt_variants]\n"2.x" = ">=2"\n[[litellm_axis.environment]]\nlitellm = "1.0.0"\nwrapt = "3.x"\n'
    )
    with pytest.raises(ValueError, match="environment 1: unknown wrapt variant '3.x'"):
        litellm_axis.load_axis_config(path)


def test_data_file_invalid_version(tmp_path: Path) -> None:
    path = tmp_path / "axis.toml"
    path.write_text(
        '[litellm_axis.wrapt_variants]\n"2.x" = ">=2"\n'
        '[[litellm_axis.environment]]\nlitellm = "latest"\nwrapt = "2.x"\n'
    )
    with pytest.raises(ValueError, match="invalid litellm version 'latest'"):
        litellm_axis.load_axis_config(path)


def test_plan_resolves_newest_once() -> None:
    calls = []

    def resolve() -> tuple[str, str]:
        calls.append(1)
        return "1.110.2", "Newest litellm release on the package index: 1.110.2."

    planned, notes = plan_environments(CONFIG, resolve=resolve)
    assert len(calls) == 1
    assert notes == []
    assert [env.label for env in planned] == [
        "litellm 1.79.3 + wrapt 2.x",
        "litellm 1.79.3 + wrapt 1.17.x",
        "litellm 1.110.2 (newest) + wrapt 2.x",
    ]
    assert planned[2].key == "py3.11-litellm-1.110.2-wrapt-2.x"
    assert planned[2].wrapt_spec == ">=2,<3"
    assert planned[2].note == "Newest litellm release on the package index: 1.110.2."
    assert planned[0].note == ""


def test_plan_newest_equal_to_listed_runs_once() -> None:
    planned, notes = plan_environments(CONFIG, resolve=lambda: ("1.79.3", "resolved"))
    assert [env.key for env in planned] == ["py3.11-litellm-1.79.3-wrapt-2.x", "py3.11-litellm-1.79.3-wrapt-1.17.x"]
    assert notes == ["litellm 1.79.3 (newest) + wrapt 2.x is listed twice and runs once."]


def test_plan_unresolved_newest() -> None:
    planned, _ = plan_environments(CONFIG, resolve=lambda: (None, "could not resolve"))
    newest = planned[2]
    assert newest.litellm is None
    assert newest.label == "litellm ? (newest) + wrapt 2.x"
    assert newest.key == "py3.11-litellm-newest-wrapt-2.x"


def test_plan_overrides_replace_defaults() -> None:
    def resolve() -> tuple[str, str]:
        raise AssertionError("resolve must not run without 'newest'")

    planned, _ = plan_environments(CONFIG, ["1.80.0", "1.81.0"], ["2.x", "1.17.x"], resolve=resolve)
    assert [env.label for env in planned] == [
        "litellm 1.80.0 + wrapt 2.x",
        "litellm 1.80.0 + wrapt 1.17.x",
        "litellm 1.81.0 + wrapt 2.x",
        "litellm 1.81.0 + wrapt 1.17.x",
    ]


def test_plan_override_defaults_to_wrapt_2() -> None:
    planned, _ = plan_environments(CONFIG, ["1.80.0"])
    assert [env.wrapt_variant for env in planned] == ["2.x"]


def test_plan_rejects_unknown_wrapt_override() -> None:
    with pytest.raises(ValueError, match="unknown wrapt variant '0.9'"):
        plan_environments(CONFIG, ["1.80.0"], ["0.9"])


def test_filter_by_label_or_key() -> None:
    planned, _ = plan_environments(CONFIG, resolve=lambda: ("1.110.2", "resolved"))
    assert [env.wrapt_variant for env in filter_environments(planned, ["WRAPT 1.17"])] == ["1.17.x"]
    assert len(filter_environments(planned, ["1.79.3"])) == 2
    assert [env.litellm for env in filter_environments(planned, ["newest"])] == ["1.110.2"]
    assert [env.litellm for env in filter_environments(planned, ["litellm-1.110.2"])] == ["1.110.2"]
    assert filter_environments(planned, ["nothing"]) == []
    assert filter_environments(planned, []) == planned


@pytest.mark.parametrize("text", ["1.79.3", "1.80.0rc1", "2.0.0.post1", "newest"])
def test_validate_version_accepts(text: str) -> None:
    assert litellm_axis.validate_litellm_version(text) == text


@pytest.mark.parametrize("text", ["", "latest", "==1.79.3", "1.79.3; rm -rf /", "v1.0"])
def test_validate_version_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="invalid litellm version"):
        litellm_axis.validate_litellm_version(text)


def test_test_requirements_follow_pyproject() -> None:
    assert litellm_axis.read_test_requirements(PROJECT_ROOT) == ("pytest>=8", "pytest-asyncio>=0.24")


def test_test_requirements_without_extra(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert litellm_axis.read_test_requirements(tmp_path) == ("pytest", "pytest-asyncio")


def _write_stamp(envs_dir: Path, key: str, litellm: str | None) -> None:
    env = envs_dir / key
    env.mkdir(parents=True)
    installed = {"litellm": litellm} if litellm else {}
    (env / STAMP_NAME).write_text(json.dumps({"format": 1, "installed": installed}))


def test_newest_cached_compares_versions(tmp_path: Path) -> None:
    _write_stamp(tmp_path, "a", "1.88.1")
    _write_stamp(tmp_path, "b", "1.110.2")
    _write_stamp(tmp_path, "c", "1.9.0")
    _write_stamp(tmp_path, "d", None)
    (tmp_path / "incomplete").mkdir()
    assert litellm_axis.newest_cached_litellm(tmp_path) == "1.110.2"
    assert litellm_axis.newest_cached_litellm(tmp_path / "missing") is None


def test_resolve_newest_falls_back_to_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(python: str) -> str:
        raise RuntimeError("index unreachable")

    monkeypatch.setattr(litellm_axis, "query_newest_litellm", fail)
    version, note = litellm_axis.resolve_newest("3.11", tmp_path)
    assert version is None
    assert "index unreachable" in note
    assert "no cached environment" in note

    _write_stamp(tmp_path, "cached", "1.88.1")
    version, note = litellm_axis.resolve_newest("3.11", tmp_path)
    assert version == "1.88.1"
    assert "newest version in the environment cache" in note
