"""Where a chat stream carries usage, and the record the shim produces for each placement.

The fake server logs the usage object it sent (for cumulative placements, the last one). When the
provider sent none, the record must be an estimate made with litellm's tokenizer: the prompt counted
from the messages and the completion from the text the caller received.
"""

from __future__ import annotations

import time

import litellm
import pytest

import shim
from shim.compatibility import litellm_version, parse_version

LITELLM_VERSION = parse_version(litellm_version())

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant that answers with a list of words."},
    {"role": "user", "content": "Name six rivers in Europe."},
]


def stream_kwargs(server, directives: str, model: str = "fake-model", **extra):
    """Return litellm keyword arguments for one streamed call to the fake server."""
    return {
        "model": f"openai/{model}@{directives}" if directives else f"openai/{model}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "sk-test",
        "stream": True,
        **extra,
    }


async def open_and_read(mode: str, kwargs: dict) -> list:
    """Open a stream with ``acompletion`` (async) or ``completion`` (sync); return every chunk."""
    if mode == "async":
        stream = await litellm.acompletion(**kwargs)
        return [chunk async for chunk in stream]
    stream = litellm.completion(**kwargs)
    return [chunk for chunk in stream]


def logged_entry(server, timeout: float = 5.0) -> dict:
    """Return the server's log entry of the last request, waiting for it to appear.

    Once, under load, the entry was not there yet when a sync stream had ended (litellm 1.79.3, wrapt
    1.17, usage on a trailing chunk with an empty choice), although the server logs a stream before
    writing its last bytes.
    """
    deadline = time.monotonic() + timeout
    while not server.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    return server.requests[-1]


def content_text(chunks: list) -> str:
    return "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)


def assert_matches_server_usage(record: shim.UsageRecord, usage: dict) -> None:
    """Assert that ``record`` carries exactly the chat usage object the server sent."""
    assert record.source is shim.Source.PROVIDER
    assert record.source_reason is None
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.completion_tokens == usage["completion_tokens"]
    assert record.total_tokens == usage["total_tokens"]
    assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"]


def assert_estimated(record: shim.UsageRecord, chunks: list, reason: str) -> None:
    """Assert that ``record`` is litellm's token count of the messages and of the text received."""
    prompt = litellm.token_counter(messages=MESSAGES)
    completion = litellm.token_counter(text=content_text(chunks))
    assert record.source is shim.Source.ESTIMATED
    assert record.source_reason == reason
    assert record.prompt_tokens == prompt
    assert record.completion_tokens == completion
    assert record.total_tokens == prompt + completion
    assert completion > 0


PROVIDER_PLACEMENTS = ["trailing_empty_choice", "finish", "every", "second_last"]


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("placement", PROVIDER_PLACEMENTS)
async def test_placement_record_equals_server(records, fake_server, placement, mode):
    chunks = await open_and_read(mode, stream_kwargs(fake_server, f"usage={placement},chunks=6"))

    entry = logged_entry(fake_server)
    assert entry["usage_placement"] == placement
    record = records.only()
    assert_matches_server_usage(record, entry["usage"])
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.stream is True
    assert record.chunk_count == len(chunks)
    assert record.first_chunk_s is not None
    assert record.first_chunk_s >= 0


async def test_every_placement_uses_last_count(records, fake_server):
    # With usage on every chunk the counts grow; only the last one is the call's usage.
    await open_and_read("async", stream_kwargs(fake_server, "usage=every,chunks=6"))

    entry = logged_entry(fake_server)
    assert entry["usage_chunks"] == 7
    record = records.only()
    assert record.completion_tokens == entry["usage"]["completion_tokens"]
    assert record.completion_tokens == 6 + 3 * 6


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_trailing_unrequested_usage(records, fake_server, mode):
    # The server sends a trailing usage chunk with no choices although the request did not ask for it.
    chunks = await open_and_read(mode, stream_kwargs(fake_server, "usage=trailing,chunks=6"))

    entry = logged_entry(fake_server)
    assert entry["usage"] is not None
    assert entry["stream_options_sent"] is False
    record = records.only()
    if LITELLM_VERSION >= (1, 110):
        # litellm 1.110.2 keeps the usage chunk in stream.chunks (hidden from the caller).
        assert_matches_server_usage(record, entry["usage"])
    else:
        # litellm 1.79.3 and 1.88.1 drop a choices-less chunk the caller did not ask for before it
        # reaches stream.chunks, so the provider's numbers are lost and the shim estimates.
        assert_estimated(record, chunks, "provider sent no usage")
    assert all(chunk.choices for chunk in chunks)


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("placement", ["never", "requested"])
async def test_no_usage_sent_estimated(records, fake_server, placement, mode):
    chunks = await open_and_read(mode, stream_kwargs(fake_server, f"usage={placement},chunks=6"))

    assert fake_server.requests[-1]["usage"] is None
    record = records.only()
    assert_estimated(record, chunks, "provider sent no usage")
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.cached_tokens is None


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_caller_requested_usage(records, fake_server, mode):
    kwargs = stream_kwargs(fake_server, "usage=requested,chunks=6", stream_options={"include_usage": True})
    chunks = await open_and_read(mode, kwargs)

    entry = logged_entry(fake_server)
    assert entry["stream_options"] == {"include_usage": True}
    record = records.only()
    assert_matches_server_usage(record, entry["usage"])
    assert chunks[-1].usage.total_tokens == entry["usage"]["total_tokens"]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_litellm_built_usage_not_provider(records, fake_server, mode):
    # The caller requested usage but the provider sent none, so litellm yields a usage chunk with its
    # own token count. The record must call that an estimate, not provider usage.
    kwargs = stream_kwargs(fake_server, "usage=never,chunks=6", stream_options={"include_usage": True})
    chunks = await open_and_read(mode, kwargs)

    assert fake_server.requests[-1]["usage"] is None
    litellm_usage = chunks[-1].usage
    record = records.only()
    assert_estimated(record, chunks[:-1], "provider sent no usage")
    assert record.prompt_tokens == litellm_usage.prompt_tokens
    assert record.completion_tokens == litellm_usage.completion_tokens


async def test_fixed_counts_reach_stream_record(records, fake_server):
    directives = "usage=finish,prompt_tokens=4321,completion_tokens=876,cached_tokens=4000,reasoning_tokens=500"
    await open_and_read("async", stream_kwargs(fake_server, directives))

    record = records.only()
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (4321, 876, 5197)
    assert (record.cached_tokens, record.reasoning_tokens) == (4000, 500)


# ----- malformed usage on the finish chunk ------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_malformed_negative_stream(records, fake_server, mode):
    chunks = await open_and_read(mode, stream_kwargs(fake_server, "usage=finish,malformed=negative"))

    assert fake_server.requests[-1]["usage"]["prompt_tokens"] < 0
    assert content_text(chunks)
    record = records.only()
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        assert f"{name}:negative" in record.flags
    assert_estimated(record, chunks, "provider sent no usage")


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_malformed_none_stream(records, fake_server, mode):
    chunks = await open_and_read(mode, stream_kwargs(fake_server, "usage=finish,malformed=none"))

    assert fake_server.requests[-1]["usage"]["prompt_tokens"] is None
    assert content_text(chunks)
    record = records.only()
    assert_estimated(record, chunks, "provider sent no usage")


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_malformed_missing_stream(records, fake_server, mode):
    # Only total_tokens is sent and litellm fills prompt and completion with 0. Zeros under a
    # positive total were not sent: they must be flagged, not recorded as 0.
    chunks = await open_and_read(mode, stream_kwargs(fake_server, "usage=finish,malformed=missing"))

    sent = fake_server.requests[-1]["usage"]
    assert set(sent) == {"total_tokens"}
    assert content_text(chunks)
    record = records.only()
    assert record.total_tokens == sent["total_tokens"]
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None
    assert any(flag.startswith("prompt_tokens:") for flag in record.flags), record.flags
    assert any(flag.startswith("completion_tokens:") for flag in record.flags), record.flags


async def test_malformed_string_stream(records, fake_server):
    # litellm's Usage model converts the digit strings to ints before the shim reads them.
    await open_and_read("async", stream_kwargs(fake_server, "usage=finish,malformed=string"))

    sent = fake_server.requests[-1]["usage"]
    assert sent["prompt_tokens"].isdigit()
    record = records.only()
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == int(sent["prompt_tokens"])
    assert record.completion_tokens == int(sent["completion_tokens"])
    assert record.total_tokens == int(sent["total_tokens"])


# ----- cost ------------------------------------------------------------------------------------


async def test_unknown_model_stream_cost_none(records, fake_server):
    chunks = await open_and_read("async", stream_kwargs(fake_server, "usage=finish", model="no-such-model-7f3a"))

    assert content_text(chunks)
    record = records.only()
    assert record.cost is None
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


async def test_known_model_stream_cost(records, fake_server):
    # No directives in the model name, so litellm can price "gpt-4o-mini"; the caller asks for usage.
    kwargs = stream_kwargs(fake_server, "", model="gpt-4o-mini", stream_options={"include_usage": True})
    await open_and_read("async", kwargs)

    record = records.only()
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
    assert record.cost is not None
    assert record.cost > 0


# ----- usage requested by the shim ----------------------------------------------------------------


def caller_view(chunks: list) -> list:
    return [(type(chunk), chunk.model_dump(exclude={"id", "created"})) for chunk in chunks]


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_shim_requested_usage_hidden(records, fake_server, mode):
    kwargs = stream_kwargs(fake_server, "usage=requested,chunks=6")
    shim.uninstall()
    bare_chunks = await open_and_read(mode, kwargs)
    shim.install(request_stream_usage=True)

    chunks = await open_and_read(mode, kwargs)

    bare_entry, entry = fake_server.requests
    assert bare_entry["stream_options_sent"] is False
    assert entry["stream_options"] == {"include_usage": True}
    assert caller_view(chunks) == caller_view(bare_chunks)
    record = records.only()
    assert_matches_server_usage(record, entry["usage"])


async def test_shim_request_rejected_retried(records, fake_server):
    shim.configure(request_stream_usage=True)
    kwargs = stream_kwargs(fake_server, "usage=finish,chunks=6,reject_stream_options", max_retries=0)

    first = await open_and_read("async", kwargs)
    second = await open_and_read("async", kwargs)

    logged = fake_server.requests
    # The first call is rejected once and repeated without stream_options; the second call does
    # not ask again.
    assert [(entry["status"], entry["stream_options_sent"]) for entry in logged] == [
        (400, True),
        (200, False),
        (200, False),
    ]
    assert content_text(first) == content_text(second)
    collected = records.wait_for(2)
    assert len(collected) == 2
    for record, entry in zip(collected, logged[1:], strict=True):
        assert_matches_server_usage(record, entry["usage"])
