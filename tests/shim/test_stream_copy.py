"""``copy.copy`` and ``copy.deepcopy`` of a stream behave as on the bare litellm stream.

Observed on litellm 1.79.3, 1.88.1 and 1.110.2: ``copy.copy(stream)`` gives a second
``CustomStreamWrapper`` that shares the connection and the ``chunks`` list, so chunks read through
either object are the same model call. ``copy.deepcopy(stream)`` raises TypeError (the stream holds a
coroutine or a lock). Each test runs the same steps on the bare stream (shim uninstalled) and through
the shim, and compares what the caller sees.
"""

from __future__ import annotations

import copy
import gc

import litellm
import pytest

import shim
from compat_matrix.fake_llm_server import answer_pieces
from shim.streams import is_proxy

MESSAGES = [{"role": "user", "content": "Name six rivers in Europe."}]
PIECES = 6
# Six content chunks and a finish chunk that carries the usage.
DIRECTIVES = f"usage=finish,chunks={PIECES}"


def stream_kwargs(server) -> dict:
    return {
        "model": f"openai/copy-model@{DIRECTIVES}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
    }


def text_of(chunks: list) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


async def read_all(stream, mode: str) -> tuple[list, str | None]:
    """Read ``stream`` to its end; return the chunks and the name of the exception that ended it, if any."""
    chunks = []
    try:
        if mode == "async":
            async for chunk in stream:
                chunks.append(chunk)
        else:
            for chunk in stream:
                chunks.append(chunk)
    except Exception as exc:
        return chunks, type(exc).__name__
    return chunks, None


async def first_chunk(stream, mode: str):
    return await stream.__anext__() if mode == "async" else next(stream)


async def open_stream(server, mode: str):
    kwargs = stream_kwargs(server)
    return await litellm.acompletion(**kwargs) if mode == "async" else litellm.completion(**kwargs)


async def copy_scenario(server, mode: str) -> dict:
    """Read one chunk, copy the stream, read the copy to its end, then the original."""
    stream = await open_stream(server, mode)
    first = await first_chunk(stream, mode)
    duplicate = copy.copy(stream)
    copy_chunks, copy_error = await read_all(duplicate, mode)
    original_chunks, original_error = await read_all(stream, mode)
    return {
        "first": first,
        "duplicate": duplicate,
        "stream": stream,
        "copy_chunks": copy_chunks,
        "copy_error": copy_error,
        "original_chunks": original_chunks,
        "original_error": original_error,
    }


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_copy_behaves_like_bare_copy(records, fake_server, mode):
    shim.uninstall()
    bare = await copy_scenario(fake_server, mode)
    shim.install()

    seen = await copy_scenario(fake_server, mode)

    assert type(bare["duplicate"]) is litellm.CustomStreamWrapper
    assert is_proxy(seen["duplicate"])
    assert isinstance(seen["duplicate"], litellm.CustomStreamWrapper)
    assert seen["duplicate"] is not seen["stream"]
    assert len(seen["copy_chunks"]) == len(bare["copy_chunks"]) == PIECES
    assert text_of([seen["first"], *seen["copy_chunks"]]) == "".join(answer_pieces(MESSAGES, PIECES))
    assert text_of(seen["copy_chunks"]) == text_of(bare["copy_chunks"])
    assert seen["copy_error"] == bare["copy_error"]
    # After the copy reached the end, the original yields what the bare original yields: one more
    # chunk on 1.79.3 and 1.88.1, MidStreamFallbackError on 1.110.2.
    assert len(seen["original_chunks"]) == len(bare["original_chunks"])
    assert seen["original_error"] == bare["original_error"]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_copy_records_one_call(records, fake_server, mode):
    seen = await copy_scenario(fake_server, mode)
    del seen
    gc.collect()

    record = records.only()
    usage = fake_server.requests[-1]["usage"]
    assert len(fake_server.requests) == 1
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.completion_tokens == usage["completion_tokens"]
    assert record.total_tokens == usage["total_tokens"]
    # The first chunk through the original and six through the copy, before the copy's end recorded the call.
    assert record.chunk_count == 1 + PIECES


async def test_copy_keeps_original_from_abandonment(records, fake_server):
    stream = await open_stream(fake_server, "async")
    await first_chunk(stream, "async")
    duplicate = copy.copy(stream)
    del stream
    gc.collect()
    gc.collect()
    assert records.records == []

    chunks, error = await read_all(duplicate, "async")

    assert error is None
    assert len(chunks) == PIECES
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == 1 + PIECES


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_deepcopy_raises_like_bare(records, fake_server, mode):
    shim.uninstall()
    bare_stream = await open_stream(fake_server, mode)
    with pytest.raises(TypeError) as bare_error:
        copy.deepcopy(bare_stream)
    await read_all(bare_stream, mode)
    shim.install()

    stream = await open_stream(fake_server, mode)
    with pytest.raises(TypeError) as error:
        copy.deepcopy(stream)
    chunks, end_error = await read_all(stream, mode)

    assert str(error.value) == str(bare_error.value)
    # The failed deep copy leaves the stream and its record intact.
    assert end_error is None
    assert len(chunks) == PIECES + 1
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == PIECES + 1
