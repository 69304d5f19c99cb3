"""Cache of virtual environments for the compatibility suite.

Each environment lives in ``<envs_dir>/<key>`` and contains a stamp file that records what was
installed. A later request with the same Python version and requirements reuses it. When only
the project checkout changed (another path, or a changed pyproject.toml), only the project is
installed again. Any other difference, a missing stamp (an interrupted build) or a broken
interpreter rebuilds the environment from scratch.

Environments are built with uv when it is on PATH or next to the running interpreter, and
otherwise with ``python -m venv`` and pip. The project is installed in editable mode without
its dependencies, so the tests always run against the current source tree.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

STAMP_NAME = ".suite-env.json"
STAMP_FORMAT = 1

# Maximum time in seconds for one installer command (creating a venv or installing packages).
INSTALL_TIMEOUT_S = 1800

# Maximum number of installer output lines quoted in a build error.
ERROR_TAIL_LINES = 8

# Packages whose installed versions are recorded in the stamp and shown in the reports.
REPORTED_PACKAGES = ("litellm", "wrapt", "openai", "pydantic", "httpx", "pytest", "pytest-asyncio")


class EnvBuildError(Exception):
    """An environment could not be created or installed. The message ends with installer output."""


@dataclass(frozen=True)
class EnvRequest:
    """Requested contents of an environment.

    ``key`` names the directory under the cache. ``python`` is a version such as ``3.11``.
    ``requirements`` are pip requirement strings installed with their dependencies.
    """

    key: str
    python: str
    requirements: tuple[str, ...]
    project_root: Path


@dataclass
class PreparedEnv:
    """A ready environment and the versions that are installed in it."""

    path: Path
    python: Path
    reused: bool
    python_version: str
    installer: str  # "uv" or "pip"
    installed: dict[str, str] = field(default_factory=dict)


def find_uv() -> str | None:
    """Return the path of the uv executable, or None to fall back to venv and pip.

    Setting ``TOKEN_METER_NO_UV=1`` forces the fallback.
    """
    if os.environ.get("TOKEN_METER_NO_UV") == "1":
        return None
    found = shutil.which("uv")
    if found:
        return found
    sibling = Path(sys.executable).parent / "uv"
    return str(sibling) if sibling.exists() else None


def find_python(version: str) -> str:
    """Return an interpreter of the given ``major.minor`` version for ``python -m venv``.

    Looks for ``python<version>`` on PATH, then accepts the running interpreter if it has
    that version. Raises EnvBuildError when neither fits.
    """
    found = shutil.which(f"python{version}")
    if found:
        return found
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return sys.executable
    raise EnvBuildError(f"Python {version} not found: install python{version} on PATH, or install uv")


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _deps_fingerprint(request: EnvRequest, installer: str) -> str:
    data = json.dumps({"python": request.python, "requirements": list(request.requirements), "installer": installer})
    return hashlib.sha256(data.encode()).hexdigest()


def _project_fingerprint(project_root: Path) -> dict[str, str]:
    return {
        "project_root": str(project_root.resolve()),
        "pyproject_sha256": _sha256_file(project_root / "pyproject.toml"),
    }


def _env_python(env_path: Path) -> Path:
    return env_path / "bin" / "python"


def _run_logged(command: Sequence[str], log_path: Path, timeout_s: float = INSTALL_TIMEOUT_S) -> None:
    """Run an installer command and append its output to the log.

    Raises EnvBuildError with an excerpt of the command's output when it fails or times out.
    """
    logger.debug("running %s", " ".join(command))
    with log_path.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(command)}\n")
        log.flush()
        try:
            completed = subprocess.run(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            log.write(f"timed out after {timeout_s:.0f} s\n")
            raise EnvBuildError(f"{command[0]} timed out after {timeout_s:.0f} s: {' '.join(command)}") from exc
        except OSError as exc:
            log.write(f"could not start: {exc}\n")
            raise EnvBuildError(f"could not start {command[0]}: {exc}") from exc
        log.write(completed.stdout)
        log.write(f"exit code {completed.returncode}\n")

    if completed.returncode != 0:
        name = " ".join([Path(command[0]).name, *command[1:3]])
        raise EnvBuildError(
            f"'{name} ...' failed with exit code {completed.returncode}: " + _error_excerpt(completed.stdout)
        )


def _error_excerpt(output: str) -> str:
    """Return the installer's error lines joined by " / ": from the first line starting with
    "error" on, else the last ERROR_TAIL_LINES lines."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    start = next((i for i, line in enumerate(lines) if line.lower().startswith("error")), None)
    excerpt = lines[start:] if start is not None else lines
    return " / ".join(excerpt[:ERROR_TAIL_LINES] if start is not None else excerpt[-ERROR_TAIL_LINES:])


def _create_venv(env_path: Path, python: str, uv: str | None, log_path: Path) -> None:
    if uv:
        _run_logged([uv, "venv", "--python", python, str(env_path)], log_path)
    else:
        _run_logged([find_python(python), "-m", "venv", str(env_path)], log_path)


def _install(env_path: Path, arguments: Sequence[str], uv: str | None, log_path: Path) -> None:
    python = str(_env_python(env_path))
    if uv:
        _run_logged([uv, "pip", "install", "--python", python, *arguments], log_path)
    else:
        _run_logged([python, "-m", "pip", "install", "--disable-pip-version-check", *arguments], log_path)


def query_installed(python: Path, names: Sequence[str] = REPORTED_PACKAGES) -> tuple[str, dict[str, str]]:
    """Return the interpreter's version and the installed versions of ``names`` (missing ones omitted).

    Raises EnvBuildError when the interpreter cannot run, for example after its base Python was removed.
    """
    script = (
        "import json, sys, importlib.metadata as m\n"
        "found = {}\n"
        "for name in sys.argv[1:]:\n"
        "    try:\n"
        "        found[name] = m.version(name)\n"
        "    except m.PackageNotFoundError:\n"
        "        pass\n"
        "print(json.dumps({'python': '.'.join(map(str, sys.version_info[:3])), 'installed': found}))\n"
    )
    try:
        completed = subprocess.run(
            [str(python), "-c", script, *names], capture_output=True, text=True, timeout=60, check=True
        )
        data = json.loads(completed.stdout)
    except (OSError, subprocess.SubprocessError, json.JSONDecodeError) as exc:
        raise EnvBuildError(f"interpreter {python} does not run: {exc}") from exc
    return data["python"], data["installed"]


def read_stamp(env_path: Path) -> dict | None:
    """Return the stamp of an environment, or None when it is missing or unreadable."""
    try:
        return json.loads((env_path / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def cached_stamps(envs_dir: Path) -> Iterator[tuple[Path, dict]]:
    """Yield ``(environment path, stamp)`` for every complete environment in the cache."""
    if not envs_dir.is_dir():
        return
    for env_path in sorted(envs_dir.iterdir()):
        stamp = read_stamp(env_path) if env_path.is_dir() else None
        if stamp is not None:
            yield env_path, stamp


@contextmanager
def _env_lock(envs_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock on one environment, so that two suite runs never build it at once."""
    locks_dir = envs_dir / ".locks"
    locks_dir.mkdir(parents=True, exist_ok=True)
    with (locks_dir / f"{key}.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def prepare_env(request: EnvRequest, envs_dir: Path, log_path: Path) -> PreparedEnv:
    """Return a ready environment for ``request``, reusing, repairing or building it as needed.

    Installer output is appended to ``log_path``. Raises EnvBuildError when a step fails. A
    failed build leaves no stamp behind, so the next run builds the environment again.
    """
    uv = find_uv()
    installer = "uv" if uv else "pip"
    env_path = envs_dir / request.key
    deps_fingerprint = _deps_fingerprint(request, installer)
    project = _project_fingerprint(request.project_root)
    log_path.parent.mkdir(parents=True, exist_ok=True)

    with _env_lock(envs_dir, request.key):
        stamp = read_stamp(env_path)
        reusable = stamp is not None and stamp.get("format") == STAMP_FORMAT
        reusable = reusable and stamp.get("deps_fingerprint") == deps_fingerprint
        if reusable:
            try:
                query_installed(_env_python(env_path), ())
            except EnvBuildError as exc:
                logger.warning("rebuilding environment %s: %s", env_path, exc)
                reusable = False

        if reusable and stamp.get("project") == project:
            logger.info("reusing environment %s", env_path)
            python_version, installed = query_installed(_env_python(env_path))
            return PreparedEnv(
                env_path, _env_python(env_path), True, python_version, stamp.get("installer", installer), installed
            )

        started = time.monotonic()
        if reusable:
            logger.info("reinstalling the project into %s (project path or pyproject.toml changed)", env_path)
            (env_path / STAMP_NAME).unlink(missing_ok=True)
        else:
            logger.info("building environment %s with %s", env_path, installer)
            if env_path.exists():
                shutil.rmtree(env_path)
            try:
                _create_venv(env_path, request.python, uv, log_path)
                _install(env_path, list(request.requirements), uv, log_path)
            except EnvBuildError:
                # Without a stamp the next run would rebuild it anyway. Removing it keeps the cache tidy.
                shutil.rmtree(env_path, ignore_errors=True)
                raise
        _install(env_path, ["--no-deps", "--editable", str(request.project_root)], uv, log_path)

        python_version, installed = query_installed(_env_python(env_path))
        new_stamp = {
            "format": STAMP_FORMAT,
            "deps_fingerprint": deps_fingerprint,
            "project": project,
            "installer": installer,
            "python": request.python,
            "python_version": python_version,
            "requirements": list(request.requirements),
            "installed": installed,
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (env_path / STAMP_NAME).write_text(json.dumps(new_stamp, indent=2) + "\n", encoding="utf-8")
        logger.info("environment %s ready in %.1f s", env_path, time.monotonic() - started)
        return PreparedEnv(env_path, _env_python(env_path), False, python_version, installer, installed)
