"""Run a real Agent Zero (A0) v1.x from a source tree against the fake model server.

Building blocks of the live end-to-end check (``compat_matrix.a0_e2e``):

- ``prepare_run_tree`` copies a checkout without its chats, memory, logs and temporary files, so
  every run starts from the same state and the checkout itself is never changed;
- ``write_usr_env`` and ``write_model_config`` point A0's chat, utility and embedding models at
  the fake server (``usr/.env`` and ``usr/plugins/_model_config/config.json``);
- ``install_plugin`` and ``remove_plugin`` manage ``usr/plugins/token_meter``;
- ``FakeServerProcess`` and ``A0Process`` start and stop the two servers, each in its own
  process group, and keep their logs;
- ``A0Client`` sends chat messages (``POST /api/api_message`` with ``X-API-KEY``) and calls the
  plugin API with A0's CSRF flow.

All traffic goes to 127.0.0.1. A0 is started with proxies pointing at a closed loopback port and
with telemetry switched off, in the process environment: A0 loads ``usr/.env`` only after it has
imported litellm, which fetches its price map from the internet at import time unless
``LITELLM_LOCAL_MODEL_COST_MAP`` is already set (observed on A0 v1.7 with litellm 1.79.3).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import http.client
import http.cookies
import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
FAKE_SERVER_SCRIPT = PROJECT_ROOT / "compat_matrix" / "fake_llm_server.py"
BUILD_PLUGIN_SCRIPT = PROJECT_ROOT / "scripts" / "build_plugin"

PLUGIN_NAME = "token_meter"
DEFAULT_RUNTIME_ID = "0123456789abcdef0123456789abcdef"
CHAT_MODEL = "fake-model"
UTILITY_MODEL = "fake-utility"
# A0 passes embedding model names to litellm without the provider prefix, so the name must be in
# litellm's model map.
EMBEDDING_MODEL = "text-embedding-3-small"

# Closed loopback port used as the proxy of every outgoing connection A0 makes to another host.
DEAD_PROXY = "http://127.0.0.1:9"

# Paths of a checkout that hold run-time state; prepare_run_tree leaves them out.
STATE_PATHS = ("usr/chats", "usr/memory", "usr/uploads", "tmp", "logs", f"usr/plugins/{PLUGIN_NAME}")

# Fixed "current datetime" line for A0's prompts (see pin_prompt_datetime).
PINNED_DATETIME = "2026-01-01 12:00:00"

_PINNED_DATETIME_EXTENSION = '''\
"""Written by Token Meter's live check: puts a fixed date and time into A0's prompt.

Replaces A0's core extension of the same file name, which inserts the current time to the second
and so makes the fake model's replies differ between two runs of the same conversation.
"""

from agent import LoopData
from helpers.extension import Extension


class PinnedDatetime(Extension):
    async def execute(self, loop_data: LoopData = LoopData(), **kwargs):
        if not self.agent:
            return
        loop_data.extras_temporary["current_datetime"] = self.agent.read_prompt(
            "agent.system.datetime.md", date_time={date_time!r}
        )
'''
_DATETIME_EXTENSION_PATH = "usr/extensions/python/message_loop_prompts_after/_60_include_current_datetime.py"


class A0LiveError(RuntimeError):
    """A step of running A0 or the fake server failed. The message names the step and the log to read."""


# ----- trees and configuration -------------------------------------------------------------------


def check_checkout(checkout: Path) -> None:
    """Raise A0LiveError unless ``checkout`` is an A0 v1.x source tree (run_ui.py and the model config plugin)."""
    if not (checkout / "run_ui.py").is_file():
        raise A0LiveError(f"no A0 checkout at {checkout}: run_ui.py is missing")
    if not (checkout / "plugins" / "_model_config").is_dir():
        raise A0LiveError(
            f"{checkout} has no plugins/_model_config; only A0 v1.x trees (models set by that plugin) are supported"
        )


def prepare_run_tree(checkout: Path, destination: Path) -> Path:
    """Copy ``checkout`` to ``destination`` without run-time state and return the copy.

    Chats, memory, uploads, ``tmp/``, ``logs/``, an installed token_meter plugin and ``__pycache__``
    folders are left out (``tmp/`` and ``logs/`` are created empty). An existing ``destination`` is
    replaced.
    """
    check_checkout(checkout)
    checkout = checkout.resolve()
    skipped = {checkout / path for path in STATE_PATHS}

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = {name for name in names if name == "__pycache__"}
        ignored.update(name for name in names if Path(directory, name) in skipped)
        return ignored

    if destination.exists():
        shutil.rmtree(destination)
    shutil.copytree(checkout, destination, ignore=ignore, symlinks=True)
    for folder in ("tmp", "logs"):
        (destination / folder).mkdir(exist_ok=True)
    return destination


# Core plugins of A0 v2.x that install system packages (apt-get) when A0 starts in dockerized mode.
# The live check starts A0 with --dockerized=true outside a container, so they are turned off in
# the copy it runs; they play no part in model calls.
HOST_CHANGING_PLUGINS = ("_desktop", "_office")
PLUGIN_OFF_FILE = ".toggle-0"


def disable_host_changing_plugins(tree: Path) -> list[str]:
    """Turn off the core plugins of ``HOST_CHANGING_PLUGINS`` that ``tree`` has; return their names.

    A0 v2.x reads ``usr/plugins/<name>/.toggle-0`` as "disabled". Trees without these plugins
    (v1.x) are left unchanged.
    """
    disabled = []
    for name in HOST_CHANGING_PLUGINS:
        if (tree / "plugins" / name / "plugin.yaml").is_file():
            toggle_dir = tree / "usr" / "plugins" / name
            toggle_dir.mkdir(parents=True, exist_ok=True)
            (toggle_dir / PLUGIN_OFF_FILE).write_text("", encoding="utf-8")
            disabled.append(name)
    return disabled


def clear_state(tree: Path) -> None:
    """Remove the chats, memory and uploads of an A0 tree, so A0 starts as after a fresh install."""
    for relative in ("usr/chats", "usr/memory", "usr/uploads"):
        shutil.rmtree(tree / relative, ignore_errors=True)


def api_key_for(runtime_id: str) -> str:
    """Return the X-API-KEY that A0 v1.x accepts when no login is set.

    It is the first 16 characters of the URL-safe base64 of sha256("<runtime id>::") without padding.
    """
    digest = hashlib.sha256(f"{runtime_id}::".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode().replace("=", "")[:16]


def write_usr_env(tree: Path, runtime_id: str = DEFAULT_RUNTIME_ID) -> Path:
    """Write ``usr/.env``: persistent runtime id, a dummy OpenAI key, offline price map, no update check."""
    path = tree / "usr" / ".env"
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        f"A0_PERSISTENT_RUNTIME_ID={runtime_id}",
        "OPENAI_API_KEY=sk-test",
        "LITELLM_LOCAL_MODEL_COST_MAP=True",
        "A0_SET_update_check_enabled=false",
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclasses.dataclass(frozen=True)
class ModelSetup:
    """Models A0 uses, all served by the fake server at ``api_base``.

    ``chat_ctx_length`` is the chat model's context length in tokens, the limit the plugin divides by.
    """

    api_base: str
    provider: str = "other"
    chat_model: str = CHAT_MODEL
    utility_model: str = UTILITY_MODEL
    embedding_model: str = EMBEDDING_MODEL
    chat_ctx_length: int = 120_000
    utility_ctx_length: int = 64_000

    def config(self) -> dict[str, Any]:
        """Return the ``_model_config`` plugin's config.json content.

        A0 reads a config.json whole, without merging it with the defaults, so every section is set.
        """
        limits = {"rl_requests": 0, "rl_input": 0, "kwargs": {}}
        return {
            "allow_chat_override": True,
            "chat_model": {
                "provider": self.provider,
                "name": self.chat_model,
                "api_base": self.api_base,
                "ctx_length": self.chat_ctx_length,
                "ctx_history": 0.7,
                "vision": False,
                "max_embeds": 10,
                "rl_output": 0,
                **limits,
            },
            "utility_model": {
                "provider": self.provider,
                "name": self.utility_model,
                "api_base": self.api_base,
                "ctx_length": self.utility_ctx_length,
                "ctx_input": 0.7,
                "rl_output": 0,
                **limits,
            },
            "embedding_model": {
                "provider": self.provider,
                "name": self.embedding_model,
                "api_base": self.api_base,
                **limits,
            },
        }


def model_config_path(tree: Path) -> Path:
    return tree / "usr" / "plugins" / "_model_config" / "config.json"


def write_model_config(tree: Path, setup: ModelSetup) -> Path:
    """Write ``usr/plugins/_model_config/config.json`` for ``setup`` and return its path."""
    path = model_config_path(tree)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(setup.config(), indent=2) + "\n", encoding="utf-8")
    return path


def pin_prompt_datetime(tree: Path, date_time: str = PINNED_DATETIME) -> Path:
    """Make A0 put ``date_time`` instead of the current time into its prompts; return the file written.

    A0 v1.x adds the current time to the second to every chat-model prompt. The fake model's reply is
    a hash of the whole prompt, so without this two runs of one conversation get different replies.
    The file is a user extension with the core extension's file name, which replaces it.
    """
    path = tree / _DATETIME_EXTENSION_PATH
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_PINNED_DATETIME_EXTENSION.format(date_time=date_time), encoding="utf-8")
    return path


def build_plugin(out_dir: Path, python: str = sys.executable) -> Path:
    """Build the installable plugin tree with scripts/build_plugin and return ``out_dir/token_meter``."""
    result = subprocess.run(
        [python, str(BUILD_PLUGIN_SCRIPT), "--out", str(out_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if result.returncode != 0:
        raise A0LiveError(f"scripts/build_plugin failed with exit code {result.returncode}: {result.stderr.strip()}")
    tree = out_dir.resolve() / PLUGIN_NAME
    if not (tree / "plugin.yaml").is_file():
        raise A0LiveError(f"scripts/build_plugin did not produce {tree}/plugin.yaml")
    return tree


def install_plugin(tree: Path, plugin_tree: Path, name: str = PLUGIN_NAME) -> Path:
    """Copy a built plugin to ``usr/plugins/<name>`` (replacing an older copy) and return the target."""
    if not (plugin_tree / "plugin.yaml").is_file():
        raise A0LiveError(f"{plugin_tree} is not a plugin tree: plugin.yaml is missing")
    target = tree / "usr" / "plugins" / name
    remove_plugin(tree, name)
    shutil.copytree(plugin_tree, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def remove_plugin(tree: Path, name: str = PLUGIN_NAME) -> None:
    """Remove ``usr/plugins/<name>`` if present."""
    shutil.rmtree(tree / "usr" / "plugins" / name, ignore_errors=True)


def guarded_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the process environment for A0: offline price map, dead proxies, telemetry off.

    Libraries that honour these variables cannot reach another host; loopback stays direct.
    """
    env = dict(os.environ if base is None else base)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = DEAD_PROXY
        env[name.lower()] = DEAD_PROXY
    env.update(
        {
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "PYTHONUNBUFFERED": "1",
            "LITELLM_LOCAL_MODEL_COST_MAP": "True",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "ANONYMIZED_TELEMETRY": "false",
            "SCARF_NO_ANALYTICS": "true",
            "DO_NOT_TRACK": "1",
        }
    )
    # A virtual environment of the caller must not leak into A0's interpreter.
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    return env


def port_is_free(port: int) -> bool:
    """Return whether nothing listens on 127.0.0.1:``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) != 0


def tail_text(path: Path, lines: int = 60) -> str:
    """Return the last ``lines`` lines of a text file, or an empty string when it does not exist."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def _has_exited(process: subprocess.Popen) -> bool:
    """Return whether ``process`` has exited, without reaping it.

    An exited but unreaped leader keeps its pid, so its process group id cannot be reused by another
    process group while ``_stop_process_group`` signals it.
    """
    if process.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def _stop_process_group(process: subprocess.Popen, name: str, grace_s: float) -> None:
    """Send SIGTERM to the process group of ``process``, then SIGKILL to what is left after ``grace_s`` seconds.

    Children may outlive the leader, so the group gets SIGKILL even when the leader exited on SIGTERM.
    The group is signalled only while the leader is unreaped (see ``_has_exited``).
    """
    if process.returncode is None:
        if not _has_exited(process):
            _signal_group(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while not _has_exited(process) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _has_exited(process):
            logger.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killing its process group", name, process.pid, grace_s
            )
        _signal_group(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        pass


# ----- fake model server -------------------------------------------------------------------------


def wait_until_file_quiet(path: Path, quiet_s: float, timeout_s: float) -> None:
    """Return once ``path`` has not changed size for ``quiet_s`` seconds (a missing file counts as empty).

    Raises A0LiveError after ``timeout_s`` seconds without such a pause.
    """
    deadline = time.monotonic() + timeout_s
    last_size = -1
    changed_at = time.monotonic()
    while True:
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            size = 0
        now = time.monotonic()
        if size != last_size:
            last_size, changed_at = size, now
        elif now - changed_at >= quiet_s:
            return
        if now > deadline:
            raise A0LiveError(f"the fake server log {path} was not quiet for {quiet_s} s within {timeout_s} s")
        time.sleep(0.1)


class FakeServerProcess:
    """The fake model server as a child process in its own process group, logging to a JSONL file."""

    def __init__(self, port: int, log_path: Path, output_path: Path, python: str = sys.executable) -> None:
        self.port = port
        self.log_path = log_path
        self.output_path = output_path
        self.python = python
        self._process: subprocess.Popen | None = None

    @property
    def api_base(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self, timeout_s: float = 15.0) -> None:
        """Start the server and wait for its READY line. Raises A0LiveError when it does not start."""
        if not port_is_free(self.port):
            raise A0LiveError(f"fake server port {self.port} is already in use; pick another port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_text("", encoding="utf-8")
        command = [self.python, str(FAKE_SERVER_SCRIPT), "--port", str(self.port), "--log", str(self.log_path)]
        with open(self.output_path, "w", encoding="utf-8") as stderr:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                start_new_session=True,
                env=guarded_environment(),
            )

        deadline = time.monotonic() + timeout_s
        stdout = self._process.stdout
        assert stdout is not None
        while time.monotonic() < deadline:
            ready, _, _ = select.select([stdout], [], [], 0.2)
            if not ready:
                continue
            line = stdout.readline().decode(errors="replace")
            if line.startswith("READY"):
                logger.info("fake server ready at %s (pid %d)", self.api_base, self._process.pid)
                return
            if not line:
                break

        self.stop()
        raise A0LiveError(f"fake server did not start on port {self.port}; see {self.output_path}")

    def entries(self) -> list[dict[str, Any]]:
        """Return the finished requests logged so far, oldest first (one dict per JSONL line)."""
        try:
            text = self.log_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being written has no newline yet: leave it for the next read.
        complete, _, _ = text.rpartition("\n")
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def wait_quiet(self, quiet_s: float = 3.0, timeout_s: float = 180.0) -> list[dict[str, Any]]:
        """Wait until no request has been logged for ``quiet_s`` seconds and return the log.

        Requests are logged when they end, so one that runs longer than ``quiet_s`` may be missed.
        Raises A0LiveError after ``timeout_s`` seconds without such a pause.
        """
        wait_until_file_quiet(self.log_path, quiet_s, timeout_s)
        return self.entries()

    def stop(self) -> None:
        """Stop the server. Safe to call twice."""
        if self._process is None:
            return
        _stop_process_group(self._process, "fake server", grace_s=5.0)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None


# ----- Agent Zero process ------------------------------------------------------------------------


class A0Process:
    """``run_ui.py --dockerized=true`` of an A0 tree as a child process in its own process group.

    stdout and stderr go to ``log_path`` (appended, so restarts keep the earlier output).
    """

    def __init__(self, tree: Path, python: str, port: int, log_path: Path) -> None:
        self.tree = tree
        self.python = python
        self.port = port
        self.log_path = log_path
        self._process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and not _has_exited(self._process)

    def start(self, ready_timeout_s: float = 240.0) -> float:
        """Start A0 and wait until ``GET /api/health`` returns HTTP 200; return the seconds it took.

        Raises A0LiveError when the port is taken, A0 exits early or is not ready in time; A0 is
        stopped first in the last two cases.
        """
        if self.running:
            raise A0LiveError(f"A0 is already running on port {self.port}")
        if not port_is_free(self.port):
            raise A0LiveError(f"A0 port {self.port} is already in use; pick another port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        command = [self.python, "run_ui.py", "--dockerized=true", f"--host={HOST}", f"--port={self.port}"]
        started = time.monotonic()
        with open(self.log_path, "a", encoding="utf-8") as log_file:
            log_file.write(f"\n===== start {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(command)}\n")
            log_file.flush()
            self._process = subprocess.Popen(
                command,
                cwd=self.tree,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=guarded_environment(),
            )
        logger.info("A0 starting from %s on port %d (pid %d)", self.tree, self.port, self._process.pid)

        deadline = started + ready_timeout_s
        while True:
            if _has_exited(self._process):
                process = self._process
                self.stop()
                raise A0LiveError(f"A0 exited with code {process.returncode} before it was ready; see {self.log_path}")
            if _health_ok(self.port):
                elapsed = time.monotonic() - started
                logger.info("A0 ready on port %d after %.1f s", self.port, elapsed)
                return elapsed
            if time.monotonic() > deadline:
                self.stop()
                raise A0LiveError(f"A0 not ready after {ready_timeout_s:.0f} s; see {self.log_path}")
            time.sleep(0.25)

    def stop(self, grace_s: float = 20.0) -> None:
        """Stop A0's whole process group (SIGTERM, then SIGKILL). Safe to call twice."""
        if self._process is None:
            return
        _stop_process_group(self._process, "A0", grace_s=grace_s)
        logger.info("A0 on port %d stopped (exit code %s)", self.port, self._process.returncode)
        self._process = None
        deadline = time.monotonic() + 10
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)

    def log_tail(self, lines: int = 60) -> str:
        return tail_text(self.log_path, lines)


def _health_ok(port: int) -> bool:
    try:
        response = http_request(port, "GET", "/api/health", timeout_s=2.0)
    except OSError:
        return False
    return response.status == 200


# ----- HTTP --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def json(self) -> Any:
        """Return the body parsed as JSON. Raises A0LiveError with the start of the body when it is not JSON."""
        try:
            return json.loads(self.body)
        except ValueError:
            raise A0LiveError(f"HTTP {self.status}: expected a JSON body, got {self.body[:300]!r}") from None


# (method, path, headers, body, timeout in seconds) -> response
HttpTransport = Callable[[str, str, Mapping[str, str], bytes | None, float], HttpResponse]


def http_request(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    timeout_s: float = 30.0,
) -> HttpResponse:
    """Send one HTTP request to 127.0.0.1:``port`` directly (no proxy). Raises OSError on connection errors."""
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout_s)
    try:
        connection.request(method, path, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return HttpResponse(response.status, response.getheaders(), response.read())
    finally:
        connection.close()


def loopback_transport(port: int) -> HttpTransport:
    """Return a transport that sends requests to 127.0.0.1:``port``."""

    def send(method: str, path: str, headers: Mapping[str, str], body: bytes | None, timeout_s: float) -> HttpResponse:
        return http_request(port, method, path, headers, body, timeout_s)

    return send


@dataclasses.dataclass(frozen=True)
class ChatReply:
    """One ``POST /api/api_message`` exchange. ``seconds`` is the request's wall time."""

    context_id: str
    response: str
    seconds: float


class A0Client:
    """HTTP client of one A0 instance: chat messages by API key, plugin API by session and CSRF token.

    ``origin`` is the URL sent as ``Origin`` when the CSRF token is fetched; A0 accepts loopback
    origins when no login is set.
    """

    def __init__(self, transport: HttpTransport, api_key: str, origin: str) -> None:
        self._transport = transport
        self._api_key = api_key
        self._origin = origin
        self._cookies: dict[str, str] = {}
        self._csrf_token: str | None = None

    def health(self) -> dict[str, Any]:
        response = self._transport("GET", "/api/health", {}, None, 5.0)
        if response.status != 200:
            raise A0LiveError(f"GET /api/health returned HTTP {response.status}")
        return response.json()

    def send_message(self, text: str, context_id: str | None = None, timeout_s: float = 300.0) -> ChatReply:
        """Send a user message and wait for the agent's reply. ``context_id`` None starts a new chat."""
        payload: dict[str, Any] = {"message": text}
        if context_id:
            payload["context_id"] = context_id
        started = time.monotonic()
        response = self._transport(
            "POST",
            "/api/api_message",
            {"Content-Type": "application/json", "X-API-KEY": self._api_key},
            json.dumps(payload).encode(),
            timeout_s,
        )
        seconds = time.monotonic() - started
        if response.status != 200:
            raise A0LiveError(f"POST /api/api_message returned HTTP {response.status}: {response.body[:300]!r}")
        data = response.json()
        if not isinstance(data, dict) or not isinstance(data.get("context_id"), str):
            raise A0LiveError(f"POST /api/api_message returned no context_id: {str(data)[:300]}")
        return ChatReply(context_id=data["context_id"], response=str(data.get("response")), seconds=seconds)

    def plugin_api(self, plugin: str, handler: str, payload: dict[str, Any], timeout_s: float = 30.0) -> HttpResponse:
        """POST ``payload`` to ``/api/plugins/<plugin>/<handler>`` with the session cookie and CSRF token."""
        if self._csrf_token is None:
            self._fetch_csrf_token()
        headers = {
            "Content-Type": "application/json",
            "Origin": self._origin,
            "X-CSRF-Token": self._csrf_token or "",
            **self._cookie_header(),
        }
        response = self._transport(
            "POST", f"/api/plugins/{plugin}/{handler}", headers, json.dumps(payload).encode(), timeout_s
        )
        self._store_cookies(response)
        return response

    def _fetch_csrf_token(self) -> None:
        response = self._transport(
            "GET", "/api/csrf_token", {"Origin": self._origin, **self._cookie_header()}, None, 10.0
        )
        self._store_cookies(response)
        data = response.json() if response.status == 200 else None
        if not isinstance(data, dict) or not data.get("ok") or not isinstance(data.get("token"), str):
            raise A0LiveError(f"GET /api/csrf_token failed: HTTP {response.status}, {response.body[:300]!r}")
        self._csrf_token = data["token"]

    def _store_cookies(self, response: HttpResponse) -> None:
        for name, value in response.headers:
            if name.lower() == "set-cookie":
                parsed = http.cookies.SimpleCookie()
                parsed.load(value)
                for key, morsel in parsed.items():
                    self._cookies[key] = morsel.value

    def _cookie_header(self) -> dict[str, str]:
        if not self._cookies:
            return {}
        return {"Cookie": "; ".join(f"{name}={value}" for name, value in self._cookies.items())}


def run_in_tree(tree: Path, argv: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a command with ``tree`` as working directory and A0's guarded environment."""
    return subprocess.run(
        list(argv),
        cwd=tree,
        env=guarded_environment(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
