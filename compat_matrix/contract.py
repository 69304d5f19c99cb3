"""The plugin's contract with A0: requirements, verdicts per release, drift between releases.

``plugin_requirements.toml`` lists what the Token Meter plugin needs, each item tagged with the feature it
serves and a severity. ``evaluate`` compares a release's probe facts (``a0_probe.py`` output) with them:

- ``unsupported`` when a required item is missing,
- ``degraded`` when only optional items are missing (their features are named),
- ``supported`` otherwise.

Items whose fact section was not probed (``environment`` in committed baselines) are listed as unchecked
and do not change the verdict. ``check_releases`` does this for the rows of ``matrix.toml`` from the
committed baselines and adds the drift from the previous release.

Command line::

    python -m compat_matrix.contract check [--facts FILE [--release TAG]]
    python -m compat_matrix.contract regenerate --source OWNER/NAME=BARE_REPO ... [--python PY] [--only TAG]

See ``contract_baselines`` for the baseline files and their regeneration.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shim.compatibility import parse_version as _shim_parse_version

from .contract_baselines import (
    BASELINES_DIR,
    BaselineError,
    baseline_path,
    load_baseline,
    regenerate,
    sources_from_args,
    trees_from_args,
)
from .contract_drift import DriftItem, drift
from .releases import DATA_FILE, VERDICTS, A0Release, load_releases

__all__ = [
    "BASELINES_DIR",
    "DriftItem",
    "MissingRequirement",
    "ReleaseContract",
    "Requirement",
    "Verdict",
    "check_releases",
    "drift",
    "evaluate",
    "facts_description",
    "load_baseline",
    "load_requirements",
]

logger = logging.getLogger(__name__)

REQUIREMENTS_FILE = Path(__file__).with_name("plugin_requirements.toml")

SUPPORTED, DEGRADED, UNSUPPORTED = VERDICTS
SEVERITIES = ("required", "optional")
WILDCARD = "*"

_VERSION_OPERATORS = (">=", "<=", "==", "!=", ">", "<")


# ----- requirements ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirement:
    """One item of ``plugin_requirements.toml`` (see that file for the meaning of each check)."""

    id: str
    feature: str
    severity: str
    check: str
    paths: tuple[tuple[str, ...], ...]
    reason: str
    values: tuple[Any, ...] = ()
    value: Any = None
    range: str = ""
    within: tuple[Any, ...] | None = None
    nonempty: bool = False


def _requirement_from(raw: dict[str, Any], index: int, path: Path) -> Requirement:
    where = f"{path}: requirement {index}"
    ident = str(raw.get("id") or "")
    if not ident:
        raise ValueError(f"{where}: id is missing")
    where = f"{where} ({ident})"

    severity = raw.get("severity")
    if severity not in SEVERITIES:
        raise ValueError(f"{where}: severity must be one of {SEVERITIES}, got {severity!r}")
    check = raw.get("check")
    if check not in CHECKS:
        raise ValueError(f"{where}: check must be one of {CHECKS}, got {check!r}")
    for key in ("feature", "reason"):
        if not isinstance(raw.get(key), str) or not raw[key]:
            raise ValueError(f"{where}: {key} must be a non-empty string")

    if ("fact" in raw) == ("facts" in raw):
        raise ValueError(f"{where}: give exactly one of fact (a path) or facts (a list of paths)")
    raw_paths = [raw["fact"]] if "fact" in raw else raw["facts"]
    paths = []
    for raw_path in raw_paths:
        if not isinstance(raw_path, list) or not raw_path or not all(isinstance(key, str) for key in raw_path):
            raise ValueError(f"{where}: a fact path must be a non-empty list of strings, got {raw_path!r}")
        if raw_path[0] == WILDCARD:
            raise ValueError(f"{where}: a fact path cannot start with {WILDCARD!r}")
        paths.append(tuple(raw_path))

    if check in ("contains_all", "contains_any", "subset_of", "accepts") and not raw.get("values"):
        raise ValueError(f"{where}: check {check} needs a non-empty values list")
    if check == "equals" and "value" not in raw:
        raise ValueError(f"{where}: check equals needs a value")
    if check == "version_in":
        _parse_range(str(raw.get("range", "")), where)

    within = raw.get("within")
    return Requirement(
        id=ident,
        feature=raw["feature"],
        severity=severity,
        check=check,
        paths=tuple(paths),
        reason=raw["reason"],
        values=tuple(raw.get("values", ())),
        value=raw.get("value"),
        range=str(raw.get("range", "")),
        within=tuple(within) if within is not None else None,
        nonempty=bool(raw.get("nonempty", False)),
    )


def load_requirements(path: Path = REQUIREMENTS_FILE) -> list[Requirement]:
    """Return the requirements in file order. Raises ValueError naming the invalid item or a duplicate id."""
    with path.open("rb") as file:
        data = tomllib.load(file)
    requirements = [
        _requirement_from(raw, index, path) for index, raw in enumerate(data.get("requirement", []), start=1)
    ]
    if not requirements:
        raise ValueError(f"{path}: no [[requirement]] items")
    ids = [item.id for item in requirements]
    duplicates = sorted({ident for ident in ids if ids.count(ident) > 1})
    if duplicates:
        raise ValueError(f"{path}: duplicate requirement ids: {', '.join(duplicates)}")
    return requirements


# ----- fact lookup -----------------------------------------------------------------------------------


class _NotProbed(Exception):
    """The top-level section of a fact path is null or absent: the probe did not collect it."""


def _select(facts: Mapping[str, Any], path: tuple[str, ...]) -> tuple[list[Any], bool]:
    """Return the values at ``path`` and whether the path had a wildcard (then values are pooled).

    A missing key gives no value (without a wildcard: ``[None]``). Raises _NotProbed when the first key
    is absent or null.
    """
    if facts.get(path[0]) is None:
        raise _NotProbed(path[0])
    current: list[Any] = [facts[path[0]]]
    wildcard = False
    for key in path[1:]:
        selected: list[Any] = []
        for node in current:
            if not isinstance(node, Mapping):
                continue
            if key == WILDCARD:
                selected.extend(node[name] for name in sorted(node))
            elif key in node:
                selected.append(node[key])
        wildcard = wildcard or key == WILDCARD
        current = selected
    if not wildcard and not current:
        current = [None]
    return current, wildcard


def _elements(value: Any, table_values: bool = False) -> list[Any]:
    """Return the elements a check compares: list items, a table's keys (or values), nothing for null."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return list(value.values()) if table_values else list(value)
    if isinstance(value, list | tuple | set):
        return list(value)
    return [value]


def _pooled(requirement: Requirement, facts: Mapping[str, Any], table_values: bool = False) -> list[Any]:
    pooled: list[Any] = []
    for path in requirement.paths:
        values, _ = _select(facts, path)
        for value in values:
            pooled.extend(_elements(value, table_values))
    return pooled


def _single(requirement: Requirement, facts: Mapping[str, Any]) -> Any:
    values, wildcard = _select(facts, requirement.paths[0])
    return values if wildcard else values[0]


# ----- versions --------------------------------------------------------------------------------------


def parse_version(text: Any) -> tuple[int, ...] | None:
    """Parse the leading numeric release of a version ("3.12.1" -> (3, 12, 1), "1.79.3.post1" -> (1, 79, 3))."""
    if not isinstance(text, str):
        return None
    return _shim_parse_version(text.strip())


def _parse_range(text: str, where: str) -> list[tuple[str, tuple[int, ...]]]:
    clauses = []
    for raw in text.split(","):
        raw = raw.strip()
        operator = next((op for op in _VERSION_OPERATORS if raw.startswith(op)), None)
        version = parse_version(raw[len(operator) :]) if operator else None
        if operator is None or version is None:
            raise ValueError(f"{where}: invalid version range {text!r}, expected clauses like '>=1.2,<2'")
        clauses.append((operator, version))
    return clauses


def version_in_range(version: tuple[int, ...], text: str) -> bool:
    """True when ``version`` satisfies every clause of ``text`` (missing parts count as zero)."""
    for operator, bound in _parse_range(text, "range"):
        width = max(len(version), len(bound))
        left = version + (0,) * (width - len(version))
        right = bound + (0,) * (width - len(bound))
        passed = {
            ">=": left >= right,
            "<=": left <= right,
            "==": left == right,
            "!=": left != right,
            ">": left > right,
            "<": left < right,
        }[operator]
        if not passed:
            return False
    return True


# ----- evaluation ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissingRequirement:
    """A requirement a release does not meet. ``reason`` is one line: the requirement's reason and the detail."""

    id: str
    feature: str
    severity: str
    reason: str


@dataclass
class Verdict:
    """supported, degraded or unsupported, with the requirements that are missing or were not checked."""

    status: str
    missing: list[MissingRequirement] = field(default_factory=list)
    unchecked: list[str] = field(default_factory=list)

    @property
    def degraded_features(self) -> list[str]:
        """The features of the missing optional requirements, in requirement order, without repeats."""
        features: list[str] = []
        for item in self.missing:
            if item.severity == "optional" and item.feature not in features:
                features.append(item.feature)
        return features

    def summary(self) -> str:
        """Return one line: the status and, unless supported, the reasons or features."""
        if self.status == UNSUPPORTED:
            required = [item.reason for item in self.missing if item.severity == "required"]
            return f"{UNSUPPORTED}: " + "; ".join(required)
        if self.status == DEGRADED:
            return f"{DEGRADED}: " + ", ".join(self.degraded_features)
        return SUPPORTED


# Each check returns None when the requirement holds, else a short detail ("" when the reason alone
# explains it). Parameters of these kinds cannot be passed by keyword (or match any name).
_NOT_KEYWORD = ("positional_only", "var_positional", "var_keyword")


def _check_present(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    # A value is present unless it is null, false or empty.
    absent = ["/".join(path) for path in requirement.paths if not any(_select(facts, path)[0])]
    if not absent:
        return None
    return "" if len(requirement.paths) == 1 else "missing: " + ", ".join(absent)


def _check_equals(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    found = _single(requirement, facts)
    return None if found == requirement.value else f"found {found!r}"


def _check_accepts(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    signature = _single(requirement, facts)
    if not isinstance(signature, Mapping) or "parameters" not in signature:
        return "not found"
    parameters = signature["parameters"]
    if any(parameter["kind"] == "var_keyword" for parameter in parameters):
        return None
    names = {parameter["name"] for parameter in parameters if parameter["kind"] not in _NOT_KEYWORD}
    absent = [name for name in requirement.values if name not in names]
    return None if not absent else "no parameter " + ", ".join(absent)


def _check_version_in(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    found = _single(requirement, facts)
    version = parse_version(found)
    if version is None:
        return "not found" if found is None else f"version {found!r} cannot be read"
    return None if version_in_range(version, requirement.range) else f"found {found}"


def _check_contains_all(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    elements = _pooled(requirement, facts)
    absent = [value for value in requirement.values if value not in elements]
    return None if not absent else "missing " + ", ".join(map(str, absent))


def _check_contains_any(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    elements = _pooled(requirement, facts)
    return None if any(value in elements for value in requirement.values) else ""


def _check_all_true(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    elements = _pooled(requirement, facts, table_values=True)
    if requirement.nonempty and not elements:
        return "none found"
    return None if all(value is True for value in elements) else ""


def _considered(requirement: Requirement, elements: list[Any]) -> list[Any]:
    """Return the distinct elements that are in ``within`` (all of them when ``within`` is not given), sorted."""
    return sorted({value for value in elements if requirement.within is None or value in requirement.within})


def _check_subset_of(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    elements = _pooled(requirement, facts)
    if requirement.nonempty and not elements:
        return "none found"
    extra = [value for value in _considered(requirement, elements) if value not in requirement.values]
    return None if not extra else "found " + ", ".join(map(str, extra))


def _check_empty(requirement: Requirement, facts: Mapping[str, Any]) -> str | None:
    found = _considered(requirement, _pooled(requirement, facts))
    return None if not found else "found " + ", ".join(map(str, found))


_CHECKS = {
    "present": _check_present,
    "equals": _check_equals,
    "contains_all": _check_contains_all,
    "contains_any": _check_contains_any,
    "subset_of": _check_subset_of,
    "empty": _check_empty,
    "all_true": _check_all_true,
    "accepts": _check_accepts,
    "version_in": _check_version_in,
}
CHECKS = tuple(_CHECKS)


def evaluate(facts: Mapping[str, Any], requirements: Sequence[Requirement] | None = None) -> Verdict:
    """Compare a release's probe facts with the plugin's requirements and return the verdict."""
    requirements = load_requirements() if requirements is None else requirements
    missing: list[MissingRequirement] = []
    unchecked: list[str] = []
    for requirement in requirements:
        try:
            detail = _CHECKS[requirement.check](requirement, facts)
        except _NotProbed:
            unchecked.append(requirement.id)
            continue
        if detail is None:
            continue
        reason = requirement.reason if not detail else f"{requirement.reason} ({detail})"
        missing.append(MissingRequirement(requirement.id, requirement.feature, requirement.severity, reason))

    if any(item.severity == "required" for item in missing):
        status = UNSUPPORTED
    elif missing:
        status = DEGRADED
    else:
        status = SUPPORTED
    return Verdict(status, missing, unchecked)


# ----- releases --------------------------------------------------------------------------------------


@dataclass
class ReleaseContract:
    """The contract check of one matrix row.

    ``facts_from`` names the file the facts came from. ``drift`` compares the facts with those of
    ``previous_tag`` (the nearest earlier row that has facts). ``expect_matches`` is None when the row
    states no expected verdict. ``error`` is set, and ``facts``/``verdict`` are None, when the row's
    facts could not be read.
    """

    release: A0Release
    facts: dict[str, Any] | None = None
    verdict: Verdict | None = None
    drift: list[DriftItem] = field(default_factory=list)
    previous_tag: str | None = None
    facts_from: str = ""
    error: str | None = None

    @property
    def expect_matches(self) -> bool | None:
        if self.release.expect is None:
            return None
        return self.verdict is not None and self.verdict.status == self.release.expect


def facts_description(baselines_dir: Path = BASELINES_DIR) -> str:
    """Say where ``check_releases`` reads facts from, for progress lines and reports."""
    project = Path(__file__).resolve().parents[1]
    shown = baselines_dir.resolve()
    if shown.is_relative_to(project):
        shown = shown.relative_to(project)
    return f"the committed baselines in {shown}"


def check_releases(
    releases: Iterable[A0Release],
    baselines_dir: Path = BASELINES_DIR,
    requirements: Sequence[Requirement] | None = None,
    facts_overrides: Mapping[str, Path] | None = None,
) -> list[ReleaseContract]:
    """Check each release's facts against the requirements, with the drift from the previous release.

    Facts come from the release's baseline file, or from ``facts_overrides[tag]`` (a probe output file)
    when given. Releases are checked in the order given, so pass them in release order for meaningful drift.
    A release whose facts are missing or unreadable gets ``error`` instead of raising.
    """
    requirements = load_requirements() if requirements is None else requirements
    overrides = facts_overrides or {}
    results: list[ReleaseContract] = []
    previous: ReleaseContract | None = None
    for release in releases:
        result = ReleaseContract(release=release)
        try:
            if release.tag in overrides:
                result.facts = read_facts_file(overrides[release.tag])
                result.facts_from = str(overrides[release.tag])
            else:
                result.facts = validate_facts(
                    load_baseline(release, baselines_dir)["facts"], str(baseline_path(release.baseline, baselines_dir))
                )
                result.facts_from = _baseline_label(release, baselines_dir)
        except (BaselineError, OSError, ValueError) as error:
            result.error = str(error)
            logger.warning("contract check of %s: %s", release.tag, error)
            results.append(result)
            continue

        try:
            result.verdict = evaluate(result.facts, requirements)
            if previous is not None and previous.facts is not None:
                result.previous_tag = previous.release.tag
                result.drift = drift(previous.facts, result.facts, requirements)
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            # A section with the wrong shape inside: the facts cannot be judged.
            result.facts, result.verdict, result.drift = None, None, []
            result.error = f"facts of {release.tag} ({result.facts_from}) cannot be evaluated: {error!r}"
            logger.warning("contract check of %s: %s", release.tag, result.error)
            results.append(result)
            continue
        results.append(result)
        previous = result
    return results


def _baseline_label(release: A0Release, baselines_dir: Path) -> str:
    path = baseline_path(release.baseline, baselines_dir)
    label = f"{path.parent.name}/{path.name}"
    return label if release.baseline == release.tag else f"{label} (baseline of {release.tag})"


# Sections of the probe's output, each a JSON object; ``environment`` may also be null (not probed).
FACT_SECTIONS = (
    "agent_context",
    "agent_loop",
    "apis",
    "context_limit",
    "extensible_functions",
    "extension_points",
    "extension_system",
    "layout",
    "litellm",
    "model_wrappers",
    "pins",
    "plugin_system",
    "signatures",
    "tree_version",
    "webui",
)


def validate_facts(facts: Any, source: str) -> dict[str, Any]:
    """Return ``facts`` if it has the probe's shape; raise ValueError naming what is wrong otherwise.

    A file without these sections would meet no requirement and fail none (each would be "not
    probed"), and so be judged supported; it is rejected instead.
    """
    if not isinstance(facts, dict) or "probe_version" not in facts:
        raise ValueError(f"{source}: not probe output (no probe_version key)")
    missing = [name for name in FACT_SECTIONS if name not in facts]
    if missing:
        raise ValueError(f"{source}: probe output lacks {', '.join(missing)}")
    wrong = [name for name in FACT_SECTIONS if not isinstance(facts[name], dict)]
    if facts.get("environment") is not None and not isinstance(facts["environment"], dict):
        wrong.append("environment")
    if wrong:
        raise ValueError(f"{source}: probe output sections are not JSON objects: {', '.join(wrong)}")
    return facts


def read_facts_file(path: Path) -> dict[str, Any]:
    """Read probe output, or a baseline file (its ``facts``). Raises ValueError for other JSON."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if isinstance(data, dict) and isinstance(data.get("facts"), dict):
        data = data["facts"]
    return validate_facts(data, str(path))


# ----- command line ----------------------------------------------------------------------------------


def _print_verdict(tag: str, verdict: Verdict, expect: str | None, print_line=print) -> None:
    expected = "" if expect is None else f" (expected {expect})"
    print_line(f"{tag:<10} {verdict.status}{expected}")
    for item in verdict.missing:
        print_line(f"    {item.severity:<8} {item.feature}: {item.reason}")
    if verdict.unchecked:
        print_line(f"    not probed: {', '.join(verdict.unchecked)}")


def _command_check(args: argparse.Namespace) -> int:
    releases = load_releases(args.data_file)
    if args.facts:
        facts = read_facts_file(args.facts)
        verdict = evaluate(facts)
        release = next((item for item in releases if item.tag == args.release), None)
        if args.release and release is None:
            print(f"error: release {args.release!r} is not in {args.data_file}", file=sys.stderr)
            return 2
        _print_verdict(str(args.facts), verdict, release.expect if release else None)
        if release is not None:
            baseline = load_baseline(release, args.baselines_dir)["facts"]
            changes = drift(baseline, facts, load_requirements())
            print(f"drift from the {release.tag} baseline: {len(changes)} items")
            for item in changes:
                print(f"    {item}")
        return 1 if verdict.status == UNSUPPORTED else 0

    failed = False
    for result in check_releases(releases, args.baselines_dir):
        if result.error or result.verdict is None:
            print(f"{result.release.tag:<10} error: {result.error}")
            failed = True
            continue
        _print_verdict(result.release.tag, result.verdict, result.release.expect)
        if result.expect_matches is False:
            failed = True
        for item in result.drift:
            print(f"    drift from {result.previous_tag}: {item}")
    return 1 if failed else 0


def _command_regenerate(args: argparse.Namespace) -> int:
    releases = load_releases(args.data_file)
    try:
        sources = sources_from_args(args.source)
        trees = trees_from_args(args.tree)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        written = regenerate(
            releases,
            sources=sources,
            trees=trees,
            python=args.python,
            baselines_dir=args.baselines_dir,
            only=args.only,
            with_environment=args.with_environment,
            print_line=print,
        )
    except BaselineError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} baselines to {args.baselines_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix.contract",
        description="Check the Token Meter plugin's requirements against A0 releases, or regenerate the baselines.",
    )
    parser.add_argument("--data-file", type=Path, default=DATA_FILE, help="matrix file (default: %(default)s)")
    parser.add_argument(
        "--baselines-dir", type=Path, default=BASELINES_DIR, help="folder of baseline files (default: %(default)s)"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    check = commands.add_parser(
        "check",
        help="print the verdict of every matrix row from the baselines (exit 1 when one differs from its expect)",
    )
    check.add_argument(
        "--facts",
        type=Path,
        help="evaluate this probe output (a0_probe.py JSON) instead; exit 1 when it is unsupported",
    )
    check.add_argument("--release", help="with --facts: also print the drift from this release's baseline")
    check.set_defaults(handler=_command_check)

    regen = commands.add_parser(
        "regenerate",
        help="export each release's baseline tag from a bare repository, probe it and write its baseline file",
    )
    regen.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="OWNER/NAME=PATH",
        help="git repository (bare or not) holding the tags of a matrix 'repository'; repeat per repository",
    )
    regen.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="TAG=DIR",
        help="probe this exported tree for the baseline tag TAG instead of exporting it from --source",
    )
    regen.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs the probe (default: this one); A0 images use Python 3.12",
    )
    regen.add_argument("--only", action="append", default=[], metavar="TAG", help="regenerate only this row's baseline")
    regen.add_argument(
        "--with-environment",
        action="store_true",
        help="record the --python interpreter's Python, litellm and wrapt versions (only meaningful with A0's "
        "own interpreter; the committed baselines leave them out)",
    )
    regen.set_defaults(handler=_command_regenerate)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except (BaselineError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
