"""litellm axis of the compatibility suite: the shim's tests under each litellm and wrapt pair.

The pairs come from the ``[litellm_axis]`` table of ``matrix.toml``. Each runs in a cached virtual environment (see
``envs``) with ``python -m pytest`` and ``LITELLM_LOCAL_MODEL_COST_MAP=True``, and its JUnit XML
becomes one row of the stage's matrix: one column per test module.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree.ElementTree import ParseError

from . import envs
from .reports import MatrixRow, StageResult, format_counts, parse_junit

logger = logging.getLogger(__name__)

DATA_FILE = Path(__file__).with_name("matrix.toml")
NEWEST = "newest"

# Test requirements installed next to litellm and wrapt. The versions follow the `test` extra
# of pyproject.toml when it names these packages.
TEST_PACKAGES = ("pytest", "pytest-asyncio")

# Maximum time in seconds for resolving the newest litellm release.
RESOLVE_TIMEOUT_S = 120

_VERSION_RE = re.compile(r"^[0-9]+(\.[0-9]+)*([a-zA-Z0-9.+!-]*)$")

Progress = Callable[[str], None]

# Test runs in progress. Each runs in a session of its own, so that a timeout can kill the servers
# its tests started. Ctrl-C does not reach those sessions, so an interrupted suite kills them.
_running_tests: set[subprocess.Popen] = set()
_running_tests_lock = threading.Lock()


# --- configuration -----------------------------------------------------------------------


@dataclass(frozen=True)
class AxisEntry:
    """One listed pair: an exact litellm version (or ``newest``) and a wrapt variant label."""

    litellm: str
    wrapt: str


@dataclass(frozen=True)
class AxisConfig:
    """Contents of the data file: Python version, wrapt variants and the listed pairs."""

    python: str
    wrapt_variants: dict[str, str]
    entries: tuple[AxisEntry, ...]


def validate_litellm_version(text: str) -> str:
    """Return ``text`` if it is ``newest`` or looks like a release version, else raise ValueError."""
    if text == NEWEST or _VERSION_RE.match(text):
        return text
    raise ValueError(f"invalid litellm version {text!r}: expected a release such as 1.79.3, or {NEWEST!r}")


def load_axis_config(path: Path = DATA_FILE) -> AxisConfig:
    """Read and validate the data file. Raises ValueError naming the invalid entry."""
    with path.open("rb") as file:
        data = tomllib.load(file).get("litellm_axis", {})

    python = str(data.get("python", "3.11"))
    variants = {str(label): str(spec) for label, spec in data.get("wrapt_variants", {}).items()}
    if not variants:
        raise ValueError(f"{path}: [litellm_axis.wrapt_variants] is missing or empty")

    entries = []
    for index, raw in enumerate(data.get("environment", []), start=1):
        litellm = str(raw.get("litellm", ""))
        wrapt = str(raw.get("wrapt", ""))
        try:
            validate_litellm_version(litellm)
        except ValueError as exc:
            raise ValueError(f"{path}: environment {index}: {exc}") from exc
        if wrapt not in variants:
            raise ValueError(
                f"{path}: environment {index}: unknown wrapt variant {wrapt!r}, expected one of {sorted(variants)}"
            )
        entries.append(AxisEntry(litellm, wrapt))
    if not entries:
        raise ValueError(f"{path}: no [[litellm_axis.environment]] entries")
    return AxisConfig(python, variants, tuple(entries))


def read_test_requirements(project_root: Path) -> tuple[str, ...]:
    """Return the pytest and pytest-asyncio requirements from the project's ``test`` extra.

    A package that the extra does not name is required without a version.
    """
    try:
        with (project_root / "pyproject.toml").open("rb") as file:
            extra = tomllib.load(file)["project"]["optional-dependencies"]["test"]
    except (OSError, KeyError, tomllib.TOMLDecodeError) as exc:
        logger.warning("could not read the test extra of pyproject.toml (%s), installing unpinned test packages", exc)
        extra = []

    requirements = []
    for package in TEST_PACKAGES:
        pattern = re.compile(rf"^{re.escape(package)}\s*([<>=!~;\[]|$)", re.IGNORECASE)
        match = next((spec for spec in extra if pattern.match(spec)), None)
        requirements.append(match or package)
    return tuple(requirements)


# --- newest release ----------------------------------------------------------------------


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:4])


def query_newest_litellm(python: str) -> str:
    """Ask the package index for the newest litellm release that installs on ``python``.

    Uses ``uv pip compile`` when uv is available, else ``pip index versions``. Pre-releases are
    ignored. Raises RuntimeError with the tool's output when the query fails.
    """
    uv = envs.find_uv()
    if uv:
        command = [
            uv,
            "pip",
            "compile",
            "--no-deps",
            "--no-header",
            "--quiet",
            "--python-version",
            python,
            "-",
        ]
        if not os.environ.get("UV_OFFLINE"):
            # Ask the index again instead of trusting uv's cached page, which can be hours old.
            command[-1:-1] = ["--refresh-package", "litellm"]
        pattern = re.compile(r"^litellm==(\S+)", re.MULTILINE)
    else:
        command = [
            sys.executable,
            "-m",
            "pip",
            "index",
            "versions",
            "litellm",
            "--python-version",
            python,
            "--disable-pip-version-check",
        ]
        pattern = re.compile(r"^litellm \((\S+)\)", re.MULTILINE)

    try:
        completed = subprocess.run(
            command, input="litellm\n", capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{command[0]} failed: {exc}") from exc
    match = pattern.search(completed.stdout)
    if completed.returncode != 0 or not match:
        output = " ".join((completed.stderr or completed.stdout).split())[:300]
        raise RuntimeError(f"'{' '.join(command[:3])}' exited with code {completed.returncode}: {output}")
    return match.group(1)


def newest_cached_litellm(envs_dir: Path) -> str | None:
    """Return the highest litellm version installed in any cached environment, or None."""
    versions = [stamp.get("installed", {}).get("litellm") for _, stamp in envs.cached_stamps(envs_dir)]
    versions = [version for version in versions if version]
    return max(versions, key=_version_key) if versions else None


def resolve_newest(python: str, envs_dir: Path) -> tuple[str | None, str]:
    """Resolve ``newest`` and return the version (None when unknown) and a note for the report."""
    try:
        version = query_newest_litellm(python)
    except RuntimeError as exc:
        logger.warning("could not resolve the newest litellm release: %s", exc)
        cached = newest_cached_litellm(envs_dir)
        if cached is None:
            return None, f"Could not resolve the newest litellm release ({exc}) and no cached environment has litellm."
        return cached, (
            f"Could not resolve the newest litellm release ({exc}), "
            f"so 'newest' is {cached}, the newest version in the environment cache."
        )
    return version, f"Newest litellm release on the package index: {version}."


# --- plan --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedEnv:
    """One environment to run.

    ``litellm`` is None when ``newest`` could not be resolved. ``note`` states how ``newest``
    was resolved, for the report.
    """

    label: str
    key: str
    litellm: str | None
    wrapt_variant: str
    wrapt_spec: str
    python: str
    newest: bool = False
    note: str = ""


def _plan_one(litellm: str | None, wrapt: str, config: AxisConfig, newest: bool, note: str) -> PlannedEnv:
    version_text = litellm or "?"
    label = f"litellm {version_text}{' (newest)' if newest else ''} + wrapt {wrapt}"
    key = f"py{config.python}-litellm-{litellm or NEWEST}-wrapt-{wrapt}"
    return PlannedEnv(label, key, litellm, wrapt, config.wrapt_variants[wrapt], config.python, newest, note)


def plan_environments(
    config: AxisConfig,
    litellm_overrides: Iterable[str] = (),
    wrapt_overrides: Iterable[str] = (),
    resolve: Callable[[], tuple[str | None, str]] | None = None,
) -> tuple[list[PlannedEnv], list[str]]:
    """Return the environments to run and notes about pairs that were listed twice.

    ``litellm_overrides`` replace the data file's pairs: each version runs with every variant
    in ``wrapt_overrides`` (default ``2.x``, else the first variant listed). ``resolve`` is
    called once, only when some pair requests ``newest``. Pairs that resolve to the same
    environment run once.
    """
    litellm_overrides = list(litellm_overrides)
    wrapt_overrides = list(wrapt_overrides)
    if litellm_overrides:
        default_variant = "2.x" if "2.x" in config.wrapt_variants else next(iter(config.wrapt_variants))
        variants = wrapt_overrides or [default_variant]
        entries = [AxisEntry(version, variant) for version in litellm_overrides for variant in variants]
    else:
        entries = list(config.entries)
    for entry in entries:
        if entry.wrapt not in config.wrapt_variants:
            raise ValueError(f"unknown wrapt variant {entry.wrapt!r}, expected one of {sorted(config.wrapt_variants)}")

    newest_version: str | None = None
    newest_note = ""
    if resolve is not None and any(entry.litellm == NEWEST for entry in entries):
        newest_version, newest_note = resolve()

    notes: list[str] = []
    planned: list[PlannedEnv] = []
    seen: set[str] = set()
    for entry in entries:
        is_newest = entry.litellm == NEWEST
        version = newest_version if is_newest else entry.litellm
        env = _plan_one(version, entry.wrapt, config, is_newest, newest_note if is_newest else "")
        if env.key in seen:
            notes.append(f"{env.label} is listed twice and runs once.")
            continue
        seen.add(env.key)
        planned.append(env)
    return planned, notes


def filter_environments(planned: list[PlannedEnv], only: Iterable[str]) -> list[PlannedEnv]:
    """Keep environments whose label or key contains one of ``only`` (case-insensitive). Empty keeps all."""
    needles = [needle.lower() for needle in only]
    if not needles:
        return planned
    return [env for env in planned if any(n in env.label.lower() or n in env.key.lower() for n in needles)]


# --- run ---------------------------------------------------------------------------------


@dataclass
class LitellmAxisOptions:
    """Settings of one run of the litellm axis. Paths are absolute."""

    project_root: Path
    tests_path: Path
    envs_dir: Path
    reports_dir: Path
    litellm: list[str] = field(default_factory=list)
    wrapt: list[str] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    jobs: int = 1
    keep_going: bool = True
    pytest_k: str | None = None
    test_timeout_s: float = 1800.0
    data_file: Path = DATA_FILE


def _test_env_vars(env: envs.PreparedEnv) -> dict[str, str]:
    variables = dict(os.environ)
    # The suite's own virtual environment and PYTHONPATH must not leak into the tested one.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):
        variables.pop(name, None)
    variables["VIRTUAL_ENV"] = str(env.path)
    variables["PATH"] = f"{env.path / 'bin'}{os.pathsep}{variables.get('PATH', '')}"
    variables["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    return variables


def run_pytest(
    env: envs.PreparedEnv, options: LitellmAxisOptions, junit_path: Path, log_path: Path
) -> tuple[int | None, float]:
    """Run the tests in ``env`` and return pytest's exit code (None on timeout) and the time in seconds.

    Output goes to ``log_path``. pytest uses the project's configuration from pyproject.toml
    even for a tests path outside the project, and a module that fails to import is reported
    as an error of that module while the other modules still run.
    """
    command = [
        str(env.python),
        "-m",
        "pytest",
        str(options.tests_path),
        "-p",
        "no:cacheprovider",
        f"--junitxml={junit_path}",
        "-o",
        "junit_family=xunit1",  # adds the file attribute that names each test module
        "--rootdir",
        str(options.project_root),
        "-c",
        str(options.project_root / "pyproject.toml"),
        "--continue-on-collection-errors",
        "-ra",
    ]
    if options.pytest_k:
        command += ["-k", options.pytest_k]

    junit_path.unlink(missing_ok=True)
    started = time.monotonic()
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            command,
            cwd=options.project_root,
            env=_test_env_vars(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        with _running_tests_lock:
            _running_tests.add(process)
        try:
            exit_code: int | None = process.wait(timeout=options.test_timeout_s)
        except subprocess.TimeoutExpired:
            _kill_process_group(process)
            process.wait()
            exit_code = None
            log.write(f"\ntimed out after {options.test_timeout_s:.0f} s\n")
        finally:
            with _running_tests_lock:
                _running_tests.discard(process)
    return exit_code, time.monotonic() - started


def _kill_process_group(process: subprocess.Popen) -> None:
    """Kill a test run and every process it started in its session."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def kill_running_tests() -> None:
    """Kill every test run in progress, for example after Ctrl-C."""
    with _running_tests_lock:
        for process in _running_tests:
            _kill_process_group(process)


# pytest exit codes that mean the run itself went wrong, not only some tests.
_PYTEST_EXIT_MEANINGS = {
    2: "the test run was interrupted",
    3: "pytest hit an internal error",
    4: "pytest was called with invalid arguments",
    5: "no tests were collected",
}


def _row_for(planned: PlannedEnv, reports_dir: Path) -> MatrixRow:
    row = MatrixRow(label=planned.label, key=planned.key)
    row.params = {"litellm": planned.litellm or "", "wrapt": planned.wrapt_spec}
    row.log_path = str(reports_dir / "litellm_axis" / f"{planned.key}.log")
    return row


def run_environment(planned: PlannedEnv, options: LitellmAxisOptions, progress: Progress) -> MatrixRow:
    """Build (or reuse) one environment, run the tests in it and return its matrix row.

    Never raises for a failed build or run: the row's ``error`` describes the failure.
    """
    row = _row_for(planned, options.reports_dir)
    if planned.litellm is None:
        row.error = "environment not built: the newest litellm release could not be resolved"
        row.log_path = None
        progress(f"{planned.label}: {row.error}")
        return row

    log_path = Path(row.log_path)
    junit_path = log_path.with_suffix(".junit.xml")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("", encoding="utf-8")
    started = time.monotonic()

    request = envs.EnvRequest(
        key=planned.key,
        python=planned.python,
        requirements=(
            f"litellm=={planned.litellm}",
            f"wrapt{planned.wrapt_spec}",
            *read_test_requirements(options.project_root),
        ),
        project_root=options.project_root,
    )
    cached = envs.read_stamp(options.envs_dir / planned.key) is not None
    progress(f"{planned.label}: {'checking cached environment' if cached else 'installing'}...")
    try:
        env = envs.prepare_env(request, options.envs_dir, log_path)
    except envs.EnvBuildError as exc:
        row.error = f"environment not built: {exc}"
        row.duration_s = time.monotonic() - started
        progress(f"{planned.label}: {row.error}")
        return row
    row.params.update({"python": env.python_version, "installer": env.installer})
    row.packages = dict(env.installed)

    setup_s = time.monotonic() - started
    setup_text = "reused cached environment" if env.reused else f"environment ready in {setup_s:.1f} s"
    progress(f"{planned.label}: {setup_text}, running tests...")
    exit_code, test_s = run_pytest(env, options, junit_path, log_path)
    row.duration_s = time.monotonic() - started

    if exit_code is None:
        row.error = f"tests timed out after {options.test_timeout_s:.0f} s"
    elif exit_code < 0:
        row.error = f"pytest was killed by signal {-exit_code}"
    if junit_path.exists():
        try:
            row.testcases = parse_junit(junit_path)
        except (OSError, ParseError) as exc:
            logger.warning("could not read JUnit report %s: %s", junit_path, exc)
            row.error = row.error or f"pytest exited with code {exit_code} and wrote an unreadable JUnit report ({exc})"
    elif row.error is None:
        row.error = f"pytest exited with code {exit_code} and wrote no JUnit report, see {log_path}"

    if row.error is None and exit_code != 0:
        meaning = _PYTEST_EXIT_MEANINGS.get(exit_code)
        if meaning or row.totals.ok:
            row.error = f"pytest exited with code {exit_code}" + (f": {meaning}" if meaning else "")

    if row.error and not row.testcases:
        progress(f"{planned.label}: {row.error}")
    else:
        summary = f"{format_counts(row.totals)} in {test_s:.1f} s"
        progress(f"{planned.label}: {summary}" + (f" ({row.error})" if row.error else ""))
    return row


class LitellmAxisStage:
    """The litellm axis as a stage of the suite (see ``cli.Stage``)."""

    name = "litellm_axis"
    title = "litellm axis"

    def __init__(self, options: LitellmAxisOptions) -> None:
        self.options = options
        self.config = load_axis_config(options.data_file)
        self._planned: list[PlannedEnv] | None = None
        self._notes: list[str] = []

    def plan(self) -> list[PlannedEnv]:
        """Return the environments this run covers, resolving ``newest`` on the first call."""
        if self._planned is None:
            planned, self._notes = plan_environments(
                self.config,
                self.options.litellm,
                self.options.wrapt,
                resolve=lambda: resolve_newest(self.config.python, self.options.envs_dir),
            )
            self._planned = filter_environments(planned, self.options.only)
            for note in dict.fromkeys(env.note for env in self._planned if env.note):
                self._notes.insert(0, note)
        return self._planned

    def skip_reason(self) -> str | None:
        """Return why this stage does not run, or None when it runs."""
        if not self.plan():
            return f"no environment matches --only {' '.join(self.options.only)}"
        return None

    def describe(self) -> list[str]:
        """Return one line per planned environment for ``--list``."""
        lines = []
        for env in self.plan():
            cached = envs.read_stamp(self.options.envs_dir / env.key) is not None
            lines.append(f"{env.label:<40} key {env.key:<40} {'cached' if cached else 'not built yet'}")
        lines.extend(self._notes)
        return lines

    def run(self, print_line: Progress) -> StageResult:
        """Run every planned environment, ``options.jobs`` at a time, and return the matrix."""
        planned = self.plan()
        result = StageResult(
            name=self.name,
            title=self.title,
            started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            notes=list(self._notes),
            tests_path=_display_path(self.options.tests_path, self.options.project_root),
        )
        started = time.monotonic()
        stop = threading.Event()

        def run_one(position: int, env: PlannedEnv) -> MatrixRow:
            prefix = f"[{position}/{len(planned)}] "
            if stop.is_set():
                row = _row_for(env, self.options.reports_dir)
                row.error = "not run: stopped after an earlier environment failed (--no-keep-going)"
                row.log_path = None
                print_line(prefix + f"{env.label}: skipped after an earlier failure")
                return row
            row = run_environment(env, self.options, lambda text: print_line(prefix + text))
            if not row.ok and not self.options.keep_going:
                stop.set()
            return row

        pool = ThreadPoolExecutor(max_workers=max(1, self.options.jobs))
        try:
            futures = [pool.submit(run_one, position, env) for position, env in enumerate(planned, start=1)]
            result.rows = [future.result() for future in futures]
        except KeyboardInterrupt:
            stop.set()
            kill_running_tests()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()
        for row in result.rows:
            if row.log_path:
                row.log_path = _display_path(Path(row.log_path), self.options.project_root)
        result.duration_s = time.monotonic() - started
        return result


def _display_path(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)
