"""The A0 rows of the compatibility matrix, read from the ``[[a0_release]]`` tables of ``matrix.toml``."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DATA_FILE = Path(__file__).with_name("matrix.toml")
VERDICTS = ("supported", "degraded", "unsupported")
LATEST = "latest"

_TAG_RE = re.compile(r"^v[0-9]+(\.[0-9]+)*$")
_REPOSITORY_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class A0Release:
    """One A0 release of the matrix.

    ``baseline`` is the tag whose source the committed baseline was probed from: ``tag`` itself,
    except for ``latest``, whose baseline is the newest tag this project could read. ``expect`` is
    the verdict the release is known to get, or None when the row does not state one.
    """

    tag: str
    image: str
    repository: str
    baseline: str
    litellm: str
    expect: str | None

    @property
    def slug(self) -> str:
        """File-name-safe form of the tag, used for baseline and report file names."""
        return self.tag.replace("/", "_")


def version_key(tag: str) -> tuple[int, ...]:
    """Sort key of a release tag: ``v1.10`` after ``v1.9``; ``latest`` after every numbered tag."""
    if tag == LATEST:
        return (10**9,)
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def _release_from(raw: dict, index: int, path: Path) -> A0Release:
    where = f"{path}: a0_release {index}"
    tag = str(raw.get("tag", ""))
    if tag != LATEST and not _TAG_RE.match(tag):
        raise ValueError(f"{where}: invalid tag {tag!r}, expected vX.Y[.Z...] or {LATEST!r}")

    image = str(raw.get("image") or f"agent0ai/agent-zero:{tag}")
    repository = str(raw.get("repository", ""))
    if not _REPOSITORY_RE.match(repository):
        raise ValueError(f"{where} ({tag}): repository must be owner/name, got {repository!r}")

    baseline = str(raw.get("baseline") or tag)
    if not _TAG_RE.match(baseline):
        raise ValueError(f"{where} ({tag}): baseline must be a numbered tag, got {baseline!r}")

    expect = raw.get("expect")
    if expect is not None and expect not in VERDICTS:
        raise ValueError(f"{where} ({tag}): expect must be one of {VERDICTS}, got {expect!r}")

    return A0Release(tag, image, repository, baseline, str(raw.get("litellm", "")), expect)


def load_releases(path: Path = DATA_FILE) -> list[A0Release]:
    """Return the rows in release order. Raises ValueError naming the invalid row or a duplicate tag."""
    with path.open("rb") as file:
        data = tomllib.load(file)

    releases = [_release_from(raw, index, path) for index, raw in enumerate(data.get("a0_release", []), start=1)]
    if not releases:
        raise ValueError(f"{path}: no [[a0_release]] rows")

    tags = [release.tag for release in releases]
    duplicates = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate a0_release tags: {', '.join(duplicates)}")
    return sorted(releases, key=lambda release: version_key(release.tag))


def main(argv: list[str] | None = None) -> int:
    """Print the release tags of matrix.toml as a JSON list (used by the GitHub Actions workflow)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix.releases", description="Print the A0 release tags of matrix.toml as JSON."
    )
    parser.add_argument("--data-file", type=Path, default=DATA_FILE, help="matrix file (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        releases = load_releases(args.data_file)
    except (OSError, ValueError) as error:
        print(f"error: {error}")
        return 2
    print(json.dumps([release.tag for release in releases]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
