"""Where the A0 axis can run the live end-to-end check, release by release.

The suite runs the live check of a release only where the machine allows it: a checkout of that
release configured by the user (the local backend, or the docker backend with the checkout mounted
into a base image), or a Docker engine that has the release's official image (pulled only when the
user allows it). Every release that gets no live check gets a one-line reason instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .releases import A0Release

logger = logging.getLogger(__name__)

LIVE_MODES = ("auto", "off", "local", "docker")

# Environment variables that configure checkouts when no option is given.
CHECKOUTS_ENV = "TOKEN_METER_A0_CHECKOUTS"  # "v1.3=/path/to/v1.3,v1.7=/path/to/v1.7"
PYTHON_ENV = "TOKEN_METER_A0_PYTHON"  # interpreter with A0's requirements installed

# Sockets tried, in order, when DOCKER_HOST is not set. The second is the one scripts/dockerd starts.
ENGINE_SOCKETS = ("/var/run/docker.sock", "/tmp/dockerd.sock")

DEFAULT_BASE_IMAGE = "token-meter/a0-base:bookworm"


@dataclass(frozen=True)
class LiveOptions:
    """Live check settings from the command line and the environment."""

    mode: str = "auto"
    checkouts: Mapping[str, Path] = field(default_factory=dict)
    python: str | None = None
    pull: bool = False
    base_image: str = DEFAULT_BASE_IMAGE
    jobs: int = 1
    base_port: int = 22400
    quiet_s: float = 3.0
    ready_timeout_s: float = 240.0


@dataclass(frozen=True)
class LiveTarget:
    """Backend and inputs of one release's live check.

    ``backend`` is ``local`` (checkout + interpreter), ``docker-image`` (the official image) or
    ``docker-checkout`` (the checkout and the interpreter's venv mounted into ``image``).
    """

    tag: str
    backend: str
    checkout: Path | None = None
    python: str | None = None
    image: str | None = None

    def describe(self) -> str:
        if self.backend == "local":
            return f"local backend: {self.checkout} with {self.python}"
        if self.backend == "docker-checkout":
            return f"docker backend: {self.checkout} mounted into {self.image}"
        return f"docker backend: image {self.image}"


@dataclass(frozen=True)
class EngineState:
    """Reachability of a Docker engine, and the client that reaches it."""

    reachable: bool
    reason: str
    client: object | None = None

    def has_image(self, reference: str) -> bool:
        if self.client is None:
            return False
        try:
            self.client.images.get(reference)  # type: ignore[attr-defined]
        except Exception:  # docker.errors.ImageNotFound, APIError
            return False
        return True


def parse_checkouts(values: Iterable[str]) -> dict[str, Path]:
    """Parse ``TAG=DIR`` items. Raises ValueError naming the bad item."""
    checkouts: dict[str, Path] = {}
    for value in values:
        tag, separator, directory = value.partition("=")
        if not separator or not tag.strip() or not directory.strip():
            raise ValueError(f"expected TAG=DIR, such as v1.7=/srv/agent-zero-v1.7, got {value!r}")
        checkouts[tag.strip()] = Path(directory.strip()).expanduser()
    return checkouts


def checkouts_from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Path]:
    """Return the checkouts named in TOKEN_METER_A0_CHECKOUTS (comma-separated TAG=DIR items)."""
    text = environ.get(CHECKOUTS_ENV, "").strip()
    if not text:
        return {}
    return parse_checkouts(item for item in text.split(",") if item.strip())


def probe_engine() -> EngineState:
    """Return whether a Docker engine responds to a ping within 10 s; errors become an unreachable state."""
    try:
        import docker
    except ImportError:
        return EngineState(False, "the docker SDK is not installed (pip install 'a0-token-meter[docker]')")

    base_url = os.environ.get("DOCKER_HOST")
    if not base_url:
        socket_path = next((path for path in ENGINE_SOCKETS if Path(path).exists()), None)
        if socket_path is None:
            return EngineState(
                False, "no Docker engine: DOCKER_HOST is unset and no socket at " + " or ".join(ENGINE_SOCKETS)
            )
        base_url = f"unix://{socket_path}"

    try:
        client = docker.DockerClient(base_url=base_url, timeout=10)
        client.ping()
    except Exception as error:  # docker.errors.DockerException, requests errors
        return EngineState(False, f"the Docker engine at {base_url} does not answer ({type(error).__name__})")
    return EngineState(True, f"Docker engine at {base_url}", client)


def venv_of(python: str) -> Path:
    """Return the virtual environment an interpreter belongs to: the folder above its ``bin``."""
    return Path(python).expanduser().absolute().parent.parent


def plan_live(
    releases: Iterable[A0Release],
    unsupported: Mapping[str, str],
    options: LiveOptions,
    engine: EngineState | None,
) -> tuple[dict[str, LiveTarget], dict[str, str]]:
    """Return the live targets by tag and, for every other release, why it gets no live check.

    ``unsupported`` maps the tags the contract check found unsupported to the reason. ``engine`` is
    None when the mode does not need Docker.
    """
    targets: dict[str, LiveTarget] = {}
    reasons: dict[str, str] = {}
    for release in releases:
        if options.mode == "off":
            reasons[release.tag] = "live check turned off (--a0-live off)"
            continue
        if release.tag in unsupported:
            reasons[release.tag] = f"not run: the contract check found it unsupported ({unsupported[release.tag]})"
            continue
        target, reason = _target_for(release, options, engine)
        if target is None:
            reasons[release.tag] = reason
        else:
            targets[release.tag] = target
    return targets, reasons


def _target_for(release: A0Release, options: LiveOptions, engine: EngineState | None) -> tuple[LiveTarget | None, str]:
    checkout = options.checkouts.get(release.tag)
    engine_up = engine is not None and engine.reachable

    if checkout is not None:
        if not options.python:
            return None, f"checkout configured but no interpreter: pass --a0-python or set {PYTHON_ENV}"
        if options.mode == "docker":
            if not engine_up:
                return None, f"--a0-live docker: {engine.reason if engine else 'no Docker engine'}"
            if not engine.has_image(options.base_image):
                return None, f"base image {options.base_image} not present (build it with ./scripts/build_base_image)"
            return LiveTarget(release.tag, "docker-checkout", checkout, options.python, options.base_image), ""
        return LiveTarget(release.tag, "local", checkout, options.python), ""

    if options.mode == "local":
        return None, f"no checkout configured for {release.tag} (--a0-checkout {release.tag}=DIR)"
    if not engine_up:
        why = engine.reason if engine is not None else "no Docker engine"
        return None, f"no checkout configured for {release.tag} and {why}"
    if engine.has_image(release.image) or options.pull:
        return LiveTarget(release.tag, "docker-image", image=release.image), ""
    return None, f"image {release.image} is not present locally; pass --a0-pull to pull it"
