"""The stream proxy is transparent: the caller sees the same chunks and the same stream interface.

Each comparison runs one request with the shim uninstalled and the same request with it installed.
The fake server returns the same response for the same messages, so any difference comes from the shim.
"""

from __future__ import annotations

import gc

import litellm
import pytest

import shim
from shim import streams
from shim.compatibility import litellm_version, parse_version
from shim.streams import is_proxy

LITELLM_VERSION = parse_version(litellm_version())

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant that answers with a list of words."},
    {"role": "user", "content": "Name seven birds that live near the sea."},
]

# (server directives, extra litellm arguments) covering where a stream can carry usage.
PLACEMENTS = {
    "trailing": ("usage=trailing,chunks=7", {}),
    "trailing_empty_choice": ("usage=trailing_empty_choice,chunks=7", {}),
    "finish": ("usage=finish,chunks=7", {}),
    "every": ("usage=every,chunks=7", {}),
    "second_last": ("usage=second_last,chunks=7", {}),
    "never": ("usage=never,chunks=7", {}),
    "requested_by_caller": ("usage=requested,chunks=7", {"stream_options": {"include_usage": True}}),
    "never_but_requested": ("usage=never,chunks=7", {"stream_options": {"include_usage": True}}),
}


def stream_kwargs(server, directives: str, **extra):
    """Return litellm keyword arguments for one streamed call to the fake server."""
    return {
        "model": f"openai/fake-model@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
        **extra,
    }


async def open_and_read(mode: str, kwargs: dict):
    """Open a stream with ``acompletion`` (async) or ``completion`` (sync) and read it to the end."""
    if mode == "async":
        stream = await litellm.acompletion(**kwargs)
        chunks = [chunk async for chunk in stream]
    else:
        stream = litellm.completion(**kwargs)
        chunks = [chunk for chunk in stream]
    return stream, chunks


def caller_view(chunks: list) -> list:
    """Return what a caller can observe of each chunk, without the per-request id and timestamp."""
    return [(type(chunk), chunk.model_dump(exclude={"id", "created"})) for chunk in chunks]


def content_text(chunks: list) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def finish_reasons(chunks: list) -> list:
    return [chunk.choices[0].finish_reason for chunk in chunks if chunk.choices]


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
async def test_chunks_identical_to_bare(records, fake_server, placement, mode):
    directives, extra = PLACEMENTS[placement]
    kwargs = stream_kwargs(fake_server, directives, **extra)

    shim.uninstall()
    bare_stream, bare_chunks = await open_and_read(mode, kwargs)
    shim.install()
    assert records.records == []

    stream, chunks = await open_and_read(mode, kwargs)

    assert len(chunks) == len(bare_chunks)
    assert caller_view(chunks) == caller_view(bare_chunks)
    assert content_text(chunks) == content_text(bare_chunks)
    assert finish_reasons(chunks) == finish_reasons(bare_chunks)
    assert "stop" in finish_reasons(chunks)
    assert all(isinstance(chunk, type(bare_chunk)) for chunk, bare_chunk in zip(chunks, bare_chunks, strict=True))
    assert is_proxy(stream)
    assert hasattr(stream, "aclose") == hasattr(bare_stream, "aclose")
    assert hasattr(stream, "close") == hasattr(bare_stream, "close")

    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == len(chunks)


async def test_caller_usage_chunk_passes_through(records, fake_server):
    # The caller requested usage, so the trailing usage chunk must reach it.
    kwargs = stream_kwargs(fake_server, "usage=requested,chunks=4", stream_options={"include_usage": True})

    stream, chunks = await open_and_read("async", kwargs)

    sent = fake_server.requests[-1]["usage"]
    last = chunks[-1]
    assert last.usage.prompt_tokens == sent["prompt_tokens"]
    assert last.usage.completion_tokens == sent["completion_tokens"]
    if LITELLM_VERSION >= (1, 110):
        # litellm 1.110.2 yields the usage chunk with no choices, as OpenAI sends it.
        assert last.choices == []
    else:
        # litellm 1.79.3 and 1.88.1 give the usage chunk one choice with an empty delta.
        assert len(last.choices) == 1
        assert last.choices[0].delta.content is None
    assert records.only().prompt_tokens == sent["prompt_tokens"]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_proxy_interface_matches_bare(records, fake_server, mode):
    kwargs = stream_kwargs(fake_server, "usage=finish,chunks=3")

    shim.uninstall()
    bare_stream, _ = await open_and_read(mode, kwargs)
    shim.install()
    stream, _ = await open_and_read(mode, kwargs)

    assert isinstance(stream, litellm.CustomStreamWrapper)
    assert type(stream.__wrapped__) is type(bare_stream)
    assert not is_proxy(stream.__wrapped__)
    assert hasattr(stream, "aclose") == hasattr(bare_stream, "aclose")
    assert hasattr(stream, "close") == hasattr(bare_stream, "close")
    assert stream.model == bare_stream.model
    assert stream.custom_llm_provider == bare_stream.custom_llm_provider == "openai"
    assert stream.chunks is stream.__wrapped__.chunks
    # Which closing methods the stream has differs by litellm version; the proxy must follow it.
    if LITELLM_VERSION >= (1, 110):
        assert (hasattr(bare_stream, "aclose"), hasattr(bare_stream, "close")) == (True, True)
    elif LITELLM_VERSION >= (1, 88):
        assert (hasattr(bare_stream, "aclose"), hasattr(bare_stream, "close")) == (True, False)
    else:
        assert (hasattr(bare_stream, "aclose"), hasattr(bare_stream, "close")) == (False, False)
    records.only()


async def test_fallbacks_stream_proxied_once(records, fake_server):
    stream = await litellm.acompletion(
        **stream_kwargs(fake_server, "error=500", max_retries=0),
        fallbacks=["openai/fake-model@usage=finish,chunks=4"],
    )

    assert is_proxy(stream)
    assert not is_proxy(stream.__wrapped__)
    assert type(stream.__wrapped__) is litellm.CustomStreamWrapper
    chunks = [chunk async for chunk in stream]

    logged = fake_server.requests
    assert [entry["status"] for entry in logged] == [500, 200]
    record = records.only()
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == logged[-1]["usage"]["prompt_tokens"]
    assert record.completion_tokens == logged[-1]["usage"]["completion_tokens"]
    assert record.chunk_count == len(chunks)
    assert record.requested_model == "openai/fake-model@error=500"


async def test_acompletion_flag_stream_proxied(records, fake_server):
    kwargs = stream_kwargs(fake_server, "usage=finish,chunks=4", acompletion=True)
    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 fail in completion(..., acompletion=True) with APIConnectionError,
        # with or without the shim.
        with pytest.raises(litellm.APIConnectionError):
            await litellm.completion(**kwargs)
        record = records.only()
        assert record.outcome is shim.Outcome.ERROR
        assert record.error_type == "APIConnectionError"
        return

    # litellm 1.110.2 returns a coroutine that resolves to the stream.
    stream = await litellm.completion(**kwargs)

    assert is_proxy(stream)
    assert isinstance(stream, litellm.CustomStreamWrapper)
    chunks = [chunk async for chunk in stream]
    record = records.only()
    assert record.stream is True
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == len(chunks)
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_proxy_state_released_with_proxy(records, fake_server, mode):
    gc.collect()
    before = len(streams._states)
    opened = []
    for _ in range(5):
        stream, _ = await open_and_read(mode, stream_kwargs(fake_server, "usage=finish,chunks=3"))
        opened.append(stream)
    assert len(streams._states) == before + 5
    # Each proxy's id is a key; the entry must belong to that proxy while it lives.
    for stream in opened:
        assert streams._states[id(stream)][2].chunk_count == 4

    del stream, opened
    gc.collect()

    assert len(streams._states) == before
    assert len(records.wait_for(5)) == 5
