"""Docker backend of the live A0 check: A0 and the fake model server in containers without network.

Two containers share one network namespace that has only a loopback interface:

- the fake-server container (``--network none``) runs ``fake_llm_server.py`` from a read-only copy of
  the project's ``compat_matrix`` folder for the backend's whole life. Its request log is a file in
  ``log_dir`` (bind-mounted), so the host reads it directly;
- the A0 container joins that namespace (``--network container:<fake-server>``), so A0 reaches the
  fake server at 127.0.0.1:8001 and nothing else. HTTP requests to A0 (port 80) run
  ``container_http.py`` with ``docker exec`` in the fake-server container.

Modes (``DockerSetup``):

- release image (``checkout`` None), e.g. ``agent0ai/agent-zero:v1.7``: pulled unless present and
  started with its own command. ``/a0/usr`` is a named volume that the engine fills from the image,
  the plugin is a bind mount at ``/a0/usr/plugins/token_meter``, and ``usr/.env``, the model config
  and the pinned-date extension are copied in with ``put_archive`` before the start;
- mounted checkout: a base image (see scripts/build_base_image) with a copy of an A0 checkout at
  ``/a0``, a Python venv at ``/opt/venv-a0`` and extra read-only mounts (such as the interpreter the
  venv links to), started as ``/opt/venv-a0/bin/python /a0/run_ui.py --dockerized=true --port=80
  --host=127.0.0.1``.

A fresh start creates a new A0 container; a non-fresh start starts the same container again, so
chats, memory and settings stay. Commands for ``exec`` run in the A0 container while it runs, and in
a short-lived container with the same image and mounts (``--volumes-from``) while it is stopped.
Every container and volume is labelled (see ``docker_engine``) and removed by ``close()``.
Logs in ``log_dir``: ``a0-<label>.log`` (container output of each start), ``fake-server.jsonl`` and
``fake-server.out``.

The engine must run on this machine, because the backend bind-mounts local folders. Several
backends can run at once: each has its own containers and network namespace.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import itertools
import json
import logging
import secrets
import shutil
import subprocess
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import a0_live, container_http, docker_engine
from .a0_live import A0LiveError, HttpResponse, ModelSetup
from .docker_engine import engine_errors, exec_in_container, labels_for

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

logger = logging.getLogger(__name__)

A0_ROOT = "/a0"
VENV_PATH = "/opt/venv-a0"
VENV_PYTHON = f"{VENV_PATH}/bin/python"
PLUGIN_PATH = f"{A0_ROOT}/usr/plugins/{a0_live.PLUGIN_NAME}"
TOOLS_PATH = "/tm/compat_matrix"
LOGS_PATH = "/tm/logs"
IO_PATH = "/tm/io"
A0_PORT = 80
FAKE_PORT = 8001
FAKE_LOG = "fake-server.jsonl"
FAKE_OUTPUT = "fake-server.out"
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Requests whose encoded form is longer go through a file in IO_PATH instead of the command line.
MAX_ARGUMENT_CHARS = 64 * 1024
# Extra seconds an HTTP exec may take beyond the request's own timeout (process start, docker exec).
HTTP_EXEC_MARGIN_S = 15.0


@dataclasses.dataclass(frozen=True)
class Mount:
    """A host folder or file bind-mounted into the containers."""

    source: Path
    target: str
    read_only: bool = True

    @classmethod
    def parse(cls, text: str) -> Mount:
        """Parse ``HOST:CONTAINER[:ro|rw]`` (read-only by default). Raises ValueError when invalid."""
        parts = text.split(":")
        mode = "ro"
        if len(parts) == 3:
            mode = parts.pop()
        if len(parts) != 2 or mode not in ("ro", "rw") or not parts[0] or not parts[1].startswith("/"):
            raise ValueError(f"invalid mount {text!r}; expected HOST:CONTAINER[:ro|rw] with an absolute CONTAINER path")
        return cls(Path(parts[0]).resolve(), parts[1], read_only=mode == "ro")

    def docker_mount(self) -> Any:
        from docker.types import Mount as SdkMount

        return SdkMount(self.target, str(self.source), type="bind", read_only=self.read_only)


# Prefixes that are never mounted over the image's own: they hold the container's system files.
_SYSTEM_PREFIXES = frozenset({"/", "/usr", "/usr/local", "/opt", "/bin", "/lib"})


def interpreter_mounts(venv: Path, existing: Sequence[Mount] = ()) -> list[Mount]:
    """Return the read-only mount of the interpreter prefix that ``venv`` links to, at its own path.

    A venv's ``bin/python`` is a symlink to the interpreter that created it, and ``pyvenv.cfg``
    names that interpreter's ``bin`` folder (``home``). Mounting the venv at /opt/venv-a0 leaves the
    symlink pointing to the host path, so the prefix is mounted at the same path. Returns nothing
    when ``existing`` already covers the prefix, and nothing, with a warning, when the prefix is a
    system folder such as /usr (then the image must bring that interpreter).
    """
    config = venv / "pyvenv.cfg"
    try:
        lines = config.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise A0LiveError(f"{venv} is not a venv: {config} cannot be read ({error})") from None
    home = next((line.split("=", 1)[1].strip() for line in lines if line.split("=", 1)[0].strip() == "home"), "")
    if not home:
        raise A0LiveError(f"{config} has no 'home' line naming the interpreter's folder")
    prefix = Path(home).parent
    if any(str(prefix).startswith(mount.target.rstrip("/") + "/") or str(prefix) == mount.target for mount in existing):
        return []
    if str(prefix) in _SYSTEM_PREFIXES:
        logger.warning(
            "the venv %s links to the system interpreter in %s, which is not mounted; the image must provide it",
            venv,
            prefix,
        )
        return []
    return [Mount(prefix, str(prefix))]


@dataclasses.dataclass(frozen=True)
class DockerSetup:
    """Images, mounts and interpreters of the containers.

    ``image``: the release image, or the base image when ``checkout`` is set (mounted mode).
    ``venv``: host venv mounted at /opt/venv-a0 (mounted mode only). ``mounts``: extra bind mounts
    of both containers. ``a0_python``: interpreter that runs run_ui.py in mounted mode.
    ``tool_python``: interpreter of the fake server and the HTTP client; default /opt/venv-a0/bin/python,
    or ``python3`` in mounted mode without a venv. ``pull``: ``missing``, ``never`` or ``always``.
    """

    image: str
    checkout: Path | None = None
    venv: Path | None = None
    mounts: tuple[Mount, ...] = ()
    a0_python: str = VENV_PYTHON
    tool_python: str | None = None
    pull: str = "missing"

    @property
    def mounted(self) -> bool:
        return self.checkout is not None

    @property
    def fake_server_python(self) -> str:
        if self.tool_python:
            return self.tool_python
        return VENV_PYTHON if (self.venv is not None or not self.mounted) else "python3"

    def validate(self) -> None:
        """Raise A0LiveError when a path is missing or an option does not fit the mode."""
        if self.pull not in docker_engine.PULL_POLICIES:
            raise A0LiveError(f"invalid pull policy {self.pull!r}; use one of {', '.join(docker_engine.PULL_POLICIES)}")
        if self.checkout is not None:
            a0_live.check_checkout(self.checkout)
        elif self.venv is not None:
            raise A0LiveError("a venv is mounted only together with a checkout (mounted mode)")
        if self.venv is not None and not (self.venv / "bin" / "python").exists():
            raise A0LiveError(f"{self.venv} is not a venv: bin/python is missing")
        for mount in self.mounts:
            if not mount.source.exists():
                raise A0LiveError(f"mount source {mount.source} does not exist")


class DockerBackend:
    """A0Backend on a Docker engine; see the module docstring for the containers and the two modes.

    ``work_dir`` contains the A0 tree (mounted mode), the copies of compat_matrix and of the plugin, and
    request files; it must exist. ``client`` is a docker SDK client (default: ``docker_engine.connect()``).
    """

    name = "docker"

    def __init__(
        self,
        setup: DockerSetup,
        work_dir: Path,
        log_dir: Path,
        *,
        client: docker.DockerClient | None = None,
        chat_ctx_length: int = 120_000,
        runtime_id: str = a0_live.DEFAULT_RUNTIME_ID,
        ready_timeout_s: float = 240.0,
        stop_timeout_s: float = 30.0,
        fake_ready_timeout_s: float = 60.0,
        keep_tree: bool = False,
    ) -> None:
        setup.validate()
        self.setup = setup
        self.runtime_id = runtime_id
        self.origin = f"http://{a0_live.HOST}:{A0_PORT}"
        self.work_dir = work_dir.resolve()
        self.tree = self.work_dir / "a0"
        self.log_dir = log_dir.resolve()
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.fake_ready_timeout_s = fake_ready_timeout_s
        self.keep_tree = keep_tree
        self.model_setup = ModelSetup(api_base=f"http://{a0_live.HOST}:{FAKE_PORT}/v1", chat_ctx_length=chat_ctx_length)
        self.session = secrets.token_hex(4)
        self.fake_log_path = self.log_dir / FAKE_LOG

        self._client = client
        self._own_client = client is None
        self._fake: Container | None = None
        self._a0: Container | None = None
        self._a0_plugin_mounted = False
        self._a0_started = False
        self._a0_label = ""
        self._a0_log_offset = 0
        self._names = itertools.count(1)
        self._closed = False

    # ----- A0Backend ------------------------------------------------------------------------------

    def start(self, *, label: str, plugin_tree: Path | None, fresh: bool) -> float:
        if self._closed:
            raise A0LiveError("this docker backend is closed")
        if self._a0_started:
            raise A0LiveError(f"A0 is already running in container {self._a0.name if self._a0 else '?'}")
        self._start_fake_server()
        if fresh or self._a0 is None:
            self._discard_a0()
            self._a0 = self._create_a0(plugin_tree)
        else:
            self._update_plugin(plugin_tree)
        return self._start_a0(label)

    def exec(self, argv: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        if self._a0 is None:
            raise A0LiveError("A0 has not been started, so there is no A0 container to run a command in")
        if self._a0_is_running():
            return exec_in_container(self._a0, argv, timeout_s, workdir=A0_ROOT)
        return docker_engine.run_in_new_container(
            self._engine(),
            self._a0.attrs["Image"],
            argv,
            timeout_s,
            labels=labels_for(self.session, "exec"),
            volumes_from=[self._a0.id],
            network_mode="none",
            working_dir=A0_ROOT,
            environment=self._a0_environment(),
        )

    def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResponse:
        if self._fake is None:
            raise OSError("the fake-server container is not running, so A0 cannot be reached")
        request = {
            "port": A0_PORT,
            "method": method,
            "path": path,
            "headers": dict(headers),
            "body": base64.b64encode(body).decode("ascii") if body is not None else None,
            "timeout": timeout_s,
        }
        argument = base64.b64encode(json.dumps(request).encode()).decode("ascii")
        request_file: Path | None = None
        if len(argument) > MAX_ARGUMENT_CHARS:
            request_file = self.work_dir / "io" / f"request-{secrets.token_hex(6)}.json"
            request_file.write_text(json.dumps(request), encoding="utf-8")
            argument = f"@{IO_PATH}/{request_file.name}"
        command = [self.setup.fake_server_python, f"{TOOLS_PATH}/container_http.py", argument]
        try:
            result = exec_in_container(self._fake, command, timeout_s + HTTP_EXEC_MARGIN_S)
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{method} {path}: no response from A0 within {timeout_s:.0f} s") from None
        finally:
            if request_file is not None:
                request_file.unlink(missing_ok=True)
        return _parse_http_output(method, path, result)

    def fake_requests(self) -> list[dict[str, Any]]:
        try:
            text = self.fake_log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being written has no newline yet: leave it for the next read.
        complete, _, _ = text.rpartition("\n")
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def wait_fake_quiet(self, quiet_s: float, timeout_s: float) -> list[dict[str, Any]]:
        """Wait until the fake server's log has not grown for ``quiet_s`` seconds; return the log.

        Requests are logged when they end, so one that runs longer than ``quiet_s`` may be missed.
        Raises A0LiveError after ``timeout_s`` seconds without such a pause.
        """
        a0_live.wait_until_file_quiet(self.fake_log_path, quiet_s, timeout_s)
        return self.fake_requests()

    def stop(self) -> None:
        if self._a0 is None or not self._a0_started:
            return
        container = self._a0
        with engine_errors(f"stopping A0 container {container.name}"):
            try:
                container.reload()
                if container.status == "running":
                    container.stop(timeout=int(self.stop_timeout_s))
                    container.reload()
            finally:
                self._a0_started = False
                self._save_a0_log()
        logger.info("A0 container %s stopped (exit code %s)", container.name, container.attrs["State"].get("ExitCode"))

    def log_excerpt(self, lines: int = 80) -> str:
        if self._a0 is not None:
            try:
                text = self._a0_log_text()
            except A0LiveError as error:
                return f"(A0's container log could not be read: {error})"
            return "\n".join(text.splitlines()[-lines:])
        return a0_live.tail_text(self._a0_log_path(), lines) if self._a0_label else ""

    def close(self) -> None:
        """Stop A0, keep the logs, remove this backend's containers and volumes and the work files."""
        if self._closed:
            return
        self._closed = True
        try:
            self.stop()
        except A0LiveError as error:
            logger.warning("A0 did not stop cleanly: %s", error)
        self._save_fake_output()
        if self._client is not None:
            try:
                containers, volumes = docker_engine.remove_labeled(self._client, self.session)
                logger.info("removed containers %s and volumes %s", containers, volumes)
            except Exception as error:  # cleanup goes on; leftovers carry labels for docker_engine --remove-leftovers
                logger.warning("could not remove the containers of session %s: %s", self.session, error)
            if self._own_client:
                self._client.close()
        self._fake = None
        self._a0 = None
        for folder in ("compat_matrix", "io", "stage", "plugin"):
            shutil.rmtree(self.work_dir / folder, ignore_errors=True)
        if not self.keep_tree:
            shutil.rmtree(self.tree, ignore_errors=True)

    def __enter__(self) -> DockerBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ----- engine and fake server -----------------------------------------------------------------

    def _engine(self) -> docker.DockerClient:
        if self._client is None:
            self._client = docker_engine.connect()
        return self._client

    def _container_name(self, role: str) -> str:
        return f"tm-{role}-{self.session}-{next(self._names)}"

    def _start_fake_server(self) -> None:
        """Create and start the fake-server container once per backend; wait for its READY line."""
        if self._fake is not None:
            return
        client = self._engine()
        docker_engine.ensure_image(client, self.setup.image, self.setup.pull)
        self._copy_tools()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.fake_log_path.write_text("", encoding="utf-8")
        (self.work_dir / "io").mkdir(exist_ok=True)

        mounts = [
            Mount(self.work_dir / "compat_matrix", TOOLS_PATH),
            Mount(self.log_dir, LOGS_PATH, read_only=False),
            Mount(self.work_dir / "io", IO_PATH),
            *self._shared_mounts(),
        ]
        command = [f"{TOOLS_PATH}/fake_llm_server.py", "--port", str(FAKE_PORT), "--log", f"{LOGS_PATH}/{FAKE_LOG}"]
        with engine_errors(f"creating the fake-server container from {self.setup.image}"):
            self._fake = client.containers.create(
                self.setup.image,
                entrypoint=[self.setup.fake_server_python],
                command=command,
                name=self._container_name("fake"),
                labels=labels_for(self.session, "fake-server"),
                mounts=[mount.docker_mount() for mount in mounts],
                network_mode="none",
                init=True,
                working_dir="/",
                environment={"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PATH": CONTAINER_PATH},
            )
            self._fake.start()
        try:
            self._wait_fake_ready()
            check = exec_in_container(self._fake, ["true"], 20)
            if check.returncode != 0:
                raise A0LiveError(
                    f"image {self.setup.image} cannot run commands with a timeout (coreutils `timeout` missing?): "
                    f"exit code {check.returncode}, {check.stdout.strip()} {check.stderr.strip()}"
                )
        except (A0LiveError, subprocess.TimeoutExpired):
            # The next start creates a new fake-server container instead of using this one.
            self._save_fake_output()
            docker_engine.remove_container(self._fake)
            self._fake = None
            raise

    def _wait_fake_ready(self) -> None:
        assert self._fake is not None
        deadline = time.monotonic() + self.fake_ready_timeout_s
        with engine_errors("waiting for the fake server"):
            while True:
                output = self._fake.logs(stdout=True, stderr=False).decode(errors="replace")
                if any(line.startswith("READY") for line in output.splitlines()):
                    logger.info("fake server ready in container %s", self._fake.name)
                    return
                self._fake.reload()
                if self._fake.status not in ("created", "running"):
                    self._save_fake_output()
                    raise A0LiveError(
                        f"the fake server exited in container {self._fake.name} "
                        f"(exit code {self._fake.attrs['State'].get('ExitCode')}); see {self.log_dir / FAKE_OUTPUT}"
                    )
                if time.monotonic() > deadline:
                    raise A0LiveError(f"the fake server did not print READY within {self.fake_ready_timeout_s:.0f} s")
                time.sleep(0.2)

    def _copy_tools(self) -> None:
        """Copy the project's compat_matrix modules; the containers mount the copy read-only."""
        target = self.work_dir / "compat_matrix"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            a0_live.PROJECT_ROOT / "compat_matrix", target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )

    def _shared_mounts(self) -> list[Mount]:
        """Mounts of both containers: the venv (mounted mode) and the extra mounts."""
        mounts = list(self.setup.mounts)
        if self.setup.venv is not None:
            mounts.insert(0, Mount(self.setup.venv.resolve(), VENV_PATH))
        return mounts

    def _save_fake_output(self) -> None:
        if self._fake is None:
            return
        try:
            output = self._fake.logs(stdout=True, stderr=True)
        except Exception as error:  # best effort: the log is a diagnostic
            logger.warning("could not read the fake server's output: %s", error)
            return
        (self.log_dir / FAKE_OUTPUT).write_bytes(output)

    # ----- A0 container ---------------------------------------------------------------------------

    def _a0_environment(self) -> dict[str, str]:
        environment = a0_live.guarded_environment({})
        # NOTE: A0 v1.7 can deadlock at start-up (seen once in a container here). Its watchdog registry
        # keeps its lock while it reschedules the observer, and the observer thread waits for that lock
        # to deliver events of the .pyc files that other start-up threads write under plugins/. Without
        # .pyc writes in the tree the deadlock did not occur in later runs.
        environment["PYTHONDONTWRITEBYTECODE"] = "1"
        if self.setup.mounted:
            environment["PATH"] = CONTAINER_PATH
            if self.setup.venv is not None:
                environment["PATH"] = f"{VENV_PATH}/bin:{CONTAINER_PATH}"
                environment["VIRTUAL_ENV"] = VENV_PATH
        return environment

    def _create_a0(self, plugin_tree: Path | None) -> Container:
        if self.setup.mounted:
            return self._create_mounted_a0(plugin_tree)
        return self._create_release_a0(plugin_tree)

    def _create_mounted_a0(self, plugin_tree: Path | None) -> Container:
        assert self.setup.checkout is not None and self._fake is not None
        a0_live.prepare_run_tree(self.setup.checkout, self.tree)
        a0_live.write_usr_env(self.tree, self.runtime_id)
        a0_live.write_model_config(self.tree, self.model_setup)
        a0_live.pin_prompt_datetime(self.tree)
        # The same tree as the local backend runs, so both backends produce the same results.
        a0_live.disable_host_changing_plugins(self.tree)
        self._update_plugin(plugin_tree)

        mounts = [Mount(self.tree, A0_ROOT, read_only=False), *self._shared_mounts()]
        command = [
            self.setup.a0_python,
            f"{A0_ROOT}/run_ui.py",
            "--dockerized=true",
            f"--port={A0_PORT}",
            f"--host={a0_live.HOST}",
        ]
        with engine_errors(f"creating the A0 container from {self.setup.image}"):
            return self._engine().containers.create(
                self.setup.image,
                command=command,
                name=self._container_name("a0"),
                labels=labels_for(self.session, "a0"),
                mounts=[mount.docker_mount() for mount in mounts],
                network_mode=f"container:{self._fake.id}",
                init=True,
                working_dir=A0_ROOT,
                environment=self._a0_environment(),
            )

    def _create_release_a0(self, plugin_tree: Path | None) -> Container:
        # NOTE: run here only with a stand-in image laid out like the release images (/a0, usr/); the
        # real images (supervisord, A0's self-update manager) need Docker Hub, which this machine cannot reach.
        from docker.types import Mount as SdkMount

        assert self._fake is not None
        client = self._engine()
        name = self._container_name("a0")
        mounts = [mount.docker_mount() for mount in self.setup.mounts]
        with engine_errors(f"creating the A0 container from {self.setup.image}"):
            volume = client.volumes.create(name=f"{name}-usr", labels=labels_for(self.session, "a0-usr"))
            # A new named volume is filled with the image's /a0/usr when the container is created.
            mounts.append(SdkMount(f"{A0_ROOT}/usr", volume.name, type="volume"))
            self._a0_plugin_mounted = plugin_tree is not None
            if plugin_tree is not None:
                plugin_copy = self._sync_plugin_copy(plugin_tree)
                mounts.append(Mount(plugin_copy, PLUGIN_PATH, read_only=False).docker_mount())
            container = client.containers.create(
                self.setup.image,
                name=name,
                labels=labels_for(self.session, "a0"),
                mounts=mounts,
                network_mode=f"container:{self._fake.id}",
                environment=self._a0_environment(),
            )
            if not container.put_archive(A0_ROOT, self._usr_archive()):
                raise A0LiveError(f"copying usr/ files into container {container.name} failed")
        return container

    def _usr_archive(self) -> bytes:
        """Return a tar of usr/.env, the model config and the pinned-date extension, owned by root."""
        stage = self.work_dir / "stage"
        shutil.rmtree(stage, ignore_errors=True)
        stage.mkdir(parents=True)
        a0_live.write_usr_env(stage, self.runtime_id)
        a0_live.write_model_config(stage, self.model_setup)
        a0_live.pin_prompt_datetime(stage)

        def as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            return info

        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            archive.add(stage / "usr", arcname="usr", filter=as_root)
        return buffer.getvalue()

    def _sync_plugin_copy(self, plugin_tree: Path) -> Path:
        """Make work_dir/plugin/token_meter a copy of ``plugin_tree``; return it.

        The folder itself is kept, because a bind mount of it would still show a replaced folder's
        old contents; only its entries are replaced.
        """
        if not (plugin_tree / "plugin.yaml").is_file():
            raise A0LiveError(f"{plugin_tree} is not a plugin tree: plugin.yaml is missing")
        target = self.work_dir / "plugin" / a0_live.PLUGIN_NAME
        target.mkdir(parents=True, exist_ok=True)
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        shutil.copytree(plugin_tree, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        return target

    def _update_plugin(self, plugin_tree: Path | None) -> None:
        """Install, replace or remove the plugin before a start of the current container."""
        if self.setup.mounted:
            if plugin_tree is None:
                a0_live.remove_plugin(self.tree)
            else:
                a0_live.install_plugin(self.tree, plugin_tree)
            return
        if (plugin_tree is not None) != self._a0_plugin_mounted:
            state = "with" if self._a0_plugin_mounted else "without"
            raise A0LiveError(
                f"the A0 container was created {state} the plugin mount, which a restart cannot change; "
                "use a fresh start to add or remove the plugin"
            )
        if plugin_tree is not None:
            self._sync_plugin_copy(plugin_tree)

    def _start_a0(self, label: str) -> float:
        """Start the A0 container and wait until GET /api/health returns 200; return the seconds it took."""
        assert self._a0 is not None
        container = self._a0
        self._a0_label = label
        with engine_errors(f"starting A0 container {container.name}"):
            self._a0_log_offset = len(container.logs(stdout=True, stderr=True))
            started = time.monotonic()
            container.start()
            self._a0_started = True
            logger.info("A0 container %s starting (%s)", container.name, label)
            deadline = started + self.ready_timeout_s
            while True:
                if not self._a0_is_running():
                    exit_code = container.attrs["State"].get("ExitCode")
                    self.stop()
                    raise A0LiveError(
                        f"A0 container {container.name} exited with code {exit_code} before it was ready; "
                        f"see {self._a0_log_path()}"
                    )
                if self._health_ok():
                    elapsed = time.monotonic() - started
                    logger.info("A0 ready in container %s after %.1f s", container.name, elapsed)
                    return elapsed
                if time.monotonic() > deadline:
                    self.stop()
                    raise A0LiveError(f"A0 not ready after {self.ready_timeout_s:.0f} s; see {self._a0_log_path()}")
                time.sleep(0.5)

    def _health_ok(self) -> bool:
        try:
            return self.request("GET", "/api/health", {}, None, 3.0).status == 200
        except OSError:
            return False

    def _a0_is_running(self) -> bool:
        assert self._a0 is not None
        with engine_errors(f"inspecting A0 container {self._a0.name}"):
            self._a0.reload()
        return self._a0.status == "running"

    def _discard_a0(self) -> None:
        """Stop and remove the current A0 container and its usr volume (logs were saved at its stop)."""
        if self._a0 is None:
            return
        self.stop()
        mounts = self._a0.attrs.get("Mounts") or []
        docker_engine.remove_container(self._a0)
        for mount in mounts:
            if mount.get("Type") == "volume" and mount.get("Name"):
                with engine_errors(f"removing volume {mount['Name']}"):
                    self._engine().volumes.get(mount["Name"]).remove(force=True)
        self._a0 = None
        self._a0_plugin_mounted = False

    def _a0_log_path(self) -> Path:
        return self.log_dir / f"a0-{self._a0_label}.log"

    def _a0_log_text(self) -> str:
        """Return the A0 container's output since its latest start."""
        assert self._a0 is not None
        with engine_errors(f"reading the log of A0 container {self._a0.name}"):
            output = self._a0.logs(stdout=True, stderr=True)
        return output[self._a0_log_offset :].decode("utf-8", errors="replace")

    def _save_a0_log(self) -> None:
        """Append the output of the latest start to a0-<label>.log; a log that cannot be read is noted there."""
        assert self._a0 is not None
        try:
            text = self._a0_log_text()
        except A0LiveError as error:
            text = f"(log not available: {error})\n"
        path = self._a0_log_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as log_file:
            log_file.write(f"\n===== container {self._a0.name} from {self.setup.image}, start '{self._a0_label}'\n")
            log_file.write(text)


def _parse_http_output(method: str, path: str, result: subprocess.CompletedProcess[str]) -> HttpResponse:
    """Turn container_http.py's output into an HttpResponse. Raises OSError when the request failed."""
    if result.returncode == container_http.EXIT_CONNECTION_ERROR:
        try:
            message = json.loads(result.stdout).get("error")
        except ValueError:
            message = result.stdout.strip()
        raise OSError(f"{method} {path} to A0 failed: {message}")
    if result.returncode != 0:
        raise OSError(
            f"the HTTP client in the fake-server container failed with exit code {result.returncode}: "
            f"{(result.stderr or result.stdout).strip()[:300]}"
        )
    try:
        data = json.loads(result.stdout)
        return HttpResponse(
            status=int(data["status"]),
            headers=[(str(name), str(value)) for name, value in data["headers"]],
            body=base64.b64decode(data["body"]),
        )
    except (ValueError, KeyError, TypeError) as error:
        raise OSError(f"the HTTP client printed invalid output for {method} {path}: {error}") from None
