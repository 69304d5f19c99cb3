"""The version of the running Agent Zero (A0), found without network access or new heavy imports.

A0 has no version file or version environment variable (checked in v0.9.9.0 to v2.6). Its Docker
images clone the repository and copy the clone, ``.git`` included, to ``/a0`` (A0's
``docker/run/fs/ins/install_A0.sh`` and ``copy_A0.sh``). A0 shows the tag that
``git describe --tags`` finds there (``helpers.git.get_version``, which returns ``"unknown"``
without git metadata). Sources, in order:

1. ``TOKEN_METER_A0_VERSION``: set by the user, for A0 trees without git metadata (source archives);
2. A0's ``helpers.git.get_version()``, which A0 has imported at start-up already;
3. the A0 folder's ``.git``, read as files: a tag that points at HEAD (exact matches only).
"""

from __future__ import annotations

import os
import re
import zlib
from dataclasses import dataclass
from pathlib import Path

ENV_VARIABLE = "TOKEN_METER_A0_VERSION"
PLUGIN_DIR = Path(__file__).resolve().parent.parent

_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
_TAG_PREFIX = "refs/tags/"


@dataclass(frozen=True)
class DetectedVersion:
    """The A0 version string (None when not found), where it came from, and why each source failed."""

    version: str | None
    source: str | None
    reason: str | None = None


def detect_a0_version(base_dir: Path | None = None) -> DetectedVersion:
    """Return A0's version from the first source that has one; errors become reasons, never exceptions.

    ``base_dir`` is A0's folder. By default it comes from A0's ``helpers.files.get_base_dir()``, or
    from the plugin's place in ``<A0>/usr/plugins/token_meter``.
    """
    override = os.environ.get(ENV_VARIABLE, "").strip()
    if override:
        return DetectedVersion(override, f"environment variable {ENV_VARIABLE}")

    failures = []
    version, failure = _from_a0_helper()
    if version:
        return DetectedVersion(version, "A0 helpers.git.get_version()")
    failures.append(failure)

    folder = base_dir or _a0_base_dir()
    if folder is None:
        failures.append("the A0 folder is unknown")
    else:
        version, failure = tag_at_head(folder)
        if version:
            return DetectedVersion(version, f"git tag at HEAD in {folder}")
        failures.append(failure)
    return DetectedVersion(None, None, "; ".join(failures))


def _from_a0_helper() -> tuple[str | None, str]:
    try:
        from helpers import git
    except Exception as exc:
        return None, f"A0's helpers.git cannot be imported ({type(exc).__name__})"
    try:
        version = str(git.get_version()).strip()
    except Exception as exc:
        return None, f"A0's helpers.git.get_version() failed ({type(exc).__name__}: {exc})"
    if not version or version == "unknown":
        return None, "A0's helpers.git.get_version() returned 'unknown' (no git metadata or no tag)"
    return version, ""


def _a0_base_dir() -> Path | None:
    try:
        from helpers import files

        return Path(files.get_base_dir())
    except Exception:
        pass
    if PLUGIN_DIR.parent.name == "plugins" and PLUGIN_DIR.parent.parent.name == "usr":
        return PLUGIN_DIR.parents[2]
    return None


# ----- reading .git ---------------------------------------------------------------------------------


def tag_at_head(base_dir: Path) -> tuple[str | None, str]:
    """Return (tag, "") for a tag pointing at HEAD of ``base_dir``'s git repository, or (None, why).

    Reads ``.git`` as files: HEAD, loose refs and ``packed-refs``. An annotated tag is peeled through
    the peeled line of ``packed-refs`` or its loose tag object. A tag object stored only in a pack is
    skipped. When several tags point at HEAD, the one with the highest version wins.
    """
    try:
        git_dir = _git_dir(base_dir)
        if git_dir is None:
            return None, f"{base_dir} has no .git"
        common_dir = _common_dir(git_dir)
        packed = _packed_refs(common_dir)
        head = _resolve_head(git_dir, common_dir, packed)
        if head is None:
            return None, f"HEAD of {git_dir} cannot be resolved"
        tags = [name for name, commit in _tag_commits(common_dir, packed).items() if commit == head]
    except Exception as exc:  # any unusual .git layout: the plugin must not fail inside A0
        return None, f"reading {base_dir}/.git failed ({type(exc).__name__}: {exc})"
    if not tags:
        return None, f"no tag points at HEAD {head[:12]} in {git_dir}"
    return max(tags, key=_tag_sort_key), ""


def _git_dir(base_dir: Path) -> Path | None:
    dot_git = base_dir / ".git"
    if dot_git.is_dir():
        return dot_git
    if dot_git.is_file():
        # A worktree or submodule: ".git" is a file "gitdir: <path>".
        text = dot_git.read_text(encoding="utf-8").strip()
        if text.startswith("gitdir:"):
            target = Path(text.removeprefix("gitdir:").strip())
            return target if target.is_absolute() else (base_dir / target).resolve()
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"
    if common.is_file():
        target = Path(common.read_text(encoding="utf-8").strip())
        return target if target.is_absolute() else (git_dir / target).resolve()
    return git_dir


def _packed_refs(common_dir: Path) -> dict[str, tuple[str, str | None]]:
    """Map ref name to (sha, peeled sha or None) from ``packed-refs``."""
    refs: dict[str, tuple[str, str | None]] = {}
    path = common_dir / "packed-refs"
    if not path.is_file():
        return refs
    last: str | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("^") and last is not None:
            refs[last] = (refs[last][0], line[1:].strip())
            continue
        parts = line.split(" ", 1)
        if len(parts) == 2 and _SHA_RE.match(parts[0]):
            last = parts[1].strip()
            refs[last] = (parts[0], None)
        else:
            last = None
    return refs


def _resolve_head(git_dir: Path, common_dir: Path, packed: dict[str, tuple[str, str | None]]) -> str | None:
    value = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    for _ in range(5):  # symbolic refs rarely chain; stop on loops
        if _SHA_RE.match(value):
            return value
        if not value.startswith("ref:"):
            return None
        ref = value.removeprefix("ref:").strip()
        loose = common_dir / ref
        if loose.is_file():
            value = loose.read_text(encoding="utf-8").strip()
        elif ref in packed:
            value = packed[ref][0]
        else:
            return None
    return None


def _tag_commits(common_dir: Path, packed: dict[str, tuple[str, str | None]]) -> dict[str, str]:
    """Map tag name to the commit it points at; loose refs replace packed ones of the same name."""
    commits: dict[str, str] = {}
    for ref, (sha, peeled) in packed.items():
        if ref.startswith(_TAG_PREFIX):
            commits[ref.removeprefix(_TAG_PREFIX)] = peeled or sha
    tags_dir = common_dir / "refs" / "tags"
    if tags_dir.is_dir():
        for path in tags_dir.rglob("*"):
            if not path.is_file():
                continue
            sha = path.read_text(encoding="utf-8").strip()
            if _SHA_RE.match(sha):
                commits[path.relative_to(tags_dir).as_posix()] = _peel_loose(common_dir, sha)
    return commits


def _peel_loose(common_dir: Path, sha: str) -> str:
    """Return the commit an annotated tag object points at, or ``sha`` for anything else."""
    path = common_dir / "objects" / sha[:2] / sha[2:]
    if not path.is_file():
        return sha  # a commit, or a tag object in a pack (not read here)
    data = zlib.decompress(path.read_bytes())
    header, _, body = data.partition(b"\0")
    if not header.startswith(b"tag "):
        return sha
    first_line = body.split(b"\n", 1)[0].decode("ascii", "replace")
    target = first_line.removeprefix("object ").strip()
    return target if first_line.startswith("object ") and _SHA_RE.match(target) else sha


def _tag_sort_key(tag: str) -> tuple[tuple[int, ...], str]:
    numbers = tuple(int(part) for part in re.findall(r"\d+", tag))
    return numbers, tag
