"""Tests of compat_matrix.fake_llm_server through real litellm calls over HTTP.

The numbers the server logs for each request must equal what litellm hands to its caller.
Wire-level checks (where usage sits in a stream, malformed usage, dropped connections) read the
raw SSE body with urllib so they do not depend on how a litellm version reshapes chunks.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import litellm
import pytest

from compat_matrix.fake_llm_server import FakeLLMServer, looks_like_agent_zero_prompt

litellm.suppress_debug_info = True

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVER_SCRIPT = REPO_ROOT / "compat_matrix" / "fake_llm_server.py"
API_KEY = "sk-test"
MESSAGES = [{"role": "user", "content": "Name three rivers in Europe."}]
INCLUDE_USAGE = {"stream_options": {"include_usage": True}}
# Shortened from Agent Zero's agent prompt: it names the JSON reply fields.
AGENT_ZERO_SYSTEM = (
    "You are agent zero.\n## Communication\nrespond valid json with fields\n"
    "- thoughts: array thoughts before execution\n- tool_name: use tool name\n"
    "- tool_args: key value pairs tool arguments\n"
    "### response:\nfinal answer to user, use the response tool"
)
# litellm fakes Responses API streaming for models missing from its model map (one non-stream
# request, events made locally), so native stream tests use a model from that map.
KNOWN_MODEL = "openai/gpt-4o-mini"


def connection(server: FakeLLMServer) -> dict[str, str]:
    return {"api_base": server.base_url, "api_key": API_KEY}


def litellm_numbers(usage) -> dict[str, int | None]:
    """Return prompt, completion, total, cached and reasoning counts of a litellm Usage."""
    prompt_details = getattr(usage, "prompt_tokens_details", None)
    completion_details = getattr(usage, "completion_tokens_details", None)
    return {
        "prompt": usage.prompt_tokens,
        "completion": usage.completion_tokens,
        "total": usage.total_tokens,
        "cached": getattr(prompt_details, "cached_tokens", None),
        "reasoning": getattr(completion_details, "reasoning_tokens", None),
    }


def logged_numbers(usage: dict) -> dict[str, int | None]:
    """Return the same counts from a usage dict logged by the server (chat completions shape)."""
    return {
        "prompt": usage["prompt_tokens"],
        "completion": usage["completion_tokens"],
        "total": usage["total_tokens"],
        "cached": usage["prompt_tokens_details"]["cached_tokens"],
        "reasoning": usage["completion_tokens_details"]["reasoning_tokens"],
    }


def responses_numbers(usage) -> dict[str, int | None]:
    """Return counts of a Responses API usage, given as a litellm object or a logged dict."""
    if isinstance(usage, dict):
        return {
            "input": usage["input_tokens"],
            "output": usage["output_tokens"],
            "total": usage["total_tokens"],
            "cached": usage["input_tokens_details"]["cached_tokens"],
            "reasoning": usage["output_tokens_details"]["reasoning_tokens"],
        }
    return {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "total": usage.total_tokens,
        "cached": usage.input_tokens_details.cached_tokens,
        "reasoning": usage.output_tokens_details.reasoning_tokens,
    }


def event_type(event) -> str:
    """Return a Responses API event's type string (litellm types it as a str Enum)."""
    return str(getattr(event.type, "value", event.type))


def chunk_usage(chunk):
    """Return the usage a caller-visible stream chunk carries, or None."""
    extra = getattr(chunk, "__pydantic_extra__", None) or {}
    return extra.get("usage")


def post_json(server: FakeLLMServer, path: str, body: dict) -> tuple[int, bytes]:
    """POST ``body`` to the server and return status and raw body (error bodies included)."""
    request = urllib.request.Request(
        server.url + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def parse_sse(raw: bytes) -> tuple[list[dict], bool]:
    """Return the JSON data events of an SSE body and whether it ended with ``[DONE]``."""
    events = []
    done = False
    for block in raw.decode().split("\n\n"):
        for line in block.splitlines():
            if not line.startswith("data: "):
                continue
            payload = line[len("data: ") :]
            if payload == "[DONE]":
                done = True
            else:
                events.append(json.loads(payload))
    return events, done


def raw_chat_stream(server: FakeLLMServer, model: str, **extra) -> tuple[list[dict], bool]:
    body = {"model": model, "messages": MESSAGES, "stream": True, **extra}
    status, raw = post_json(server, "/v1/chat/completions", body)
    assert status == 200
    return parse_sse(raw)


# ---------------------------------------------------------------------------
# Chat completions through litellm
# ---------------------------------------------------------------------------


def test_completion_non_stream_usage_matches_log(fake_server):
    response = litellm.completion(model="openai/fake-model", messages=MESSAGES, **connection(fake_server))

    (entry,) = fake_server.requests
    assert entry["path"] == "/v1/chat/completions"
    assert entry["model"] == "fake-model"
    assert entry["stream"] is False
    assert entry["stream_options_sent"] is False
    assert entry["status"] == 200
    assert entry["usage_placement"] == "body"
    assert litellm_numbers(response.usage) == logged_numbers(entry["usage"])
    assert response.choices[0].message.content


async def test_acompletion_non_stream_usage_matches_log(fake_server):
    response = await litellm.acompletion(model="openai/fake-model", messages=MESSAGES, **connection(fake_server))

    (entry,) = fake_server.requests
    assert litellm_numbers(response.usage) == logged_numbers(entry["usage"])
    assert entry["message_count"] == 1
    assert entry["prompt_chars"] == len(MESSAGES[0]["content"])


def test_completion_stream_trailing_usage_matches_log(fake_server):
    stream = litellm.completion(
        model="openai/fake-model", messages=MESSAGES, stream=True, **INCLUDE_USAGE, **connection(fake_server)
    )
    chunks = list(stream)

    (entry,) = fake_server.requests
    assert entry["stream"] is True
    assert entry["stream_options_sent"] is True
    assert entry["stream_options"] == {"include_usage": True}
    assert entry["usage_placement"] == "trailing"
    assert entry["usage_chunks"] == 1
    assert entry["chunks_sent"] == 5 + 2
    assert litellm_numbers(chunk_usage(chunks[-1])) == logged_numbers(entry["usage"])


async def test_acompletion_stream_text_equals_non_stream_text(fake_server):
    stream = await litellm.acompletion(
        model="openai/fake-model", messages=MESSAGES, stream=True, **INCLUDE_USAGE, **connection(fake_server)
    )
    pieces = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    response = await litellm.acompletion(model="openai/fake-model", messages=MESSAGES, **connection(fake_server))

    streamed_text = "".join(piece for piece in pieces if piece)
    assert streamed_text == response.choices[0].message.content
    stream_entry, plain_entry = fake_server.requests
    assert logged_numbers(stream_entry["usage"]) == logged_numbers(plain_entry["usage"])


@pytest.mark.parametrize(
    "placement", ["trailing", "trailing_empty_choice", "finish", "every", "second_last", "requested"]
)
async def test_acompletion_stream_usage_placement_reaches_caller(fake_server, placement):
    stream = await litellm.acompletion(
        model=f"openai/fake-model@usage={placement}",
        messages=MESSAGES,
        stream=True,
        **INCLUDE_USAGE,
        **connection(fake_server),
    )
    chunks = [chunk async for chunk in stream]

    (entry,) = fake_server.requests
    assert entry["usage"] is not None
    assert litellm_numbers(chunk_usage(chunks[-1])) == logged_numbers(entry["usage"])


async def test_acompletion_stream_usage_never_sends_none(fake_server):
    stream = await litellm.acompletion(
        model="openai/fake-model@usage=never", messages=MESSAGES, stream=True, **connection(fake_server)
    )
    chunks = [chunk async for chunk in stream]

    (entry,) = fake_server.requests
    assert entry["usage"] is None
    assert entry["usage_chunks"] == 0
    assert entry["usage_placement"] == "never"
    assert all(chunk_usage(chunk) is None for chunk in chunks)


async def test_finish_chunk_usage_lands_in_hidden_params(fake_server):
    stream = await litellm.acompletion(
        model="openai/fake-model@usage=finish", messages=MESSAGES, stream=True, **connection(fake_server)
    )
    chunks = [chunk async for chunk in stream]

    (entry,) = fake_server.requests
    finish_chunk = chunks[-1]
    assert finish_chunk.choices[0].finish_reason == "stop"
    hidden_usage = litellm_numbers(finish_chunk._hidden_params["usage"])
    sent = logged_numbers(entry["usage"])
    assert hidden_usage["prompt"] == sent["prompt"]
    assert hidden_usage["completion"] == sent["completion"]
    assert hidden_usage["total"] == sent["total"]


async def test_reject_stream_options_raises_bad_request(fake_server):
    model = "openai/fake-model@reject_stream_options"
    with pytest.raises(litellm.BadRequestError):
        await litellm.acompletion(
            model=model, messages=MESSAGES, stream=True, **INCLUDE_USAGE, **connection(fake_server)
        )
    stream = await litellm.acompletion(model=model, messages=MESSAGES, stream=True, **connection(fake_server))
    chunks = [chunk async for chunk in stream]

    rejected, accepted = fake_server.requests
    assert rejected["status"] == 400
    assert rejected["stream_options_sent"] is True
    assert "stream_options" in rejected["error"]
    assert rejected["chunks_sent"] == 0
    assert accepted["status"] == 200
    assert len(chunks) == 6


async def test_drop_ends_stream_early(fake_server):
    received = []
    try:
        stream = await litellm.acompletion(
            model="openai/fake-model@drop=3,chunks=8", messages=MESSAGES, stream=True, **connection(fake_server)
        )
        async for chunk in stream:
            received.append(chunk)
    except litellm.ServiceUnavailableError:
        # litellm 1.110.2 raises MidStreamFallbackError (a ServiceUnavailableError); 1.79.3 and
        # 1.88.1 end the stream without an error.
        pass

    entry = fake_server.wait_for_requests(1)[0]
    contents = [chunk.choices[0].delta.content for chunk in received if chunk.choices]
    assert entry["dropped"] is True
    assert entry["chunks_sent"] == 3
    assert len([content for content in contents if content]) <= 3


async def test_error_directive_raises_rate_limit(fake_server):
    with pytest.raises(litellm.RateLimitError):
        await litellm.acompletion(
            model="openai/fake-model@error=429", messages=MESSAGES, num_retries=0, **connection(fake_server)
        )

    assert fake_server.requests[-1]["status"] == 429


async def test_unknown_directive_rejected(fake_server):
    with pytest.raises(litellm.BadRequestError, match="unknown control"):
        await litellm.acompletion(model="openai/fake-model@colour=red", messages=MESSAGES, **connection(fake_server))

    assert fake_server.requests[-1]["status"] == 400


async def test_many_chunks_vary_and_stream_completes(fake_server):
    stream = await litellm.acompletion(
        model="openai/fake-model@chunks=150", messages=MESSAGES, stream=True, **connection(fake_server)
    )
    contents = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
    pieces = [content for content in contents if content]

    assert len(pieces) == 150
    assert all(first != second for first, second in zip(pieces, pieces[1:], strict=False))
    assert fake_server.requests[0]["pieces"] == 150


async def test_delay_slows_each_chunk(fake_server):
    started = time.monotonic()
    stream = await litellm.acompletion(
        model="openai/fake-model@delay=0.05,chunks=3", messages=MESSAGES, stream=True, **connection(fake_server)
    )
    chunks = [chunk async for chunk in stream]

    assert len(chunks) == 4
    assert time.monotonic() - started >= 4 * 0.05


async def test_tag_from_header_metadata_and_user(fake_server):
    await litellm.acompletion(
        model="openai/fake-model",
        messages=MESSAGES,
        extra_headers={"X-Fake-Tag": "from-header"},
        **connection(fake_server),
    )
    await litellm.aresponses(
        model="openai/fake-model", input="Hi", metadata={"tag": "from-metadata"}, **connection(fake_server)
    )
    post_json(fake_server, "/v1/chat/completions", {"model": "m", "messages": MESSAGES, "user": "from-user"})

    header_entry, metadata_entry, user_entry = fake_server.requests
    assert header_entry["tag"] == "from-header"
    assert metadata_entry["tag"] == "from-metadata"
    assert user_entry["tag"] == "from-user"


# ---------------------------------------------------------------------------
# Agent Zero prompt
# ---------------------------------------------------------------------------


async def test_agent_zero_prompt_gets_response_tool_call(fake_server):
    messages = [{"role": "system", "content": AGENT_ZERO_SYSTEM}, {"role": "user", "content": "Hello"}]

    async def ask() -> list[str]:
        stream = await litellm.acompletion(
            model="openai/fake-model@chunks=6", messages=messages, stream=True, **connection(fake_server)
        )
        contents = [chunk.choices[0].delta.content async for chunk in stream if chunk.choices]
        return [content for content in contents if content]

    pieces = await ask()
    again = await ask()

    reply = json.loads("".join(pieces))
    assert len(pieces) == 6
    assert reply["tool_name"] == "response"
    assert isinstance(reply["tool_args"]["text"], str)
    assert isinstance(reply["thoughts"], list)
    assert again == pieces
    assert fake_server.requests[0]["agent_zero_prompt"] is True


async def test_plain_prompt_answer_depends_on_messages(fake_server):
    first = await litellm.acompletion(model="openai/fake-model", messages=MESSAGES, **connection(fake_server))
    other_messages = [{"role": "user", "content": "Name three rivers in Asia."}]
    second = await litellm.acompletion(model="openai/fake-model", messages=other_messages, **connection(fake_server))

    first_text = first.choices[0].message.content
    assert first_text != second.choices[0].message.content
    with pytest.raises(ValueError):
        json.loads(first_text)
    assert fake_server.requests[0]["agent_zero_prompt"] is False


def test_agent_zero_detection_ignores_history():
    history = [
        {"role": "system", "content": "Summarize the conversation."},
        {"role": "user", "content": '{"tool_name": "response", "tool_args": {"text": "hi"}}'},
    ]

    assert looks_like_agent_zero_prompt(history) is False
    assert looks_like_agent_zero_prompt([{"role": "system", "content": AGENT_ZERO_SYSTEM}]) is True


# ---------------------------------------------------------------------------
# Responses API and embeddings
# ---------------------------------------------------------------------------


def test_responses_non_stream_usage_matches_log(fake_server):
    response = litellm.responses(model="openai/fake-model", input="Say hello.", **connection(fake_server))

    (entry,) = fake_server.requests
    assert entry["path"] == "/v1/responses"
    assert entry["stream"] is False
    assert responses_numbers(response.usage) == responses_numbers(entry["usage"])
    assert response.output[0].content[0].text


def test_responses_stream_events_and_usage(fake_server):
    fake_server.set_defaults(chunks=4)
    stream = litellm.responses(model=KNOWN_MODEL, input="Say hello.", stream=True, **connection(fake_server))
    events = list(stream)

    types = [event_type(event) for event in events]
    (entry,) = fake_server.requests
    assert entry["stream"] is True
    assert types[0] == "response.created"
    assert types[-1] == "response.completed"
    assert types.count("response.output_text.delta") == 4
    assert entry["chunks_sent"] == len(events)
    assert responses_numbers(events[-1].response.usage) == responses_numbers(entry["usage"])


async def test_aresponses_stream_usage_matches_log(fake_server):
    stream = await litellm.aresponses(model=KNOWN_MODEL, input="Say hello.", stream=True, **connection(fake_server))
    events = [event async for event in stream]
    deltas = [event.delta for event in events if event_type(event) == "response.output_text.delta"]

    (entry,) = fake_server.requests
    assert entry["stream"] is True
    assert len(deltas) == 5
    assert responses_numbers(events[-1].response.usage) == responses_numbers(entry["usage"])


async def test_aresponses_agent_zero_instructions(fake_server):
    response = await litellm.aresponses(
        model="openai/fake-model", instructions=AGENT_ZERO_SYSTEM, input="Hello", **connection(fake_server)
    )

    reply = json.loads(response.output[0].content[0].text)
    assert reply["tool_name"] == "response"
    assert fake_server.requests[0]["agent_zero_prompt"] is True


def test_embedding_vectors_and_usage(fake_server):
    inputs = ["first text", "second, longer text"]
    first = litellm.embedding(model="openai/text-embedding-3-small", input=inputs, **connection(fake_server))
    second = litellm.embedding(model="openai/text-embedding-3-small", input=inputs, **connection(fake_server))

    entry = fake_server.requests[0]
    assert entry["path"] == "/v1/embeddings"
    assert entry["message_count"] == 2
    assert first.usage.prompt_tokens == entry["usage"]["prompt_tokens"]
    assert first.usage.total_tokens == entry["usage"]["total_tokens"]
    assert [len(item["embedding"]) for item in first.data] == [8, 8]
    assert first.data[0]["embedding"] != first.data[1]["embedding"]
    assert [item["embedding"] for item in first.data] == [item["embedding"] for item in second.data]


async def test_aembedding_dimension_from_defaults(fake_server):
    fake_server.set_defaults(embedding_dim=4)
    response = await litellm.aembedding(model="openai/text-embedding-3-small", input="x", **connection(fake_server))

    assert len(response.data[0]["embedding"]) == 4
    assert response.usage.prompt_tokens == fake_server.requests[0]["usage"]["prompt_tokens"]


# ---------------------------------------------------------------------------
# Wire format, read without litellm
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("placement", "extra", "usage_indexes", "last_choices"),
    [
        ("requested", {}, [], 1),
        ("requested", INCLUDE_USAGE, [-1], 0),
        ("trailing", {}, [-1], 0),
        ("trailing_empty_choice", {}, [-1], 1),
        ("finish", {}, [-1], 1),
        ("second_last", {}, [-2], 1),
        ("every", {}, [0, 1, 2, 3], 1),
        ("never", INCLUDE_USAGE, [], 1),
    ],
)
def test_stream_usage_placement_on_wire(fake_server, placement, extra, usage_indexes, last_choices):
    events, done = raw_chat_stream(fake_server, f"fake-model@usage={placement},chunks=3", **extra)

    (entry,) = fake_server.requests
    expected = [index % len(events) for index in usage_indexes]
    with_usage = [index for index, event in enumerate(events) if event.get("usage") is not None]
    assert done is True
    assert with_usage == expected
    assert len(events[-1]["choices"]) == last_choices
    assert entry["chunks_sent"] == len(events)
    assert entry["usage_chunks"] == len(expected)
    if expected:
        assert events[expected[-1]]["usage"] == entry["usage"]
    else:
        assert entry["usage"] is None


def test_every_placement_counts_are_cumulative(fake_server):
    events, _ = raw_chat_stream(fake_server, "fake-model@usage=every,chunks=4")

    completions = [event["usage"]["completion_tokens"] for event in events]
    prompts = {event["usage"]["prompt_tokens"] for event in events}
    assert completions == sorted(completions)
    assert completions[0] < completions[-1]
    assert len(prompts) == 1
    assert events[-1]["usage"] == fake_server.requests[0]["usage"]


def test_include_usage_adds_null_usage_to_other_chunks(fake_server):
    events, _ = raw_chat_stream(fake_server, "fake-model", **INCLUDE_USAGE)

    assert all("usage" in event and event["usage"] is None for event in events[:-1])
    assert events[-1]["choices"] == []


@pytest.mark.parametrize(
    ("variant", "expected"),
    [
        ("none", lambda sent: sent["prompt_tokens"] is None and sent["prompt_tokens_details"]["cached_tokens"] is None),
        ("missing", lambda sent: set(sent) == {"total_tokens"}),
        ("negative", lambda sent: sent["prompt_tokens"] < 0 and sent["completion_tokens"] < 0),
        ("string", lambda sent: isinstance(sent["total_tokens"], str) and sent["total_tokens"].isdigit()),
    ],
)
def test_malformed_usage_on_wire(fake_server, variant, expected):
    events, _ = raw_chat_stream(fake_server, f"fake-model@usage=finish,malformed={variant}")

    sent = events[-1]["usage"]
    assert expected(sent)
    assert sent == fake_server.requests[0]["usage"]


def test_malformed_usage_in_non_stream_body(fake_server):
    status, raw = post_json(
        fake_server, "/v1/chat/completions", {"model": "fake-model@malformed=negative", "messages": MESSAGES}
    )

    assert status == 200
    assert json.loads(raw)["usage"] == fake_server.requests[0]["usage"]
    assert fake_server.requests[0]["usage"]["total_tokens"] < 0


def test_drop_leaves_chunked_body_incomplete(fake_server):
    body = {"model": "fake-model@drop=2", "messages": MESSAGES, "stream": True}
    request = urllib.request.Request(fake_server.url + "/v1/chat/completions", data=json.dumps(body).encode())

    with pytest.raises(http.client.IncompleteRead) as raised:
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    events, done = parse_sse(raised.value.partial)
    assert len(events) == 2
    assert done is False
    assert fake_server.wait_for_requests(1)[0]["dropped"] is True


def test_responses_drop_counts_events(fake_server):
    body = {"model": "fake-model@drop=4", "input": "Hi", "stream": True}
    request = urllib.request.Request(fake_server.url + "/v1/responses", data=json.dumps(body).encode())

    with pytest.raises(http.client.IncompleteRead):
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()

    entry = fake_server.wait_for_requests(1)[0]
    assert entry["chunks_sent"] == 4
    assert entry["usage"] is None


def test_base64_embeddings_decode_to_floats(fake_server):
    status, raw = post_json(fake_server, "/v1/embeddings", {"model": "e", "input": "abc", "encoding_format": "base64"})
    _, plain_raw = post_json(fake_server, "/v1/embeddings", {"model": "e", "input": "abc"})

    encoded = json.loads(raw)["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    plain = json.loads(plain_raw)["data"][0]["embedding"]
    assert status == 200
    assert decoded == pytest.approx(plain, abs=1e-6)


def test_models_and_unknown_route(fake_server):
    with urllib.request.urlopen(fake_server.base_url + "/models", timeout=10) as response:
        models = json.loads(response.read())
    status, raw = post_json(fake_server, "/v1/nothing", {})

    assert "fake-model" in [model["id"] for model in models["data"]]
    assert status == 404
    assert json.loads(raw)["error"]["type"] == "not_found_error"


def test_control_endpoint_changes_defaults_until_reset(fake_server):
    status, raw = post_json(fake_server, "/control", {"usage": "finish", "chunks": 2})
    events, _ = raw_chat_stream(fake_server, "fake-model")
    bad_status, _ = post_json(fake_server, "/control", {"usage": "sometimes"})

    assert status == 200
    assert json.loads(raw)["defaults"]["usage"] == "finish"
    assert len(events) == 3
    assert events[-1]["usage"] is not None
    assert bad_status == 400
    fake_server.reset()
    assert fake_server.requests == []
    assert fake_server.defaults.usage == "requested"


# ---------------------------------------------------------------------------
# Log file and command line
# ---------------------------------------------------------------------------


def test_log_file_has_counts_but_no_text(tmp_path):
    log_path = tmp_path / "requests.jsonl"
    secret = "Zebra-purple-4471 is the passphrase"
    with FakeLLMServer(log_path=str(log_path)) as server:
        litellm.completion(
            model="openai/fake-model", messages=[{"role": "user", "content": secret}], **connection(server)
        )
        logged = server.requests

    lines = log_path.read_text().splitlines()
    entry = json.loads(lines[0])
    assert len(lines) == 1
    assert "Zebra" not in lines[0]
    assert entry["prompt_chars"] == len(secret)
    assert entry["usage"] == logged[0]["usage"]


def _interpreters() -> list[str]:
    candidates = [sys.executable, "/root/.pyenv/versions/3.12.1/bin/python"]
    return [path for index, path in enumerate(candidates) if os.path.exists(path) and path not in candidates[:index]]


@pytest.mark.parametrize("python", _interpreters())
def test_cli_prints_ready_and_serves(tmp_path, python):
    log_path = tmp_path / "cli.jsonl"
    process = subprocess.Popen(
        [python, "-I", str(SERVER_SCRIPT), "--port", "0", "--log", str(log_path), "--usage", "finish"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = process.stdout.readline().strip()
        assert ready.startswith("READY http://127.0.0.1:")
        base_url = ready.split(" ", 1)[1]
        assert base_url.endswith("/v1")

        stream = litellm.completion(
            model="openai/fake-model", messages=MESSAGES, stream=True, api_base=base_url, api_key=API_KEY
        )
        chunks = list(stream)
        assert len(chunks) == 6
    finally:
        process.terminate()
        process.wait(timeout=10)

    assert process.returncode == 0
    entry = json.loads(log_path.read_text().splitlines()[0])
    assert entry["usage_placement"] == "finish"
    assert entry["usage"]["total_tokens"] > 0


def test_stop_is_idempotent_and_frees_port():
    server = FakeLLMServer().start()
    port = server.port
    server.stop()
    server.stop()

    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2)
