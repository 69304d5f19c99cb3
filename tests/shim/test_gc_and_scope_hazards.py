"""Hazards around scope ends and garbage collection: reading after a scope, concurrent readers, and a
finaliser that fires while a listener holds its lock."""

from __future__ import annotations

import asyncio
import gc
import threading

import litellm

import shim

MESSAGES = [{"role": "user", "content": "Name four lakes in Finland."}]


def stream_kwargs(server, directives: str = "usage=finish,chunks=6") -> dict:
    return {
        "model": f"openai/fake-model@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
    }


async def test_stream_read_after_scope_block(records, fake_server):
    with shim.scope(chat="after"):
        stream = await litellm.acompletion(**stream_kwargs(fake_server))
    chunks = [chunk async for chunk in stream]

    record = records.only()
    sent = fake_server.requests[-1]["usage"]
    assert len(chunks) == 7
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == sent["prompt_tokens"]
    assert dict(record.scope) == {"chat": "after"}


async def test_drain_spares_stream_still_read(records, fake_server):
    shim.configure(drain_abandoned=True)
    received: list = []

    async def consume(stream) -> None:
        async for chunk in stream:
            received.append(chunk)
            await asyncio.sleep(0.01)

    token = shim.enter_scope(chat="busy")
    stream = await litellm.acompletion(**stream_kwargs(fake_server))
    task = asyncio.create_task(consume(stream))
    await asyncio.sleep(0)
    shim.exit_scope(token, finalize_open_streams=True)
    await task

    assert len(received) == 7, "a scope end must never read chunks that a consumer still reads"
    assert len(records.wait_for(1)) == 1


def test_finaliser_during_listener_lock(records, fake_server):
    # A listener that holds a plain Lock while a garbage-collection pass frees an abandoned stream must
    # not deadlock: the finaliser's record is produced later, outside the collector's callback.
    lock = threading.Lock()
    abandoned = []
    for _ in range(2):
        stream = litellm.completion(**stream_kwargs(fake_server))
        next(stream)
        abandoned.append(stream)
    del stream

    def locking_listener(record) -> None:
        with lock:
            if abandoned:
                holder = {"stream": abandoned.pop()}
                holder["self"] = holder
                del holder
                gc.collect()

    shim.subscribe(locking_listener, key="tests.locking")
    try:
        worker = threading.Thread(
            target=lambda: [litellm.completion(**{**stream_kwargs(fake_server), "stream": False}) for _ in range(2)]
        )
        worker.start()
        worker.join(timeout=30)
        assert not worker.is_alive(), "a listener deadlocked on its own lock"
        found = records.wait_for(4)
    finally:
        shim.unsubscribe("tests.locking")

    outcomes = sorted(record.outcome.value for record in found)
    assert outcomes == ["abandoned", "abandoned", "complete", "complete"]
