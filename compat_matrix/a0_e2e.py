"""Live end-to-end check of the Token Meter plugin in a real Agent Zero (A0) v1.x.

The check talks to A0 over HTTP and compares the plugin's figures with the usage that the fake model
server logged for each request:

1. A0 without the plugin gets a fixed conversation (chat X: messages 1 and 2, chat Y: one message,
   chat X: message 3); the replies are recorded.
2. A0 with the plugin, from the same fresh state, gets the same conversation. After each reply the
   check waits until the fake server has logged no request for ``quiet_s`` seconds (memory's
   background calls end after the reply) and attributes the requests logged since the message was
   sent to that message's chat.
3. Assertions: identical replies; each chat's last call, context limit, fill percentage and totals
   per role equal the fake server's usage; the plugin API returns what chat.json holds; an unknown
   chat id gets ``ok: false`` and creates no chat.
4. After a restart with the plugin, the API returns the same figures for both chats.

Where A0 runs is a backend (``A0Backend``): ``LocalBackend`` runs a checkout's copy with a given
interpreter; ``docker_backend.DockerBackend`` runs A0 in a container without network, from a release
image or from a base image with a checkout and its venv mounted. Command lines::

    python -m compat_matrix.a0_e2e --checkout /work/a0/v1.7 --python /work/a0/venv312/bin/python
    python -m compat_matrix.a0_e2e --backend docker --image agent0ai/agent-zero:v1.7
    python -m compat_matrix.a0_e2e --backend docker --image token-meter/a0-base:bookworm \\
        --checkout /work/a0/v1.7 --venv /work/a0/venv312

Exit code 0 when every assertion passed, 1 when one failed or a step failed, 2 for invalid options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from . import a0_live, docker_engine
from .a0_live import A0Client, A0LiveError, ModelSetup
from .cli_types import positive_float, positive_int

logger = logging.getLogger(__name__)

RESULT_FILE = "a0_e2e.json"
MODEL_CONFIG_FILE = "usr/plugins/_model_config/config.json"
MIGRATED_CONFIG_SUFFIX = ".pre-unified-presets.bak"
OUTPUT_KEY = "token_meter"
TOKEN_FIELDS = ("prompt", "completion", "cached", "reasoning")
ROLES = ("chat", "utility", "other")
_SAFE_ID = re.compile(r"^[A-Za-z0-9_-]{1,100}$")

# (chat label, message); the same conversation runs with and without the plugin.
DEFAULT_STEPS: tuple[tuple[str, str], ...] = (
    ("X", "Token Meter check, chat X, message 1: say hello."),
    ("X", "Token Meter check, chat X, message 2: say hello again."),
    ("Y", "Token Meter check, chat Y, message 1: say hello."),
    ("X", "Token Meter check, chat X, message 3: say goodbye."),
)


# ----- backends ----------------------------------------------------------------------------------


class A0Backend(Protocol):
    """Where A0 and the fake model server run. The check uses only these members.

    A backend writes A0's model config (chat, utility and embedding models served by the fake server,
    chat context length ``chat_ctx_length``) and the runtime id ``runtime_id`` before A0 starts.
    """

    name: str
    runtime_id: str
    origin: str

    def start(self, *, label: str, plugin_tree: Path | None, fresh: bool) -> float:
        """Start the fake server if needed, then A0 with or without the plugin; return seconds to ready.

        ``fresh`` starts from a state without chats and memory; otherwise the previous run's state is
        kept. ``label`` names this start in logs. Raises A0LiveError.
        """
        ...

    def exec(self, argv: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run a command in A0's environment with A0's root as the working directory."""
        ...

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None, timeout_s: float):
        """Send one HTTP request to A0 and return an ``a0_live.HttpResponse``. Raises OSError."""
        ...

    def fake_requests(self) -> list[dict[str, Any]]:
        """Return the fake server's request log, oldest first."""
        ...

    def wait_fake_quiet(self, quiet_s: float, timeout_s: float) -> list[dict[str, Any]]:
        """Wait until the fake server logged no request for ``quiet_s`` seconds; return its log."""
        ...

    def stop(self) -> None:
        """Stop A0 (not the fake server). Safe to call when A0 is not running."""
        ...

    def log_excerpt(self, lines: int = 80) -> str:
        """Return the end of A0's log."""
        ...

    def close(self) -> None:
        """Stop everything and remove temporary files; logs stay. Safe to call twice."""
        ...


class LocalBackend:
    """A0 from a local checkout: a copy of it runs with ``python`` on 127.0.0.1:``port``.

    The checkout is never changed. The copy lives in ``work_dir/a0`` and gets a fresh state for each
    ``fresh`` start. Its path stays the same for every start, so the runs with and without the plugin
    differ only in the plugin. Logs go to ``log_dir``: ``a0-<label>.log``, ``fake-server.jsonl`` (one line per
    model request) and ``fake-server.out``.
    """

    name = "local"

    def __init__(
        self,
        checkout: Path,
        python: str,
        port: int,
        fake_port: int,
        work_dir: Path,
        log_dir: Path,
        *,
        chat_ctx_length: int = 120_000,
        runtime_id: str = a0_live.DEFAULT_RUNTIME_ID,
        ready_timeout_s: float = 240.0,
        keep_tree: bool = False,
    ) -> None:
        a0_live.check_checkout(checkout)
        self.checkout = checkout.resolve()
        self.python = python
        self.port = port
        self.runtime_id = runtime_id
        self.origin = f"http://{a0_live.HOST}:{port}"
        self.work_dir = work_dir
        self.tree = work_dir / "a0"
        self.log_dir = log_dir
        self.ready_timeout_s = ready_timeout_s
        self.keep_tree = keep_tree
        self.fake = a0_live.FakeServerProcess(
            fake_port, log_dir / "fake-server.jsonl", log_dir / "fake-server.out", python=sys.executable
        )
        self.setup = ModelSetup(api_base=self.fake.api_base, chat_ctx_length=chat_ctx_length)
        self._fake_started = False
        self._a0: a0_live.A0Process | None = None
        self._transport = a0_live.loopback_transport(port)

    def start(self, *, label: str, plugin_tree: Path | None, fresh: bool) -> float:
        if not self._fake_started:
            self.fake.start()
            self._fake_started = True
        if fresh or not self.tree.exists():
            a0_live.prepare_run_tree(self.checkout, self.tree)
            a0_live.write_usr_env(self.tree, self.runtime_id)
            a0_live.write_model_config(self.tree, self.setup)
            a0_live.pin_prompt_datetime(self.tree)
            a0_live.disable_host_changing_plugins(self.tree)
        if plugin_tree is None:
            a0_live.remove_plugin(self.tree)
        else:
            a0_live.install_plugin(self.tree, plugin_tree)
        self._a0 = a0_live.A0Process(self.tree, self.python, self.port, self.log_dir / f"a0-{label}.log")
        return self._a0.start(self.ready_timeout_s)

    def exec(self, argv: Sequence[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
        return a0_live.run_in_tree(self.tree, argv, timeout_s)

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes | None, timeout_s: float):
        return self._transport(method, path, headers, body, timeout_s)

    def fake_requests(self) -> list[dict[str, Any]]:
        return self.fake.entries()

    def wait_fake_quiet(self, quiet_s: float, timeout_s: float) -> list[dict[str, Any]]:
        return self.fake.wait_quiet(quiet_s, timeout_s)

    def stop(self) -> None:
        if self._a0 is not None:
            self._a0.stop()

    def log_excerpt(self, lines: int = 80) -> str:
        return self._a0.log_tail(lines) if self._a0 is not None else ""

    def close(self) -> None:
        self.stop()
        self.fake.stop()
        self._fake_started = False
        if not self.keep_tree:
            shutil.rmtree(self.tree, ignore_errors=True)


# ----- result ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Assertion:
    """One compared value. ``passed`` is ``expected == observed`` unless the caller decided it otherwise."""

    name: str
    expected: Any
    observed: Any
    passed: bool


@dataclasses.dataclass
class StepRecord:
    """One message sent: the chat, the reply, and the fake server requests attributed to it."""

    chat: str
    context_id: str
    reply: str
    reply_seconds: float
    quiet_wait_seconds: float
    requests: list[dict[str, Any]]


@dataclasses.dataclass
class CheckResult:
    """Outcome of one run of the check, JSON-ready through ``to_dict``."""

    label: str
    backend: str
    assertions: list[Assertion] = dataclasses.field(default_factory=list)
    timings: dict[str, Any] = dataclasses.field(default_factory=dict)
    chats: dict[str, Any] = dataclasses.field(default_factory=dict)
    unattributed: dict[str, Any] | None = None
    error: str | None = None
    log_excerpt: str | None = None
    log_dir: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.assertions) and all(item.passed for item in self.assertions)

    def check(self, name: str, expected: Any, observed: Any, passed: bool | None = None) -> bool:
        """Record an assertion; ``passed`` defaults to ``expected == observed``. Return whether it passed."""
        outcome = expected == observed if passed is None else passed
        self.assertions.append(Assertion(name, expected, observed, outcome))
        return outcome

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["passed"] = self.passed
        return data

    def summary_lines(self) -> list[str]:
        """Return a readable report: verdict, timings, figures next to the fake server's, assertions."""
        failed = [item for item in self.assertions if not item.passed]
        verdict = "PASSED" if self.passed else "FAILED"
        passed_count = len(self.assertions) - len(failed)
        lines = [
            f"A0 live check {self.label} ({self.backend}): {verdict}, {passed_count}/{len(self.assertions)} passed"
        ]
        if self.error:
            lines.append(f"error: {self.error}")
        if self.timings:
            timings = ", ".join(f"{key} {_format_seconds(value)}" for key, value in self.timings.items())
            lines.append(f"timings (s): {timings}")

        for label, chat in self.chats.items():
            lines.extend(_chat_table(label, chat))
        if self.unattributed is not None:
            totals = self.unattributed.get("totals") or {}
            calls = {role: (totals.get(role) or {}).get("calls") for role in ROLES}
            lines.append(f"unattributed calls recorded by the plugin: {calls}")

        for item in self.assertions:
            if item.passed:
                lines.append(f"  [PASS] {item.name}: {_shorten(_compact(item.observed))}")
            else:
                expected, observed = _compact(item.expected), _compact(item.observed)
                lines.append(f"  [FAIL] {item.name}: expected {expected}, observed {observed}")

        if self.log_excerpt and not self.passed:
            lines.append("A0 log excerpt:")
            lines.extend("  " + line for line in self.log_excerpt.splitlines())
        if self.log_dir:
            lines.append(f"logs: {self.log_dir}")
        return lines


def _format_seconds(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(f"{item:.1f}" for item in value) + "]"
    return f"{value:.1f}" if isinstance(value, (int, float)) else str(value)


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _shorten(text: str, limit: int = 160) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _chat_table(label: str, chat: dict[str, Any]) -> list[str]:
    lines = [f"chat {label} ({chat.get('context_id')}): plugin / fake server"]
    plugin_last = chat.get("plugin_last") or {}
    fake_last = chat.get("fake_last") or {}
    fields = ", ".join(f"{name} {plugin_last.get(name)}/{fake_last.get(name)}" for name in TOKEN_FIELDS)
    limit = (plugin_last.get("limit") or {}).get("tokens")
    lines.append(f"  last call: {fields}; limit {limit}; fill {plugin_last.get('fill_percent')}%")
    for role in ROLES:
        plugin = (chat.get("plugin_totals") or {}).get(role) or {}
        fake = (chat.get("fake_totals") or {}).get(role) or {}
        fields = ", ".join(f"{name} {plugin.get(name)}/{fake.get(name)}" for name in ("calls",) + TOKEN_FIELDS)
        lines.append(f"  totals.{role}: {fields}")
    return lines


# ----- fake server log ---------------------------------------------------------------------------


def classify_request(entry: dict[str, Any], setup: dict[str, Any]) -> str:
    """Return the role of one fake-server request: "chat", "utility", "embedding" or "other".

    Chat: a streamed request to the chat model with A0's agent prompt. Utility: any request to the
    utility model. ``setup`` is A0's model config (``_model_config`` config.json).
    """
    path = str(entry.get("path") or "")
    model = entry.get("model")
    if path.endswith("/embeddings"):
        return "embedding"
    if model == setup["utility_model"]["name"]:
        return "utility"
    if model == setup["chat_model"]["name"] and entry.get("stream") and entry.get("agent_zero_prompt"):
        return "chat"
    return "other"


def usage_counts(entry: dict[str, Any]) -> dict[str, Any] | None:
    """Return prompt, completion, cached, reasoning and total tokens the fake server sent, or None."""
    usage = entry.get("usage")
    if not isinstance(usage, dict):
        return None
    return {
        "prompt": usage.get("prompt_tokens"),
        "completion": usage.get("completion_tokens"),
        "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
        "reasoning": (usage.get("completion_tokens_details") or {}).get("reasoning_tokens"),
        "total": usage.get("total_tokens"),
    }


def request_shapes(entries: list[dict[str, Any]], config: dict[str, Any]) -> list[list[Any]]:
    """Return (role, path, message count, prompt characters) of each request, sorted.

    Two runs of one conversation that send the same prompts have equal shapes, whatever the order
    in which concurrent background calls ended.
    """
    shapes = [
        [classify_request(entry, config), entry.get("path"), entry.get("message_count"), entry.get("prompt_chars")]
        for entry in entries
    ]
    return sorted(shapes, key=lambda shape: [str(item) for item in shape])


def sum_requests(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Return calls and summed token counts of ``entries``; ``without_usage`` counts requests with no usage."""
    totals = {"calls": len(entries), **dict.fromkeys(TOKEN_FIELDS, 0), "without_usage": 0}
    for entry in entries:
        counts = usage_counts(entry)
        if counts is None:
            totals["without_usage"] += 1
            continue
        for name in TOKEN_FIELDS:
            totals[name] += counts[name] or 0
    return totals


# ----- talking to A0 -----------------------------------------------------------------------------


def make_client(backend: A0Backend) -> A0Client:
    return A0Client(backend.request, a0_live.api_key_for(backend.runtime_id), backend.origin)


def converse(
    backend: A0Backend,
    client: A0Client,
    steps: Sequence[tuple[str, str]],
    quiet_s: float,
    quiet_timeout_s: float = 180.0,
    log_offset: int = 0,
) -> tuple[list[StepRecord], list[dict[str, Any]]]:
    """Send ``steps`` in order, continuing each chat by its context id.

    Returns one StepRecord per step and the requests logged before the first message but after the
    first ``log_offset`` log entries (which belong to earlier runs of A0). Before each message and
    after each reply the check waits until the fake server is quiet.
    """
    before = backend.wait_fake_quiet(quiet_s, quiet_timeout_s)
    start_requests = before[log_offset:]
    context_ids: dict[str, str] = {}
    records = []
    for chat, text in steps:
        logged = len(before)
        reply = client.send_message(text, context_ids.get(chat))
        if chat in context_ids and reply.context_id != context_ids[chat]:
            raise A0LiveError(f"chat {chat}: A0 replied for context {reply.context_id}, expected {context_ids[chat]}")
        context_ids[chat] = reply.context_id
        waited = time.monotonic()
        before = backend.wait_fake_quiet(quiet_s, quiet_timeout_s)
        records.append(
            StepRecord(
                chat=chat,
                context_id=reply.context_id,
                reply=reply.response,
                reply_seconds=round(reply.seconds, 3),
                quiet_wait_seconds=round(time.monotonic() - waited, 3),
                requests=before[logged:],
            )
        )
    return records, start_requests


def read_json_file(backend: A0Backend, relative: str) -> Any:
    """Return a JSON file of A0's tree parsed, or None when it cannot be read."""
    result = backend.exec(["cat", relative])
    if result.returncode != 0:
        return None
    try:
        return json.loads(result.stdout)
    except ValueError:
        return None


def list_chat_ids(backend: A0Backend) -> list[str]:
    """Return the folder names under ``usr/chats`` (empty when the folder is missing)."""
    result = backend.exec(["ls", "-1", "usr/chats"])
    if result.returncode != 0:
        return []
    return sorted(line for line in result.stdout.splitlines() if line.strip())


def saved_figures(backend: A0Backend, context_id: str) -> Any:
    """Return ``output_data["token_meter"]`` of a chat's saved chat.json, or None."""
    if not _SAFE_ID.match(context_id):
        raise A0LiveError(f"unexpected context id {context_id!r}")
    chat = read_json_file(backend, f"usr/chats/{context_id}/chat.json")
    if not isinstance(chat, dict):
        return None
    return (chat.get("output_data") or {}).get(OUTPUT_KEY)


def api_usage(client: A0Client, payload: dict[str, Any]) -> dict[str, Any]:
    """Call the plugin's usage API and return the parsed JSON response, with the HTTP status as ``_http_status``."""
    response = client.plugin_api(a0_live.PLUGIN_NAME, "usage", payload)
    try:
        data = response.json()
    except A0LiveError as error:
        return {"_http_status": response.status, "_error": str(error)}
    if not isinstance(data, dict):
        return {"_http_status": response.status, "_error": f"not an object: {str(data)[:200]}"}
    data["_http_status"] = response.status
    return data


# ----- the check ---------------------------------------------------------------------------------


@dataclasses.dataclass
class CheckOptions:
    """Settings of one run. ``quiet_s``: seconds without fake-server requests that end a message."""

    plugin_tree: Path
    steps: Sequence[tuple[str, str]] = DEFAULT_STEPS
    quiet_s: float = 3.0
    quiet_timeout_s: float = 180.0


def run_check(backend: A0Backend, options: CheckOptions, label: str) -> CheckResult:
    """Run the three phases on ``backend`` and return the result. Always stops A0; never raises A0LiveError."""
    result = CheckResult(label=label, backend=backend.name)
    started = time.monotonic()
    observed: dict[str, Any] = {}
    try:
        _phase_without_plugin(backend, options, result, observed)
        _phase_with_plugin(backend, options, result, observed)
        _phase_restart(backend, options, result, observed)
        evaluate(result, observed)
    except (A0LiveError, OSError, subprocess.SubprocessError) as error:
        result.error = f"{type(error).__name__}: {error}"
        result.log_excerpt = backend.log_excerpt()
        logger.error("A0 live check %s failed: %s", label, error)
    finally:
        stop_started = time.monotonic()
        backend.stop()
        result.timings["final_stop"] = round(time.monotonic() - stop_started, 1)
        result.timings["total"] = round(time.monotonic() - started, 1)
    if not result.passed and result.log_excerpt is None:
        result.log_excerpt = backend.log_excerpt()
    return result


def _timed_stop(backend: A0Backend) -> float:
    started = time.monotonic()
    backend.stop()
    return round(time.monotonic() - started, 1)


def _phase_without_plugin(backend: A0Backend, options: CheckOptions, result: CheckResult, observed: dict) -> None:
    logger.info("phase 1: A0 without the plugin")
    result.timings["start_without_plugin"] = round(
        backend.start(label="without-plugin", plugin_tree=None, fresh=True), 1
    )
    records, _ = converse(backend, make_client(backend), options.steps, options.quiet_s, options.quiet_timeout_s)
    observed["baseline"] = records
    result.timings["replies_without_plugin"] = [record.reply_seconds for record in records]
    result.timings["stop_without_plugin"] = _timed_stop(backend)


def _phase_with_plugin(backend: A0Backend, options: CheckOptions, result: CheckResult, observed: dict) -> None:
    logger.info("phase 2: A0 with the plugin")
    log_offset = len(backend.fake_requests())
    result.timings["start_with_plugin"] = round(
        backend.start(label="with-plugin", plugin_tree=options.plugin_tree, fresh=True), 1
    )
    client = make_client(backend)
    records, start_requests = converse(
        backend, client, options.steps, options.quiet_s, options.quiet_timeout_s, log_offset=log_offset
    )
    observed["metered"] = records
    observed["start_requests"] = start_requests
    result.timings["replies_with_plugin"] = [record.reply_seconds for record in records]
    result.timings["quiet_waits_with_plugin"] = [record.quiet_wait_seconds for record in records]

    config = read_json_file(backend, MODEL_CONFIG_FILE)
    if isinstance(config, dict) and "chat_model" not in config:
        # A0 v2.x moves config.json into its model presets at start-up and keeps the original as a backup.
        config = read_json_file(backend, MODEL_CONFIG_FILE + MIGRATED_CONFIG_SUFFIX)
    if not isinstance(config, dict) or "chat_model" not in config:
        raise A0LiveError(f"{MODEL_CONFIG_FILE} of the A0 tree is missing, not JSON or without a chat_model section")
    observed["model_config"] = config

    chat_ids = _chat_ids(records)
    observed["api"] = {chat: api_usage(client, {"context_id": cid}) for chat, cid in chat_ids.items()}
    observed["saved_running"] = {chat: saved_figures(backend, cid) for chat, cid in chat_ids.items()}
    observed["unattributed"] = api_usage(client, {"unattributed": True})

    unknown_id = "tm-e2e-unknown-" + secrets.token_hex(6)
    observed["unknown_id"] = unknown_id
    observed["chats_before_unknown"] = list_chat_ids(backend)
    observed["api_unknown"] = api_usage(client, {"context_id": unknown_id})
    observed["chats_after_unknown"] = list_chat_ids(backend)

    result.timings["stop_with_plugin"] = _timed_stop(backend)
    observed["saved_stopped"] = {chat: saved_figures(backend, cid) for chat, cid in chat_ids.items()}


def _phase_restart(backend: A0Backend, options: CheckOptions, result: CheckResult, observed: dict) -> None:
    logger.info("phase 3: A0 restarted with the plugin")
    result.timings["start_restart"] = round(
        backend.start(label="restart", plugin_tree=options.plugin_tree, fresh=False), 1
    )
    client = make_client(backend)
    chat_ids = _chat_ids(observed["metered"])
    observed["api_restart"] = {chat: api_usage(client, {"context_id": cid}) for chat, cid in chat_ids.items()}
    observed["api_unknown_restart"] = api_usage(client, {"context_id": observed["unknown_id"]})
    observed["chats_restart"] = list_chat_ids(backend)
    result.timings["stop_restart"] = _timed_stop(backend)


def _chat_ids(records: list[StepRecord]) -> dict[str, str]:
    ids: dict[str, str] = {}
    for record in records:
        ids.setdefault(record.chat, record.context_id)
    return ids


# ----- assertions --------------------------------------------------------------------------------


def evaluate(result: CheckResult, observed: dict[str, Any]) -> None:
    """Add every assertion to ``result`` from the observations of the three phases."""
    baseline: list[StepRecord] = observed["baseline"]
    metered: list[StepRecord] = observed["metered"]
    config = observed["model_config"]
    result.check(
        "replies identical with and without the plugin",
        [record.reply for record in baseline],
        [record.reply for record in metered],
    )
    result.check(
        "model requests per message identical with and without the plugin",
        [request_shapes(record.requests, config) for record in baseline],
        [request_shapes(record.requests, config) for record in metered],
    )
    start_roles = [classify_request(entry, config) for entry in observed["start_requests"]]
    result.check(
        "no model calls but embeddings before the first message", [], [r for r in start_roles if r != "embedding"]
    )

    chat_ids = _chat_ids(metered)
    for chat, context_id in chat_ids.items():
        requests = [entry for record in metered if record.chat == chat for entry in record.requests]
        _evaluate_chat(result, observed, chat, context_id, requests, config)

    _evaluate_unknown_id(result, observed, chat_ids)


def _evaluate_chat(
    result: CheckResult,
    observed: dict[str, Any],
    chat: str,
    context_id: str,
    requests: list[dict[str, Any]],
    config: dict[str, Any],
) -> None:
    by_role: dict[str, list[dict[str, Any]]] = {role: [] for role in (*ROLES, "embedding")}
    for entry in sorted(requests, key=lambda item: str(item.get("time"))):
        by_role[classify_request(entry, config)].append(entry)
    fake_totals = {role: sum_requests(by_role[role]) for role in ROLES}
    fake_last = usage_counts(by_role["chat"][-1]) if by_role["chat"] else None

    answer = observed["api"][chat]
    figures = answer.get("figures") if isinstance(answer.get("figures"), dict) else {}
    last = figures.get("last") or {}
    totals = figures.get("totals") or {}
    result.chats[chat] = {
        "context_id": context_id,
        "plugin_last": {
            key: last.get(key) for key in (*TOKEN_FIELDS, "total", "model", "source", "limit", "fill_percent")
        },
        "fake_last": fake_last,
        "plugin_totals": totals,
        "fake_totals": fake_totals,
        "fake_embedding_requests": len(by_role["embedding"]),
    }

    name = f"chat {chat}"
    result.check(f"{name}: API answer ok", True, answer.get("ok") is True and answer.get("_http_status") == 200)
    result.check(f"{name}: API context_id", context_id, answer.get("context_id"))
    result.check(f"{name}: plugin status", "ok", (answer.get("status") or {}).get("state"))
    result.check(
        f"{name}: fake server sent usage on every chat and utility call",
        0,
        fake_totals["chat"]["without_usage"] + fake_totals["utility"]["without_usage"],
    )

    expected_last = dict(fake_last) if fake_last else None
    observed_last = {key: last.get(key) for key in (*TOKEN_FIELDS, "total")} if last else None
    result.check(f"{name}: last call tokens = last streamed chat call's usage", expected_last, observed_last)
    result.check(f"{name}: last.source", "provider", last.get("source"))

    ctx_length = config["chat_model"]["ctx_length"]
    limit = last.get("limit") or {}
    result.check(f"{name}: last.limit.tokens = configured ctx_length", ctx_length, limit.get("tokens"))
    result.check(f"{name}: last.limit.configured", ctx_length, limit.get("configured"))
    prompt = last.get("prompt")
    expected_fill = round(100 * prompt / ctx_length, 1) if isinstance(prompt, int) else None
    result.check(f"{name}: last.fill_percent = round(100*prompt/limit, 1)", expected_fill, last.get("fill_percent"))

    for role in ROLES:
        expected = {key: fake_totals[role][key] for key in ("calls", *TOKEN_FIELDS)}
        actual = {key: (totals.get(role) or {}).get(key) for key in ("calls", *TOKEN_FIELDS)}
        result.check(f"{name}: totals.{role} = fake server's {role} requests", expected, actual)
    flagged = {role: {key: (totals.get(role) or {}).get(key) for key in ("estimated", "unavailable")} for role in ROLES}
    result.check(
        f"{name}: no estimated or unavailable calls",
        {role: {"estimated": 0, "unavailable": 0} for role in ROLES},
        flagged,
    )

    expected_history = [(usage_counts(entry) or {}).get("prompt") for entry in by_role["chat"]]
    result.check(f"{name}: history = prompt tokens of each chat call", expected_history, figures.get("history"))
    agent_calls = sum((item or {}).get("calls", 0) for item in (figures.get("agents") or {}).values())
    total_calls = sum((totals.get(role) or {}).get("calls", 0) for role in ROLES)
    result.check(f"{name}: calls per agent add up to the totals", total_calls, agent_calls)

    result.check(f"{name}: API figures = chat.json while running", figures, observed["saved_running"][chat])
    result.check(f"{name}: chat.json after stop = API figures", figures, observed["saved_stopped"][chat])
    restart = observed["api_restart"][chat]
    result.check(f"{name}: API figures unchanged after restart", figures, restart.get("figures"))


def _evaluate_unknown_id(result: CheckResult, observed: dict[str, Any], chat_ids: dict[str, str]) -> None:
    unknown_id = observed["unknown_id"]
    for key, when in (("api_unknown", "running"), ("api_unknown_restart", "after restart")):
        answer = observed[key]
        result.check(
            f"unknown chat id ({when}): API answers ok false",
            {"ok": False, "http": 200},
            {"ok": answer.get("ok"), "http": answer.get("_http_status")},
        )
    result.check(
        "unknown chat id: usr/chats unchanged by the API call",
        observed["chats_before_unknown"],
        observed["chats_after_unknown"],
    )
    result.check(
        "unknown chat id: no chat folder, also after restart",
        False,
        unknown_id in observed["chats_after_unknown"] or unknown_id in observed["chats_restart"],
    )
    result.check("usr/chats holds exactly the chats sent", sorted(chat_ids.values()), observed["chats_restart"])
    result.unattributed = (observed.get("unattributed") or {}).get("figures")


# ----- command line ------------------------------------------------------------------------------


def _port(text: str) -> int:
    value = int(text)
    if not 1024 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1024..65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m compat_matrix.a0_e2e",
        description="Run Agent Zero v1.x against the fake model server, without and with the Token Meter plugin, "
        "and compare the plugin's figures with the usage the fake server sent. Backends: local (a copy of a "
        "checkout run by an interpreter on 127.0.0.1) or docker (containers without network: a release image, "
        "or a base image with a copy of a checkout and its venv mounted). The checkout is never changed.",
        epilog="Exit code: 0 when every assertion passed, 1 when one failed or a step failed, 2 for invalid options. "
        "Examples: --checkout /a0/v1.7 --python /venv/bin/python; --backend docker --image agent0ai/agent-zero:v1.7; "
        "--backend docker --image token-meter/a0-base:bookworm --checkout /a0/v1.7 --venv /venv",
    )

    parser.add_argument("--backend", choices=("local", "docker"), default="local", help="where A0 runs (default local)")
    parser.add_argument(
        "--checkout",
        type=Path,
        default=None,
        help="A0 v1.x source tree (contains run_ui.py); required by the local backend, "
        "selects the mounted-checkout mode of the docker backend",
    )
    parser.add_argument(
        "--python", default=None, help="local backend: Python 3.12 interpreter with A0's requirements installed"
    )
    parser.add_argument(
        "--port", type=_port, default=22311, help="local backend: A0's port on 127.0.0.1 (default 22311)"
    )
    parser.add_argument(
        "--fake-port", type=_port, default=None, help="local backend: fake model server's port (default: --port + 1)"
    )

    docker_group = parser.add_argument_group("docker backend")
    docker_group.add_argument(
        "--image",
        default=None,
        help="release image such as agent0ai/agent-zero:v1.7, or with --checkout the base image "
        "(see scripts/build_base_image)",
    )
    docker_group.add_argument(
        "--venv",
        type=Path,
        default=None,
        help="with --checkout: host venv with A0's requirements, mounted read-only at /opt/venv-a0; "
        "the prefix of the interpreter it links to is mounted read-only at its own path",
    )
    docker_group.add_argument(
        "--mount",
        action="append",
        default=[],
        metavar="HOST:CONTAINER[:ro|rw]",
        help="extra bind mount of both containers, read-only unless :rw; repeatable",
    )
    docker_group.add_argument(
        "--pull",
        choices=docker_engine.PULL_POLICIES,
        default="missing",
        help="when to pull the image: missing (default), never or always",
    )

    parser.add_argument(
        "--report-dir",
        type=Path,
        default=None,
        help="folder for a0_e2e.json, A0's logs and the fake server's request log "
        "(default: reports/a0_e2e/<checkout folder name>, with the docker backend reports/a0_e2e/docker-<name>)",
    )

    parser.add_argument(
        "--quiet-seconds",
        type=positive_float,
        default=3.0,
        help="seconds without model requests after which a message counts as finished (default 3)",
    )
    parser.add_argument(
        "--ready-timeout",
        type=positive_float,
        default=240.0,
        help="maximum seconds to wait for A0's /api/health after a start (default 240)",
    )
    parser.add_argument(
        "--chat-ctx-length",
        type=positive_int,
        default=120_000,
        help="chat model context length written to A0's model config, in tokens (default 120000)",
    )

    parser.add_argument("--keep-tree", action="store_true", help="keep the copy of the checkout A0 ran from")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    return parser


def _check_backend_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with code 2 (parser.error) when the options do not fit the chosen backend."""
    if args.backend == "local":
        if args.checkout is None or args.python is None:
            parser.error("the local backend needs --checkout and --python")
        for option in ("image", "venv"):
            if getattr(args, option) is not None:
                parser.error(f"--{option} is an option of the docker backend (--backend docker)")
        if args.mount:
            parser.error("--mount is an option of the docker backend (--backend docker)")
        return
    if args.image is None:
        parser.error("the docker backend needs --image (a release image, or the base image with --checkout)")
    if args.python is not None:
        parser.error("--python is an option of the local backend; with --backend docker use --venv")
    if args.venv is not None and args.checkout is None:
        parser.error("--venv needs --checkout (mounted-checkout mode)")
    for text in args.mount:
        try:
            _parse_mount(text)
        except ValueError as error:
            parser.error(str(error))


def _parse_mount(text: str) -> Any:
    from .docker_backend import Mount

    return Mount.parse(text)


def _write_result(result: CheckResult, report_dir: Path) -> None:
    result.log_dir = str(report_dir)
    (report_dir / RESULT_FILE).write_text(json.dumps(result.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")


def run_local(
    checkout: Path,
    python: str,
    *,
    port: int = 22311,
    fake_port: int | None = None,
    report_dir: Path | None = None,
    quiet_s: float = 3.0,
    ready_timeout_s: float = 240.0,
    chat_ctx_length: int = 120_000,
    keep_tree: bool = False,
) -> CheckResult:
    """Build the plugin, run the check with a LocalBackend and write ``report_dir/a0_e2e.json``."""
    report_dir = (report_dir or a0_live.PROJECT_ROOT / "reports" / "a0_e2e" / checkout.resolve().name).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="a0-e2e-"))
    try:
        plugin_tree = a0_live.build_plugin(work_dir / "plugin")
        backend = LocalBackend(
            checkout,
            python,
            port,
            fake_port or port + 1,
            work_dir,
            report_dir,
            chat_ctx_length=chat_ctx_length,
            ready_timeout_s=ready_timeout_s,
            keep_tree=keep_tree,
        )
        try:
            result = run_check(backend, CheckOptions(plugin_tree=plugin_tree, quiet_s=quiet_s), checkout.name)
        finally:
            backend.close()
    finally:
        if keep_tree:
            logger.warning("kept the A0 tree at %s", work_dir / "a0")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    _write_result(result, report_dir)
    return result


def run_docker(
    image: str,
    *,
    checkout: Path | None = None,
    venv: Path | None = None,
    mounts: Sequence[str] = (),
    pull: str | bool = "missing",
    report_dir: Path | None = None,
    quiet_s: float = 3.0,
    ready_timeout_s: float = 240.0,
    chat_ctx_length: int = 120_000,
    keep_tree: bool = False,
    label: str | None = None,
) -> CheckResult:
    """Build the plugin, run the check with a DockerBackend and write ``report_dir/a0_e2e.json``.

    Without ``checkout`` A0 runs from the release ``image`` with its own command. With ``checkout``,
    ``image`` is the base image: a copy of the checkout is mounted at /a0 and ``venv`` at
    /opt/venv-a0, together with the prefix of the interpreter the venv links to (see
    ``docker_backend.interpreter_mounts``). ``mounts`` are extra ``HOST:CONTAINER[:ro|rw]`` bind
    mounts. ``pull``: ``missing``, ``never``, ``always``, or True for ``missing`` and False for
    ``never``. Raises A0LiveError when the engine does not respond or a path is invalid, and
    ValueError for an invalid mount. Failures of the check itself are in the returned result.
    """
    from .docker_backend import DockerBackend, DockerSetup, Mount, interpreter_mounts

    if isinstance(pull, bool):
        pull = "missing" if pull else "never"
    extra = [Mount.parse(text) for text in mounts]
    if venv is not None:
        extra = interpreter_mounts(venv, extra) + extra
    setup = DockerSetup(image=image, checkout=checkout, venv=venv, mounts=tuple(extra), pull=pull)
    setup.validate()
    label = label or (checkout.resolve().name if checkout is not None else image)
    default_dir = "docker-" + re.sub(r"[^A-Za-z0-9._-]+", "_", label)
    report_dir = (report_dir or a0_live.PROJECT_ROOT / "reports" / "a0_e2e" / default_dir).resolve()
    report_dir.mkdir(parents=True, exist_ok=True)
    client = docker_engine.connect()
    work_dir = Path(tempfile.mkdtemp(prefix="a0-e2e-docker-"))
    try:
        plugin_tree = a0_live.build_plugin(work_dir / "plugin-build")
        backend = DockerBackend(
            setup,
            work_dir,
            report_dir,
            client=client,
            chat_ctx_length=chat_ctx_length,
            ready_timeout_s=ready_timeout_s,
            keep_tree=keep_tree,
        )
        try:
            result = run_check(backend, CheckOptions(plugin_tree=plugin_tree, quiet_s=quiet_s), label)
        finally:
            backend.close()
    finally:
        client.close()
        if keep_tree:
            logger.warning("kept the A0 tree at %s", work_dir / "a0")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)
    _write_result(result, report_dir)
    return result


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # SystemExit unwinds through the finally blocks that stop A0 and the fake server.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_backend_options(parser, args)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    common = {
        "report_dir": args.report_dir,
        "quiet_s": args.quiet_seconds,
        "ready_timeout_s": args.ready_timeout,
        "chat_ctx_length": args.chat_ctx_length,
        "keep_tree": args.keep_tree,
    }
    try:
        if args.backend == "local":
            result = run_local(args.checkout, args.python, port=args.port, fake_port=args.fake_port, **common)
        else:
            result = run_docker(
                args.image, checkout=args.checkout, venv=args.venv, mounts=args.mount, pull=args.pull, **common
            )
    except A0LiveError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        stopped = "A0 and the fake server were stopped" if args.backend == "local" else "the containers were removed"
        print(f"interrupted; {stopped}", file=sys.stderr)
        return 130
    print("\n".join(result.summary_lines()))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
