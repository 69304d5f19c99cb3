"""Installation contract: idempotence, rebinding, uninstall, foreign wrappers, version guard, vendoring.

Every call goes through real litellm over HTTP to the fake model server. Tests install and uninstall the
shim themselves (not through the ``records`` fixture) because the order of imports and installs is the
subject under test.
"""

from __future__ import annotations

import importlib
import shutil
import sys
import textwrap
import threading
import uuid
from pathlib import Path

import litellm
import pytest
import wrapt

import shim
import shim.instrumentor
import shim.runtime

ENTRY_POINTS = ("acompletion", "completion", "aresponses", "responses")
MESSAGES = [{"role": "user", "content": "Name three trees."}]
SHIM_SOURCE = Path(shim.__file__).resolve().parent


class Collector:
    """Listener that stores every record it receives; thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list = []

    def __call__(self, record) -> None:
        with self.lock:
            self.records.append(record)


@pytest.fixture
def originals():
    """Uninstall any shim, yield litellm's unwrapped entry points, and restore them afterwards.

    Teardown also puts the originals back where a test left a foreign wrapper on top of the shim's
    (uninstall leaves such attributes alone by contract).
    """
    shim.uninstall()
    saved = {name: getattr(litellm, name) for name in ENTRY_POINTS}
    for name, function in saved.items():
        assert not isinstance(function, wrapt.FunctionWrapper), f"litellm.{name} is still wrapped: {function!r}"
    yield saved
    shim.uninstall()
    for name, function in saved.items():
        setattr(litellm, name, function)


@pytest.fixture
def collected():
    """Subscribe a Collector for the test and unsubscribe it afterwards."""
    collector = Collector()
    key = shim.subscribe(collector, key="tests.install.collector")
    yield collector
    shim.unsubscribe(key)


@pytest.fixture
def make_module(tmp_path, monkeypatch):
    """Return a function that writes a throwaway module into a temporary import path and imports it."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(prefix: str, source: str):
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
        importlib.invalidate_caches()
        created.append(name)
        return importlib.import_module(name)

    yield make
    for name in created:
        sys.modules.pop(name, None)


BINDER_SOURCE = """
    from litellm import acompletion, completion


    async def ask(**kwargs):
        return await acompletion(**kwargs)


    def ask_sync(**kwargs):
        return completion(**kwargs)
"""


def chat_kwargs(server, tag: str, **extra) -> dict:
    return {
        "model": f"openai/{tag}@usage=finish,chunks=3",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "fake-key",
        **extra,
    }


async def stream_all(stream) -> int:
    count = 0
    async for _ in stream:
        count += 1
    return count


# ----- idempotence and the report ---------------------------------------------------------------------


def test_install_reports_patched_targets(originals):
    report = shim.install()

    assert sorted(report.patched) == sorted(ENTRY_POINTS)
    assert report.skipped == {}
    assert report.already_installed is False
    assert report.ok is True
    assert report.litellm_version is not None
    assert shim.is_installed() is True
    for name in ENTRY_POINTS:
        wrapper = getattr(litellm, name)
        assert isinstance(wrapper, wrapt.FunctionWrapper), name
        assert wrapper.__wrapped__ is originals[name], name


def test_second_install_patches_nothing(originals):
    first = shim.install()
    wrappers = {name: getattr(litellm, name) for name in ENTRY_POINTS}

    second = shim.install()

    assert sorted(first.patched) == sorted(ENTRY_POINTS)
    assert second.patched == []
    assert second.already_installed is True
    assert second.skipped == {}
    assert second.rebound == []
    for name in ENTRY_POINTS:
        assert getattr(litellm, name) is wrappers[name], name


async def test_repeated_install_records_once(originals, collected, fake_server):
    for _ in range(3):
        shim.install()

    for name in ENTRY_POINTS:
        assert getattr(litellm, name).__wrapped__ is originals[name], f"litellm.{name} is wrapped twice"

    stream = await litellm.acompletion(**chat_kwargs(fake_server, "repeat", stream=True))
    await stream_all(stream)
    litellm.completion(**chat_kwargs(fake_server, "repeat-sync"))

    assert len(collected.records) == 2
    assert len(fake_server.requests) == 2


async def test_reinstall_after_uninstall_wraps_once(originals, collected, fake_server):
    shim.install()
    shim.uninstall()
    shim.install()

    for name in ENTRY_POINTS:
        assert getattr(litellm, name).__wrapped__ is originals[name], name

    await litellm.acompletion(**chat_kwargs(fake_server, "reinstall"))
    assert len(collected.records) == 1


# ----- rebinding of names bound with "from litellm import ..." ----------------------------------------


async def test_install_rebinds_earlier_import(originals, collected, fake_server, make_module):
    module = make_module("early_binder", BINDER_SOURCE)
    assert module.acompletion is originals["acompletion"]

    report = shim.install()

    assert module.acompletion is litellm.acompletion
    assert module.completion is litellm.completion
    assert f"{module.__name__}.acompletion" in report.rebound
    assert f"{module.__name__}.completion" in report.rebound

    stream = await module.ask(**chat_kwargs(fake_server, "early-async", stream=True))
    chunks = await stream_all(stream)
    module.ask_sync(**chat_kwargs(fake_server, "early-sync"))

    assert [r.requested_model for r in collected.records] == [
        "openai/early-async@usage=finish,chunks=3",
        "openai/early-sync@usage=finish,chunks=3",
    ]
    assert collected.records[0].chunk_count == chunks
    assert collected.records[0].prompt_tokens == fake_server.requests[0]["usage"]["prompt_tokens"]


async def test_module_imported_after_install_gets_wrapper(originals, collected, fake_server, make_module):
    shim.install()

    module = make_module("late_binder", BINDER_SOURCE)

    assert module.acompletion is litellm.acompletion
    assert module.completion is litellm.completion
    await module.ask(**chat_kwargs(fake_server, "late-async"))
    module.ask_sync(**chat_kwargs(fake_server, "late-sync"))
    assert len(collected.records) == 2


def test_uninstall_restores_originals(originals, make_module):
    module = make_module("restore_binder", BINDER_SOURCE)
    shim.install()

    restored = shim.uninstall()

    for name in ENTRY_POINTS:
        assert getattr(litellm, name) is originals[name], name
        assert f"litellm.{name}" in restored
    assert module.acompletion is originals["acompletion"]
    assert module.completion is originals["completion"]
    assert f"{module.__name__}.acompletion" in restored
    assert shim.is_installed() is False


def test_uninstall_keeps_reassigned_names(originals, make_module):
    module = make_module("reassign_binder", BINDER_SOURCE)
    shim.install()

    def replacement(**kwargs):
        return None

    module.completion = replacement
    restored = shim.uninstall()

    assert module.completion is replacement
    assert module.acompletion is originals["acompletion"]
    assert f"{module.__name__}.completion" not in restored
    assert f"{module.__name__}.acompletion" in restored


def test_uninstall_without_install_is_noop(originals):
    assert shim.uninstall() == []
    for name in ENTRY_POINTS:
        assert getattr(litellm, name) is originals[name]


# ----- another instrumentation wrapping the same functions ---------------------------------------------


def counting_wrapper(counter: list):
    """Return a plain wrapt wrapper that counts its calls and passes everything through."""

    def wrapper(wrapped, instance, args, kwargs):
        counter.append(1)
        return wrapped(*args, **kwargs)

    return wrapper


async def test_foreign_wrapper_after_ours(originals, collected, fake_server):
    shim.install()
    foreign_calls: list = []
    wrapt.wrap_function_wrapper(litellm, "acompletion", counting_wrapper(foreign_calls))
    foreign = litellm.acompletion

    again = shim.install()

    assert litellm.acompletion is foreign
    assert "acompletion" not in again.patched
    assert again.already_installed is True

    stream = await litellm.acompletion(**chat_kwargs(fake_server, "foreign-after", stream=True))
    await stream_all(stream)
    await litellm.acompletion(**chat_kwargs(fake_server, "foreign-after-2"))

    assert len(foreign_calls) == 2
    assert len(collected.records) == 2
    assert len(fake_server.requests) == 2

    restored = shim.uninstall()
    assert litellm.acompletion is foreign
    assert "litellm.acompletion" not in restored
    assert "litellm.completion" in restored


async def test_foreign_wrapper_before_ours(originals, collected, fake_server):
    foreign_calls: list = []
    wrapt.wrap_function_wrapper(litellm, "acompletion", counting_wrapper(foreign_calls))
    wrapt.wrap_function_wrapper(litellm, "completion", counting_wrapper(foreign_calls))
    foreign = litellm.acompletion

    report = shim.install()

    assert "acompletion" in report.patched
    assert litellm.acompletion.__wrapped__ is foreign

    stream = await litellm.acompletion(**chat_kwargs(fake_server, "foreign-before", stream=True))
    await stream_all(stream)
    litellm.completion(**chat_kwargs(fake_server, "foreign-before-sync"))

    assert len(foreign_calls) == 2
    assert len(collected.records) == 2
    assert [r.stream for r in collected.records] == [True, False]

    shim.uninstall()
    assert litellm.acompletion is foreign


# ----- version and shape guard -------------------------------------------------------------------------


def assert_nothing_patched(report, originals) -> None:
    assert report.patched == []
    assert report.ok is False
    assert shim.is_installed() is False
    for name in ENTRY_POINTS:
        assert getattr(litellm, name) is originals[name], f"litellm.{name} was patched"


def test_missing_entry_point_patches_nothing(originals, monkeypatch):
    monkeypatch.delattr(litellm, "aresponses")

    report = shim.install()

    assert "no aresponses" in report.skipped.get("aresponses", "")
    assert report.patched == [], "a missing entry point must stop the whole install"
    for name in ("acompletion", "completion", "responses"):
        assert getattr(litellm, name) is originals[name], f"litellm.{name} was patched"


def test_unexpected_signature_patches_nothing(originals, monkeypatch):
    def completion(prompt):
        return prompt

    monkeypatch.setattr(litellm, "completion", completion)

    report = shim.install()

    assert "unexpected shape" in report.skipped.get("completion", "")
    assert litellm.completion is completion
    assert report.patched == [], "an entry point of unexpected shape must stop the whole install"


def test_stream_type_without_anext_patches_nothing(originals, monkeypatch):
    class CustomStreamWrapper:
        def __iter__(self):
            return self

        def __next__(self):
            raise StopIteration

    monkeypatch.setattr(litellm, "CustomStreamWrapper", CustomStreamWrapper)

    report = shim.install()

    assert_nothing_patched(report, originals)
    assert sorted(report.skipped) == sorted(ENTRY_POINTS)
    for reason in report.skipped.values():
        assert "__anext__" in reason


@pytest.mark.parametrize("version", ["1.200.0", "1.70.0", "2.0.0"])
def test_strict_version_outside_range(originals, monkeypatch, version):
    monkeypatch.setattr(shim.instrumentor, "litellm_version", lambda: version)

    report = shim.install(strict_version=True)

    assert_nothing_patched(report, originals)
    assert report.litellm_version == version
    assert sorted(report.skipped) == sorted(ENTRY_POINTS)
    for reason in report.skipped.values():
        assert "outside the tested range" in reason
        assert version in reason


def test_strict_version_unreadable(originals, monkeypatch):
    monkeypatch.setattr(shim.instrumentor, "litellm_version", lambda: None)

    report = shim.install(strict_version=True)

    assert_nothing_patched(report, originals)
    for reason in report.skipped.values():
        assert "could not be read" in reason


def test_lenient_version_outside_range_warns(originals, monkeypatch, caplog):
    monkeypatch.setattr(shim.instrumentor, "litellm_version", lambda: "1.200.0")

    with caplog.at_level("WARNING", logger="token_meter.shim"):
        report = shim.install()

    assert sorted(report.patched) == sorted(ENTRY_POINTS)
    assert len(report.warnings) == 1
    assert "outside the tested range" in report.warnings[0]
    messages = [r.getMessage() for r in caplog.records if r.name == "token_meter.shim"]
    assert any("outside the tested range" in message for message in messages)


def test_version_inside_range_has_no_warning(originals):
    report = shim.install(strict_version=True)

    assert sorted(report.patched) == sorted(ENTRY_POINTS)
    assert report.warnings == []


# ----- a vendored copy of the shim package ------------------------------------------------------------


@pytest.fixture
def vendored(tmp_path, monkeypatch):
    """Return a function that imports a fresh copy of shim/ as ``vendored_copy.shim_copy``.

    Each call purges the earlier copy from ``sys.modules`` first, the way Agent Zero purges and re-imports
    a plugin's modules, so it returns a new module object every time.
    """
    package = tmp_path / "vendored_copy"
    shutil.copytree(SHIM_SOURCE, package / "shim_copy", ignore=shutil.ignore_patterns("__pycache__"))
    (package / "__init__.py").write_text('"""Package that vendors a copy of the shim."""\n')
    monkeypatch.syspath_prepend(str(tmp_path))

    def purge() -> None:
        for name in [n for n in sys.modules if n == "vendored_copy" or n.startswith("vendored_copy.")]:
            del sys.modules[name]

    def load():
        purge()
        importlib.invalidate_caches()
        return importlib.import_module("vendored_copy.shim_copy")

    yield load
    purge()


def test_copy_shares_runtime_state(vendored):
    copy = vendored()

    assert copy is not shim
    assert copy.runtime.RUNTIME is shim.runtime.RUNTIME
    assert copy.runtime.RUNTIME.scope_var is shim.runtime.RUNTIME.scope_var
    assert copy.runtime.RUNTIME.listeners is shim.runtime.RUNTIME.listeners

    key = copy.subscribe(lambda record: None, key="tests.install.copy-listener")
    try:
        assert key in shim.runtime.RUNTIME.listeners
    finally:
        assert shim.unsubscribe(key) is True
    assert key not in shim.runtime.RUNTIME.listeners

    with copy.scope(chat="from-copy"):
        assert dict(shim.current_scope()) == {"chat": "from-copy"}
    with shim.scope(chat="from-original"):
        assert dict(copy.current_scope()) == {"chat": "from-original"}


async def test_copy_scope_seen_by_original_wrapper(originals, collected, fake_server, vendored):
    shim.install()
    copy = vendored()
    assert copy.is_installed() is True

    with copy.scope(chat="c-7", role="chat"):
        stream = await litellm.acompletion(**chat_kwargs(fake_server, "copy-scope", stream=True))
        await stream_all(stream)
    token = copy.enter_scope(chat="c-8")
    litellm.completion(**chat_kwargs(fake_server, "copy-scope-sync"))
    copy.exit_scope(token)

    assert [dict(r.scope) for r in collected.records] == [{"chat": "c-7", "role": "chat"}, {"chat": "c-8"}]


async def test_copy_install_replaces_stale_wrapper(originals, collected, fake_server, vendored, make_module):
    module = make_module("vendor_binder", BINDER_SOURCE)
    shim.install()
    stale = litellm.acompletion
    copy = vendored()

    report = copy.install()

    assert sorted(report.patched) == sorted(ENTRY_POINTS)
    assert litellm.acompletion is not stale
    for name in ENTRY_POINTS:
        wrapper = getattr(litellm, name)
        assert wrapper.__wrapped__ is originals[name], f"litellm.{name} nests the stale wrapper"
        assert wrapper._self_wrapper.__module__ == "vendored_copy.shim_copy.wrappers"
    assert module.acompletion is litellm.acompletion
    assert f"{module.__name__}.acompletion" in report.rebound

    stream = await module.ask(**chat_kwargs(fake_server, "copy-install", stream=True))
    await stream_all(stream)
    await litellm.acompletion(**chat_kwargs(fake_server, "copy-install-2"))
    litellm.completion(**chat_kwargs(fake_server, "copy-install-3"))

    assert len(collected.records) == 3
    assert type(collected.records[0]).__module__ == "vendored_copy.shim_copy.records"

    assert copy.install().patched == []


async def test_reimported_copy_replaces_older_copy(originals, collected, fake_server, vendored):
    first = vendored()
    first.install()
    second = vendored()

    assert second is not first
    report = second.install()

    assert sorted(report.patched) == sorted(ENTRY_POINTS)
    assert litellm.acompletion.__wrapped__ is originals["acompletion"]
    with first.scope(chat="old-copy-scope"):
        await litellm.acompletion(**chat_kwargs(fake_server, "reimport"))

    assert len(collected.records) == 1
    assert dict(collected.records[0].scope) == {"chat": "old-copy-scope"}


def test_original_uninstall_removes_copy_wrapper(originals, vendored):
    shim.install()
    copy = vendored()
    copy.install()

    restored = shim.uninstall()

    for name in ENTRY_POINTS:
        assert getattr(litellm, name) is originals[name], name
        assert f"litellm.{name}" in restored
    assert copy.is_installed() is False
