"""Compare the running A0's version with the range of A0 releases the compatibility suite proved.

The suite writes ``compatibility.json`` into the plugin folder. Its ``ranges`` are runs of
consecutive proven matrix releases, each ``{"from": tag, "to": tag}``, and ``releases`` lists every
matrix row with its contract verdict and live check. A version between the two ends of one run
counts as inside, so v1.5 is inside ``v1.3`` to ``v1.7`` although the suite ran neither v1.4 nor v1.5.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .a0_version import DetectedVersion

COMPATIBILITY_FILE = Path(__file__).resolve().parent.parent / "compatibility.json"
SCHEMA_VERSION = 1

INSIDE = "inside"
OUTSIDE = "outside"
UNKNOWN_VERSION = "unknown version"
INVALID_METADATA = "invalid metadata"

_VERSION_RE = re.compile(r"^[vV]?(?P<numbers>\d+(?:\.\d+)*)(?P<suffix>.*)$")
_POST_SUFFIX_RE = re.compile(r"^(?:[-+]\d+(?:-g[0-9a-f]+)?)$")


@dataclass(frozen=True)
class RangeCheck:
    """Outcome of the check: ``state``, the popover warning (None when there is nothing to warn
    about), the version checked, and why the check could not be made, when it could not."""

    state: str
    warning: str | None
    version: str | None = None
    reason: str | None = None


def version_key(version: str) -> tuple[tuple[int, ...], int] | None:
    """Return a sort key of a version such as ``v1.7``, ``v0.9.8-pre`` or ``v1.7-3-gabc1234``.

    Returns None when the text does not start with a dotted number. Trailing zero parts do not count
    (``v0.9.9`` equals ``v0.9.9.0``). An alphabetic suffix (``-pre``, ``-rc1``) sorts before the
    release. A commit distance (``-3``, ``+3``, ``-3-gSHA``) sorts after it.
    """
    match = _VERSION_RE.match(version.strip())
    if not match:
        return None
    numbers = [int(part) for part in match.group("numbers").split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    suffix = match.group("suffix").strip()
    if not suffix:
        rank = 0
    elif _POST_SUFFIX_RE.match(suffix):
        rank = 1
    else:
        rank = -1
    return tuple(numbers), rank


def load_compatibility(path: Path = COMPATIBILITY_FILE) -> dict[str, Any]:
    """Read and validate ``compatibility.json``. Raises ValueError naming what is missing or invalid."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ValueError(f"{path.name} is missing") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path.name} cannot be read ({type(exc).__name__}: {exc})") from exc

    if not isinstance(data, dict) or data.get("schema") != SCHEMA_VERSION:
        raise ValueError(f"{path.name} has no schema {SCHEMA_VERSION} object")
    ranges = data.get("ranges")
    if not isinstance(ranges, list):
        raise ValueError(f"{path.name}: 'ranges' must be a list")
    for item in ranges:
        ends = (item.get("from"), item.get("to")) if isinstance(item, dict) else (None, None)
        if not all(isinstance(end, str) and version_key(end) for end in ends):
            raise ValueError(f"{path.name}: invalid range {item!r}, expected {{'from': tag, 'to': tag}}")
    releases = data.get("releases", [])
    if not isinstance(releases, list) or not all(isinstance(row, dict) for row in releases):
        raise ValueError(f"{path.name}: 'releases' must be a list of objects")
    return data


def describe_ranges(ranges: list[dict[str, str]]) -> str:
    """Return the ranges as text: ``v1.3 to v1.7 and v2.0``."""
    parts = [item["from"] if item["from"] == item["to"] else f"{item['from']} to {item['to']}" for item in ranges]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]


def check_version(detected: DetectedVersion, path: Path = COMPATIBILITY_FILE) -> RangeCheck:
    """Compare the detected A0 version with the proven ranges in ``path``; never raises.

    An unknown version gives no warning: A0 trees without git metadata (source archives) cannot
    tell their version, and a warning there would name no known problem. A missing or invalid
    ``compatibility.json`` gives a warning, because the plugin install is incomplete.
    """
    try:
        data = load_compatibility(path)
    except ValueError as exc:
        return RangeCheck(
            INVALID_METADATA,
            f"Token Meter cannot check the A0 version because {exc}. Reinstall the plugin.",
            detected.version,
            str(exc),
        )

    version = detected.version
    key = version_key(version) if version else None
    if key is None:
        reason = detected.reason if version is None else f"version {version!r} is not a dotted number"
        return RangeCheck(UNKNOWN_VERSION, None, version, reason)

    ranges = data["ranges"]
    for item in ranges:
        if version_key(item["from"]) <= key <= version_key(item["to"]):
            return RangeCheck(INSIDE, None, version)
    return RangeCheck(OUTSIDE, _outside_warning(version, key, ranges, data.get("releases", [])), version)


def _outside_warning(version: str, key: tuple, ranges: list[dict[str, str]], releases: list[dict]) -> str:
    if not ranges:
        return f"Token Meter has not been proven on any A0 release yet, and this is A0 {version}."
    text = f"Token Meter was checked with A0 {describe_ranges(ranges)}, but this is A0 {version}."
    row = next((row for row in releases if isinstance(row.get("tag"), str) and version_key(row["tag"]) == key), None)
    if row is not None and row.get("verdict") == "unsupported":
        text += " The compatibility suite found this release unsupported."
    elif row is not None and row.get("live") == "failed":
        text += " This release failed the compatibility suite's live check."
    else:
        text += " Figures may be missing or wrong."
    return text
