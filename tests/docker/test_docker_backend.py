"""Tests of the docker backend (compat_matrix.docker_backend, docker_engine, container_http).

The engine tests need a Docker engine and the local base image; they skip with the reason otherwise.
Prepare both with::

    export "$(scripts/dockerd start | tail -n 1)"   # DOCKER_HOST=unix:///tmp/dockerd.sock
    scripts/build_base_image

TOKEN_METER_DOCKER_BASE_IMAGE names another base image (default token-meter/a0-base:bookworm); it
needs python3 and coreutils. Instead of A0 the containers run STAND_IN_RUN_UI, a stand-in for A0's
run_ui.py that serves the endpoints these tests use and talks to the real fake model server. The
live check against real A0 code is ``python -m compat_matrix.a0_e2e --backend docker ...``.

The other tests need no engine: option parsing, the venv interpreter mount, the HTTP client script.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat_matrix import a0_e2e, a0_live, container_http, docker_engine
from compat_matrix.a0_live import A0LiveError
from compat_matrix.docker_backend import (
    A0_PORT,
    DockerBackend,
    DockerSetup,
    Mount,
    _parse_http_output,
    interpreter_mounts,
)

BASE_IMAGE = os.environ.get("TOKEN_METER_DOCKER_BASE_IMAGE", "token-meter/a0-base:bookworm")

# Stand-in for A0's run_ui.py, not A0 code. GET /api/health; POST /api/api_message (X-API-KEY as A0
# v1.x computes it) sends one chat completion to the model server of usr/plugins/_model_config,
# saves the usage in usr/chats/<id>/chat.json and returns it; POST /echo returns the body's length.
# The first line of the tree's stand_in_mode file switches behaviours: "exit N" or "no-listen".
STAND_IN_RUN_UI = textwrap.dedent(
    '''
    """Stand-in for A0's run_ui.py in the docker backend's tests."""
    import base64, hashlib, http.server, json, os, signal, sys, time, urllib.request
    from pathlib import Path

    if os.getpid() == 1:
        # PID 1 gets no default SIGTERM action; release images run supervisord there, which exits on SIGTERM.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))

    ROOT = Path(__file__).resolve().parent
    mode_file = ROOT / "stand_in_mode"
    mode = mode_file.read_text().split() if mode_file.exists() else []
    print("stand-in A0 starting with mode", mode, flush=True)
    if mode[:1] == ["exit"]:
        sys.exit(int(mode[1]))
    if mode[:1] == ["no-listen"]:
        time.sleep(3600)

    port = int([arg for arg in sys.argv if arg.startswith("--port=")][0].split("=")[1])
    host = [arg for arg in sys.argv if arg.startswith("--host=")][0].split("=")[1]
    env = dict(line.split("=", 1) for line in (ROOT / "usr/.env").read_text().splitlines() if "=" in line)
    digest = hashlib.sha256((env["A0_PERSISTENT_RUNTIME_ID"] + "::").encode()).digest()
    api_key = base64.urlsafe_b64encode(digest).decode().replace("=", "")[:16]
    config = json.loads((ROOT / "usr/plugins/_model_config/config.json").read_text())

    class Handler(http.server.BaseHTTPRequestHandler):
        def reply(self, status, payload):
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/api/health":
                self.reply(200, {"ok": True})
            else:
                self.reply(404, {})

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.path == "/echo":
                return self.reply(200, {"length": len(body)})
            if self.path != "/api/api_message":
                return self.reply(404, {})
            if self.headers.get("X-API-KEY") != api_key:
                return self.reply(401, {"error": "invalid API key"})
            message = json.loads(body)
            model = config["chat_model"]
            chat = {"model": model["name"], "messages": [{"role": "user", "content": message["message"]}]}
            request = urllib.request.Request(
                model["api_base"] + "/chat/completions",
                data=json.dumps(chat).encode(),
                headers={"Content-Type": "application/json"},
            )
            completion = json.load(urllib.request.urlopen(request, timeout=30))
            context_id = message.get("context_id") or "standin%d" % len(list((ROOT / "usr/chats").glob("*")))
            chat_dir = ROOT / "usr/chats" / context_id
            chat_dir.mkdir(parents=True, exist_ok=True)
            (chat_dir / "chat.json").write_text(json.dumps({"output_data": {"token_meter": completion["usage"]}}))
            self.reply(200, {"context_id": context_id, "response": completion["choices"][0]["message"]["content"]})

        def log_message(self, *args):
            pass

    (ROOT / "usr/chats").mkdir(parents=True, exist_ok=True)
    print("stand-in A0 listening on", host, port, flush=True)
    http.server.ThreadingHTTPServer((host, port), Handler).serve_forever()
    '''
)


# ----- without an engine ------------------------------------------------------------------------


def test_mount_parse_forms() -> None:
    assert Mount.parse("/srv/data:/data") == Mount(Path("/srv/data"), "/data", read_only=True)
    assert Mount.parse("/srv/data:/data:rw") == Mount(Path("/srv/data"), "/data", read_only=False)
    assert Mount.parse("/srv/data:/data:ro").read_only is True
    for invalid in ("/srv/data", "/srv/data:data", ":/data", "/a:/b:rx", "/a:/b:ro:x"):
        with pytest.raises(ValueError, match="invalid mount"):
            Mount.parse(invalid)


def _write_venv(venv: Path, home: str) -> Path:
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "pyvenv.cfg").write_text(f"home = {home}\ninclude-system-site-packages = false\n")
    return venv


def test_interpreter_mount_of_venv_prefix(tmp_path: Path) -> None:
    venv = _write_venv(tmp_path / "venv", "/root/.pyenv/versions/3.12.1/bin")
    assert interpreter_mounts(venv) == [Mount(Path("/root/.pyenv/versions/3.12.1"), "/root/.pyenv/versions/3.12.1")]


def test_interpreter_mount_skips_covered_and_system(tmp_path: Path) -> None:
    venv = _write_venv(tmp_path / "venv", "/root/.pyenv/versions/3.12.1/bin")
    covering = [Mount(Path("/root/.pyenv"), "/root/.pyenv")]
    assert interpreter_mounts(venv, covering) == []
    system_venv = _write_venv(tmp_path / "system-venv", "/usr/bin")
    assert interpreter_mounts(system_venv) == []


def test_interpreter_mount_rejects_non_venv(tmp_path: Path) -> None:
    with pytest.raises(A0LiveError, match="is not a venv"):
        interpreter_mounts(tmp_path)


def test_setup_validation_errors(tmp_path: Path) -> None:
    with pytest.raises(A0LiveError, match="only together with a checkout"):
        DockerSetup(image="x", venv=tmp_path).validate()
    with pytest.raises(A0LiveError, match="run_ui.py is missing"):
        DockerSetup(image="x", checkout=tmp_path).validate()
    with pytest.raises(A0LiveError, match="does not exist"):
        DockerSetup(image="x", mounts=(Mount(tmp_path / "missing", "/m"),)).validate()
    with pytest.raises(A0LiveError, match="invalid pull policy"):
        DockerSetup(image="x", pull="sometimes").validate()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--backend", "docker"], "needs --image"),
        (["--backend", "docker", "--image", "i", "--venv", "/v"], "--venv needs --checkout"),
        (["--backend", "docker", "--image", "i", "--python", "p"], "--python is an option of the local backend"),
        (["--backend", "docker", "--image", "i", "--mount", "relative"], "invalid mount"),
        (["--checkout", "/c"], "needs --checkout and --python"),
        (["--checkout", "/c", "--python", "p", "--image", "i"], "--image is an option of the docker backend"),
    ],
)
def test_cli_rejects_mismatched_options(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        a0_e2e.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_http_client_script_round_trip(fake_server) -> None:
    request = {"port": fake_server.port, "method": "GET", "path": "/v1/models", "headers": {}, "body": None}
    argument = base64.b64encode(json.dumps(request).encode()).decode()
    result = subprocess.run(
        [sys.executable, container_http.__file__, argument], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    response = _parse_http_output("GET", "/v1/models", result)
    assert response.status == 200
    assert response.json()["data"][0]["id"] == "fake-model"


def test_http_client_script_connection_refused(tmp_path: Path) -> None:
    request_file = tmp_path / "request.json"
    request_file.write_text(json.dumps({"port": 9, "method": "GET", "path": "/", "timeout": 5}))
    result = subprocess.run(
        [sys.executable, container_http.__file__, f"@{request_file}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == container_http.EXIT_CONNECTION_ERROR
    with pytest.raises(OSError, match="ConnectionRefusedError"):
        _parse_http_output("GET", "/", result)


def test_http_client_script_rejects_invalid_request() -> None:
    result = subprocess.run(
        [sys.executable, container_http.__file__, "not-base64!"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 2
    assert "invalid request" in result.stderr


# ----- with an engine ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    reason = docker_engine.no_engine_reason()
    if reason:
        pytest.skip(reason)
    client = docker_engine.connect()
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        client.close()
        pytest.skip(f"base image {BASE_IMAGE} is missing; build it with scripts/build_base_image")
    yield client
    client.close()


@pytest.fixture
def stand_in_checkout(tmp_path: Path) -> Path:
    checkout = tmp_path / "checkout"
    (checkout / "plugins" / "_model_config").mkdir(parents=True)
    (checkout / "run_ui.py").write_text(STAND_IN_RUN_UI)
    return checkout


@pytest.fixture
def plugin_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "plugin" / a0_live.PLUGIN_NAME
    tree.mkdir(parents=True)
    (tree / "plugin.yaml").write_text("name: token_meter\nversion: stand-in\n")
    return tree


def _mounted_backend(engine, checkout: Path, tmp_path: Path, **options) -> DockerBackend:
    work_dir = tmp_path / "work"
    work_dir.mkdir(exist_ok=True)
    setup = DockerSetup(image=BASE_IMAGE, checkout=checkout, a0_python="python3", pull="never")
    return DockerBackend(setup, work_dir, tmp_path / "logs", client=engine, **options)


def _session_objects(engine, session: str) -> tuple[list[str], list[str]]:
    filters = {"label": [f"{docker_engine.LABEL_SESSION}={session}"]}
    containers = [container.name for container in engine.containers.list(all=True, filters=filters)]
    volumes = [volume.name for volume in engine.volumes.list(filters=filters)]
    return containers, volumes


def _send(backend: DockerBackend, text: str, context_id: str | None = None) -> tuple[int, dict]:
    payload = {"message": text, **({"context_id": context_id} if context_id else {})}
    headers = {"Content-Type": "application/json", "X-API-KEY": a0_live.api_key_for(backend.runtime_id)}
    response = backend.request("POST", "/api/api_message", headers, json.dumps(payload).encode(), 30.0)
    return response.status, response.json()


def test_mounted_start_isolates_network(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        seconds = backend.start(label="first", plugin_tree=None, fresh=True)
        assert 0 < seconds < 60

        a0 = engine.containers.get(backend._a0.id)
        fake = engine.containers.get(backend._fake.id)
        assert fake.attrs["HostConfig"]["NetworkMode"] == "none"
        assert a0.attrs["HostConfig"]["NetworkMode"] == f"container:{fake.id}"
        interfaces = backend.exec(["cat", "/proc/net/dev"]).stdout.splitlines()[2:]
        assert [line.split(":")[0].strip() for line in interfaces] == ["lo"]

        for container in (a0, fake):
            assert container.labels[docker_engine.LABEL_APP] == "1"
            assert container.labels[docker_engine.LABEL_SESSION] == backend.session
        assert a0.labels[docker_engine.LABEL_ROLE] == "a0"
        assert fake.labels[docker_engine.LABEL_ROLE] == "fake-server"


def test_mounted_usage_round_trip(engine, stand_in_checkout: Path, plugin_tree: Path, tmp_path: Path) -> None:
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        backend.start(label="with-plugin", plugin_tree=plugin_tree, fresh=True)

        status, answer = _send(backend, "first message")
        assert status == 200
        logged = backend.wait_fake_quiet(0.5, 30)
        assert len(logged) == 1
        usage = logged[0]["usage"]
        assert usage["prompt_tokens"] > 0
        assert usage["completion_tokens"] > 0
        assert answer["response"].split()  # the fake model's plain-text reply

        context_id = answer["context_id"]
        assert a0_e2e.saved_figures(backend, context_id) == usage
        assert a0_e2e.list_chat_ids(backend) == [context_id]
        plugin_yaml = backend.exec(["cat", f"usr/plugins/{a0_live.PLUGIN_NAME}/plugin.yaml"])
        assert plugin_yaml.returncode == 0
        assert "version: stand-in" in plugin_yaml.stdout

        # The API key the check computes is the one the stand-in accepts, through A0Client too.
        reply = a0_e2e.make_client(backend).send_message("second message", context_id)
        assert reply.context_id == context_id
        assert len(backend.wait_fake_quiet(0.5, 30)) == 2


def test_stopped_exec_and_restart_keep_state(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        backend.start(label="first", plugin_tree=None, fresh=True)
        _, answer = _send(backend, "kept message")
        usage = backend.wait_fake_quiet(0.5, 30)[-1]["usage"]
        first_container = backend._a0.id
        backend.stop()

        # While A0 is stopped, commands run in a helper container with the same mounts.
        assert a0_e2e.saved_figures(backend, answer["context_id"]) == usage
        assert a0_e2e.list_chat_ids(backend) == [answer["context_id"]]
        with pytest.raises(OSError, match="ConnectionRefusedError"):
            backend.request("GET", "/api/health", {}, None, 5.0)

        backend.start(label="restart", plugin_tree=None, fresh=False)
        assert backend._a0.id == first_container
        assert a0_e2e.list_chat_ids(backend) == [answer["context_id"]]
        assert backend.request("GET", "/api/health", {}, None, 5.0).status == 200

        backend.stop()
        backend.start(label="fresh", plugin_tree=None, fresh=True)
        assert backend._a0.id != first_container
        assert a0_e2e.list_chat_ids(backend) == []

    logs = tmp_path / "logs"
    assert "stand-in A0 listening" in (logs / "a0-first.log").read_text()
    assert "stand-in A0 listening" in (logs / "a0-restart.log").read_text()
    assert "READY" in (logs / "fake-server.out").read_text()


def test_close_removes_containers(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    backend = _mounted_backend(engine, stand_in_checkout, tmp_path)
    backend.start(label="first", plugin_tree=None, fresh=True)
    backend.stop()
    backend.exec(["true"])  # leaves no helper container behind
    assert len(_session_objects(engine, backend.session)[0]) == 2

    backend.close()
    assert _session_objects(engine, backend.session) == ([], [])
    assert not backend.tree.exists()
    backend.close()  # a second close is a no-op


def test_close_after_keyboard_interrupt(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    backend = _mounted_backend(engine, stand_in_checkout, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with backend:
            backend.start(label="first", plugin_tree=None, fresh=True)
            raise KeyboardInterrupt
    assert _session_objects(engine, backend.session) == ([], [])


def test_leftovers_listed_and_removed(engine) -> None:
    session = f"leftover-{os.getpid()}"
    labels = docker_engine.labels_for(session, "a0")
    container = engine.containers.create(BASE_IMAGE, command=["true"], labels=labels)
    volume = engine.volumes.create(labels=labels)

    lines = docker_engine.list_labeled(engine, session)
    assert f"container {container.name} session {session} role a0 status created" in lines
    assert f"volume {volume.name} session {session} role a0" in lines

    containers, volumes = docker_engine.remove_labeled(engine, session)
    assert containers == [container.name]
    assert volumes == [volume.name]
    assert _session_objects(engine, session) == ([], [])


def test_exec_timeout_kills_command(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        backend.start(label="first", plugin_tree=None, fresh=True)
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            backend.exec(["sleep", "60"], timeout_s=2)
        assert time.monotonic() - started < 10
        processes = backend.exec(["ps", "-eo", "args"]).stdout
        assert "sleep 60" not in processes

        backend.stop()
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            backend.exec(["sleep", "60"], timeout_s=2)
        assert time.monotonic() - started < 20
        containers, _ = _session_objects(engine, backend.session)
        assert len(containers) == 2  # the helper container was removed


def test_ready_timeout_honoured(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    (stand_in_checkout / "stand_in_mode").write_text("no-listen\n")
    with _mounted_backend(engine, stand_in_checkout, tmp_path, ready_timeout_s=4) as backend:
        started = time.monotonic()
        with pytest.raises(A0LiveError, match="not ready after 4 s"):
            backend.start(label="hang", plugin_tree=None, fresh=True)
        assert time.monotonic() - started < 40
        assert backend._a0.status == "exited"
    assert "stand-in A0 starting" in (tmp_path / "logs" / "a0-hang.log").read_text()


def test_exit_before_ready_reported(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    (stand_in_checkout / "stand_in_mode").write_text("exit 3\n")
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        with pytest.raises(A0LiveError, match="exited with code 3 before it was ready"):
            backend.start(label="crash", plugin_tree=None, fresh=True)
        assert "stand-in A0 starting" in backend.log_excerpt()


def test_large_request_body_through_file(engine, stand_in_checkout: Path, tmp_path: Path) -> None:
    with _mounted_backend(engine, stand_in_checkout, tmp_path) as backend:
        backend.start(label="first", plugin_tree=None, fresh=True)
        body = b"x" * 200_000
        response = backend.request("POST", "/echo", {"Content-Type": "text/plain"}, body, 30.0)
        assert response.status == 200
        assert response.json() == {"length": 200_000}
        assert list((backend.work_dir / "io").iterdir()) == []


# ----- release-image mode, with a stand-in release image ------------------------------------------


@pytest.fixture(scope="module")
def stand_in_release_image(engine) -> Iterator[str]:
    """A local image laid out like A0's release images (/a0 with run_ui.py and usr/) with a stand-in app."""
    files = {
        "a0/run_ui.py": STAND_IN_RUN_UI,
        "a0/usr/image-default.txt": "from the image\n",
        "a0/plugins/_model_config/.keep": "",
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    builder = engine.containers.create(BASE_IMAGE, command=["true"], labels=docker_engine.labels_for("test", "build"))
    repository, tag = "token-meter/test-release-stand-in", f"pid{os.getpid()}"
    try:
        builder.put_archive("/", buffer.getvalue())
        builder.commit(
            repository,
            tag,
            changes=['CMD ["python3", "/a0/run_ui.py", "--dockerized=true", "--port=80", "--host=0.0.0.0"]'],
        )
    finally:
        builder.remove(force=True)
    yield f"{repository}:{tag}"
    engine.images.remove(f"{repository}:{tag}", force=True)


def test_release_mode_files_plugin_and_restart(
    engine, stand_in_release_image: str, plugin_tree: Path, tmp_path: Path
) -> None:
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    setup = DockerSetup(image=stand_in_release_image, tool_python="python3", pull="never")
    with DockerBackend(setup, work_dir, tmp_path / "logs", client=engine, runtime_id="f" * 32) as backend:
        backend.start(label="with-plugin", plugin_tree=plugin_tree, fresh=True)

        # usr/ is a volume filled from the image, then given the check's files.
        assert backend.exec(["cat", "usr/image-default.txt"]).stdout == "from the image\n"
        assert f"A0_PERSISTENT_RUNTIME_ID={'f' * 32}" in backend.exec(["cat", "usr/.env"]).stdout
        config = a0_e2e.read_json_file(backend, "usr/plugins/_model_config/config.json")
        assert config["chat_model"]["api_base"] == "http://127.0.0.1:8001/v1"
        assert "version: stand-in" in backend.exec(["cat", "usr/plugins/token_meter/plugin.yaml"]).stdout

        status, answer = _send(backend, "release message")
        assert status == 200
        usage = backend.wait_fake_quiet(0.5, 30)[-1]["usage"]
        started = time.monotonic()
        backend.stop()
        assert time.monotonic() - started < 10
        assert a0_e2e.saved_figures(backend, answer["context_id"]) == usage

        with pytest.raises(A0LiveError, match="restart cannot change"):
            backend.start(label="restart", plugin_tree=None, fresh=False)
        backend.start(label="restart", plugin_tree=plugin_tree, fresh=False)
        assert a0_e2e.list_chat_ids(backend) == [answer["context_id"]]

        a0 = engine.containers.get(backend._a0.id)
        assert a0.attrs["Config"]["Cmd"][:2] == ["python3", "/a0/run_ui.py"]
        assert f"--port={A0_PORT}" in a0.attrs["Config"]["Cmd"]
        volumes = _session_objects(engine, backend.session)[1]
        assert len(volumes) == 1
    assert _session_objects(engine, backend.session) == ([], [])
