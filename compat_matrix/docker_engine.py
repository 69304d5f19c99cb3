"""Docker engine access for the docker backend: connection, images, commands with timeouts, cleanup.

Uses the docker SDK (the project's ``docker`` extra), imported on first use so that the rest of the
suite works without it. Every container and volume the backend creates carries ``LABEL_APP`` and
a ``LABEL_SESSION`` unique to one backend, so leftovers of a killed run can be found and removed::

    python -m compat_matrix.docker_engine --list
    python -m compat_matrix.docker_engine --remove-leftovers

Errors of the engine are raised as ``A0LiveError`` naming the step that failed.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .a0_live import A0LiveError

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

LABEL_APP = "io.token-meter.compat"
LABEL_SESSION = "io.token-meter.session"
LABEL_ROLE = "io.token-meter.role"

# Sockets tried, in order, when DOCKER_HOST is unset. scripts/dockerd starts an engine on the second.
SOCKET_CANDIDATES = ("/var/run/docker.sock", "/tmp/dockerd.sock")

PULL_POLICIES = ("missing", "never", "always")

# Extra seconds the host waits for a command after the in-container `timeout` should have ended it.
_HOST_GRACE_S = 15.0
# Exit codes of coreutils `timeout`: 124 when the command timed out, 137 when it needed SIGKILL.
_TIMEOUT_EXIT_CODES = (124, 137)


def engine_url(environ: Mapping[str, str] | None = None) -> str | None:
    """Return the engine to use: DOCKER_HOST, else the first existing socket of SOCKET_CANDIDATES, else None."""
    environ = os.environ if environ is None else environ
    if environ.get("DOCKER_HOST"):
        return environ["DOCKER_HOST"]
    for socket_path in SOCKET_CANDIDATES:
        if Path(socket_path).is_socket():
            return f"unix://{socket_path}"
    return None


def no_engine_reason(environ: Mapping[str, str] | None = None) -> str | None:
    """Return why no engine can be used (SDK missing, nothing configured, engine not responding), or None."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return "the docker SDK is not installed (pip install 'a0-token-meter[docker]')"
    url = engine_url(environ)
    if url is None:
        sockets = " and ".join(SOCKET_CANDIDATES)
        return f"no Docker engine: DOCKER_HOST unset and {sockets} missing (start one with scripts/dockerd start)"
    try:
        client = connect(url, timeout_s=10)
    except A0LiveError as error:
        return str(error)
    client.close()
    return None


def connect(url: str | None = None, timeout_s: float = 120.0) -> docker.DockerClient:
    """Return a client of the engine at ``url`` (default ``engine_url()``) after a ping.

    ``timeout_s`` bounds each API call that does not stream. Raises A0LiveError when the SDK is
    missing or the engine does not respond.
    """
    try:
        import docker
    except ImportError:
        raise A0LiveError("the docker SDK is not installed; run: pip install 'a0-token-meter[docker]'") from None
    url = url or engine_url()
    if url is None:
        raise A0LiveError("no Docker engine: set DOCKER_HOST or start one with scripts/dockerd start")
    try:
        client = docker.DockerClient(base_url=url, timeout=int(timeout_s))
        client.ping()
    except Exception as error:  # the SDK raises DockerException, requests errors or OSError here
        raise A0LiveError(f"no Docker engine: {url} does not respond ({error})") from None
    return client


@contextlib.contextmanager
def engine_errors(step: str) -> Iterator[None]:
    """Raise errors of the docker SDK inside the block as A0LiveError("<step> failed: ...")."""
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    try:
        yield
    except (DockerException, RequestException) as error:
        raise A0LiveError(f"{step} failed: {error}") from error


def ensure_image(client: docker.DockerClient, image: str, pull: str = "missing") -> None:
    """Make ``image`` available: pull it when missing (``missing``), always (``always``) or never (``never``).

    Raises A0LiveError when the image is missing and cannot be pulled. The message explains how to
    provide it.
    """
    from docker.errors import ImageNotFound

    if pull not in PULL_POLICIES:
        raise ValueError(f"invalid pull policy {pull!r}; expected one of {', '.join(PULL_POLICIES)}")
    present = True
    try:
        client.images.get(image)
    except ImageNotFound:
        present = False
    if present and pull != "always":
        return
    if not present and pull == "never":
        raise A0LiveError(f"image {image} is not present and pulling is off (--pull never)")

    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(image)
    logger.info("pulling %s", image)
    started = time.monotonic()
    try:
        client.images.pull(repository, tag=tag or "latest")
    except Exception as error:  # DockerException or requests errors: both end the same way
        hint = " (a local image such as the base image is built by scripts/build_base_image)" if not present else ""
        raise A0LiveError(f"image {image} could not be pulled: {error}{hint}") from None
    logger.info("pulled %s in %.0f s", image, time.monotonic() - started)


def labels_for(session: str, role: str) -> dict[str, str]:
    """Return the labels of a container or volume of one backend session in one role."""
    return {LABEL_APP: "1", LABEL_SESSION: session, LABEL_ROLE: role}


def _decode(data: bytes | None) -> str:
    return (data or b"").decode("utf-8", errors="replace")


def exec_in_container(
    container: Container,
    argv: Sequence[str],
    timeout_s: float,
    *,
    workdir: str | None = None,
    environment: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` in a running container with ``docker exec`` and return its exit code and output.

    The command runs under coreutils ``timeout`` inside the container, so it is killed after
    ``timeout_s`` seconds even when the host stops waiting. Raises subprocess.TimeoutExpired when it
    timed out and A0LiveError when the engine fails or the exec ends without an exit code.
    """
    command = ["timeout", "--kill-after=5", f"{timeout_s:g}", *argv]
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = container.exec_run(
                command, workdir=workdir, environment=dict(environment or {}), demux=True
            )
        except Exception as error:  # handed to the waiting thread below
            outcome["error"] = error

    started = time.monotonic()
    # docker exec has no timeout of its own, so a thread waits for it and the host stops waiting after the deadline.
    worker = threading.Thread(target=run, name=f"docker-exec-{container.short_id}", daemon=True)
    worker.start()
    worker.join(timeout_s + _HOST_GRACE_S)
    elapsed = time.monotonic() - started
    if worker.is_alive():
        raise subprocess.TimeoutExpired(list(argv), timeout_s)
    if "error" in outcome:
        raise A0LiveError(f"docker exec {argv[0]} in {container.name} failed: {outcome['error']}")

    exit_code, (stdout, stderr) = outcome["result"]
    if exit_code is None:
        raise A0LiveError(f"docker exec {argv[0]} in {container.name} ended without an exit code")
    if exit_code in _TIMEOUT_EXIT_CODES and elapsed >= timeout_s:
        raise subprocess.TimeoutExpired(list(argv), timeout_s, output=_decode(stdout), stderr=_decode(stderr))
    return subprocess.CompletedProcess(list(argv), exit_code, _decode(stdout), _decode(stderr))


def run_in_new_container(
    client: docker.DockerClient,
    image: str,
    argv: Sequence[str],
    timeout_s: float,
    *,
    labels: Mapping[str, str],
    **create_options: Any,
) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` as the only process of a new container, wait for it and remove the container.

    ``create_options`` go to ``containers.create`` (for example ``volumes_from``, ``working_dir``,
    ``network_mode``). Raises subprocess.TimeoutExpired after ``timeout_s`` seconds (the container
    is killed) and A0LiveError when the engine fails.
    """
    import requests.exceptions

    with engine_errors(f"creating a container from {image} for {argv[0]}"):
        container = client.containers.create(
            image, entrypoint=list(argv[:1]), command=list(argv[1:]), labels=dict(labels), **create_options
        )
    try:
        with engine_errors(f"running {argv[0]} in container {container.name}"):
            container.start()
            try:
                status = container.wait(timeout=timeout_s)
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                container.kill()
                raise subprocess.TimeoutExpired(list(argv), timeout_s) from None
            stdout = container.logs(stdout=True, stderr=False)
            stderr = container.logs(stdout=False, stderr=True)
    finally:
        remove_container(container)
    return subprocess.CompletedProcess(list(argv), int(status.get("StatusCode", -1)), _decode(stdout), _decode(stderr))


def remove_container(container: Container) -> None:
    """Remove a container with its anonymous volumes, killing it first; log instead of raising."""
    from docker.errors import DockerException, NotFound

    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except DockerException as error:
        logger.warning("could not remove container %s: %s", container.name, error)


def _label_filters(session: str | None) -> dict[str, list[str]]:
    labels = [f"{LABEL_APP}=1"]
    if session:
        labels.append(f"{LABEL_SESSION}={session}")
    return {"label": labels}


def remove_labeled(client: docker.DockerClient, session: str | None = None) -> tuple[list[str], list[str]]:
    """Remove the containers, then the volumes, carrying LABEL_APP (of one ``session`` when given).

    Returns the names of the removed containers and volumes. Failures are logged, not raised.
    """
    from docker.errors import DockerException, NotFound

    filters = _label_filters(session)
    removed_containers = []
    for container in client.containers.list(all=True, filters=filters):
        remove_container(container)
        removed_containers.append(container.name)
    removed_volumes = []
    for volume in client.volumes.list(filters=filters):
        try:
            volume.remove(force=True)
            removed_volumes.append(volume.name)
        except NotFound:
            pass
        except DockerException as error:
            logger.warning("could not remove volume %s: %s", volume.name, error)
    return removed_containers, removed_volumes


def list_labeled(client: docker.DockerClient, session: str | None = None) -> list[str]:
    """Return one line per container and volume carrying LABEL_APP (of one ``session`` when given).

    Each line names the kind, name, session, role and, for containers, the status.
    """
    filters = _label_filters(session)
    lines = []
    for container in client.containers.list(all=True, filters=filters):
        labels = container.labels
        lines.append(
            f"container {container.name} session {labels.get(LABEL_SESSION)} role {labels.get(LABEL_ROLE)} "
            f"status {container.status}"
        )
    for volume in client.volumes.list(filters=filters):
        labels = volume.attrs.get("Labels") or {}
        lines.append(f"volume {volume.name} session {labels.get(LABEL_SESSION)} role {labels.get(LABEL_ROLE)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    """List or remove the containers and volumes that docker backends left behind."""
    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix.docker_engine",
        description="List or remove the containers and volumes of Token Meter's docker backend "
        f"(label {LABEL_APP}=1). The engine is DOCKER_HOST or the first of {', '.join(SOCKET_CANDIDATES)}.",
    )
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="print them")
    action.add_argument("--remove-leftovers", action="store_true", help="remove them, running ones included")
    parser.add_argument("--session", help="only those of this backend session (label value)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        client = connect()
    except A0LiveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        if args.list:
            lines = list_labeled(client, args.session)
            print("\n".join(lines) if lines else "nothing found")
            return 0
        containers, volumes = remove_labeled(client, args.session)
    finally:
        client.close()
    print(f"removed {len(containers)} container(s) and {len(volumes)} volume(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
