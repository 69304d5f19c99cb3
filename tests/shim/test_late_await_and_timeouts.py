"""When a call starts, and how a timeout ends it.

A coroutine from ``acompletion`` starts its call at its first ``await``: the record's start time and
scope come from then, not from the creation of the coroutine. A timeout of ``asyncio.wait_for`` or
``asyncio.timeout`` cancels the task, and the shim sees only that CancelledError: the record says
"cancelled" (see ``shim.Outcome.CANCELLED``), while the caller gets TimeoutError as without the shim.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import litellm
import pytest

import shim
from shim.compatibility import litellm_version, parse_version

LITELLM_VERSION = parse_version(litellm_version())
MESSAGES = [{"role": "user", "content": "Name four lakes."}]


def chat_kwargs(server, directives: str = "usage=finish,chunks=4", **extra) -> dict:
    return {
        "model": f"openai/start-model@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        **extra,
    }


@pytest.fixture
def silent_server():
    """A TCP server on 127.0.0.1 that accepts connections and never answers; yields its base URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.1)
    connections = []
    stopping = threading.Event()

    def accept() -> None:
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            connections.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
    finally:
        stopping.set()
        thread.join(timeout=5)
        for connection in connections:
            connection.close()
        listener.close()


# ----- the call starts at its first await -----------------------------------------------------------


async def test_late_await_takes_scope_of_await(records, fake_server):
    with shim.scope(chat="created-here"):
        pending = litellm.acompletion(**chat_kwargs(fake_server))
    await asyncio.sleep(0.3)
    before_await = time.time()
    with shim.scope(chat="awaited-here"):
        response = await pending
    after_await = time.time()

    assert response.usage.total_tokens == fake_server.requests[-1]["usage"]["total_tokens"]
    record = records.only()
    assert dict(record.scope) == {"chat": "awaited-here"}
    assert before_await <= record.started_at <= record.ended_at <= after_await


async def test_late_await_outside_scope_has_empty_scope(records, fake_server):
    with shim.scope(chat="created-here"):
        pending = litellm.acompletion(**chat_kwargs(fake_server))
    response = await pending

    assert response.choices[0].message.content
    record = records.only()
    assert dict(record.scope) == {}


async def test_late_await_stream_start_time(records, fake_server):
    pending = litellm.acompletion(**chat_kwargs(fake_server, stream=True))
    await asyncio.sleep(0.3)
    before_await = time.time()
    stream = await pending
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 5
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.started_at >= before_await
    # Time to the first chunk is measured from the await too: far below the 0.3 s of waiting before it.
    assert record.first_chunk_s is not None
    assert record.first_chunk_s < 0.3


async def test_unawaited_coroutine_sends_nothing(records, fake_server):
    pending = litellm.acompletion(**chat_kwargs(fake_server))
    await asyncio.sleep(0.1)

    assert fake_server.requests == []
    assert records.records == []
    pending.close()


async def test_acompletion_flag_late_await(records, fake_server):
    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 raise inside the sync call itself, with or without the shim, so the
        # call starts and ends there and no coroutine is returned.
        with shim.scope(chat="created-here"):
            with pytest.raises(litellm.APIConnectionError):
                litellm.completion(**chat_kwargs(fake_server, acompletion=True))
        record = records.only()
        assert dict(record.scope) == {"chat": "created-here"}
        assert record.outcome is shim.Outcome.ERROR
        assert record.error_type == "APIConnectionError"
        return

    with shim.scope(chat="created-here"):
        pending = litellm.completion(**chat_kwargs(fake_server, acompletion=True))
    await asyncio.sleep(0.3)
    before_await = time.time()
    with shim.scope(chat="awaited-here"):
        response = await pending

    assert response.usage.total_tokens == fake_server.requests[-1]["usage"]["total_tokens"]
    record = records.only()
    assert dict(record.scope) == {"chat": "awaited-here"}
    assert record.started_at >= before_await
    assert record.outcome is shim.Outcome.COMPLETE


# ----- timeouts ---------------------------------------------------------------------------------------------


async def test_wait_for_timeout_non_stream(records, silent_server):
    kwargs = {
        "model": "openai/silent-model",
        "messages": MESSAGES,
        "api_base": silent_server,
        "api_key": "sk-test",
        "max_retries": 0,
    }
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(litellm.acompletion(**kwargs), timeout=0.5)

    record = records.only()
    assert record.outcome is shim.Outcome.CANCELLED
    assert record.error_type == "CancelledError"
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.stream is False


async def test_wait_for_timeout_mid_stream(records, fake_server):
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "usage=finish,chunks=6,delay=0.4", stream=True))
    first = await asyncio.wait_for(stream.__anext__(), timeout=5)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stream.__anext__(), timeout=0.1)

    assert first.choices[0].delta.content
    assert len(records.records) == 1
    record = records.only()
    assert record.outcome is shim.Outcome.CANCELLED
    assert record.error_type == "CancelledError"
    assert record.chunk_count == 1
    assert record.source is shim.Source.ESTIMATED
    assert record.source_reason == "cancelled"


async def test_timeout_block_mid_stream(records, fake_server):
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "usage=finish,chunks=6,delay=0.3", stream=True))
    received = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(1.0):
            async for chunk in stream:
                received.append(chunk)

    assert 1 <= len(received) <= 3
    record = records.only()
    assert record.outcome is shim.Outcome.CANCELLED
    assert record.error_type == "CancelledError"
    assert record.chunk_count == len(received)
