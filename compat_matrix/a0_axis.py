"""A0 axis of the compatibility suite: the plugin against each A0 release of ``matrix.toml``.

For every release the stage (1) checks the contract: the release's probe facts (the committed
baseline) against the plugin's requirements, giving supported, degraded or unsupported, and the
drift from the release before it; then (2) runs the live end-to-end check where the machine
allows it (see ``a0_live_plan``). Releases that get no live check say why.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import a0_e2e, contract
from .a0_live_plan import EngineState, LiveOptions, LiveTarget, plan_live, probe_engine, venv_of
from .a0_report import LIVE_FAILED, LIVE_NOT_RUN, LIVE_PASSED, A0StageResult, LiveOutcome, MissingItem, ReleaseRow
from .releases import DATA_FILE, A0Release, load_releases
from .reports import plural

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class A0AxisOptions:
    """Options of the A0 axis: which releases, live check settings, where reports go."""

    project_root: Path
    reports_dir: Path
    only: tuple[str, ...] = ()
    live: LiveOptions = LiveOptions()
    data_file: Path = DATA_FILE


def select_releases(releases: Iterable[A0Release], only: Iterable[str]) -> list[A0Release]:
    """Return the releases whose tag is in ``only`` (all when ``only`` is empty), in release order."""
    wanted = set(only)
    return [release for release in releases if not wanted or release.tag in wanted]


def row_from_contract(release: A0Release, checked: contract.ReleaseContract) -> ReleaseRow:
    """Build a report row from the contract check of one release."""
    row = ReleaseRow(tag=release.tag, image=release.image, litellm_pin=release.litellm, expect=release.expect)
    if checked.error:
        row.error = checked.error
        return row
    row.verdict = checked.verdict.status
    row.facts_from = checked.facts_from
    row.missing = [MissingItem(item.id, item.feature, item.severity, item.reason) for item in checked.verdict.missing]
    row.unchecked = list(checked.verdict.unchecked)
    row.drift_from = checked.previous_tag
    row.drift = [str(item) for item in checked.drift]
    return row


def outcome_from_check(result: a0_e2e.CheckResult) -> LiveOutcome:
    """Summarise a live check result for the report."""
    failed = [item.name for item in result.assertions if not item.passed]
    if result.error:
        detail = result.error
    elif failed:
        detail = f"{len(failed)} of {len(result.assertions)} assertions failed, first: {failed[0]}"
    elif not result.assertions:
        detail = "no assertion was made"
    else:
        detail = ""
    return LiveOutcome(
        status=LIVE_PASSED if result.passed else LIVE_FAILED,
        backend=result.backend,
        detail=detail,
        passed=len(result.assertions) - len(failed),
        total=len(result.assertions),
        duration_s=float(result.timings.get("total", 0.0) or 0.0),
        log_dir=result.log_dir,
        failures=failed,
        log_excerpt=result.log_excerpt,
        summary=result.summary_lines(),
    )


def run_live_target(target: LiveTarget, position: int, options: A0AxisOptions) -> LiveOutcome:
    """Run one release's live check on its backend; an exception in the harness becomes a failed outcome."""
    live = options.live
    report_dir = options.reports_dir / "a0_live" / target.tag
    port = live.base_port + 10 * position
    started = time.monotonic()
    try:
        if target.backend == "local":
            result = a0_e2e.run_local(
                target.checkout,
                target.python,
                port=port,
                fake_port=port + 1,
                report_dir=report_dir,
                quiet_s=live.quiet_s,
                ready_timeout_s=live.ready_timeout_s,
            )
        else:
            result = a0_e2e.run_docker(
                image=target.image,
                checkout=target.checkout,
                venv=venv_of(target.python) if target.python else None,
                pull=live.pull,
                report_dir=report_dir,
                quiet_s=live.quiet_s,
                ready_timeout_s=live.ready_timeout_s,
            )
    except Exception as error:  # a crash of the harness must not end the suite
        logger.exception("live check of %s crashed", target.tag)
        return LiveOutcome(
            status=LIVE_FAILED,
            backend=target.backend,
            detail=f"the live check crashed: {type(error).__name__}: {error}",
            duration_s=time.monotonic() - started,
            log_dir=str(report_dir),
        )
    result.label = target.tag
    return outcome_from_check(result)


class A0AxisStage:
    """The A0 releases as a stage of the suite (see ``cli.Stage``)."""

    name = "a0_matrix"
    title = "A0 releases"

    def __init__(self, options: A0AxisOptions, engine_probe: Callable[[], EngineState] = probe_engine) -> None:
        self.options = options
        self.releases = select_releases(load_releases(options.data_file), options.only)
        self._engine_probe = engine_probe
        self._engine: EngineState | None = None
        self._notes: list[str] = []

    def engine(self) -> EngineState | None:
        """Probe the Docker engine once, only when the live mode may use it."""
        if self.options.live.mode in ("off", "local"):
            return None
        if self._engine is None:
            self._engine = self._engine_probe()
        return self._engine

    def skip_reason(self) -> str | None:
        if not self.releases:
            return f"no A0 release matches --a0 {' '.join(self.options.only)}"
        return None

    def plan(
        self, *, probe_images: bool = True
    ) -> tuple[list[contract.ReleaseContract], dict[str, LiveTarget], dict[str, str]]:
        """Check every release's contract and decide where its live check runs.

        With ``probe_images``, releases whose official image the engine has (or may pull) are
        judged by the probe's output from inside that image instead of the committed baseline.
        """
        overrides = self._probe_images() if probe_images else {}
        checked = contract.check_releases(self.releases, facts_overrides=overrides)
        unsupported = {
            item.release.tag: "; ".join(
                missing.reason for missing in item.verdict.missing if missing.severity == "required"
            )
            or "unsupported"
            for item in checked
            if item.error is None and item.verdict.status == "unsupported"
        }
        targets, reasons = plan_live(self.releases, unsupported, self.options.live, self.engine())
        return checked, targets, reasons

    def _probe_images(self) -> dict[str, Path]:
        """Probe the official image of each release that the docker backend would run; return the output files."""
        engine = self.engine()
        live = self.options.live
        if engine is None or not engine.reachable or live.mode in ("off", "local"):
            return {}
        from .a0_live import A0LiveError
        from .image_probe import probe_image

        overrides: dict[str, Path] = {}
        for release in self.releases:
            if release.tag in live.checkouts or not (live.pull or engine.has_image(release.image)):
                continue
            output = self.options.reports_dir / "a0_live" / release.tag / "probe.json"
            try:
                overrides[release.tag] = probe_image(engine.client, release.image, output, pull=live.pull)
            except A0LiveError as error:
                self._notes.append(f"{release.tag}: {error}; its contract uses the committed baseline")
                continue
            self._notes.append(f"{release.tag}: contract facts probed in {release.image} ({output})")
        return overrides

    def describe(self) -> list[str]:
        """Return one line per release for ``--list``: verdict and where the live check runs."""
        checked, targets, reasons = self.plan(probe_images=False)
        lines = []
        for release, item in zip(self.releases, checked, strict=True):
            verdict = item.error or item.verdict.status
            live = targets[release.tag].describe() if release.tag in targets else reasons[release.tag]
            lines.append(f"{release.tag:<10} {verdict:<12} live: {live}")
        return lines

    def run(self, print_line: Progress) -> A0StageResult:
        """Check the contracts, run the planned live checks ``jobs`` at a time, return the rows."""
        started = time.monotonic()
        result = A0StageResult(
            name=self.name, title=self.title, started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        )
        checked, targets, reasons = self.plan()
        rows = {
            release.tag: row_from_contract(release, item) for release, item in zip(self.releases, checked, strict=True)
        }
        print_line(f"A0 contract check: {plural(len(rows), 'release')} from {contract.facts_description()}")

        for tag, reason in reasons.items():
            rows[tag].live = LiveOutcome(status=LIVE_NOT_RUN, detail=reason)
        engine = self.engine()
        if engine is not None:
            result.notes.append(("Docker: " if engine.reachable else "No Docker live checks: ") + engine.reason)
        result.notes.extend(self._notes)

        planned = [targets[release.tag] for release in self.releases if release.tag in targets]
        if planned:
            self._run_targets(planned, rows, print_line)
        result.rows = [rows[release.tag] for release in self.releases]
        result.duration_s = time.monotonic() - started
        return result

    def _run_targets(self, planned: list[LiveTarget], rows: dict[str, ReleaseRow], print_line: Progress) -> None:
        def run_one(position: int, target: LiveTarget) -> None:
            prefix = f"[live {position + 1}/{len(planned)}] {target.tag}: "
            print_line(prefix + "started, " + target.describe())
            outcome = run_live_target(target, position, self.options)
            rows[target.tag].live = outcome
            print_line(prefix + f"{outcome.cell()} in {outcome.duration_s:.0f} s")

        with ThreadPoolExecutor(max_workers=max(1, self.options.live.jobs)) as pool:
            for future in [pool.submit(run_one, position, target) for position, target in enumerate(planned)]:
                future.result()
