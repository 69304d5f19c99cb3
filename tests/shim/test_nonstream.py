"""Non-stream chat completions through the installed shim, over HTTP to the fake model server.

Every expected number comes from the fake server's request log (``server.requests``), which
records the exact usage object it sent.
"""

from __future__ import annotations

import dataclasses
import time

import litellm
import pytest

import shim
from shim.compatibility import litellm_version, parse_version

LITELLM_VERSION = parse_version(litellm_version())

MESSAGES = [
    {"role": "system", "content": "You are a terse assistant that answers with a list of words."},
    {"role": "user", "content": "Name five trees that grow near a river."},
]
OTHER_MESSAGES = [{"role": "user", "content": "Name three metals."}]


def chat_kwargs(server, directives: str = "", model: str = "fake-model", **extra):
    """Return litellm keyword arguments for one call to the fake server."""
    name = f"openai/{model}@{directives}" if directives else f"openai/{model}"
    return {"model": name, "messages": MESSAGES, "api_base": server.base_url, "api_key": "sk-test", **extra}


def assert_matches_server_usage(record: shim.UsageRecord, usage: dict) -> None:
    """Assert that ``record`` carries exactly the chat usage object the server sent."""
    assert record.source is shim.Source.PROVIDER
    assert record.source_reason is None
    assert record.prompt_tokens == usage["prompt_tokens"]
    assert record.completion_tokens == usage["completion_tokens"]
    assert record.total_tokens == usage["total_tokens"]
    assert record.cached_tokens == usage["prompt_tokens_details"]["cached_tokens"]
    assert record.reasoning_tokens == usage["completion_tokens_details"]["reasoning_tokens"]
    assert record.flags == ()


async def test_async_call_returns_unchanged_response(records, fake_server):
    shim.uninstall()
    bare = await litellm.acompletion(**chat_kwargs(fake_server))
    shim.install()
    assert records.records == []

    response = await litellm.acompletion(**chat_kwargs(fake_server))

    assert type(response) is type(bare)
    assert type(response) is litellm.ModelResponse
    assert response.choices[0].message.content == bare.choices[0].message.content
    assert response.usage.prompt_tokens == bare.usage.prompt_tokens


def test_sync_call_returns_unchanged_response(records, fake_server):
    shim.uninstall()
    bare = litellm.completion(**chat_kwargs(fake_server))
    shim.install()
    assert records.records == []

    response = litellm.completion(**chat_kwargs(fake_server))

    assert type(response) is type(bare)
    assert type(response) is litellm.ModelResponse
    assert response.choices[0].message.content == bare.choices[0].message.content


async def test_async_record_equals_server_usage(records, fake_server):
    await litellm.acompletion(**chat_kwargs(fake_server))

    record = records.only()
    usage = fake_server.requests[-1]["usage"]
    assert usage["prompt_tokens_details"]["cached_tokens"] > 0
    assert usage["completion_tokens_details"]["reasoning_tokens"] > 0
    assert_matches_server_usage(record, usage)
    assert record.api is shim.Api.CHAT_COMPLETIONS
    assert record.stream is False
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.error_type is None
    assert record.requested_model == "openai/fake-model"
    assert record.response_model == "fake-model"
    assert record.provider == "openai"
    assert record.chunk_count == 0
    assert record.first_chunk_s is None


def test_sync_record_equals_server_usage(records, fake_server):
    litellm.completion(**chat_kwargs(fake_server))

    record = records.only()
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
    assert record.stream is False
    assert record.outcome is shim.Outcome.COMPLETE


async def test_fixed_counts_reach_record(records, fake_server):
    directives = "prompt_tokens=1234,completion_tokens=567,cached_tokens=1000,reasoning_tokens=321"
    await litellm.acompletion(**chat_kwargs(fake_server, directives))

    record = records.only()
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (1234, 567, 1801)
    assert (record.cached_tokens, record.reasoning_tokens) == (1000, 321)
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


async def test_one_record_per_call(records, fake_server):
    await litellm.acompletion(**chat_kwargs(fake_server))
    await litellm.acompletion(**chat_kwargs(fake_server, messages=OTHER_MESSAGES))
    litellm.completion(**chat_kwargs(fake_server, "prompt_tokens=50"))

    collected = records.wait_for(3)
    assert len(collected) == 3
    logged = fake_server.requests
    assert len(logged) == 3
    # The three requests have different prompts, so a record matched to the wrong call fails here.
    assert len({entry["usage"]["prompt_tokens"] for entry in logged}) == 3
    for record, entry in zip(collected, logged, strict=True):
        assert_matches_server_usage(record, entry["usage"])


@pytest.mark.parametrize("mode", ["async", "sync"])
async def test_missing_usage_not_zero(records, fake_server, mode):
    # The server leaves "usage" out of the body; litellm then fills in a Usage of zeros.
    kwargs = chat_kwargs(fake_server, "usage=never")
    response = await litellm.acompletion(**kwargs) if mode == "async" else litellm.completion(**kwargs)

    assert fake_server.requests[-1]["usage"] is None
    assert response.usage.total_tokens == 0
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.source_reason == "provider sent no usage"
    assert record.outcome is shim.Outcome.COMPLETE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None
    assert record.cost is None


async def test_malformed_none_usage_not_zero(records, fake_server):
    # The server sends every count as null; litellm turns that into a Usage of zeros.
    response = await litellm.acompletion(**chat_kwargs(fake_server, "malformed=none"))

    assert fake_server.requests[-1]["usage"]["prompt_tokens"] is None
    assert response.usage.prompt_tokens == 0
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None


async def test_malformed_missing_keeps_total(records, fake_server):
    # The server sends only total_tokens and litellm fills the missing prompt and completion counts
    # with 0. Zeros under a positive total were not sent: they must be flagged, not recorded as 0.
    response = await litellm.acompletion(**chat_kwargs(fake_server, "malformed=missing"))

    sent = fake_server.requests[-1]["usage"]
    assert set(sent) == {"total_tokens"}
    assert response.usage.prompt_tokens == 0
    record = records.only()
    assert record.total_tokens == sent["total_tokens"]
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None
    assert any(flag.startswith("prompt_tokens:") for flag in record.flags), record.flags
    assert any(flag.startswith("completion_tokens:") for flag in record.flags), record.flags


async def test_malformed_negative_flagged(records, fake_server):
    response = await litellm.acompletion(**chat_kwargs(fake_server, "malformed=negative"))

    assert fake_server.requests[-1]["usage"]["prompt_tokens"] < 0
    assert response.choices[0].message.content
    record = records.only()
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None
    assert record.completion_tokens is None
    assert record.total_tokens is None
    assert record.cached_tokens is None
    assert record.reasoning_tokens is None
    for name in ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens", "reasoning_tokens"):
        assert f"{name}:negative" in record.flags


async def test_malformed_string_counts_coerced(records, fake_server):
    # litellm's Usage model converts the server's digit strings to ints before the shim reads them.
    response = await litellm.acompletion(**chat_kwargs(fake_server, "malformed=string"))

    sent = fake_server.requests[-1]["usage"]
    assert sent["prompt_tokens"] == str(response.usage.prompt_tokens)
    record = records.only()
    assert record.source is shim.Source.PROVIDER
    assert record.prompt_tokens == int(sent["prompt_tokens"])
    assert record.completion_tokens == int(sent["completion_tokens"])
    assert record.total_tokens == int(sent["total_tokens"])
    assert record.cached_tokens == int(sent["prompt_tokens_details"]["cached_tokens"])
    assert record.reasoning_tokens == int(sent["completion_tokens_details"]["reasoning_tokens"])


async def test_http_error_passes_through(records, fake_server):
    shim.uninstall()
    with pytest.raises(Exception) as bare:
        await litellm.acompletion(**chat_kwargs(fake_server, "error=503", max_retries=0))
    shim.install()

    with pytest.raises(Exception) as wrapped:
        await litellm.acompletion(**chat_kwargs(fake_server, "error=503", max_retries=0))

    assert type(wrapped.value) is type(bare.value)
    assert wrapped.value.status_code == 503
    record = records.only()
    assert record.outcome is shim.Outcome.ERROR
    assert record.error_type == type(bare.value).__name__
    assert record.source is shim.Source.UNAVAILABLE
    assert record.prompt_tokens is None


async def test_unknown_model_cost_none(records, fake_server):
    response = await litellm.acompletion(**chat_kwargs(fake_server, model="no-such-model-7f3a"))

    assert response.choices[0].message.content
    record = records.only()
    assert record.cost is None
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])


async def test_known_model_cost_from_litellm(records, fake_server):
    # Contrast to the unknown model: gpt-4o-mini is in litellm's bundled price map.
    response = await litellm.acompletion(**chat_kwargs(fake_server, model="gpt-4o-mini"))

    record = records.only()
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
    assert record.cost is not None
    assert record.cost > 0
    assert record.cost == pytest.approx(response._hidden_params["response_cost"])


async def test_completion_with_acompletion_flag(records, fake_server):
    kwargs = chat_kwargs(fake_server, acompletion=True)
    if LITELLM_VERSION < (1, 110):
        # litellm 1.79.3 and 1.88.1 fail inside completion(..., acompletion=True) with
        # APIConnectionError ("'NoneType' object has no attribute 'update_environment_variables'"),
        # with or without the shim. The shim must let that error through and record it once.
        shim.uninstall()
        with pytest.raises(Exception) as bare:
            await litellm.completion(**kwargs)
        shim.install()
        with pytest.raises(Exception) as wrapped:
            await litellm.completion(**kwargs)
        assert type(wrapped.value) is type(bare.value)
        assert type(wrapped.value) is litellm.APIConnectionError
        record = records.only()
        assert record.outcome is shim.Outcome.ERROR
        assert record.error_type == "APIConnectionError"
        return

    # litellm 1.110.2 returns a coroutine from the sync entry point.
    pending = litellm.completion(**kwargs)
    assert records.records == []
    response = await pending

    assert type(response) is litellm.ModelResponse
    record = records.only()
    assert_matches_server_usage(record, fake_server.requests[-1]["usage"])
    assert record.stream is False


async def test_fallbacks_record_once(records, fake_server):
    response = await litellm.acompletion(
        **chat_kwargs(fake_server, "error=500", max_retries=0),
        fallbacks=["openai/fake-model@prompt_tokens=77"],
    )

    logged = fake_server.requests
    assert [entry["status"] for entry in logged] == [500, 200]
    assert response.usage.prompt_tokens == 77
    record = records.only()
    assert_matches_server_usage(record, logged[-1]["usage"])
    assert record.requested_model == "openai/fake-model@error=500"


def test_record_field_order():
    # shim.calls and shim.response_record build records with positional arguments in this order.
    names = [record_field.name for record_field in dataclasses.fields(shim.UsageRecord)]

    assert names == [
        "call_id",
        "api",
        "stream",
        "requested_model",
        "response_model",
        "provider",
        "started_at",
        "ended_at",
        "first_chunk_s",
        "chunk_count",
        "prompt_tokens",
        "completion_tokens",
        "total_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "cost",
        "source",
        "source_reason",
        "outcome",
        "error_type",
        "scope",
        "flags",
    ]


async def test_record_times_and_defaults(records, fake_server):
    before = time.time()
    await litellm.acompletion(**chat_kwargs(fake_server))
    after = time.time()

    record = records.only()
    assert before <= record.started_at <= record.ended_at <= after
    assert record.first_chunk_s is None
    assert record.chunk_count == 0
    assert record.error_type is None
    assert record.source_reason is None
    assert record.flags == ()
    assert record.scope == {}
    assert isinstance(record.call_id, str)
    assert record.call_id
