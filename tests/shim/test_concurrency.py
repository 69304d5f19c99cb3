"""Concurrency: many interleaved streams and threaded calls, each record in its own scope with exact numbers.

Each request carries a unique tag twice: as the base model name (so the record's ``requested_model`` names
it) and in the ``X-Fake-Tag`` header (so the fake server's request log names it). Records are matched to
the server's log by that tag and their token numbers compared with the usage the server sent. The server
puts usage on the finish chunk: litellm 1.79.3 and 1.88.1 drop an unrequested trailing usage chunk
without choices, so only that placement gives provider numbers on every tested release.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures

import litellm

import shim
from compat_matrix.fake_llm_server import TAG_HEADER
from shim import Outcome, Source

STREAM_SCOPES = 10
STREAMS_PER_SCOPE = 10
THREAD_SCOPES = 4
THREAD_CALLS = 20


def request_kwargs(server, tag: str, index: int, *, stream: bool, delay: float) -> dict:
    """Return arguments for one tagged chat call whose prompt and chunk count depend on ``index``."""
    chunks = 3 + index % 9
    directives = f"usage=finish,chunks={chunks}"
    if delay:
        directives += f",delay={delay}"
    words = " ".join(["cedar"] * (1 + index % 13))
    return {
        "model": f"openai/{tag}@{directives}",
        "messages": [{"role": "user", "content": f"Request {tag}: {words}"}],
        "api_base": server.base_url,
        "api_key": "fake-key",
        "stream": stream,
        "extra_headers": {TAG_HEADER: tag},
    }


def tag_of(record) -> str:
    return record.requested_model.removeprefix("openai/").split("@", 1)[0]


def assert_matches_server(records, server, expected_scope_key: str) -> None:
    """Check every record against the server's log entry with the same tag and its scope against the tag."""
    log = {entry["tag"]: entry for entry in server.requests}
    assert len(log) == len(server.requests), "two server requests carry the same tag"
    for record in records:
        tag = tag_of(record)
        entry = log[tag]
        usage = entry["usage"]
        assert entry["status"] == 200, tag
        assert record.source is Source.PROVIDER, tag
        assert record.outcome is Outcome.COMPLETE, tag
        assert record.prompt_tokens == usage["prompt_tokens"], tag
        assert record.completion_tokens == usage["completion_tokens"], tag
        assert record.total_tokens == usage["total_tokens"], tag
        assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"], tag
        assert record.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"], tag
        scope_id = tag.split("-r", 1)[0]
        assert dict(record.scope) == {expected_scope_key: scope_id, "tag": tag}, tag


def max_overlap(records) -> int:
    """Return the largest number of calls that were running at the same moment."""
    events = sorted([(r.started_at, 1) for r in records] + [(r.ended_at, -1) for r in records])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


async def run_async_streams(server) -> dict[str, int]:
    """Run STREAM_SCOPES scopes of STREAMS_PER_SCOPE concurrent streams; return chunks seen per tag."""
    seen: dict[str, int] = {}

    async def one_stream(scope_id: str, number: int) -> None:
        tag = f"{scope_id}-r{number}"
        with shim.scope(tag=tag):
            stream = await litellm.acompletion(**request_kwargs(server, tag, number, stream=True, delay=0.002))
            count = 0
            async for _ in stream:
                count += 1
                await asyncio.sleep(0)
        seen[tag] = count

    async def one_scope(index: int) -> None:
        scope_id = f"chat{index}"
        with shim.scope(chat=scope_id):
            await asyncio.gather(*(one_stream(scope_id, number) for number in range(STREAMS_PER_SCOPE)))

    await asyncio.gather(*(one_scope(index) for index in range(STREAM_SCOPES)))
    return seen


def run_thread_calls(server) -> dict[str, int]:
    """Run THREAD_CALLS sync calls (half streamed) in THREAD_SCOPES scopes on a pool; return chunks per tag."""

    def one_call(number: int) -> tuple[str, int]:
        scope_id = f"pool{number % THREAD_SCOPES}"
        tag = f"{scope_id}-r{number}"
        stream = number % 2 == 0
        with shim.scope(worker=scope_id, tag=tag):
            result = litellm.completion(**request_kwargs(server, tag, number, stream=stream, delay=0.002))
            count = sum(1 for _ in result) if stream else 0
        return tag, count

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one_call, range(THREAD_CALLS)))


async def test_hundred_streams_in_ten_scopes(records, fake_server):
    seen = await run_async_streams(fake_server)

    total = STREAM_SCOPES * STREAMS_PER_SCOPE
    got = records.wait_for(total)
    assert len(got) == total
    assert len(fake_server.requests) == total
    per_scope = collections.Counter(r.scope.get("chat") for r in got)
    assert per_scope == {f"chat{index}": STREAMS_PER_SCOPE for index in range(STREAM_SCOPES)}
    assert_matches_server(got, fake_server, "chat")
    for record in got:
        assert record.stream is True
        assert record.chunk_count == seen[tag_of(record)], tag_of(record)
    assert max_overlap(got) >= 20, "the streams did not interleave"


def test_thread_pool_in_four_scopes(records, fake_server):
    seen = run_thread_calls(fake_server)

    got = records.wait_for(THREAD_CALLS)
    assert len(got) == THREAD_CALLS
    per_scope = collections.Counter(r.scope.get("worker") for r in got)
    assert per_scope == {f"pool{index}": THREAD_CALLS // THREAD_SCOPES for index in range(THREAD_SCOPES)}
    assert_matches_server(got, fake_server, "worker")
    for record in got:
        assert record.chunk_count == seen[tag_of(record)], tag_of(record)
    assert sum(r.stream for r in got) == THREAD_CALLS // 2


async def test_event_loop_and_thread_pool_together(records, fake_server):
    loop = asyncio.get_running_loop()
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as starter:
        threaded = loop.run_in_executor(starter, run_thread_calls, fake_server)
        streamed = await run_async_streams(fake_server)
        pooled = await threaded

    total = STREAM_SCOPES * STREAMS_PER_SCOPE + THREAD_CALLS
    got = records.wait_for(total)
    assert len(got) == total
    assert len(fake_server.requests) == total
    async_records = [r for r in got if "chat" in r.scope]
    thread_records = [r for r in got if "worker" in r.scope]
    assert len(async_records) == STREAM_SCOPES * STREAMS_PER_SCOPE
    assert len(thread_records) == THREAD_CALLS
    assert_matches_server(async_records, fake_server, "chat")
    assert_matches_server(thread_records, fake_server, "worker")
    seen = {**streamed, **pooled}
    for record in got:
        assert record.chunk_count == seen[tag_of(record)], tag_of(record)
