"""Tests of the live A0 check (compat_matrix.a0_e2e and compat_matrix.a0_live).

The tests marked ``a0`` run the check against a real Agent Zero v1.x: set TOKEN_METER_A0_CHECKOUT to
the source tree and TOKEN_METER_A0_PYTHON to a Python 3.12 interpreter with A0's requirements.
Optional: TOKEN_METER_A0_PORT (A0's port, default 22331; the fake server uses the next one) and
TOKEN_METER_A0_REPORT_DIR (where the result and logs are kept). One run takes about 3 minutes.

The other tests need no A0: they run the helpers against temporary trees, the real fake model server
and a stand-in ``run_ui.py`` that serves the few endpoints the client uses.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import textwrap
import time
from pathlib import Path

import pytest

from compat_matrix import a0_e2e, a0_live
from compat_matrix.a0_e2e import StepRecord

CHECKOUT_ENV = "TOKEN_METER_A0_CHECKOUT"
PYTHON_ENV = "TOKEN_METER_A0_PYTHON"

# ----- live check against a real A0 -------------------------------------------------------------


@pytest.fixture(scope="module")
def live_result(tmp_path_factory: pytest.TempPathFactory) -> a0_e2e.CheckResult:
    checkout = os.environ.get(CHECKOUT_ENV)
    python = os.environ.get(PYTHON_ENV)
    if not checkout or not python:
        pytest.skip(
            f"no A0 checkout: set {CHECKOUT_ENV} to an A0 v1.x source tree and {PYTHON_ENV} to a Python 3.12 "
            "interpreter with A0's requirements to run the live check"
        )
    report_dir = os.environ.get("TOKEN_METER_A0_REPORT_DIR")
    result = a0_e2e.run_local(
        Path(checkout),
        python,
        port=int(os.environ.get("TOKEN_METER_A0_PORT", "22331")),
        report_dir=Path(report_dir) if report_dir else tmp_path_factory.mktemp("a0-e2e-report"),
    )
    print("\n".join(result.summary_lines()))
    return result


def _failures(result: a0_e2e.CheckResult, prefix: str) -> list[str]:
    return [
        f"{item.name}: expected {item.expected!r}, observed {item.observed!r}"
        for item in result.assertions
        if item.name.startswith(prefix) and not item.passed
    ]


@pytest.mark.a0
def test_live_check_completes(live_result: a0_e2e.CheckResult) -> None:
    assert live_result.error is None, f"{live_result.error}\n{live_result.log_excerpt}"
    assert live_result.assertions


@pytest.mark.a0
@pytest.mark.parametrize(
    "prefix",
    [
        "replies identical",
        "model requests per message",
        "no model calls",
        "chat X:",
        "chat Y:",
        "unknown chat id",
        "usr/chats",
    ],
)
def test_live_assertions_pass(live_result: a0_e2e.CheckResult, prefix: str) -> None:
    assert any(item.name.startswith(prefix) for item in live_result.assertions), f"no assertion named {prefix!r}"
    assert _failures(live_result, prefix) == []


# ----- trees and configuration -------------------------------------------------------------------


def test_api_key_for_default_runtime_id() -> None:
    assert a0_live.api_key_for(a0_live.DEFAULT_RUNTIME_ID) == "CYrG64gZj5GAlibc"


def test_model_config_points_at_fake_server() -> None:
    config = a0_live.ModelSetup(api_base="http://127.0.0.1:1/v1", chat_ctx_length=1234).config()

    for section in ("chat_model", "utility_model", "embedding_model"):
        assert config[section]["api_base"] == "http://127.0.0.1:1/v1"
        assert config[section]["provider"] == "other"
    assert config["chat_model"]["ctx_length"] == 1234
    assert config["utility_model"]["name"] == "fake-utility"
    assert config["embedding_model"]["name"] == "text-embedding-3-small"


def _make_checkout(root: Path) -> Path:
    files = {
        "run_ui.py": "",
        "plugins/_model_config/plugin.yaml": "name: _model_config\n",
        "helpers/x.py": "",
        "helpers/__pycache__/x.cpython-312.pyc": "",
        "usr/chats/abc/chat.json": "{}",
        "usr/memory/default/index.faiss": "",
        "usr/knowledge/main/a.md": "knowledge",
        "usr/plugins/token_meter/plugin.yaml": "name: token_meter\n",
        "tmp/settings.json": "{}",
        "logs/log.html": "",
    }
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_prepare_run_tree_leaves_out_state(tmp_path: Path) -> None:
    checkout = _make_checkout(tmp_path / "checkout")

    tree = a0_live.prepare_run_tree(checkout, tmp_path / "run")

    assert (tree / "run_ui.py").is_file()
    assert (tree / "helpers" / "x.py").is_file()
    assert (tree / "usr" / "knowledge" / "main" / "a.md").is_file()
    assert not (tree / "helpers" / "__pycache__").exists()
    assert not (tree / "usr" / "chats").exists()
    assert not (tree / "usr" / "memory").exists()
    assert not (tree / "usr" / "plugins" / "token_meter").exists()
    assert list((tree / "tmp").iterdir()) == []
    assert list((tree / "logs").iterdir()) == []
    assert (checkout / "usr" / "chats" / "abc" / "chat.json").is_file()


def test_prepare_run_tree_rejects_non_checkout(tmp_path: Path) -> None:
    with pytest.raises(a0_live.A0LiveError, match="run_ui.py is missing"):
        a0_live.prepare_run_tree(tmp_path, tmp_path / "run")


def test_install_and_remove_plugin(tmp_path: Path) -> None:
    plugin = tmp_path / "built" / "token_meter"
    (plugin / "__pycache__").mkdir(parents=True)
    (plugin / "plugin.yaml").write_text("name: token_meter\n")
    (plugin / "__pycache__" / "a.pyc").write_text("")
    tree = tmp_path / "a0"

    target = a0_live.install_plugin(tree, plugin)

    assert target == tree / "usr" / "plugins" / "token_meter"
    assert (target / "plugin.yaml").is_file()
    assert not (target / "__pycache__").exists()
    a0_live.remove_plugin(tree)
    assert not target.exists()


def test_pinned_datetime_extension_compiles(tmp_path: Path) -> None:
    path = a0_live.pin_prompt_datetime(tmp_path, "2030-05-06 07:08:09")

    source = path.read_text()
    compile(source, str(path), "exec")
    assert "'2030-05-06 07:08:09'" in source
    assert path.name == "_60_include_current_datetime.py"
    assert path.parent == tmp_path / "usr" / "extensions" / "python" / "message_loop_prompts_after"


def test_guarded_environment_blocks_outside_traffic() -> None:
    env = a0_live.guarded_environment({"PATH": "/bin", "VIRTUAL_ENV": "/venv"})

    assert env["HTTPS_PROXY"] == a0_live.DEAD_PROXY
    assert env["https_proxy"] == a0_live.DEAD_PROXY
    assert env["NO_PROXY"] == "127.0.0.1,localhost"
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert "VIRTUAL_ENV" not in env


# ----- fake server log -----------------------------------------------------------------------------

CONFIG = a0_live.ModelSetup(api_base="http://127.0.0.1:1/v1", chat_ctx_length=100_000).config()


def _usage(prompt: int, completion: int = 20, cached: int = 0, reasoning: int = 5) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": reasoning},
    }


def _entry(role: str, prompt: int, time_text: str, usage: bool = True) -> dict:
    model = {"chat": "fake-model", "utility": "fake-utility", "embedding": "text-embedding-3-small"}[role]
    return {
        "time": time_text,
        "path": "/v1/embeddings" if role == "embedding" else "/v1/chat/completions",
        "model": model,
        "stream": role == "chat",
        "agent_zero_prompt": role == "chat",
        "usage": _usage(prompt, cached=prompt // 4) if usage else None,
        "message_count": 3,
        "prompt_chars": prompt * 4,
    }


@pytest.mark.parametrize(
    ("entry", "role"),
    [
        ({"path": "/v1/embeddings", "model": "text-embedding-3-small"}, "embedding"),
        ({"path": "/v1/chat/completions", "model": "fake-utility", "stream": False}, "utility"),
        ({"path": "/v1/chat/completions", "model": "fake-model", "stream": True, "agent_zero_prompt": True}, "chat"),
        ({"path": "/v1/chat/completions", "model": "fake-model", "stream": False, "agent_zero_prompt": True}, "other"),
        ({"path": "/v1/chat/completions", "model": "fake-model", "stream": True, "agent_zero_prompt": False}, "other"),
    ],
)
def test_classify_request(entry: dict, role: str) -> None:
    assert a0_e2e.classify_request(entry, CONFIG) == role


def test_sum_requests_counts_requests_without_usage() -> None:
    entries = [_entry("utility", 100, "t1"), _entry("utility", 50, "t2"), _entry("utility", 70, "t3", usage=False)]

    totals = a0_e2e.sum_requests(entries)

    assert totals == {"calls": 3, "prompt": 150, "completion": 40, "cached": 37, "reasoning": 10, "without_usage": 1}


# ----- evaluation on made-up observations ----------------------------------------------------------


def _figures(requests: list[dict], limit: int) -> dict:
    """Figures a correct plugin would report for ``requests`` (all of one chat)."""
    totals = {}
    for role in a0_e2e.ROLES:
        sums = a0_e2e.sum_requests([entry for entry in requests if a0_e2e.classify_request(entry, CONFIG) == role])
        totals[role] = {key: sums[key] for key in ("calls", *a0_e2e.TOKEN_FIELDS)}
        totals[role].update(estimated=0, unavailable=0)
    chat_calls = [entry for entry in requests if a0_e2e.classify_request(entry, CONFIG) == "chat"]
    last = dict(a0_e2e.usage_counts(chat_calls[-1]))
    last.update(
        source="provider",
        limit={"tokens": limit, "configured": limit},
        fill_percent=round(100 * last["prompt"] / limit, 1),
    )
    calls = sum(item["calls"] for item in totals.values())
    return {
        "last": last,
        "totals": totals,
        "agents": {"0": {"calls": calls}},
        "history": [a0_e2e.usage_counts(entry)["prompt"] for entry in chat_calls],
    }


def _observations() -> dict:
    """Observations of a run in which the plugin did everything right."""
    steps = {
        "X": [[_entry("chat", 1000, "a1"), _entry("utility", 100, "a2"), _entry("embedding", 9, "a3")],
              [_entry("chat", 1500, "b1"), _entry("utility", 120, "b2")]],
        "Y": [[_entry("chat", 800, "c1"), _entry("utility", 90, "c2")]],
    }  # fmt: skip
    ids = {"X": "ctxX", "Y": "ctxY"}
    order = [("X", 0), ("Y", 0), ("X", 1)]

    def records() -> list[StepRecord]:
        return [StepRecord(chat, ids[chat], f"reply {chat}{i}", 0.1, 3.0, steps[chat][i]) for chat, i in order]

    figures = {chat: _figures([e for step in steps[chat] for e in step], 100_000) for chat in steps}
    answers = {chat: {"ok": True, "context_id": ids[chat], "figures": figures[chat], "status": {"state": "ok"},
                      "_http_status": 200} for chat in steps}  # fmt: skip
    unknown = {"ok": False, "error": "chat not found", "_http_status": 200}
    chats = sorted(ids.values())
    return {
        "baseline": records(),
        "metered": records(),
        "start_requests": [],
        "model_config": CONFIG,
        "api": answers,
        "saved_running": dict(figures),
        "saved_stopped": dict(figures),
        "api_restart": json.loads(json.dumps(answers)),
        "unknown_id": "tm-e2e-unknown-1",
        "chats_before_unknown": chats,
        "api_unknown": unknown,
        "chats_after_unknown": chats,
        "api_unknown_restart": unknown,
        "chats_restart": chats,
    }


def _evaluate(observed: dict) -> a0_e2e.CheckResult:
    result = a0_e2e.CheckResult(label="made-up", backend="none")
    a0_e2e.evaluate(result, observed)
    return result


def test_evaluate_passes_correct_figures() -> None:
    result = _evaluate(_observations())

    assert [item.name for item in result.assertions if not item.passed] == []
    assert result.passed


def test_evaluate_detects_wrong_utility_total() -> None:
    observed = _observations()
    observed["api"]["Y"]["figures"]["totals"]["utility"]["prompt"] += 1

    result = _evaluate(observed)

    assert _failures(result, "chat Y: totals.utility") != []
    assert _failures(result, "chat X:") == []


def test_evaluate_detects_changed_reply() -> None:
    observed = _observations()
    observed["metered"][1].reply = "another reply"

    result = _evaluate(observed)

    assert _failures(result, "replies identical") != []


def test_evaluate_detects_chat_created_for_unknown_id() -> None:
    observed = _observations()
    observed["chats_after_unknown"] = sorted([*observed["chats_after_unknown"], observed["unknown_id"]])

    result = _evaluate(observed)

    assert _failures(result, "unknown chat id: usr/chats unchanged") != []
    assert _failures(result, "unknown chat id: no chat folder") != []


def test_evaluate_detects_figures_lost_on_restart() -> None:
    observed = _observations()
    observed["api_restart"]["X"]["figures"]["history"] = []

    result = _evaluate(observed)

    assert _failures(result, "chat X: API figures unchanged after restart") != []


def test_summary_lists_failed_assertion() -> None:
    observed = _observations()
    observed["api"]["X"]["figures"]["last"]["source"] = "estimated"

    lines = _evaluate(observed).summary_lines()

    assert lines[0].startswith("A0 live check made-up (none): FAILED")
    assert '  [FAIL] chat X: last.source: expected "provider", observed "estimated"' in lines


# ----- processes and HTTP, with stand-ins ---------------------------------------------------------

STAND_IN_RUN_UI = textwrap.dedent(
    '''
    """Stand-in for A0's run_ui.py: the endpoints A0Client uses, and switches for process tests."""
    import http.server, json, os, subprocess, sys

    if os.environ.get("STAND_IN_EXIT"):
        sys.exit(int(os.environ["STAND_IN_EXIT"]))
    if os.environ.get("STAND_IN_CHILD_PID_FILE"):
        child = subprocess.Popen(["sleep", "300"])
        open(os.environ["STAND_IN_CHILD_PID_FILE"], "w").write(str(child.pid))
    port = int([arg for arg in sys.argv if arg.startswith("--port=")][0].split("=")[1])

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status, payload, headers=()):
            data = json.dumps(payload).encode()
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/api/health":
                self.reply(200, {"ok": True})
            elif self.path == "/api/csrf_token" and self.headers.get("Origin", "").startswith("http://127.0.0.1"):
                self.reply(200, {"ok": True, "token": "token-1"}, [("Set-Cookie", "session=s1; Path=/; HttpOnly")])
            else:
                self.reply(404, {})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/api/api_message":
                if self.headers.get("X-API-KEY") != "CYrG64gZj5GAlibc":
                    return self.reply(401, {"error": "invalid API key"})
                context_id = body.get("context_id") or "ctx-new"
                self.reply(200, {"context_id": context_id, "response": "echo " + body["message"]})
            elif self.path == "/api/plugins/token_meter/usage":
                if self.headers.get("X-CSRF-Token") != "token-1" or "session=s1" not in self.headers.get("Cookie", ""):
                    return self.reply(403, {"error": "CSRF token missing or invalid"})
                self.reply(200, {"ok": True, "context_id": body.get("context_id"), "figures": {}})
            else:
                self.reply(404, {})

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
    '''
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def stand_in_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "a0"
    tree.mkdir()
    (tree / "run_ui.py").write_text(STAND_IN_RUN_UI)
    return tree


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a0_process_stops_whole_group(stand_in_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = stand_in_tree / "child.pid"
    monkeypatch.setenv("STAND_IN_CHILD_PID_FILE", str(pid_file))
    process = a0_live.A0Process(stand_in_tree, sys.executable, _free_port(), stand_in_tree / "a0.log")

    seconds = process.start(ready_timeout_s=30)
    child_pid = int(pid_file.read_text())
    assert process.running
    assert seconds < 30
    assert _pid_alive(child_pid)

    process.stop(grace_s=5)

    assert not process.running
    assert a0_live.port_is_free(process.port)
    deadline = time.monotonic() + 5
    while _pid_alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _pid_alive(child_pid)


def test_a0_process_reports_early_exit(stand_in_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAND_IN_EXIT", "3")
    process = a0_live.A0Process(stand_in_tree, sys.executable, _free_port(), stand_in_tree / "a0.log")

    with pytest.raises(a0_live.A0LiveError, match="exited with code 3 before it was ready"):
        process.start(ready_timeout_s=30)


def test_client_sends_messages_and_csrf(stand_in_tree: Path) -> None:
    process = a0_live.A0Process(stand_in_tree, sys.executable, _free_port(), stand_in_tree / "a0.log")
    process.start(ready_timeout_s=30)
    try:
        client = a0_live.A0Client(
            a0_live.loopback_transport(process.port),
            a0_live.api_key_for(a0_live.DEFAULT_RUNTIME_ID),
            process.base_url,
        )
        first = client.send_message("hello")
        second = client.send_message("again", context_id=first.context_id)
        usage = client.plugin_api("token_meter", "usage", {"context_id": "ctx-new"})
    finally:
        process.stop(grace_s=5)

    assert (first.context_id, first.response) == ("ctx-new", "echo hello")
    assert second.context_id == "ctx-new"
    assert usage.status == 200
    assert usage.json()["ok"] is True


def test_fake_server_process_logs_requests(tmp_path: Path) -> None:
    fake = a0_live.FakeServerProcess(_free_port(), tmp_path / "fake.jsonl", tmp_path / "fake.out")
    fake.start()
    try:
        body = {"model": "fake-utility", "messages": [{"role": "user", "content": "hi"}]}
        response = a0_live.http_request(
            fake.port, "POST", "/v1/chat/completions", {"Content-Type": "application/json"}, json.dumps(body).encode()
        )
        started = time.monotonic()
        entries = fake.wait_quiet(quiet_s=0.5, timeout_s=10)
        waited = time.monotonic() - started
    finally:
        fake.stop()

    assert response.status == 200
    assert [entry["model"] for entry in entries] == ["fake-utility"]
    assert entries[0]["usage"]["prompt_tokens"] == response.json()["usage"]["prompt_tokens"]
    assert waited >= 0.5
    assert a0_live.port_is_free(fake.port)
