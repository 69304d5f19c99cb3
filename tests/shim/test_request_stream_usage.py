"""The request_stream_usage setting: the shim requests stream usage and hides what it caused.

Each case runs the same streamed call twice, with the setting off and on, and compares what the
caller received. With the setting on, the record must carry the server's numbers wherever the server
sends usage when requested, and a server that rejects ``stream_options`` must not fail the call.
"""

from __future__ import annotations

import litellm
import pytest

import shim
from shim.compatibility import litellm_version, parse_version

LITELLM_VERSION = parse_version(litellm_version())

MESSAGES = [
    {"role": "system", "content": "Answer with a short list of words."},
    {"role": "user", "content": "Name five colours of autumn leaves."},
]


def call_kwargs(server, directives: str = "", **extra) -> dict:
    model = f"openai/fake-model@{directives}" if directives else "openai/fake-model"
    return {
        "model": model,
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
        **extra,
    }


async def read_stream(mode: str, kwargs: dict) -> list:
    if mode == "async":
        stream = await litellm.acompletion(**kwargs)
        return [chunk async for chunk in stream]
    return list(litellm.completion(**kwargs))


def visible(chunks: list) -> list[tuple]:
    """What a caller such as Agent Zero reads from each chunk: choice count, content, finish reason."""
    return [
        (len(chunk.choices), chunk.choices[0].delta.content if chunk.choices else None,
         chunk.choices[0].finish_reason if chunk.choices else None)
        for chunk in chunks
    ]  # fmt: skip


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_requested_usage_reaches_record(records, fake_server, mode):
    baseline = await read_stream(mode, call_kwargs(fake_server))
    baseline_record = records.wait_for(1)[0]
    assert fake_server.requests[-1]["usage"] is None
    assert baseline_record.source is shim.Source.ESTIMATED

    shim.configure(request_stream_usage=True)
    requested = await read_stream(mode, call_kwargs(fake_server))

    entry = fake_server.requests[-1]
    assert entry["stream_options_sent"] is True
    assert visible(requested) == visible(baseline)
    assert all(chunk.choices for chunk in requested), "a chunk without choices reached the caller"
    record = records.wait_for(2)[1]
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == entry["usage"]["prompt_tokens"]
    assert record.completion_tokens == entry["usage"]["completion_tokens"]
    assert record.cached_tokens == entry["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == entry["usage"]["completion_tokens_details"]["reasoning_tokens"]
    assert record.chunk_count == len(requested)


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_rejected_option_retried_without(records, fake_server, mode):
    baseline = await read_stream(mode, call_kwargs(fake_server, "reject_stream_options=true"))

    shim.configure(request_stream_usage=True)
    first = await read_stream(mode, call_kwargs(fake_server, "reject_stream_options=true"))
    second = await read_stream(mode, call_kwargs(fake_server, "reject_stream_options=true"))

    statuses = [entry["status"] for entry in fake_server.requests]
    assert statuses == [200, 400, 200, 200], "the rejection must be remembered after the first retry"
    assert visible(first) == visible(baseline)
    assert visible(second) == visible(baseline)
    for record in records.wait_for(3):
        assert record.source is shim.Source.ESTIMATED
        assert record.outcome is shim.Outcome.COMPLETE


async def test_caller_stream_options_left_alone(records, fake_server):
    shim.configure(request_stream_usage=True)
    chunks = await read_stream("async", call_kwargs(fake_server, stream_options={"include_usage": True}))

    # The caller asked for usage itself, so its usage chunk must reach it unchanged. litellm 1.110 sends
    # it without choices; 1.79.3 and 1.88.1 send one choice with an empty delta.
    last = chunks[-1]
    if LITELLM_VERSION >= (1, 110):
        assert last.choices == []
    else:
        assert len(last.choices) == 1
        assert not last.choices[0].delta.content
    assert last.usage.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]
    assert records.only().source is shim.Source.PROVIDER


async def test_option_not_added_when_off(records, fake_server):
    await read_stream("async", call_kwargs(fake_server))

    assert fake_server.requests[-1]["stream_options_sent"] is False
    assert records.only().source is shim.Source.ESTIMATED
