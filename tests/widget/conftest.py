"""Fixtures for the widget's browser tests: Debian's Chromium driven by Playwright, and the test page.

Chromium and Alpine.js come from scripts/ensure_browser. When they are missing the tests are skipped,
except under CI (CI set) or with TOKEN_METER_REQUIRE_BROWSER=1, where they fail instead. Set
TOKEN_METER_A0_CHECKOUT to an A0 source tree to also test with A0's own index.css, and
TOKEN_METER_SCREENSHOT_DIR to a folder to save screenshots of the widget in both themes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.widget.page_server import REPO_ROOT, PageServer

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP_VIEWPORT = {"width": 1280, "height": 800}


def _missing(reason: str) -> None:
    if os.environ.get("CI") or os.environ.get("TOKEN_METER_REQUIRE_BROWSER") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_tools() -> dict[str, Path]:
    """Paths of Chromium and Alpine.js, checked with `scripts/ensure_browser --check`."""
    script = REPO_ROOT / "scripts" / "ensure_browser"
    result = subprocess.run([str(script), "--check"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        _missing(f"browser tools missing: {result.stderr.strip()}")
    tools = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return {"chromium": Path(tools["chromium"]), "alpine": Path(tools["alpine"])}


@pytest.fixture(scope="session")
def a0_checkout() -> Path | None:
    """The A0 source tree named by TOKEN_METER_A0_CHECKOUT, or None."""
    value = os.environ.get("TOKEN_METER_A0_CHECKOUT")
    if not value:
        return None
    path = Path(value)
    if not (path / "webui" / "index.css").is_file():
        pytest.fail(f"TOKEN_METER_A0_CHECKOUT={value} has no webui/index.css; point it at an A0 source tree")
    return path


@pytest.fixture(scope="session")
def page_server(browser_tools: dict[str, Path], a0_checkout: Path | None) -> Iterator[PageServer]:
    with PageServer(browser_tools["alpine"], a0_checkout) as server:
        yield server


@pytest.fixture(scope="session")
def chromium(browser_tools: dict[str, Path]) -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright package is missing; install the project's test extra")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(browser_tools["chromium"]), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class WidgetPage:
    """One browser page with the test page loaded, and helpers to drive and read the widget."""

    def __init__(self, page: Any, server: PageServer) -> None:
        self.page = page
        self.server = server
        self.errors: list[str] = []
        self.blocked: list[str] = []

    def open(self, query: str = "") -> WidgetPage:
        """Load the test page and wait until the stand-in loader has put the component in place."""
        self.page.goto(f"{self.server.base_url}/{('?' + query) if query else ''}")
        self.page.wait_for_function("document.body.dataset.fixtureReady || document.body.dataset.fixtureError")
        error = self.page.evaluate("document.body.dataset.fixtureError || null")
        assert error is None, f"test page failed to load the component: {error}"
        return self

    def select_chat(self, token_meter: dict[str, Any] | None, chat_id: str = "chat-1") -> None:
        """Replace the selected chat's snapshot entry, as A0 does on each state snapshot."""
        context: dict[str, Any] = {"id": chat_id, "name": "Test chat", "running": False}
        if token_meter is not None:
            context["token_meter"] = token_meter
        self.page.evaluate(
            """([chatId, contextJson]) => {
                const chats = Alpine.store('chats');
                chats.selected = chatId;
                chats.selectedContext = JSON.parse(contextJson);
            }""",
            [chat_id, json.dumps(context)],
        )
        self.settle()

    def clear_chat(self) -> None:
        """Deselect the chat, as A0 does when no chat is open."""
        self.page.evaluate(
            """() => {
                const chats = Alpine.store('chats');
                chats.selected = '';
                chats.selectedContext = null;
            }"""
        )
        self.settle()

    def settle(self) -> None:
        """Wait for Alpine to apply pending reactive updates."""
        self.page.evaluate("() => new Promise((resolve) => Alpine.nextTick(() => requestAnimationFrame(resolve)))")

    def set_theme(self, theme: str) -> None:
        """Switch the body class between dark-mode and light-mode, as A0's preferences store does."""
        other = "light-mode" if theme == "dark-mode" else "dark-mode"
        self.page.evaluate(
            "([remove, add]) => { document.body.classList.remove(remove); document.body.classList.add(add); }",
            [other, theme],
        )
        self.settle()

    @property
    def badge(self) -> Any:
        return self.page.locator(".tm-badge")

    @property
    def popover(self) -> Any:
        return self.page.locator(".tm-popover")

    def open_popover(self) -> None:
        self.badge.click()
        self.popover.wait_for(state="visible")

    def last_row(self, key: str) -> str:
        return self.page.locator(f".tm-last .tm-row[data-key='{key}'] dd").inner_text()

    def table_cells(self, row_key: str) -> list[str]:
        return self.page.locator(f"tr[data-key='{row_key}'] > :is(th, td):visible").all_inner_texts()

    def note_keys(self) -> list[str]:
        return self.page.locator(".tm-note").evaluate_all("nodes => nodes.map(node => node.dataset.key)")


@pytest.fixture
def widget(chromium: Any, page_server: PageServer, request: pytest.FixtureRequest) -> Iterator[WidgetPage]:
    """A fresh browser context (desktop size, dark theme) on the test page; fails on any page error.

    Requests to anything but the test server never leave the browser and fail the test, except web font
    requests, which A0's index.css makes and which get an empty response.
    """
    marker = request.node.get_closest_marker("viewport")
    viewport = marker.args[0] if marker else DESKTOP_VIEWPORT
    context = chromium.new_context(viewport=viewport)
    page = context.new_page()
    widget_page = WidgetPage(page, page_server)

    def guard(route: Any) -> None:
        if route.request.url.startswith(page_server.base_url + "/"):
            route.continue_()
        else:
            # Fulfilled here with an empty response, so nothing leaves the machine and no load error is logged.
            widget_page.blocked.append(route.request.url)
            route.fulfill(status=204, body="")

    context.route("**/*", guard)
    page.on("console", lambda message: message.type == "error" and widget_page.errors.append(message.text))
    page.on("pageerror", lambda error: widget_page.errors.append(f"page error: {error}"))
    page.on("dialog", lambda dialog: (widget_page.errors.append(f"dialog opened: {dialog.message}"), dialog.dismiss()))
    started = time.perf_counter()
    try:
        yield widget_page
    finally:
        context.close()
    request.node.user_properties.append(("browser_seconds", round(time.perf_counter() - started, 3)))
    other_hosts = [url for url in widget_page.blocked if not url.startswith(("https://fonts.", "http://fonts."))]
    assert not widget_page.errors, f"errors on the test page: {widget_page.errors}"
    assert not other_hosts, f"the page requested other hosts: {other_hosts}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "viewport(size): browser viewport for the widget fixture, e.g. {'width': 360}")
