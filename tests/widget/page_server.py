"""HTTP server for the widget test page, on 127.0.0.1 with an ephemeral port.

Routes (all others return 404):
  GET  /                                   tests/widget/widget_page.html
  GET  /stand-ins/<file>                   tests/widget/stand_ins/<file>
  GET  /js/AlpineStore.js                  the stand-in of A0's store module
  GET  /vendor/alpine.min.js               Alpine.js from the npm cache (scripts/ensure_browser)
  GET  /plugins/token_meter/<path>         a0_plugin/<path>, like A0: only under webui/ or extensions/webui/
  GET  /usr/plugins/token_meter/<path>     the same files under A0's second plugin route
  POST /api/load_webui_extensions          {"extensions": [...]} for {"extension_point", "filters"}, like A0
  GET  /a0/webui/<path>                    files of an A0 checkout's webui/, only when one is given
Every request is recorded in ``requests`` as (method, path, status).
"""

from __future__ import annotations

import fnmatch
import json
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

WIDGET_DIR = Path(__file__).resolve().parent
REPO_ROOT = WIDGET_DIR.parent.parent
PLUGIN_DIR = REPO_ROOT / "a0_plugin"
PLUGIN_NAME = "token_meter"
PLUGIN_WEB_DIRS = ("webui", "extensions/webui")

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


class PageServer:
    """Serve the test page, Alpine.js, the stand-ins and the plugin's web files; use as a context manager."""

    def __init__(self, alpine_js: Path, a0_checkout: Path | None = None) -> None:
        self.alpine_js = alpine_js
        self.a0_webui = a0_checkout / "webui" if a0_checkout else None
        self.requests: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, name="widget-page-server", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def resolve(self, path: str) -> Path | None:
        """Return the file for a GET path, or None when no route serves it."""
        if path in ("/", "/widget_page.html"):
            return WIDGET_DIR / "widget_page.html"
        if path == "/vendor/alpine.min.js":
            return self.alpine_js
        if path == "/js/AlpineStore.js":
            return WIDGET_DIR / "stand_ins" / "AlpineStore.js"
        if path.startswith("/stand-ins/"):
            return self._file_under(WIDGET_DIR / "stand_ins", path.removeprefix("/stand-ins/"))
        for prefix in (f"/plugins/{PLUGIN_NAME}/", f"/usr/plugins/{PLUGIN_NAME}/"):
            if path.startswith(prefix):
                candidate = self._file_under(PLUGIN_DIR, path.removeprefix(prefix))
                if candidate and any(_inside(candidate, PLUGIN_DIR / folder) for folder in PLUGIN_WEB_DIRS):
                    return candidate
                return None
        if self.a0_webui and path.startswith("/a0/webui/"):
            return self._file_under(self.a0_webui, path.removeprefix("/a0/webui/"))
        return None

    @staticmethod
    def _file_under(folder: Path, relative: str) -> Path | None:
        candidate = folder / relative
        if not _inside(candidate, folder) or not candidate.is_file():
            return None
        return candidate

    @staticmethod
    def list_extensions(extension_point: str, filters: list[str]) -> list[str]:
        """Return the plugin's extension files of a slot as A0 paths, e.g. usr/plugins/token_meter/...."""
        folder = PLUGIN_DIR / "extensions" / "webui" / extension_point
        if not extension_point or not _inside(folder, PLUGIN_DIR / "extensions" / "webui") or not folder.is_dir():
            return []
        names = sorted(
            entry.name
            for entry in folder.iterdir()
            if entry.is_file() and any(fnmatch.fnmatch(entry.name, pattern) for pattern in filters or ["*"])
        )
        return [f"usr/plugins/{PLUGIN_NAME}/extensions/webui/{extension_point}/{name}" for name in names]

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - signature of the base class
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                server.record(self.command, urlsplit(self.path).path, status)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                path = urlsplit(self.path).path
                file = server.resolve(path)
                if file is None:
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                content_type = CONTENT_TYPES.get(file.suffix, "application/octet-stream")
                self._send(HTTPStatus.OK, file.read_bytes(), content_type)

            def do_POST(self) -> None:  # noqa: N802 - name fixed by BaseHTTPRequestHandler
                path = urlsplit(self.path).path
                if path != "/api/load_webui_extensions":
                    self._send(HTTPStatus.NOT_FOUND, b"not found", "text/plain")
                    return
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    request = json.loads(self.rfile.read(length) or b"{}")
                except json.JSONDecodeError:
                    self._send(HTTPStatus.BAD_REQUEST, b"invalid JSON body", "text/plain")
                    return
                extensions = server.list_extensions(str(request.get("extension_point") or ""), request.get("filters"))
                body = json.dumps({"extensions": extensions}).encode()
                self._send(HTTPStatus.OK, body, "application/json")

        return Handler
