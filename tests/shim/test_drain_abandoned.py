"""The drain_abandoned setting: an abandoned async stream is read to its end in the background.

Agent Zero 1.7 and later stop reading the chat stream as soon as the tool call is complete, so usage
sent in the last chunks would never be seen. With the setting on, the record must carry the server's
numbers; with it off, the record is an estimate.
"""

from __future__ import annotations

import asyncio
import gc

import litellm
import pytest

import shim

MESSAGES = [{"role": "user", "content": "List eight birds of the northern forests."}]


async def abandon_after(server, directives: str, read: int) -> list:
    stream = await litellm.acompletion(
        model=f"openai/fake-model@{directives}",
        messages=MESSAGES,
        api_base=server.base_url,
        api_key="sk-test",
        stream=True,
    )
    chunks = []
    async for chunk in stream:
        chunks.append(chunk)
        if len(chunks) == read:
            break
    del stream
    gc.collect()
    return chunks


async def wait_for_records(records, count: int, timeout: float = 5.0) -> list:
    for _ in range(int(timeout / 0.02)):
        if len(records.records) >= count:
            return list(records.records)
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} records, got {len(records.records)}")


@pytest.mark.parametrize("placement", ["finish", "trailing_empty_choice", "every"])
async def test_drained_stream_has_provider_usage(records, fake_server, placement):
    shim.configure(drain_abandoned=True)
    try:
        chunks = await abandon_after(fake_server, f"usage={placement},chunks=8", read=3)
        record = (await wait_for_records(records, 1))[0]
    finally:
        shim.configure(drain_abandoned=False)

    sent = fake_server.requests[-1]["usage"]
    assert len(chunks) == 3
    assert record.outcome is shim.Outcome.ABANDONED
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == sent["prompt_tokens"]
    assert record.completion_tokens == sent["completion_tokens"]
    assert record.chunk_count == 3, "chunks read in the background are not the caller's"
    assert "read in the background" in record.source_reason


async def test_abandoned_without_drain_is_estimated(records, fake_server):
    await abandon_after(fake_server, "usage=finish,chunks=8", read=3)
    record = (await wait_for_records(records, 1))[0]

    assert record.outcome is shim.Outcome.ABANDONED
    assert record.source is shim.Source.ESTIMATED
    assert record.chunk_count == 3


async def test_drain_with_scope_end_records_once(records, fake_server):
    shim.configure(drain_abandoned=True)
    try:
        with shim.scope(chat="drain"):
            stream = await litellm.acompletion(
                model="openai/fake-model@usage=finish,chunks=6",
                messages=MESSAGES,
                api_base=fake_server.base_url,
                api_key="sk-test",
                stream=True,
            )
            await stream.__anext__()
        del stream
        gc.collect()
        await asyncio.sleep(0.3)
        found = await wait_for_records(records, 1)
    finally:
        shim.configure(drain_abandoned=False)

    assert len(found) == 1
    assert found[0].source is shim.Source.PROVIDER
    assert dict(found[0].scope) == {"chat": "drain"}


async def test_collection_then_scope_end_drains(records, fake_server):
    # Agent Zero 1.7's order: the stream is freed when the model call returns, and the call's end hook
    # ends the scope right after, before the event loop runs again. The background read must win.
    shim.configure(drain_abandoned=True)
    try:
        token = shim.enter_scope(chat="a0-order")
        stream = await litellm.acompletion(
            model="openai/fake-model@usage=finish,chunks=6",
            messages=MESSAGES,
            api_base=fake_server.base_url,
            api_key="sk-test",
            stream=True,
        )
        await stream.__anext__()
        del stream
        gc.collect()
        assert shim.exit_scope(token, finalize_open_streams=True) == 0
        record = (await wait_for_records(records, 1))[0]
    finally:
        shim.configure(drain_abandoned=False)

    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]
    assert record.outcome is shim.Outcome.ABANDONED
