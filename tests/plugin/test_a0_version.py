"""Detection of the running A0's version: environment override, A0's git helper, and ``.git`` files.

The ``.git`` cases build real repositories with the git command line, so the reader is checked
against what git itself writes (loose refs, annotated tag objects, ``packed-refs``, worktrees).
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command line")


@pytest.fixture
def a0_version(plugin_tree, monkeypatch):
    """The plugin's a0_version module with no override set and no A0 ``helpers`` package importable."""
    module = importlib.import_module("token_meter.helpers.a0_version")
    monkeypatch.delenv(module.ENV_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "helpers", None)
    return module


def git(repo: Path, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=test@example.invalid", *args],
        check=True,
        capture_output=True,
        text=True,
    )
    return completed.stdout.strip()


def new_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    (path / "agent.py").write_text("one\n", encoding="utf-8")
    git(path, "add", "agent.py")
    git(path, "commit", "-q", "-m", "first")
    return path


def add_commit(repo: Path) -> None:
    (repo / "agent.py").write_text("two\n", encoding="utf-8")
    git(repo, "commit", "-q", "-am", "second")


def stand_in_helpers(monkeypatch, get_version=None, base_dir: Path | None = None) -> None:
    """Put a stand-in for A0's ``helpers`` package (``git.get_version``, ``files.get_base_dir``) in place."""
    package = types.ModuleType("helpers")
    if get_version is not None:
        package.git = types.SimpleNamespace(get_version=get_version)
    if base_dir is not None:
        package.files = types.SimpleNamespace(get_base_dir=lambda: str(base_dir))
    monkeypatch.setitem(sys.modules, "helpers", package)


def test_environment_override_wins(a0_version, monkeypatch, tmp_path):
    monkeypatch.setenv(a0_version.ENV_VARIABLE, " v1.7 ")
    stand_in_helpers(monkeypatch, get_version=lambda: "v2.6")

    detected = a0_version.detect_a0_version(tmp_path)

    assert detected.version == "v1.7"
    assert detected.source == f"environment variable {a0_version.ENV_VARIABLE}"


def test_a0_git_helper_used(a0_version, monkeypatch, tmp_path):
    stand_in_helpers(monkeypatch, get_version=lambda: "v2.6")

    detected = a0_version.detect_a0_version(tmp_path)

    assert detected.version == "v2.6"
    assert detected.source == "A0 helpers.git.get_version()"


@needs_git
def test_helper_unknown_falls_back_to_git_files(a0_version, monkeypatch, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.3")
    stand_in_helpers(monkeypatch, get_version=lambda: "unknown", base_dir=repo)

    detected = a0_version.detect_a0_version()

    assert detected.version == "v1.3"
    assert detected.source == f"git tag at HEAD in {repo}"


def test_helper_error_and_no_git_gives_reasons(a0_version, monkeypatch, tmp_path):
    def broken() -> str:
        raise RuntimeError("git binary missing")

    stand_in_helpers(monkeypatch, get_version=broken)

    detected = a0_version.detect_a0_version(tmp_path)

    assert detected.version is None
    assert detected.source is None
    assert "get_version() failed (RuntimeError: git binary missing)" in detected.reason
    assert f"{tmp_path} has no .git" in detected.reason


def test_no_helpers_and_unknown_folder(a0_version):
    detected = a0_version.detect_a0_version()

    # The test build of the plugin is not inside <A0>/usr/plugins, so there is no A0 folder.
    assert detected.version is None
    assert "helpers.git cannot be imported" in detected.reason
    assert "the A0 folder is unknown" in detected.reason


def test_plugin_folder_gives_a0_folder(a0_version, monkeypatch, tmp_path):
    plugin_dir = tmp_path / "a0" / "usr" / "plugins" / "token_meter"
    monkeypatch.setattr(a0_version, "PLUGIN_DIR", plugin_dir)

    assert a0_version._a0_base_dir() == tmp_path / "a0"


def test_hand_written_packed_refs(a0_version, tmp_path):
    head = "1" * 40
    tag_object = "2" * 40
    dot_git = tmp_path / ".git"
    dot_git.mkdir()
    (dot_git / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (dot_git / "packed-refs").write_text(
        "# pack-refs with: peeled fully-peeled sorted\n"
        f"{head} refs/heads/main\n"
        f"{'3' * 40} refs/tags/v1.0\n"
        f"{tag_object} refs/tags/v1.3\n"
        f"^{head}\n",
        encoding="utf-8",
    )

    assert a0_version.tag_at_head(tmp_path) == ("v1.3", "")


@needs_git
def test_lightweight_loose_tag(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.7")

    assert a0_version.tag_at_head(repo) == ("v1.7", "")


@needs_git
def test_annotated_loose_tag_peeled(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "-a", "v2.0", "-m", "release")
    assert git(repo, "cat-file", "-t", "v2.0") == "tag"

    assert a0_version.tag_at_head(repo) == ("v2.0", "")


@needs_git
def test_packed_annotated_tag_peeled(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "-a", "v2.6", "-m", "release")
    git(repo, "gc", "-q")
    assert not (repo / ".git" / "refs" / "tags" / "v2.6").exists(), "gc should have packed the tag"

    assert a0_version.tag_at_head(repo) == ("v2.6", "")


@needs_git
def test_detached_head_at_tag(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.3")
    add_commit(repo)
    git(repo, "checkout", "-q", "--detach", "v1.3")

    assert a0_version.tag_at_head(repo) == ("v1.3", "")


@needs_git
def test_head_past_tag_not_matched(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.3")
    add_commit(repo)

    tag, reason = a0_version.tag_at_head(repo)

    assert tag is None
    assert reason.startswith("no tag points at HEAD")


@needs_git
def test_highest_of_two_tags(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.9")
    git(repo, "tag", "v1.10")

    assert a0_version.tag_at_head(repo) == ("v1.10", "")


@needs_git
def test_worktree_git_file(a0_version, tmp_path):
    repo = new_repo(tmp_path / "a0")
    git(repo, "tag", "v1.3")
    add_commit(repo)
    git(repo, "tag", "v1.7")
    worktree = tmp_path / "worktree"
    git(repo, "worktree", "add", "-q", "--detach", str(worktree), "v1.3")
    assert (worktree / ".git").is_file()

    assert a0_version.tag_at_head(worktree) == ("v1.3", "")
    assert a0_version.tag_at_head(repo) == ("v1.7", "")
