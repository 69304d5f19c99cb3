"""``litellm.aresponses`` and ``litellm.responses`` through the shim, stream and non-stream.

The fake server's Responses API sends usage in the body (non-stream) or in the ``response.completed``
event (stream) as ``input_tokens``, ``output_tokens``, ``input_tokens_details.cached_tokens`` and
``output_tokens_details.reasoning_tokens``. Its request log contains the exact object sent.

litellm streams the Responses API natively (server-sent events) only for models its price map marks
as able to stream, such as ``gpt-4o-mini``. For an unknown model it sends a non-stream request and
builds the stream events itself from the response. Stream tests run both paths. Server behaviour is
set with ``set_defaults`` instead of model-name directives, so litellm sees the plain model names.
"""

from __future__ import annotations

import litellm
import pytest

import shim
from shim.compatibility import litellm_version, parse_version
from shim.streams import is_proxy

LITELLM_VERSION = parse_version(litellm_version())

INPUT = "List five colours of autumn leaves, one word each."
# Stream path -> model name: "native" streams over SSE, "built" gets events built by litellm.
STREAM_MODELS = {"native": "gpt-4o-mini", "built": "fake-model"}


def responses_kwargs(server, model: str = "fake-model", **extra):
    """Return litellm keyword arguments for one Responses API call to the fake server."""
    return {"model": f"openai/{model}", "input": INPUT, "api_base": server.base_url, "api_key": "sk-test", **extra}


async def call(mode: str, kwargs: dict):
    if mode == "async":
        return await litellm.aresponses(**kwargs)
    return litellm.responses(**kwargs)


async def open_and_read(mode: str, kwargs: dict):
    """Open a Responses API stream and read every event; return the stream and the events."""
    stream = await call(mode, {**kwargs, "stream": True})
    if mode == "async":
        events = [event async for event in stream]
    else:
        events = [event for event in stream]
    return stream, events


def delta_text(events: list) -> str:
    return "".join(event.delta for event in events if event.type == "response.output_text.delta")


def assert_matches_server_usage(record: shim.UsageRecord, usage: dict) -> None:
    """Assert that ``record`` carries exactly the Responses API usage object the server sent."""
    assert record.source is shim.Source.PROVIDER
    assert record.source_reason is None
    assert record.prompt_tokens == usage["input_tokens"]
    assert record.completion_tokens == usage["output_tokens"]
    assert record.total_tokens == usage["total_tokens"]
    assert record.cached_tokens == usage["input_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == usage["output_tokens_details"]["reasoning_tokens"]
    assert record.flags == ()


def assert_estimated(record: shim.UsageRecord, events: list, reason: str) -> None:
    """Assert that ``record`` is litellm's token count of the input and of the text received.

    litellm picks the tokenizer by model name (o200k for gpt-4o-mini, its default for unknown models).
    """
    model = record.requested_model
    prompt = litellm.token_counter(model=model, text=INPUT)
    text = delta_text(events)
    completion = litellm.token_counter(model=model, text=text) if text else 0
    assert record.source is shim.Source.ESTIMATED
    assert record.source_reason == reason
    assert record.prompt_tokens == prompt
    assert record.completion_tokens == completion
    assert record.total_tokens == prompt + completion


# ----- non-stream --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_response_unchanged(records, fake_server, mode):
    shim.uninstall()
    bare = await call(mode, responses_kwargs(fake_server))
    shim.install()

    response = await call(mode, responses_kwargs(fake_server))

    assert type(response) is type(bare)
    assert not is_proxy(response)
    assert response.output[0].content[0].text == bare.output[0].content[0].text
    assert response.usage.input_tokens == bare.usage.input_tokens


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_record_equals_server_usage(records, fake_server, mode):
    fake_server.set_defaults(cached_tokens=9, reasoning_tokens=12)
    await call(mode, responses_kwargs(fake_server))

    usage = fake_server.requests[-1]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == 9
    assert usage["output_tokens_details"]["reasoning_tokens"] == 12
    record = records.only()
    assert_matches_server_usage(record, usage)
    assert record.api is shim.Api.RESPONSES
    assert record.stream is False
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.requested_model == "openai/fake-model"
    assert record.response_model == "fake-model"
    assert record.chunk_count == 0


async def test_no_usage_unavailable(records, fake_server):
    fake_server.set_defaults(usage="never")
    response = await litellm.aresponses(**responses_kwargs(fake_server))

    assert fake_server.requests[-1]["usage"] is None
    assert response.output[0].content[0].text
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.source_reason == "provider sent no usage"
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None


async def test_unknown_model_cost_none(records, fake_server):
    await litellm.aresponses(**responses_kwargs(fake_server, model="no-such-model-7f3a"))

    record = records.only()
    assert record.cost is None
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


async def test_known_model_cost(records, fake_server):
    response = await litellm.aresponses(**responses_kwargs(fake_server, model="gpt-4o-mini"))

    record = records.only()
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
    assert record.cost is not None
    assert record.cost > 0
    assert record.cost == pytest.approx(response._hidden_params["response_cost"])


# ----- malformed usage ---------------------------------------------------------------------------


async def test_malformed_negative_flagged(records, fake_server):
    fake_server.set_defaults(malformed="negative")
    response = await litellm.aresponses(**responses_kwargs(fake_server))

    assert fake_server.requests[-1]["usage"]["input_tokens"] < 0
    assert response.output[0].content[0].text
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None
    for name in ("input_tokens", "output_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        assert f"{name}:negative" in record.flags


async def test_malformed_string_coerced(records, fake_server):
    # litellm's ResponseAPIUsage model converts the digit strings to ints before the shim reads them.
    fake_server.set_defaults(malformed="string")
    await litellm.aresponses(**responses_kwargs(fake_server))

    sent = fake_server.requests[-1]["usage"]
    assert sent["input_tokens"].isdigit()
    record = records.only()
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == int(sent["input_tokens"])
    assert record.completion_tokens == int(sent["output_tokens"])
    assert record.total_tokens == int(sent["total_tokens"])


async def test_malformed_none_unavailable(records, fake_server):
    # litellm fails to validate the response and returns its parts as plain dicts, usage included.
    fake_server.set_defaults(malformed="none")
    response = await litellm.aresponses(**responses_kwargs(fake_server))

    assert fake_server.requests[-1]["usage"]["input_tokens"] is None
    assert response.output
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None


async def test_malformed_missing_keeps_total(records, fake_server):
    # litellm passes the usage object through as a dict containing only total_tokens.
    fake_server.set_defaults(malformed="missing")
    await litellm.aresponses(**responses_kwargs(fake_server))

    sent = fake_server.requests[-1]["usage"]
    assert set(sent) == {"total_tokens"}
    record = records.only()
    assert record.total_tokens == sent["total_tokens"]
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.source is shim.Source.PROVIDER


# ----- stream ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("path", list(STREAM_MODELS))
async def test_stream_events_identical_to_bare(records, fake_server, path, mode):
    fake_server.set_defaults(chunks=6)
    kwargs = responses_kwargs(fake_server, model=STREAM_MODELS[path])
    shim.uninstall()
    bare_stream, bare_events = await open_and_read(mode, kwargs)
    shim.install()
    assert records.records == []

    stream, events = await open_and_read(mode, kwargs)

    assert is_proxy(stream)
    assert isinstance(stream, type(bare_stream))
    assert hasattr(stream, "aclose") == hasattr(bare_stream, "aclose")
    assert hasattr(stream, "close") == hasattr(bare_stream, "close")
    assert [type(event) for event in events] == [type(event) for event in bare_events]
    assert [event.type for event in events] == [event.type for event in bare_events]
    assert delta_text(events) == delta_text(bare_events)
    assert events[-1].type == "response.completed"
    records.only()


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("path", list(STREAM_MODELS))
async def test_stream_record_equals_server_usage(records, fake_server, path, mode):
    fake_server.set_defaults(chunks=6, cached_tokens=3)
    _, events = await open_and_read(mode, responses_kwargs(fake_server, model=STREAM_MODELS[path]))

    entry = fake_server.requests[-1]
    if path == "native":
        assert entry["stream"] is True
        assert entry["usage_placement"] == "response.completed"
    else:
        assert entry["stream"] is False
        assert entry["usage_placement"] == "body"
    record = records.only()
    assert_matches_server_usage(record, entry["usage"])
    assert record.api is shim.Api.RESPONSES
    assert record.stream is True
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.chunk_count == len(events)
    assert record.response_model == STREAM_MODELS[path]


@pytest.mark.parametrize("path", ["native", "built"])
async def test_stream_no_usage_estimated(records, fake_server, path):
    fake_server.set_defaults(chunks=6, usage="never")
    _, events = await open_and_read("async", responses_kwargs(fake_server, model=STREAM_MODELS[path]))

    assert fake_server.requests[-1]["usage"] is None
    record = records.only()
    assert record.outcome is shim.Outcome.COMPLETE
    # On litellm 1.110.2 the native stream's response.completed event carries usage that litellm
    # counted itself. Those numbers are an estimate, so the record must not call them provider usage.
    assert_estimated(record, events, "provider sent no usage")
    assert record.completion_tokens > 0


def has_closer(path: str, mode: str) -> bool:
    """Whether litellm's Responses API stream has ``aclose`` (async) or ``close`` (sync)."""
    # Only litellm 1.110.2 gives its native stream iterators these methods; the built stream has none.
    return path == "native" and LITELLM_VERSION >= (1, 110)


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("path", list(STREAM_MODELS))
async def test_stream_stopped_early_estimated(records, fake_server, path, mode):
    fake_server.set_defaults(chunks=8)
    stream = await call(mode, responses_kwargs(fake_server, model=STREAM_MODELS[path], stream=True))
    closer = "aclose" if mode == "async" else "close"
    assert hasattr(stream, closer) == has_closer(path, mode)
    events = []
    if mode == "async":
        async for event in stream:
            events.append(event)
            if len(events) == 6:
                break
    else:
        for event in stream:
            events.append(event)
            if len(events) == 6:
                break
    assert records.records == []

    if has_closer(path, mode):
        if mode == "async":
            await stream.aclose()
        else:
            stream.close()
        # Closing finalises at once, while the caller still references the stream.
        assert len(records.records) == 1
        outcome, reason = shim.Outcome.CLOSED_EARLY, "closed early"
    else:
        outcome, reason = shim.Outcome.ABANDONED, "abandoned (garbage collected)"
    del stream

    record = records.only()
    assert record.outcome is outcome
    assert record.chunk_count == 6
    assert_estimated(record, events, reason)


@pytest.mark.parametrize("path", list(STREAM_MODELS))
async def test_stream_scope_end_estimated(records, fake_server, path):
    fake_server.set_defaults(chunks=8)
    token = shim.enter_scope(chat="chat-r")
    stream = await litellm.aresponses(**responses_kwargs(fake_server, model=STREAM_MODELS[path]), stream=True)
    events = [await stream.__anext__() for _ in range(6)]
    shim.exit_scope(token, finalize_open_streams=True)

    # The scope finalises the open stream at once.
    assert len(records.records) == 1
    record = records.records[0]
    assert record.outcome is shim.Outcome.ABANDONED
    assert record.scope == {"chat": "chat-r"}
    assert_estimated(record, events, "scope ended")

    rest = [event async for event in stream]
    assert rest[-1].type == "response.completed"
    assert records.only() is record
