"""The drain_abandoned setting also covers an async stream the caller closes early with ``aclose()``.

Agent Zero 2.x breaks out of its stream loop as soon as the agent's tool call is complete, and the
``finally`` of its transport generator awaits ``aclose()`` on litellm's stream. Usage sent in the
trailing chunks would never be seen. With the setting on, ``aclose()`` hands the rest of the stream
to a background read and returns at once; the record carries the server's numbers. With it off,
``aclose()`` closes the stream as before and the record is an estimate.
"""

from __future__ import annotations

import asyncio
import time

import litellm
import pytest
from litellm.litellm_core_utils.streaming_handler import CustomStreamWrapper

import shim

# litellm 1.79.3 (A0 1.x's pin) has no aclose() on its streams, and A0 1.x never closes them;
# A0 2.x's litellm 1.88.1 has it.
needs_aclose = pytest.mark.skipif(
    not hasattr(CustomStreamWrapper, "aclose"), reason="this litellm's streams have no aclose()"
)

MESSAGES = [{"role": "user", "content": "Name six rivers of the eastern plains."}]


async def transport_stream(server, directives: str):
    """Yield chunks like A0 2.x's transport: the litellm stream is closed in ``finally`` when not exhausted."""
    stream = await litellm.acompletion(
        model=f"openai/fake-model@{directives}",
        messages=MESSAGES,
        api_base=server.base_url,
        api_key="sk-test",
        stream=True,
    )
    exhausted = False
    try:
        async for chunk in stream:
            yield chunk
        exhausted = True
    finally:
        if not exhausted:
            await stream.aclose()


async def read_then_close(server, directives: str, read: int) -> tuple[list, float]:
    """Read ``read`` chunks, leave the loop (which closes the stream); return the chunks and the close time."""
    chunks = []
    generator = transport_stream(server, directives)
    async for chunk in generator:
        chunks.append(chunk)
        if len(chunks) == read:
            break
    started = time.perf_counter()
    await generator.aclose()
    return chunks, time.perf_counter() - started


async def wait_for_records(records, count: int, timeout: float = 5.0) -> list:
    for _ in range(int(timeout / 0.02)):
        if len(records.records) >= count:
            return list(records.records)
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} records, got {len(records.records)}")


@needs_aclose
@pytest.mark.parametrize("placement", ["finish", "trailing_empty_choice"])
async def test_close_drains_for_provider_usage(records, fake_server, placement):
    shim.configure(drain_abandoned=True, request_stream_usage=True)
    chunks, _ = await read_then_close(fake_server, f"usage={placement},chunks=8", read=3)
    record = (await wait_for_records(records, 1))[0]

    sent = fake_server.requests[-1]["usage"]
    assert len(chunks) == 3
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert record.source is shim.Source.PROVIDER
    assert (record.prompt_tokens, record.completion_tokens) == (sent["prompt_tokens"], sent["completion_tokens"])
    assert record.cached_tokens == sent["prompt_tokens_details"]["cached_tokens"]
    assert record.chunk_count == 3, "chunks read in the background are not the caller's"
    assert "read in the background" in record.source_reason


@needs_aclose
async def test_close_returns_before_the_background_read_ends(records, fake_server):
    # Five more chunks at 0.1 s each: a close that waited for them would take 0.5 s.
    shim.configure(drain_abandoned=True, request_stream_usage=True)
    _, close_s = await read_then_close(fake_server, "usage=finish,chunks=7,delay=0.1", read=2)
    record = (await wait_for_records(records, 1))[0]

    assert close_s < 0.25
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]


@needs_aclose
async def test_closed_stream_without_drain_is_estimated(records, fake_server):
    chunks, _ = await read_then_close(fake_server, "usage=finish,chunks=8", read=3)
    record = (await wait_for_records(records, 1))[0]

    assert len(chunks) == 3
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert record.source is shim.Source.ESTIMATED
    assert record.chunk_count == 3


@needs_aclose
async def test_close_during_scope_end_records_once(records, fake_server):
    shim.configure(drain_abandoned=True, request_stream_usage=True)
    token = shim.enter_scope(chat="close-then-scope-end")
    await read_then_close(fake_server, "usage=finish,chunks=6,delay=0.05", read=2)
    assert shim.exit_scope(token, finalize_open_streams=True) == 0
    found = await wait_for_records(records, 1)
    await asyncio.sleep(0.4)

    assert len(records.records) == 1
    assert found[0].source is shim.Source.PROVIDER
    assert dict(found[0].scope) == {"chat": "close-then-scope-end"}


@needs_aclose
async def test_close_of_a_finished_stream_changes_nothing(records, fake_server):
    shim.configure(drain_abandoned=True, request_stream_usage=True)
    stream = await litellm.acompletion(
        model="openai/fake-model@usage=finish,chunks=4",
        messages=MESSAGES,
        api_base=fake_server.base_url,
        api_key="sk-test",
        stream=True,
    )
    chunks = [chunk async for chunk in stream]
    await stream.aclose()
    await asyncio.sleep(0.1)

    assert len(records.records) == 1
    record = records.records[0]
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == len(chunks)


@needs_aclose
async def test_scope_end_before_generator_close(records, fake_server):
    # A0 2.x: the agent loop breaks out of the transport generator, the call's end hook ends the scope
    # at once, and only then does the loop run the generator's aclose() that asyncio scheduled when the
    # generator was freed. The close must still get the background read.
    shim.configure(drain_abandoned=True, request_stream_usage=True)
    token = shim.enter_scope(chat="a0-2x")
    read = 0
    async for _ in transport_stream(fake_server, "usage=finish,chunks=8"):
        read += 1
        if read == 3:
            break
    assert shim.exit_scope(token, finalize_open_streams=True) == 1
    record = (await wait_for_records(records, 1))[0]
    await asyncio.sleep(0.2)

    assert len(records.records) == 1
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]
    assert record.chunk_count == 3
    assert dict(record.scope) == {"chat": "a0-2x"}


async def test_open_stream_recorded_after_scope_end(records, fake_server):
    shim.configure(drain_abandoned=True)
    token = shim.enter_scope(chat="held")
    stream = await litellm.acompletion(
        model="openai/fake-model@usage=finish,chunks=6",
        messages=MESSAGES,
        api_base=fake_server.base_url,
        api_key="sk-test",
        stream=True,
    )
    await stream.__anext__()
    assert shim.exit_scope(token, finalize_open_streams=True) == 1
    assert records.records == []
    record = (await wait_for_records(records, 1))[0]

    assert record.outcome is shim.Outcome.ABANDONED
    assert record.source is shim.Source.ESTIMATED
    assert record.source_reason == "scope ended"
    remaining = [chunk async for chunk in stream]
    assert len(remaining) >= 5, "a stream recorded at scope end can still be read"
    assert len(records.records) == 1
