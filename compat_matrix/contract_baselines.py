"""Baselines: the committed probe facts of every A0 release in ``matrix.toml``.

A baseline is ``baselines/<tag>.json``::

    {"baseline_format": 1, "tag": "v1.7", "repository": "agent0ai/agent-zero",
     "commit": "<commit id of the tag, or null when probed from a tree given with --tree>",
     "facts": {...a0_probe.py output...}}

One file per baseline tag: the ``latest`` row has no file of its own and reads the file of its
``baseline`` tag. The facts leave out the probe's ``environment`` section (null) unless regenerated
with ``--with-environment``, because the interpreter that writes the baselines is not A0's.

``regenerate`` exports each baseline tag with ``git archive`` from a local copy of the row's
repository, runs ``a0_probe.py`` on the export with the given interpreter and writes the file. The
export leaves out ``docs/``, because the probe skips it and some snapshots lack its large GIFs.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .releases import A0Release

logger = logging.getLogger(__name__)

BASELINES_DIR = Path(__file__).with_name("baselines")
PROBE_SCRIPT = Path(__file__).with_name("a0_probe.py")
BASELINE_FORMAT = 1

GIT_TIMEOUT_S = 600.0
PROBE_TIMEOUT_S = 300.0

_TAG_RE = re.compile(r"^v[0-9]+(\.[0-9]+)*$")


class BaselineError(Exception):
    """A baseline could not be read, exported, probed or written."""


def baseline_path(tag: str, baselines_dir: Path = BASELINES_DIR) -> Path:
    """Return the file of a baseline tag. Raises BaselineError for a tag that is not vX.Y[.Z...]."""
    if not _TAG_RE.match(tag):
        raise BaselineError(f"invalid baseline tag {tag!r}, expected vX.Y[.Z...]")
    return baselines_dir / f"{tag}.json"


def load_baseline(release: A0Release, baselines_dir: Path = BASELINES_DIR) -> dict[str, Any]:
    """Return the baseline of a matrix row (``latest`` reads its ``baseline`` tag's file).

    Raises BaselineError when the file is missing or not a baseline.
    """
    path = baseline_path(release.baseline, baselines_dir)
    if not path.is_file():
        raise BaselineError(
            f"no baseline for {release.tag}: {path} not found; run "
            "`python -m compat_matrix.contract regenerate --source OWNER/NAME=REPO ...`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise BaselineError(f"baseline {path} cannot be read: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("facts"), dict):
        raise BaselineError(f"baseline {path} has no 'facts' object")
    if data.get("tag") != release.baseline:
        raise BaselineError(f"baseline {path} is for tag {data.get('tag')!r}, expected {release.baseline!r}")
    return data


# ----- regeneration ----------------------------------------------------------------------------------


def _pairs(values: Iterable[str], option: str, example: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for value in values:
        key, separator, path = value.partition("=")
        if not separator or not key or not path:
            raise ValueError(f"invalid {option} {value!r}, expected {example}")
        pairs[key] = path
    return pairs


def sources_from_args(values: Iterable[str]) -> dict[str, Path]:
    """Parse ``--source OWNER/NAME=PATH`` options. Raises ValueError for a malformed one."""
    return {key: Path(path) for key, path in _pairs(values, "--source", "OWNER/NAME=PATH").items()}


def trees_from_args(values: Iterable[str]) -> dict[str, Path]:
    """Parse ``--tree TAG=DIR`` options. Raises ValueError for a malformed one."""
    return {key: Path(path) for key, path in _pairs(values, "--tree", "TAG=DIR").items()}


def _git(repository: Path, *args: str) -> subprocess.CompletedProcess:
    command = ["git", f"--git-dir={_git_dir(repository)}", *args]
    try:
        return subprocess.run(command, capture_output=True, timeout=GIT_TIMEOUT_S, check=True)
    except subprocess.CalledProcessError as error:
        message = error.stderr.decode("utf-8", "replace").strip() if error.stderr else ""
        raise BaselineError(f"`{' '.join(command)}` failed with exit status {error.returncode}: {message}") from error
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BaselineError(f"`{' '.join(command)}` failed: {error}") from error


def _git_dir(repository: Path) -> Path:
    """Return the git folder of a bare repository or of a checkout."""
    dot_git = repository / ".git"
    return dot_git if dot_git.is_dir() else repository


def tag_commit(repository: Path, tag: str) -> str:
    """Return the commit id a tag points to. Raises BaselineError when the repository lacks the tag."""
    result = _git(repository, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}")
    return result.stdout.decode("ascii").strip()


def export_tag(repository: Path, tag: str, destination: Path) -> None:
    """Write the tree of ``tag`` without ``docs/`` into ``destination`` with ``git archive``."""
    command = ["git", f"--git-dir={_git_dir(repository)}", "archive", "--format=tar", tag, "--", ".", ":(exclude)docs"]
    with tempfile.TemporaryFile() as archive:
        try:
            process = subprocess.run(command, stdout=archive, stderr=subprocess.PIPE, timeout=GIT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise BaselineError(f"`{' '.join(command)}` failed: {error}") from error
        if process.returncode != 0:
            message = process.stderr.decode("utf-8", "replace").strip()
            raise BaselineError(f"`{' '.join(command)}` failed with exit status {process.returncode}: {message}")
        archive.seek(0)
        with tarfile.open(fileobj=archive, mode="r:") as tar:
            tar.extractall(destination, filter="data")


def probe_tree(tree: Path, python: str, with_environment: bool = False) -> dict[str, Any]:
    """Run ``a0_probe.py`` with ``python`` on an A0 tree and return its facts.

    Raises BaselineError when the probe fails, times out or prints something other than JSON.
    """
    command = [python, str(PROBE_SCRIPT), "--root", str(tree)]
    if not with_environment:
        command.append("--no-environment")
    try:
        process = subprocess.run(command, capture_output=True, timeout=PROBE_TIMEOUT_S, text=True)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise BaselineError(f"probe `{' '.join(command)}` failed: {error}") from error
    if process.returncode != 0:
        raise BaselineError(
            f"probe `{' '.join(command)}` exited with status {process.returncode}: {process.stderr.strip()}"
        )
    try:
        return json.loads(process.stdout)
    except ValueError as error:
        raise BaselineError(f"probe `{' '.join(command)}` printed invalid JSON: {error}") from error


def write_baseline(path: Path, release: A0Release, commit: str | None, facts: Mapping[str, Any]) -> None:
    data = {
        "baseline_format": BASELINE_FORMAT,
        "commit": commit,
        "facts": facts,
        "repository": release.repository,
        "tag": release.baseline,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def regenerate(
    releases: Iterable[A0Release],
    sources: Mapping[str, Path],
    trees: Mapping[str, Path] | None = None,
    python: str = "python3",
    baselines_dir: Path = BASELINES_DIR,
    only: Iterable[str] = (),
    with_environment: bool = False,
    print_line: Callable[[str], None] = lambda line: None,
) -> list[Path]:
    """Probe every baseline tag of ``releases`` (once per tag), write its file and return the files written.

    ``sources`` maps a row's ``repository`` to a local git repository holding its tags. ``trees`` maps
    a baseline tag to an exported tree to probe instead (the baseline's commit is then read from the
    source when it has the tag, else null). ``only`` limits the run to these row tags. Raises
    BaselineError naming the first release that cannot be regenerated. Files written before it stay.
    """
    trees = trees or {}
    wanted = set(only)
    unknown = wanted - {release.tag for release in releases}
    if unknown:
        raise BaselineError(f"--only names tags that are not matrix rows: {', '.join(sorted(unknown))}")

    written: list[Path] = []
    done: set[str] = set()
    for release in releases:
        if (wanted and release.tag not in wanted) or release.baseline in done:
            continue
        done.add(release.baseline)
        path = baseline_path(release.baseline, baselines_dir)
        repository = sources.get(release.repository)
        tree = trees.get(release.baseline)
        if tree is None and repository is None:
            raise BaselineError(
                f"{release.tag}: no --source for repository {release.repository} and no --tree {release.baseline}=DIR"
            )

        commit = None
        if repository is not None and tree is None:
            commit = tag_commit(repository, release.baseline)
        elif repository is not None:
            try:
                commit = tag_commit(repository, release.baseline)
            except BaselineError as error:
                logger.info("%s: commit unknown for --tree %s: %s", release.baseline, tree, error)
        if tree is not None:
            print_line(f"{release.baseline}: probing tree {tree}")
            facts = probe_tree(tree, python, with_environment)
        else:
            print_line(f"{release.baseline}: exporting {release.repository} at {commit[:12]} and probing it")
            with tempfile.TemporaryDirectory(prefix=f"a0-{release.baseline}-") as folder:
                export_tag(repository, release.baseline, Path(folder))
                facts = probe_tree(Path(folder), python, with_environment)
        write_baseline(path, release, commit, facts)
        logger.info("wrote baseline %s", path)
        print_line(f"{release.baseline}: wrote {path}")
        written.append(path)
    return written
