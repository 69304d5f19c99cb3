"""Command line of the compatibility suite: ``python -m compat_matrix``.

The suite is a list of stages: the litellm axis (the shim's tests under several litellm and wrapt
versions) and the A0 axis (the plugin's contract and live checks against A0 releases). Each stage
plans its work, runs it and returns a result that the report modules render.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from . import a0_report, pinning, reports
from .a0_axis import A0AxisStage
from .a0_options import a0_options_from_args, add_a0_options
from .cli_types import positive_float, positive_int
from .litellm_axis import DATA_FILE, LitellmAxisOptions, LitellmAxisStage, load_axis_config, validate_litellm_version

PROJECT_NAME = "a0-token-meter"

PrintLine = Callable[[str], None]
SuiteResult = reports.StageResult | a0_report.A0StageResult
STAGES = ("litellm", "a0")


class Stage(Protocol):
    """A part of the suite that produces one matrix and one set of reports.

    ``name`` is the file stem of the stage's reports and ``title`` its heading. A new stage
    implements this protocol and is added to ``build_stages``.
    """

    name: str
    title: str

    def skip_reason(self) -> str | None:
        """Return why the stage does not run in this invocation, or None when it runs."""
        ...

    def describe(self) -> list[str]:
        """Return the lines that ``--list`` prints for the stage."""
        ...

    def run(self, print_line: PrintLine) -> SuiteResult:
        """Run the stage, printing one progress line per step, and return its matrix."""
        ...


def find_project_root() -> Path:
    """Return the checkout that contains this package, or the current directory as a fallback.

    Raises SystemExit when neither contains this project's pyproject.toml.
    """
    for candidate in (Path(__file__).resolve().parents[1], Path.cwd()):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and PROJECT_NAME in pyproject.read_text(encoding="utf-8"):
            return candidate
    raise SystemExit(
        f"error: project checkout not found: neither {Path(__file__).resolve().parents[1]} nor the current "
        f"directory contains the pyproject.toml of {PROJECT_NAME}; run from the checkout"
    )


def _litellm_version(text: str) -> str:
    try:
        return validate_litellm_version(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def build_parser() -> argparse.ArgumentParser:
    config = load_axis_config()
    defaults = "; ".join(f"litellm {entry.litellm} + wrapt {entry.wrapt}" for entry in config.entries)
    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix",
        description=(
            "Run the Token Meter compatibility suite. The litellm axis runs the shim's tests (tests/shim) "
            "in one cached virtual environment per litellm and wrapt pair, prints a matrix of passed/total "
            "tests per environment and test module, and writes Markdown, JSON and JUnit XML reports. "
            f"Default pairs (from {DATA_FILE.name}): {defaults}. 'newest' is the newest litellm release on "
            "the package index at run time. The A0 axis checks the plugin's contract against every A0 "
            "release of the same file and runs the live check where a checkout or a Docker engine allows."
        ),
        epilog="Exit code: 0 when every environment and release passed, 1 when a test failed, an environment "
        "could not be built or run, a release got another verdict than expected or a supported release failed "
        "its live check, 2 for invalid options, 130 when interrupted.",
    )
    parser.add_argument(
        "--stage",
        action="append",
        default=[],
        choices=STAGES,
        help="run only this stage: litellm (the litellm axis) or a0 (the A0 releases). Repeatable. Default: both.",
    )
    _add_selection_options(parser, list(config.wrapt_variants))
    _add_run_options(parser)
    add_a0_options(parser)
    return parser


def _add_selection_options(parser: argparse.ArgumentParser, wrapt_variants: list[str]) -> None:
    """Add the options that choose environments and tests."""
    parser.add_argument(
        "--litellm",
        action="append",
        default=[],
        metavar="VERSION",
        type=_litellm_version,
        help="litellm version to test instead of the default pairs, such as 1.79.3 or 'newest'. "
        "Repeat for more versions. Each runs with every --wrapt variant.",
    )
    parser.add_argument(
        "--wrapt",
        action="append",
        default=[],
        metavar="VARIANT",
        choices=wrapt_variants,
        help=f"wrapt variant to pair with each --litellm version ({', '.join(wrapt_variants)}; default: 2.x). "
        "Repeatable. "
        "Needs --litellm.",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="TEXT",
        help="run only environments whose label or cache key contains TEXT (case-insensitive), "
        "such as '1.88.1' or 'wrapt 1.17'. Repeatable: an environment that matches any TEXT runs.",
    )
    parser.add_argument(
        "-k",
        dest="pytest_k",
        default=None,
        metavar="EXPRESSION",
        help="pass -k EXPRESSION to pytest to select tests by name",
    )


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the options for paths, parallelism, time limits and output."""
    parser.add_argument(
        "--reports-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory for the reports and per-environment logs (default: reports/ in the checkout)",
    )
    parser.add_argument(
        "--envs-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="directory of the cached virtual environments (default: .suite-envs/ in the checkout)",
    )
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="number of environments to build and test in parallel (default: 1)",
    )
    parser.add_argument(
        "--keep-going",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="after an environment fails, go on with the others (default). --no-keep-going stops at the "
        "first failed environment and reports the rest as not run.",
    )
    parser.add_argument(
        "--test-timeout",
        type=positive_float,
        default=1800.0,
        metavar="SECONDS",
        help="maximum time of one environment's test run in seconds; the run is killed after it (default: 1800)",
    )
    parser.add_argument(
        "--list",
        action="store_true",
        help="list the environments this run would cover, with their cache state, and exit",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log diagnostics to stderr: -v for progress details, -vv for every command",
    )
    # Hidden: runs the matrix against another test folder, used to develop the runner itself.
    parser.add_argument("--tests-path", type=Path, default=None, help=argparse.SUPPRESS)


def _absolute(path: Path | None, default: Path) -> Path:
    return (path if path is not None else default).resolve()


def build_stages(args: argparse.Namespace, project_root: Path, parser: argparse.ArgumentParser) -> list[Stage]:
    """Create the suite's stages from the parsed options, in the order they run."""
    wanted = set(args.stage or STAGES)
    stages: list[Stage] = []
    if "litellm" in wanted:
        stages.append(LitellmAxisStage(_litellm_options(args, project_root)))
    if "a0" in wanted:
        reports_dir = _absolute(args.reports_dir, project_root / "reports")
        stages.append(A0AxisStage(a0_options_from_args(args, project_root, reports_dir, parser)))
    return stages


def _litellm_options(args: argparse.Namespace, project_root: Path) -> LitellmAxisOptions:
    return LitellmAxisOptions(
        project_root=project_root,
        tests_path=_absolute(args.tests_path, project_root / "tests" / "shim"),
        envs_dir=_absolute(args.envs_dir, project_root / ".suite-envs"),
        reports_dir=_absolute(args.reports_dir, project_root / "reports"),
        litellm=args.litellm,
        wrapt=args.wrapt,
        only=args.only,
        jobs=args.jobs,
        keep_going=args.keep_going,
        pytest_k=args.pytest_k,
        test_timeout_s=args.test_timeout,
    )


def _make_printer() -> PrintLine:
    lock = threading.Lock()

    def print_line(text: str) -> None:
        with lock:
            print(text, flush=True)

    return print_line


def _summary_counts(results: list[SuiteResult]) -> tuple[int, int, int]:
    """Return passed, failed and skipped checks over all stages.

    For the litellm axis, failed includes errors, and each environment that failed without a
    failing test case (build failure, timeout) counts as one failed case.
    """
    passed = failed = skipped = 0
    for result in results:
        if isinstance(result, a0_report.A0StageResult):
            counts = result.counts()
            passed, failed, skipped = passed + counts[0], failed + counts[1], skipped + counts[2]
            continue
        for row in result.rows:
            totals = row.totals
            passed += totals.passed
            failed += totals.failed + totals.errors
            skipped += totals.skipped
            if row.error is not None and totals.ok:
                failed += 1
    return passed, failed, skipped


def _print_result(result: SuiteResult) -> None:
    print()
    if isinstance(result, a0_report.A0StageResult):
        print(f"{result.title}: {reports.plural(len(result.rows), 'release')} in {result.duration_s:.1f} s")
        print("\n".join(a0_report.console_lines(result)))
        for note in result.notes:
            print(note)
        return

    print(f"{result.title}: {reports.plural(len(result.rows), 'environment')} in {result.duration_s:.1f} s")
    print(reports.render_table(result))
    print(reports.CELL_LEGEND)
    for note in result.notes:
        print(note)
    failures = reports.render_failures(result)
    if failures:
        print()
        print("Failures:")
        print("\n".join(failures))


def _write_reports(result: SuiteResult, reports_dir: Path) -> list[Path]:
    if isinstance(result, a0_report.A0StageResult):
        return a0_report.write_reports(result, reports_dir)
    return reports.write_reports(result, reports_dir)


def _row_noun(result: SuiteResult) -> str:
    return "release" if isinstance(result, a0_report.A0StageResult) else "environment"


def run_suite(stages: list[Stage], reports_dir: Path, *, pin_root: Path | None = None) -> int:
    """Run the stages, print their matrices and write their reports. Return the exit code.

    With ``pin_root``, the A0 axis's outcome is written into the plugin's README and
    compatibility file under that project root (see ``pinning``).
    """
    print_line = _make_printer()
    results: list[SuiteResult] = []
    skipped: list[tuple[Stage, str]] = []

    for stage in stages:
        reason = stage.skip_reason()
        if reason is not None:
            skipped.append((stage, reason))
            continue
        result = stage.run(print_line)
        results.append(result)
        _print_result(result)
        paths = _write_reports(result, reports_dir)
        print("Reports: " + ", ".join(str(path) for path in paths))
        if pin_root is not None and isinstance(result, a0_report.A0StageResult):
            written = pinning.pin_from_stage(pin_root, result)
            if written:
                print("Proven A0 range written to: " + ", ".join(str(path) for path in written))

    if not results:
        for stage, reason in skipped:
            print(f"error: {stage.title} did not run: {reason}", file=sys.stderr)
        return 2

    print()
    ran = "; ".join(
        f"{r.title} ({reports.plural(len(r.rows), _row_noun(r))}, {len(r.failed_rows)} failed)" for r in results
    )
    print(f"Stages run: {ran}.")
    if skipped:
        print("Stages skipped: " + "; ".join(f"{stage.title} ({reason})" for stage, reason in skipped) + ".")

    totals = []
    for result in results:
        passed, failed, skipped_cases = _summary_counts([result])
        unit = "checks (contract and live)" if isinstance(result, a0_report.A0StageResult) else "tests"
        totals.append(f"{result.title}: {passed} passed, {failed} failed, {skipped_cases} skipped {unit}")
    print("suite: " + "; ".join(totals))
    return 0 if all(result.ok for result in results) else 1


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
    except (OSError, ValueError) as error:  # tomllib.TOMLDecodeError is a ValueError
        print(f"error: cannot read the matrix file {DATA_FILE}: {error}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.wrapt and not args.litellm:
        parser.error("--wrapt needs --litellm: the default pairs already name their wrapt variant")

    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")

    project_root = find_project_root()
    stages = build_stages(args, project_root, parser)

    if args.list:
        for stage in stages:
            print(f"{stage.title}:")
            reason = stage.skip_reason()
            if reason:
                print(f"  skipped: {reason}")
            for line in stage.describe():
                print(f"  {line}")
        return 0

    tests_path = _absolute(args.tests_path, project_root / "tests" / "shim")
    if not tests_path.exists():
        parser.error(f"tests not found: {tests_path} does not exist")
    try:
        reports_dir = _absolute(args.reports_dir, project_root / "reports")
        return run_suite(stages, reports_dir, pin_root=project_root if args.pin else None)
    except KeyboardInterrupt:
        print("\ninterrupted: no reports written for the stage that was running", file=sys.stderr)
        return 130
