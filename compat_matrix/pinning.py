"""Write the A0 releases the suite proved into the plugin's README, compatibility.json and plugin.yaml.

A matrix release is *proven* when one check supports it and none contradicts it:

- its contract verdict is supported or degraded, or its live end-to-end check passed, and
- its verdict is not unsupported and its live check did not fail.

A release proven by a passed live check counts as proven live, otherwise as proven by contract
only. The *proven ranges* are the runs of consecutive proven numbered releases in matrix order. A
row that is not proven, or was not checked at all, ends a run. ``latest`` is listed but never
bounds a range, because the image it names moves. The plugin warns when the running A0 is outside
every range (``a0_plugin/helpers/a0_range.py``).

Targets, each changed only in its own part:

- ``a0_plugin/README.md``: the text between ``BEGIN_MARKER`` and ``END_MARKER``;
- ``a0_plugin/compatibility.json``: the whole file, read by the plugin at run time;
- ``a0_plugin/plugin.yaml``: the ``a0_proven_range`` key, which A0's plugin loader ignores (its
  pydantic ``PluginMetadata`` keeps the default ``extra="ignore"`` in v0.9.9.0 to v2.6).

Writing is idempotent: the same outcomes give byte-identical files, and ``recorded_on`` keeps its
old date while the recorded evidence does not change.

Usage: ``python -m compat_matrix.pinning --from-report reports/a0_matrix.json [--check]``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import re
import sys
import textwrap
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .releases import DATA_FILE, LATEST, VERDICTS, load_releases, version_key

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PLUGIN_DIR = "a0_plugin"
COMPATIBILITY_FILE = "compatibility.json"
SCHEMA_VERSION = 1

BEGIN_MARKER = "<!-- a0-proven-range:begin (written by python -m compat_matrix.pinning; edits here are lost) -->"
END_MARKER = "<!-- a0-proven-range:end -->"
YAML_KEY = "a0_proven_range"
YAML_COMMENT = "# Written by python -m compat_matrix.pinning; details in compatibility.json."

LIVE_PASSED = "passed"
LIVE_FAILED = "failed"
LIVE_NOT_RUN = "not run"
LIVE_STATES = (LIVE_PASSED, LIVE_FAILED, LIVE_NOT_RUN)

PROVEN_LIVE = "live"
PROVEN_BY_CONTRACT = "contract"

RULE = (
    "A release is proven when its contract verdict is supported or degraded, or its live check passed, "
    "and its verdict is not unsupported and its live check did not fail. Ranges are runs of consecutive "
    "proven matrix releases. 'latest' never bounds a range."
)


@dataclass(frozen=True)
class ReleaseOutcome:
    """The suite's result for one matrix row.

    ``tag`` is the row's tag or ``latest``. ``verdict`` is the contract verdict, or None when the
    contract check did not run or failed. ``live`` is ``passed``, ``failed`` or ``not run``.
    ``missing_features`` names the features a degraded release lacks.
    """

    tag: str
    verdict: str | None
    live: str = LIVE_NOT_RUN
    backend: str | None = None
    image: str | None = None
    missing_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.tag != LATEST and not re.fullmatch(r"v[0-9]+(\.[0-9]+)*", self.tag):
            raise ValueError(f"invalid tag {self.tag!r}, expected vX.Y[.Z...] or {LATEST!r}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"{self.tag}: invalid verdict {self.verdict!r}, expected one of {VERDICTS} or None")
        if self.live not in LIVE_STATES:
            raise ValueError(f"{self.tag}: invalid live check result {self.live!r}, expected one of {LIVE_STATES}")

    @property
    def proof(self) -> str | None:
        """``live``, ``contract``, or None when the release is not proven."""
        if self.verdict == "unsupported" or self.live == LIVE_FAILED:
            return None
        if self.live == LIVE_PASSED:
            return PROVEN_LIVE
        if self.verdict in ("supported", "degraded"):
            return PROVEN_BY_CONTRACT
        return None


@dataclass
class PinResult:
    """The ranges written, as ``(from, to)`` tags, and the files that changed (or would change)."""

    ranges: list[tuple[str, str]]
    changed: list[Path] = field(default_factory=list)


def proven_ranges(outcomes: Iterable[ReleaseOutcome]) -> list[tuple[str, str]]:
    """Return the runs of consecutive proven numbered releases as ``(from, to)`` tags."""
    numbered = sorted((o for o in outcomes if o.tag != LATEST), key=lambda o: version_key(o.tag))
    ranges: list[tuple[str, str]] = []
    start: str | None = None
    previous: str | None = None
    for outcome in numbered:
        if outcome.proof is None:
            if start is not None:
                ranges.append((start, previous))
            start = None
        elif start is None:
            start = outcome.tag
        previous = outcome.tag
    if start is not None:
        ranges.append((start, previous))
    return ranges


def describe_ranges(ranges: Sequence[tuple[str, str]]) -> str:
    """Return ``v1.3 to v1.7 and v2.0``, or ``none``."""
    parts = [start if start == end else f"{start} to {end}" for start, end in ranges]
    if not parts:
        return "none"
    if len(parts) == 1:
        return parts[0]
    return ", ".join(parts[:-1]) + " and " + parts[-1]


# ----- write -----------------------------------------------------------------------------------------


def write_proven_range(
    project_root: Path,
    outcomes: Iterable[ReleaseOutcome],
    *,
    today: datetime.date | None = None,
    check_only: bool = False,
    matrix_tags: Iterable[str] | None = None,
) -> PinResult:
    """Write the proven ranges of ``outcomes`` into the plugin's README, compatibility.json and plugin.yaml.

    A tag of ``matrix_tags`` (default: the rows of ``matrix.toml``) without an outcome counts as not
    checked, so a run over some releases only never publishes a range across the ones it skipped.
    ``today`` is the date recorded when the evidence changed (default: today's date). With
    ``check_only`` nothing is written and ``changed`` lists the files that would change. Raises
    ValueError for duplicate tags, README markers that are missing, doubled or out of order, or a
    plugin.yaml whose ``a0_proven_range`` is not a one-line value.
    """
    outcomes = list(outcomes)
    tags = [o.tag for o in outcomes]
    duplicates = sorted({tag for tag in tags if tags.count(tag) > 1})
    if duplicates:
        raise ValueError(f"duplicate outcomes for {', '.join(duplicates)}")
    if matrix_tags is None:
        matrix_tags = [release.tag for release in load_releases()]
    matrix_tags = list(matrix_tags)
    dropped = sorted(tag for tag in tags if matrix_tags and tag not in matrix_tags)
    if dropped:
        logger.info("not pinning releases that matrix.toml no longer lists: %s", ", ".join(dropped))
        outcomes = [outcome for outcome in outcomes if outcome.tag not in dropped]
    outcomes += [ReleaseOutcome(tag, None) for tag in matrix_tags if tag not in tags]
    outcomes.sort(key=lambda o: version_key(o.tag))

    plugin_dir = Path(project_root) / PLUGIN_DIR
    ranges = proven_ranges(outcomes)
    json_path = plugin_dir / COMPATIBILITY_FILE
    document = _compatibility_document(project_root, outcomes, ranges)
    document["recorded_on"] = _recorded_on(json_path, document, today or datetime.date.today())

    readme_path = plugin_dir / "README.md"
    yaml_path = plugin_dir / "plugin.yaml"
    new_texts = {
        json_path: json.dumps(_ordered(document), indent=2, ensure_ascii=False) + "\n",
        readme_path: replace_marked_block(readme_path.read_text(encoding="utf-8"), _readme_block(document, outcomes)),
        yaml_path: replace_yaml_key(yaml_path.read_text(encoding="utf-8"), YAML_KEY, describe_ranges(ranges)),
    }

    result = PinResult(ranges)
    for path, text in new_texts.items():
        old = path.read_text(encoding="utf-8") if path.exists() else None
        if old == text:
            continue
        result.changed.append(path)
        if not check_only:
            path.write_text(text, encoding="utf-8")
            logger.info("wrote the proven A0 range %s into %s", describe_ranges(ranges), path)
    return result


def _compatibility_document(
    project_root: Path, outcomes: list[ReleaseOutcome], ranges: list[tuple[str, str]]
) -> dict[str, Any]:
    releases = []
    for outcome in outcomes:
        row: dict[str, Any] = {"tag": outcome.tag, "verdict": outcome.verdict, "live": outcome.live}
        if outcome.backend:
            row["live_backend"] = outcome.backend
        row["proven"] = outcome.proof
        if outcome.missing_features:
            row["missing_features"] = list(outcome.missing_features)
        if outcome.image:
            row["image"] = outcome.image
        releases.append(row)
    return {
        "schema": SCHEMA_VERSION,
        "suite_version": _suite_version(Path(project_root)),
        "rule": RULE,
        "ranges": [{"from": start, "to": end} for start, end in ranges],
        "releases": releases,
    }


def _ordered(document: dict[str, Any]) -> dict[str, Any]:
    keys = ("schema", "recorded_on", "suite_version", "rule", "ranges", "releases")
    return {key: document[key] for key in keys}


def _recorded_on(path: Path, document: dict[str, Any], today: datetime.date) -> str:
    """Return the existing date when the file records the same evidence, else ``today``."""
    try:
        existing = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return today.isoformat()
    if isinstance(existing, dict):
        old_date = existing.pop("recorded_on", None)
        if existing == document and isinstance(old_date, str):
            return old_date
    return today.isoformat()


def _suite_version(project_root: Path) -> str:
    try:
        with (project_root / "pyproject.toml").open("rb") as file:
            return str(tomllib.load(file)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# ----- README block ------------------------------------------------------------------------------------


def _readme_block(document: dict[str, Any], outcomes: list[ReleaseOutcome]) -> str:
    ranges = [(item["from"], item["to"]) for item in document["ranges"]]
    lines = [
        f"Proven A0 releases: **{describe_ranges(ranges)}** (recorded {document['recorded_on']} by the "
        f"compatibility suite {document['suite_version']}). The popover shows a warning when the running "
        "A0 is outside this range.",
    ]
    pin = _pin_suggestion(outcomes)
    if pin:
        lines[0] += f" To pin A0, use a release in the range, for example {pin}."
    lines[0] = textwrap.fill(lines[0], width=100, break_long_words=False, break_on_hyphens=False)
    lines += [
        "",
        "| A0 release | contract verdict | live check | proven |",
        "|---|---|---|---|",
    ]
    for outcome in outcomes:
        lines.append(f"| {outcome.tag} | {_verdict_cell(outcome)} | {_live_cell(outcome)} | {_proof_cell(outcome)} |")
    return "\n".join(lines)


def _pin_suggestion(outcomes: list[ReleaseOutcome]) -> str | None:
    """Return the newest release proven live (else the newest proven one) as text, or None."""
    numbered = [o for o in outcomes if o.tag != LATEST and o.proof]
    live = [o for o in numbered if o.proof == PROVEN_LIVE]
    candidates = live or numbered
    if not candidates:
        return None
    newest = max(candidates, key=lambda o: version_key(o.tag))
    return f"the image `{newest.image}`" if newest.image else f"A0 {newest.tag}"


def _verdict_cell(outcome: ReleaseOutcome) -> str:
    if outcome.verdict is None:
        return "not checked"
    if outcome.verdict == "degraded" and outcome.missing_features:
        return f"degraded (lacks {', '.join(outcome.missing_features)})"
    return outcome.verdict


def _live_cell(outcome: ReleaseOutcome) -> str:
    if outcome.live != LIVE_NOT_RUN and outcome.backend:
        return f"{outcome.live} ({outcome.backend} backend)"
    return outcome.live


def _proof_cell(outcome: ReleaseOutcome) -> str:
    if outcome.tag == LATEST:
        suffix = "; `latest` moves, so it never bounds the range"
        return ("yes, " + outcome.proof if outcome.proof else "no") + suffix
    if outcome.proof == PROVEN_LIVE:
        return "yes, live"
    if outcome.proof == PROVEN_BY_CONTRACT:
        return "yes, by contract only"
    return "no"


def replace_marked_block(text: str, block: str) -> str:
    """Replace the lines between ``BEGIN_MARKER`` and ``END_MARKER``. Everything else stays byte for byte.

    Raises ValueError when a marker is missing, appears twice, or the end comes before the begin.
    """
    begin_count, end_count = text.count(BEGIN_MARKER), text.count(END_MARKER)
    if begin_count != 1 or end_count != 1:
        raise ValueError(
            f"README must contain each proven-range marker once, found begin {begin_count}x and end "
            f"{end_count}x; add the lines {BEGIN_MARKER!r} and {END_MARKER!r} where the section belongs"
        )
    start = text.index(BEGIN_MARKER) + len(BEGIN_MARKER)
    end = text.index(END_MARKER)
    if end < start:
        raise ValueError("README proven-range end marker comes before the begin marker")
    return text[:start] + "\n" + block + "\n" + text[end:]


# ----- plugin.yaml key -----------------------------------------------------------------------------------


def replace_yaml_key(text: str, key: str, value: str) -> str:
    """Set a top-level one-line ``key: "value"`` in YAML text, leaving every other line as it is.

    Appends the key with a comment line when it is absent. Raises ValueError when the key exists
    with an indented continuation (a block value), which a line edit cannot replace safely.
    """
    line = f"{key}: {json.dumps(value)}"
    lines = text.splitlines(keepends=True)
    pattern = re.compile(rf"^{re.escape(key)}\s*:")
    for index, existing in enumerate(lines):
        if not pattern.match(existing):
            continue
        following = lines[index + 1] if index + 1 < len(lines) else ""
        if following[:1] in (" ", "\t") and following.strip():
            raise ValueError(f"plugin.yaml key {key!r} has a block value. Make it a one-line string.")
        ending = "\n" if existing.endswith("\n") else ""
        lines[index] = line + ending
        return "".join(lines)
    if text and not text.endswith("\n"):
        text += "\n"
    return text + f"{YAML_COMMENT}\n{line}\n"


# ----- from the suite ------------------------------------------------------------------------------


def previous_outcomes(project_root: Path) -> dict[str, ReleaseOutcome]:
    """Return the outcomes recorded in the plugin's compatibility.json, by tag; empty when unreadable."""
    path = Path(project_root) / PLUGIN_DIR / COMPATIBILITY_FILE
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    outcomes: dict[str, ReleaseOutcome] = {}
    for entry in document.get("releases") or []:
        try:
            outcome = ReleaseOutcome(
                tag=str(entry.get("tag")),
                verdict=entry.get("verdict"),
                live=entry.get("live", LIVE_NOT_RUN),
                backend=entry.get("live_backend"),
                image=entry.get("image"),
                missing_features=tuple(entry.get("missing_features") or ()),
            )
        except (AttributeError, ValueError) as error:
            logger.warning("ignoring a recorded outcome in %s: %s", path, error)
            continue
        outcomes[outcome.tag] = outcome
    return outcomes


def merge_with_previous(current: Iterable[ReleaseOutcome], previous: dict[str, ReleaseOutcome]) -> list[ReleaseOutcome]:
    """Combine this run's outcomes with the recorded ones, so that a run never loses evidence it did not re-check.

    A release this run did not cover keeps its recorded outcome. A release whose live check did not
    run this time keeps its recorded live result, pass or fail, unless this run found it unsupported:
    a failure stays until a live check passes. A live check that ran this time replaces the recorded one.
    """
    merged = dict(previous)
    for outcome in current:
        old = previous.get(outcome.tag)
        keeps_live_result = (
            old is not None
            and outcome.live == LIVE_NOT_RUN
            and old.live != LIVE_NOT_RUN
            and outcome.verdict != "unsupported"
        )
        if keeps_live_result:
            outcome = ReleaseOutcome(
                outcome.tag, outcome.verdict, old.live, old.backend, outcome.image, outcome.missing_features
            )
        merged[outcome.tag] = outcome
    return list(merged.values())


def pin_from_stage(project_root: Path, stage_result: Any) -> list[Path]:
    """Write the proven range from the A0 stage's result, merged with the recorded evidence.

    ``stage_result`` is an ``a0_report.A0StageResult``. Returns the files that changed. A file that
    cannot be read or written (OSError, ValueError) is logged instead, so the suite's outcome does not
    depend on it.
    """
    from .a0_report import to_dict

    try:
        current = outcomes_from_report(to_dict(stage_result))
        outcomes = merge_with_previous(current, previous_outcomes(project_root))
        return write_proven_range(project_root, outcomes).changed
    except (OSError, ValueError) as error:
        logger.error("could not write the proven A0 range: %s", error)
        return []


# ----- command line --------------------------------------------------------------------------------------


def outcomes_from_report(data: dict[str, Any]) -> list[ReleaseOutcome]:
    """Read outcomes from the A0 stage's JSON report (``rows`` with tag, verdict, error, live, ...).

    A row with an ``error`` has no usable verdict: the contract check could not be made.
    """
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ValueError("report has no 'rows' list; pass the A0 stage's JSON report")
    outcomes = []
    for row in rows:
        live = row.get("live") or {}
        missing = tuple(item.get("feature", "") for item in row.get("missing") or [] if isinstance(item, dict))
        verdict = None if row.get("error") else row.get("verdict")
        outcomes.append(
            ReleaseOutcome(
                tag=str(row.get("tag")),
                verdict=verdict,
                live=live.get("status", LIVE_NOT_RUN),
                backend=live.get("backend"),
                image=row.get("image"),
                missing_features=tuple(sorted({name for name in missing if name})) if verdict == "degraded" else (),
            )
        )
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix.pinning",
        description="Write the proven A0 range from an A0 stage report into the plugin's README, "
        "compatibility.json and plugin.yaml.",
    )
    parser.add_argument("--from-report", type=Path, required=True, help="the A0 stage's JSON report")
    parser.add_argument("--project-root", type=Path, default=PROJECT_ROOT, help="repository root (default: this one)")
    parser.add_argument(
        "--matrix",
        type=Path,
        default=DATA_FILE,
        help="matrix file whose rows the report should cover (default: %(default)s)",
    )
    parser.add_argument("--date", type=datetime.date.fromisoformat, help="date to record, YYYY-MM-DD (default: today)")
    parser.add_argument("--check", action="store_true", help="write nothing, and exit 1 when a file would change")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        current = outcomes_from_report(json.loads(args.from_report.read_text(encoding="utf-8")))
        outcomes = merge_with_previous(current, previous_outcomes(args.project_root))
        matrix_tags = [release.tag for release in load_releases(args.matrix)]
        result = write_proven_range(
            args.project_root, outcomes, today=args.date, check_only=args.check, matrix_tags=matrix_tags
        )
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    print(f"proven A0 range: {describe_ranges(result.ranges)}")
    verb = "would change" if args.check else "changed"
    for path in result.changed:
        print(f"{verb}: {path}")
    if not result.changed:
        print("all files up to date")
    return 1 if args.check and result.changed else 0


if __name__ == "__main__":
    sys.exit(main())
