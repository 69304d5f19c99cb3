"""Every way a stream can end produces exactly one record, and the caller sees what a bare stream gives.

Endings covered: read to the end, break and drop, drop unread, close or aclose mid-stream, ``with`` and
``async with``, a connection dropped by the server, a cancelled task, and the end of a scope. Which of
the closing and context-manager methods litellm's stream has depends on the litellm version:

* 1.79.3: none of ``aclose``, ``close``, ``__aenter__``, ``__enter__``;
* 1.88.1: ``aclose`` only;
* 1.110.2: all four.
"""

from __future__ import annotations

import asyncio
import gc

import litellm
import pytest

import shim
from compat_matrix.fake_llm_server import answer_pieces
from shim.compatibility import litellm_version, parse_version
from shim.streams import is_proxy

LITELLM_VERSION = parse_version(litellm_version())

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant that answers with a list of words."},
    {"role": "user", "content": "Name eight mountains in Asia."},
]
# Seven content chunks and a finish chunk that carries the usage.
FULL = "usage=finish,chunks=7"


def stream_kwargs(server, directives: str = FULL, **extra):
    """Return litellm keyword arguments for one streamed call to the fake server."""
    return {
        "model": f"openai/fake-model@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
        **extra,
    }


async def open_stream(mode: str, kwargs: dict):
    if mode == "async":
        return await litellm.acompletion(**kwargs)
    return litellm.completion(**kwargs)


async def read_some(stream, mode: str, count: int) -> list:
    """Read ``count`` chunks, leaving the stream open."""
    chunks = []
    if mode == "async":
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == count:
                break
    else:
        for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == count:
                break
    return chunks


async def read_rest(stream, mode: str) -> list:
    if mode == "async":
        return [chunk async for chunk in stream]
    return [chunk for chunk in stream]


def content_text(chunks: list) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def assert_estimated(record: shim.UsageRecord, chunks: list, reason: str) -> None:
    """Assert that ``record`` is litellm's token count of the messages and of the text received."""
    prompt = litellm.token_counter(messages=MESSAGES)
    completion = litellm.token_counter(text=content_text(chunks)) if content_text(chunks) else 0
    assert record.source is shim.Source.ESTIMATED
    assert record.source_reason == reason
    assert record.prompt_tokens == prompt
    assert record.completion_tokens == completion
    assert record.total_tokens == prompt + completion


def assert_matches_server_usage(record: shim.UsageRecord, usage: dict) -> None:
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.completion_tokens == usage["completion_tokens"]
    assert record.total_tokens == usage["total_tokens"]
    assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"]


def settle() -> None:
    """Give finalisers a chance to run, so a late second record would show up."""
    gc.collect()
    gc.collect()


# ----- reading to the end ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_read_to_end_complete(records, fake_server, mode):
    stream = await open_stream(mode, stream_kwargs(fake_server))
    chunks = await read_rest(stream, mode)

    # The record exists as soon as the stream is exhausted, before any garbage collection.
    assert len(records.records) == 1
    record = records.only()
    assert len(chunks) == 8
    assert content_text(chunks) == "".join(answer_pieces(MESSAGES, 7))
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == 8
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


def test_sync_for_loop_over_stream(records, fake_server):
    stream = litellm.completion(**stream_kwargs(fake_server))
    assert is_proxy(stream)
    texts = []
    for chunk in stream:
        texts.append(chunk.choices[0].delta.content)

    assert len(texts) == 8
    assert texts[-1] is None
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == 8
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_reading_after_end_no_second_record(records, fake_server, mode):
    stream = await open_stream(mode, stream_kwargs(fake_server))
    await read_rest(stream, mode)

    if mode == "async":
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        if hasattr(stream, "aclose"):
            await stream.aclose()
    else:
        with pytest.raises(StopIteration):
            next(stream)
        if hasattr(stream, "close"):
            stream.close()
    del stream
    settle()

    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE


# ----- the caller stops early ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_break_then_drop_abandoned(records, fake_server, mode):
    stream = await open_stream(mode, stream_kwargs(fake_server))
    chunks = await read_some(stream, mode, 3)
    assert records.records == []
    del stream

    record = records.only()
    assert record.outcome is shim.Outcome.ABANDONED
    assert record.chunk_count == 3
    assert_estimated(record, chunks, "abandoned (garbage collected)")


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_dropped_unread_abandoned(records, fake_server, mode):
    stream = await open_stream(mode, stream_kwargs(fake_server))
    assert records.records == []
    del stream

    record = records.only()
    assert record.outcome is shim.Outcome.ABANDONED
    assert record.chunk_count == 0
    assert record.first_chunk_s is None
    # Nothing was read: the prompt is counted, the completion is zero.
    assert_estimated(record, [], "abandoned (garbage collected)")


async def test_aclose_mid_stream(records, fake_server):
    kwargs = stream_kwargs(fake_server)
    shim.uninstall()
    bare = await litellm.acompletion(**kwargs)
    shim.install()
    stream = await litellm.acompletion(**kwargs)
    assert hasattr(stream, "aclose") == hasattr(bare, "aclose")
    chunks = await read_some(stream, "async", 3)

    if LITELLM_VERSION < (1, 88):
        # litellm 1.79.3 streams have no aclose; the proxy must not invent one.
        with pytest.raises(AttributeError):
            stream.aclose  # noqa: B018
        del stream
        record = records.only()
        assert record.outcome is shim.Outcome.ABANDONED
        assert_estimated(record, chunks, "abandoned (garbage collected)")
        return

    await stream.aclose()

    # aclose finalises at once, while the caller still references the stream.
    assert len(records.records) == 1
    record = records.only()
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert record.chunk_count == 3
    assert_estimated(record, chunks, "closed early")
    del stream
    settle()
    assert len(records.records) == 1


def test_close_mid_stream(records, fake_server):
    kwargs = stream_kwargs(fake_server)
    shim.uninstall()
    bare = litellm.completion(**kwargs)
    shim.install()
    stream = litellm.completion(**kwargs)
    assert hasattr(stream, "close") == hasattr(bare, "close")
    chunks = [next(stream) for _ in range(3)]

    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 streams have no close; the proxy must not invent one.
        with pytest.raises(AttributeError):
            stream.close  # noqa: B018
        del stream
        record = records.only()
        assert record.outcome is shim.Outcome.ABANDONED
        assert_estimated(record, chunks, "abandoned (garbage collected)")
        return

    stream.close()

    assert len(records.records) == 1
    record = records.only()
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert record.chunk_count == 3
    assert_estimated(record, chunks, "closed early")
    del stream
    settle()
    assert len(records.records) == 1


# ----- context managers ----------------------------------------------------------------------------


async def test_async_with_stream(records, fake_server):
    kwargs = stream_kwargs(fake_server)
    shim.uninstall()
    bare = await litellm.acompletion(**kwargs)
    bare_error = None
    try:
        async with bare as bare_inner:
            bare_chunks = [chunk async for chunk in bare_inner]
    except TypeError as exc:
        bare_error = exc
    shim.install()

    stream = await litellm.acompletion(**kwargs)
    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 streams are no async context managers: the proxy fails alike.
        assert bare_error is not None
        with pytest.raises(TypeError) as wrapped_error:
            async with stream:
                pass
        assert str(wrapped_error.value) == str(bare_error)
        # The traceback references the proxy, so delete it too or the stream is never collected.
        del wrapped_error, stream
        record = records.only()
        assert record.outcome is shim.Outcome.ABANDONED
        return

    # litellm 1.110.2: "async with" must hand back the proxy, not the wrapped stream.
    assert bare_error is None
    async with stream as inner:
        assert inner is stream
        chunks = [chunk async for chunk in inner]

    assert len(chunks) == len(bare_chunks) == 8
    assert content_text(chunks) == content_text(bare_chunks)
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


def test_sync_with_stream(records, fake_server):
    kwargs = stream_kwargs(fake_server)
    shim.uninstall()
    bare = litellm.completion(**kwargs)
    bare_error = None
    try:
        with bare as bare_inner:
            bare_chunks = list(bare_inner)
    except TypeError as exc:
        bare_error = exc
    shim.install()

    stream = litellm.completion(**kwargs)
    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 streams are no context managers: the proxy fails alike.
        assert bare_error is not None
        with pytest.raises(TypeError) as wrapped_error:
            with stream:
                pass
        assert str(wrapped_error.value) == str(bare_error)
        # The traceback references the proxy, so delete it too or the stream is never collected.
        del wrapped_error, stream
        record = records.only()
        assert record.outcome is shim.Outcome.ABANDONED
        return

    assert bare_error is None
    with stream as inner:
        assert inner is stream
        chunks = list(inner)

    assert len(chunks) == len(bare_chunks) == 8
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


async def test_async_with_break_closed_early(records, fake_server):
    stream = await litellm.acompletion(**stream_kwargs(fake_server))
    if LITELLM_VERSION < (1, 110):
        # No async context manager before litellm 1.110.2 (see test_async_with_stream).
        with pytest.raises(TypeError):
            async with stream:
                pass
        del stream
        assert records.only().outcome is shim.Outcome.ABANDONED
        return

    async with stream as inner:
        chunks = await read_some(inner, "async", 3)

    # Leaving the block finalises the stream at once.
    assert len(records.records) == 1
    record = records.only()
    assert record.outcome is shim.Outcome.CLOSED_EARLY
    assert_estimated(record, chunks, "closed early")


async def test_async_with_error_inside_block(records, fake_server):
    stream = await litellm.acompletion(**stream_kwargs(fake_server))
    if LITELLM_VERSION < (1, 110):
        # No async context manager before litellm 1.110.2 (see test_async_with_stream).
        with pytest.raises(TypeError):
            async with stream:
                pass
        del stream
        assert records.only().outcome is shim.Outcome.ABANDONED
        return

    with pytest.raises(KeyError, match="caller failure"):
        async with stream as inner:
            chunks = await read_some(inner, "async", 2)
            raise KeyError("caller failure")

    record = records.only()
    assert record.outcome is shim.Outcome.ERROR
    assert record.error_type == "KeyError"
    assert_estimated(record, chunks, "error")


# ----- the connection or the task ends the stream ----------------------------------------------------


async def read_catching(mode: str, kwargs: dict):
    """Read a stream to its end; return the chunks and the exception that ended it, if any."""
    chunks = []
    try:
        stream = await open_stream(mode, kwargs)
        if mode == "async":
            async for chunk in stream:
                chunks.append(chunk)
        else:
            for chunk in stream:
                chunks.append(chunk)
    except Exception as exc:
        return chunks, exc
    return chunks, None


def expected_drop_error(mode: str) -> str | None:
    """Name of the exception litellm raises when the connection drops mid-stream, or None."""
    if LITELLM_VERSION >= (1, 110):
        return "MidStreamFallbackError"
    if mode == "async":
        # litellm 1.79.3 and 1.88.1 end an async stream normally, with truncated content.
        return None
    return "MidStreamFallbackError" if LITELLM_VERSION >= (1, 88) else "APIConnectionError"


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_connection_dropped_mid_stream(records, fake_server, mode):
    kwargs = stream_kwargs(fake_server, "usage=finish,chunks=7,drop=3", max_retries=0)
    shim.uninstall()
    bare_chunks, bare_error = await read_catching(mode, kwargs)
    shim.install()

    chunks, error = await read_catching(mode, kwargs)

    assert type(error) is type(bare_error)
    assert [c.model_dump(exclude={"id", "created"}) for c in chunks] == [
        c.model_dump(exclude={"id", "created"}) for c in bare_chunks
    ]
    assert content_text(chunks) == content_text(bare_chunks)
    entry = fake_server.requests[-1]
    assert entry["dropped"] is True
    assert entry["chunks_sent"] == 3
    assert entry["usage"] is None

    expected = expected_drop_error(mode)
    record = records.only()
    if expected is None:
        assert error is None
        assert record.outcome is shim.Outcome.COMPLETE
        assert record.error_type is None
        assert_estimated(record, chunks, "provider sent no usage")
    else:
        assert type(error).__name__ == expected
        assert record.outcome is shim.Outcome.ERROR
        assert record.error_type == expected
        assert_estimated(record, chunks, "error")


async def test_task_cancelled_mid_stream(records, fake_server):
    received = []
    two_received = asyncio.Event()

    async def consume():
        stream = await litellm.acompletion(**stream_kwargs(fake_server, "usage=finish,chunks=7,delay=0.2"))
        async for chunk in stream:
            received.append(chunk)
            if len(received) == 2:
                two_received.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(two_received.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # The cancellation reached the proxy while it awaited the next chunk: recorded at once.
    assert len(records.records) == 1
    record = records.only()
    assert record.outcome is shim.Outcome.CANCELLED
    assert record.error_type == "CancelledError"
    assert record.chunk_count == 2
    assert_estimated(record, received, "cancelled")


# ----- scopes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_scope_end_finalises_open_stream(records, fake_server, mode):
    token = shim.enter_scope(chat="chat-1", agent_no=0)
    stream = await open_stream(mode, stream_kwargs(fake_server))
    first = await read_some(stream, mode, 1)
    assert records.records == []
    shim.exit_scope(token, finalize_open_streams=True)

    # Recorded at the scope's end, while the caller still references the stream, so not by the garbage collector.
    assert len(records.records) == 1
    record = records.records[0]
    assert record.outcome is shim.Outcome.ABANDONED
    assert record.scope == {"chat": "chat-1", "agent_no": 0}
    assert record.chunk_count == 1
    assert_estimated(record, first, "scope ended")

    rest = await read_rest(stream, mode)
    assert len(first) + len(rest) == 8
    assert rest[-1].choices[0].finish_reason == "stop"
    assert content_text(first + rest) == "".join(answer_pieces(MESSAGES, 7))
    del stream
    settle()
    assert records.only() is record


async def test_scope_end_leaves_finished_streams(records, fake_server):
    with shim.scope(chat="chat-2"):
        stream = await litellm.acompletion(**stream_kwargs(fake_server))
        [chunk async for chunk in stream]
        assert len(records.records) == 1

    settle()
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.scope == {"chat": "chat-2"}
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
