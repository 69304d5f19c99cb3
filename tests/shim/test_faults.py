"""Faults inside the shim: raising listeners and recorders never reach the host, and are logged once.

Each test starts with empty error counts, so "logged once" is checked against a clean slate. Calls go
through real litellm over HTTP to the fake model server. The expected reply text comes from the fake
server's own ``answer_pieces``.
"""

from __future__ import annotations

import gc
import sys

import litellm
import pytest

import shim
import shim.calls
import shim.estimate
import shim.response_record
import shim.runtime
import shim.wrappers
from compat_matrix.fake_llm_server import answer_pieces
from shim.calls import Call

LOGGER = "token_meter.shim"
MESSAGES = [{"role": "user", "content": "List five colours."}]
CHUNKS = 6
EXPECTED_TEXT = "".join(answer_pieces(MESSAGES, CHUNKS))


class ListenerFailure(RuntimeError):
    pass


class OtherListenerFailure(ValueError):
    pass


class RecorderFailure(RuntimeError):
    pass


@pytest.fixture(autouse=True)
def clean_error_counts(monkeypatch):
    """Give the test an empty error-count table; the original table comes back afterwards."""
    monkeypatch.setattr(shim.runtime.RUNTIME, "error_counts", {})


@pytest.fixture
def shim_log(caplog):
    """Capture WARNING and above from the shim's logger; return a function listing the messages."""
    caplog.set_level("WARNING", logger=LOGGER)

    def messages(containing: str = "") -> list[str]:
        return [r.getMessage() for r in caplog.records if r.name == LOGGER and containing in r.getMessage()]

    return messages


def chat_kwargs(server, tag: str, *, directives: str = f"usage=finish,chunks={CHUNKS}", **extra) -> dict:
    return {
        "model": f"openai/{tag}@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "fake-key",
        **extra,
    }


def text_of(chunks) -> str:
    return "".join((chunk.choices[0].delta.content or "") for chunk in chunks if chunk.choices)


async def collect_async(stream) -> list:
    return [chunk async for chunk in stream]


def qualified_name(function) -> str:
    """Return the name the shim uses for a listener in its error counts: module and qualified name."""
    return f"{function.__module__}.{function.__qualname__}"


def raise_recorder_failure(*args, **kwargs):
    raise RecorderFailure("recorder failed on purpose")


def failure_of(function, *args, **kwargs):
    """Return the exception type ``function`` raises, or None."""
    try:
        function(*args, **kwargs)
    except Exception as exc:
        return type(exc)
    return None


async def async_failure_of(make_stream):
    """Return the exception type raised while opening or reading the stream from ``make_stream``, or None."""
    try:
        stream = await make_stream()
        async for _ in stream:
            pass
    except Exception as exc:
        return type(exc)
    return None


# ----- listeners ---------------------------------------------------------------------------------------------


async def test_raising_listener_leaves_calls_intact(records, fake_server, shim_log):
    def failing_listener(record):
        raise ListenerFailure("listener failed on purpose")

    later = []
    shim.subscribe(failing_listener, key="tests.faults.failing")
    shim.subscribe(later.append, key="tests.faults.later")
    try:
        stream = await litellm.acompletion(**chat_kwargs(fake_server, "listener-stream", stream=True))
        chunks = await collect_async(stream)
        response = await litellm.acompletion(**chat_kwargs(fake_server, "listener-plain"))
        sync_chunks = list(litellm.completion(**chat_kwargs(fake_server, "listener-sync", stream=True)))
    finally:
        shim.unsubscribe("tests.faults.failing")
        shim.unsubscribe("tests.faults.later")

    assert text_of(chunks) == EXPECTED_TEXT
    assert text_of(sync_chunks) == EXPECTED_TEXT
    assert response.choices[0].message.content == EXPECTED_TEXT
    assert response.usage.prompt_tokens == fake_server.requests[1]["usage"]["prompt_tokens"]

    assert len(records.wait_for(3)) == 3
    assert len(later) == 3
    assert shim.error_counts() == {(f"listener {qualified_name(failing_listener)}", "ListenerFailure"): 3}
    logged = shim_log("ListenerFailure")
    assert len(logged) == 1
    assert "listener failed on purpose" in logged[0]


async def test_listener_error_kinds_logged_separately(records, fake_server, shim_log):
    failures = iter([ListenerFailure("first kind"), OtherListenerFailure("second kind")] * 2)

    def alternating_listener(record):
        raise next(failures)

    shim.subscribe(alternating_listener, key="tests.faults.alternating")
    try:
        for number in range(4):
            await litellm.acompletion(**chat_kwargs(fake_server, f"kinds-{number}"))
    finally:
        shim.unsubscribe("tests.faults.alternating")

    where = f"listener {qualified_name(alternating_listener)}"
    assert shim.error_counts() == {(where, "ListenerFailure"): 2, (where, "OtherListenerFailure"): 2}
    assert len(shim_log("failed with ListenerFailure:")) == 1
    assert len(shim_log("failed with OtherListenerFailure:")) == 1
    assert len(records.wait_for(4)) == 4


def test_listener_error_log_has_no_prompt_text(records, fake_server, shim_log):
    def failing_listener(record):
        raise ListenerFailure("listener failed on purpose")

    shim.subscribe(failing_listener, key="tests.faults.private")
    try:
        litellm.completion(**chat_kwargs(fake_server, "private"))
    finally:
        shim.unsubscribe("tests.faults.private")

    logged = shim_log()
    assert len(logged) == 1
    assert MESSAGES[0]["content"] not in logged[0]
    assert EXPECTED_TEXT.strip() not in logged[0]


# ----- recorders ---------------------------------------------------------------------------------------------


async def test_observe_event_failure_keeps_events(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(Call, "observe_responses", raise_recorder_failure)
    kwargs = {
        "model": "openai/observe-responses@chunks=4",
        "input": "List five colours.",
        "api_base": fake_server.base_url,
        "api_key": "fake-key",
        "stream": True,
    }

    stream = await litellm.aresponses(**kwargs)
    events = [event async for event in stream]

    # litellm may re-split the text into deltas of its own size, so only the joined text is compared.
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert "".join(deltas) == "".join(answer_pieces(MESSAGES, 4))
    assert events[-1].type == "response.completed"
    assert shim.error_counts() == {("observe chunk", "RecorderFailure"): len(events)}
    assert len(shim_log("RecorderFailure")) == 1


async def test_finish_response_failure_returns_response(records, fake_server, shim_log, monkeypatch):
    # Non-stream calls are recorded by record_response; Call.finish_response serves unusual results.
    monkeypatch.setattr(shim.wrappers, "record_response", raise_recorder_failure)

    response = await litellm.acompletion(**chat_kwargs(fake_server, "finish"))
    sync_response = litellm.completion(**chat_kwargs(fake_server, "finish-sync"))

    assert response.choices[0].message.content == EXPECTED_TEXT
    assert sync_response.choices[0].message.content == EXPECTED_TEXT
    assert response.usage.total_tokens == fake_server.requests[0]["usage"]["total_tokens"]
    assert shim.error_counts() == {("record result", "RecorderFailure"): 2}
    assert len(shim_log("RecorderFailure")) == 1
    assert records.records == []


async def test_read_usage_failure_non_stream(records, fake_server, shim_log, monkeypatch):
    # Non-stream results are read by read_numbers, the tuple form of read_usage.
    monkeypatch.setattr(shim.response_record, "read_numbers", raise_recorder_failure)

    response = await litellm.acompletion(**chat_kwargs(fake_server, "read-usage"))
    sync_response = litellm.completion(**chat_kwargs(fake_server, "read-usage-sync"))

    assert response.choices[0].message.content == EXPECTED_TEXT
    assert sync_response.choices[0].message.content == EXPECTED_TEXT
    assert sum(shim.error_counts().values()) == 2
    assert len(shim_log("RecorderFailure")) == 1


async def test_read_usage_failure_async_stream(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(shim.calls, "read_usage", raise_recorder_failure)

    kwargs = chat_kwargs(fake_server, "read-usage-stream", directives=f"usage=finish,chunks={CHUNKS}", stream=True)
    stream = await litellm.acompletion(**kwargs)
    chunks = await collect_async(stream)

    assert text_of(chunks) == EXPECTED_TEXT
    assert sum(shim.error_counts().values()) == 1
    assert len(shim_log("RecorderFailure")) == 1


def test_read_usage_failure_sync_stream(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(shim.calls, "read_usage", raise_recorder_failure)

    kwargs = chat_kwargs(fake_server, "read-usage-sync", directives=f"usage=finish,chunks={CHUNKS}", stream=True)
    chunks = list(litellm.completion(**kwargs))

    assert text_of(chunks) == EXPECTED_TEXT
    assert sum(shim.error_counts().values()) == 1
    assert len(shim_log("RecorderFailure")) == 1


async def test_recorder_failure_keeps_stream_error(records, fake_server, shim_log, monkeypatch):
    directives = f"usage=finish,chunks={CHUNKS},drop=2"

    def open_stream(tag):
        return lambda: litellm.acompletion(**chat_kwargs(fake_server, tag, directives=directives, stream=True))

    expected = await async_failure_of(open_stream("dropped-baseline"))
    monkeypatch.setattr(Call, "_finish_stream_or_error", raise_recorder_failure)
    observed = await async_failure_of(open_stream("dropped-broken"))

    assert observed is expected
    assert len(shim_log("RecorderFailure")) == 1


async def test_finish_failure_at_scope_exit(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(Call, "_finish_stream_or_error", raise_recorder_failure)

    token = shim.enter_scope(chat="fault-scope")
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "scope-exit", stream=True))
    first = await stream.__anext__()
    shim.exit_scope(token, finalize_open_streams=True)

    rest = await collect_async_safely(stream)
    assert text_of([first, *rest]) == EXPECTED_TEXT
    assert shim.error_counts().get(("exit_scope finalise", "RecorderFailure")) == 1
    assert len(shim_log("exit_scope finalise")) == 1


async def collect_async_safely(stream) -> list:
    """Read the rest of a stream whose end-of-stream bookkeeping is broken; keep what arrived."""
    chunks = []
    try:
        async for chunk in stream:
            chunks.append(chunk)
    except RecorderFailure:
        pass
    return chunks


async def test_finish_failure_on_garbage_collection(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(Call, "_finish_stream_or_error", raise_recorder_failure)
    unraisable = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    for number in range(2):
        stream = await litellm.acompletion(**chat_kwargs(fake_server, f"collected-{number}", stream=True))
        await stream.__anext__()
        del stream
        gc.collect()

    assert [item.exc_type for item in unraisable] == []
    assert len(shim_log("RecorderFailure")) == 1


async def test_call_start_failure_runs_call(records, fake_server, shim_log, monkeypatch):
    # Both the stream path and the non-stream path read the start time first.
    monkeypatch.setattr(shim.wrappers, "_time", raise_recorder_failure)

    stream = await litellm.acompletion(**chat_kwargs(fake_server, "start", stream=True))
    chunks = await collect_async(stream)
    response = litellm.completion(**chat_kwargs(fake_server, "start-sync"))

    assert text_of(chunks) == EXPECTED_TEXT
    assert response.choices[0].message.content == EXPECTED_TEXT
    assert shim.error_counts() == {("start call record", "RecorderFailure"): 2}
    assert len(shim_log("RecorderFailure")) == 1
    assert records.records == []


async def test_attach_stream_failure_returns_bare_stream(records, fake_server, shim_log, monkeypatch):
    monkeypatch.setattr(Call, "attach_stream", raise_recorder_failure)

    stream = await litellm.acompletion(**chat_kwargs(fake_server, "attach", stream=True))
    chunks = await collect_async(stream)

    assert type(stream) is litellm.CustomStreamWrapper
    assert text_of(chunks) == EXPECTED_TEXT
    assert shim.error_counts() == {("wrap stream", "RecorderFailure"): 1}
    assert len(shim_log("RecorderFailure")) == 1


def test_host_exception_passes_unchanged(records, fake_server):
    kwargs = chat_kwargs(fake_server, "host-error", directives="error=429")

    with pytest.raises(litellm.RateLimitError):
        litellm.completion(**kwargs)

    record = records.only()
    assert record.outcome is shim.Outcome.ERROR
    assert record.error_type == "RateLimitError"
    assert shim.error_counts() == {}
