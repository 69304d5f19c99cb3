"""Command-line options of the A0 axis, and their conversion into ``A0AxisOptions``."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .a0_axis import A0AxisOptions
from .a0_live_plan import (
    CHECKOUTS_ENV,
    DEFAULT_BASE_IMAGE,
    LIVE_MODES,
    PYTHON_ENV,
    LiveOptions,
    checkouts_from_environment,
    parse_checkouts,
)
from .cli_types import positive_float, positive_int
from .releases import load_releases


def add_a0_options(parser: argparse.ArgumentParser) -> None:
    """Add the options that select A0 releases and configure their live checks."""
    group = parser.add_argument_group(
        "A0 axis",
        "The contract check runs for every release from the committed baselines. The live check runs "
        "where the machine allows it: a configured checkout, or a Docker engine with the release's image.",
    )
    group.add_argument(
        "--a0",
        action="append",
        default=[],
        metavar="TAG",
        help="check only this A0 release of matrix.toml, such as v1.7 or latest. Repeatable.",
    )
    group.add_argument(
        "--a0-live",
        choices=LIVE_MODES,
        default="auto",
        help="where live checks run: auto (checkouts locally, other releases in Docker when an engine "
        "answers), local (checkouts only), docker (checkouts mounted into the base image, other releases "
        "from their images), off. Default: auto.",
    )
    group.add_argument(
        "--a0-checkout",
        action="append",
        default=[],
        metavar="TAG=DIR",
        help=f"an A0 source tree of release TAG for the live check. Repeatable. Default: {CHECKOUTS_ENV} "
        "(comma-separated TAG=DIR items).",
    )
    group.add_argument(
        "--a0-python",
        default=None,
        metavar="PYTHON",
        help=f"interpreter with A0's requirements installed, used for every checkout (default: {PYTHON_ENV})",
    )
    group.add_argument(
        "--a0-pull",
        action="store_true",
        help="pull official A0 images that are not present locally (needs access to Docker Hub)",
    )
    group.add_argument(
        "--a0-base-image",
        default=DEFAULT_BASE_IMAGE,
        metavar="IMAGE",
        help=f"image a checkout is mounted into with --a0-live docker (default: {DEFAULT_BASE_IMAGE}, "
        "built by ./scripts/build_base_image)",
    )
    group.add_argument(
        "--a0-jobs",
        type=positive_int,
        default=1,
        metavar="N",
        help="number of live checks run in parallel (default 1; each A0 needs about 1.1 GB of memory)",
    )
    group.add_argument(
        "--a0-ready-timeout",
        type=positive_float,
        default=240.0,
        metavar="SECONDS",
        help="maximum seconds to wait for A0's health endpoint to respond after each start (default 240)",
    )
    group.add_argument(
        "--no-pin",
        dest="pin",
        action="store_false",
        help="do not write the proven A0 range into the plugin's README and compatibility file",
    )


def a0_options_from_args(
    args: argparse.Namespace, project_root: Path, reports_dir: Path, parser: argparse.ArgumentParser
) -> A0AxisOptions:
    """Build the A0 axis options; report invalid values through ``parser.error``."""
    try:
        checkouts = checkouts_from_environment()
        checkouts.update(parse_checkouts(args.a0_checkout))
    except ValueError as error:
        parser.error(f"--a0-checkout / {CHECKOUTS_ENV}: {error}")
    try:
        known = [release.tag for release in load_releases()]
    except (OSError, ValueError) as error:
        parser.error(f"cannot read the matrix file: {error}")
    unknown = sorted({tag for tag in [*args.a0, *checkouts] if tag not in known})
    if unknown:
        parser.error(f"A0 release not in matrix.toml: {', '.join(unknown)} (known: {', '.join(known)})")
    for tag, path in checkouts.items():
        if not (path / "run_ui.py").is_file():
            parser.error(f"checkout of {tag}: {path} has no run_ui.py")
    python = args.a0_python or os.environ.get(PYTHON_ENV) or None
    if checkouts and not python and args.a0_live != "off":
        parser.error(f"a checkout is configured but no interpreter: pass --a0-python or set {PYTHON_ENV}")

    live = LiveOptions(
        mode=args.a0_live,
        checkouts=checkouts,
        python=python,
        pull=args.a0_pull,
        base_image=args.a0_base_image,
        jobs=args.a0_jobs,
        ready_timeout_s=args.a0_ready_timeout,
    )
    return A0AxisOptions(project_root=project_root, reports_dir=reports_dir, only=tuple(args.a0), live=live)
