"""Fake OpenAI-compatible model server for tests and end-to-end checks.

Standard library only, so any Python 3.11+ interpreter can run it as a script:

    python compat_matrix/fake_llm_server.py --port 0 --log /tmp/fake.jsonl

It binds 127.0.0.1 only and prints ``READY http://127.0.0.1:PORT/v1`` on stdout once it serves.
In-process use::

    with FakeLLMServer() as server:
        litellm.completion(model="openai/fake-model", api_base=server.base_url, ...)
        server.requests[-1]["usage"]

Endpoints: ``POST /v1/chat/completions`` (stream and non-stream), ``POST /v1/responses``
(Responses API, stream and non-stream), ``POST /v1/embeddings``, ``GET /v1/models``, and
``GET``/``POST /control`` to read or change the server defaults while it runs. The ``/v1``
prefix is optional.

Behaviour controls (see ``Controls``) have server defaults, set by the constructor, the CLI flags
or ``POST /control``. A request overrides them with directives after ``@`` in its model name:
``fake-model@usage=finish,chunks=7,drop=3``. litellm strips a provider prefix before it sends
the model, so ``openai/fake-model@usage=finish`` reaches the server as ``fake-model@usage=finish``.
An unknown directive or an invalid value gets HTTP 400, so a typo cannot go unnoticed.

NOTE: litellm (observed on 1.79.3, 1.88.1 and 1.110.2) fakes Responses API streaming for a model
that is not in its model map, which includes any name with directives: it sends one non-stream
request and makes the events itself. For a real streamed ``/v1/responses`` request, use a model
name litellm has in its map (e.g. ``openai/gpt-4o-mini``) and set the controls as server defaults.
The same versions sent neither ``user`` nor ``metadata`` in chat completion requests for
``openai/fake-model``, so tag those requests with the ``X-Fake-Tag`` header (``extra_headers``).

Replies are deterministic for a given list of messages. A request whose system prompt contains
both ``tool_name`` and ``tool_args`` (Agent Zero's agent prompt) gets a JSON tool call for the
``response`` tool; every other request gets plain text.

Token usage is derived from the request (see ``compute_token_counts``), and every request is
logged with the exact usage sent (see ``FakeLLMServer.requests``). The log never contains
prompt or answer text, only message counts and character totals.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime
import hashlib
import http.server
import json
import logging
import math
import signal
import socket
import struct
import sys
import threading
import time
from typing import Any

logger = logging.getLogger("compat_matrix.fake_llm_server")

HOST = "127.0.0.1"
DEFAULT_MODEL = "fake-model"
TAG_HEADER = "X-Fake-Tag"

USAGE_PLACEMENTS = (
    "requested",
    "trailing",
    "trailing_empty_choice",
    "finish",
    "every",
    "second_last",
    "never",
)
MALFORMED_VARIANTS = ("none", "missing", "negative", "string")

# Completion tokens per streamed content piece, on top of the reasoning tokens.
TOKENS_PER_PIECE = 3

WORDS = (
    "amber", "basil", "cedar", "delta", "ember", "fjord", "garnet", "harbor",
    "indigo", "juniper", "kelp", "lumen", "maple", "nectar", "onyx", "pebble",
    "quartz", "raven", "saffron", "tundra", "umber", "velvet", "willow", "xenon",
    "yarrow", "zephyr", "birch", "cobalt", "dune", "flint", "heron", "iris",
)  # fmt: skip


# ---------------------------------------------------------------------------
# Behaviour controls
# ---------------------------------------------------------------------------


class ControlError(ValueError):
    """Invalid control name or value. The server replies HTTP 400 with this message."""


@dataclasses.dataclass(frozen=True)
class Controls:
    """Behaviour of the fake server for one request.

    ``usage``: where a chat completion stream carries usage. ``requested`` sends a trailing
    ``choices: []`` usage chunk only when the request has ``stream_options.include_usage=true``
    (what OpenAI does). ``trailing`` always sends that chunk, ``trailing_empty_choice`` sends it
    with one choice whose delta is empty, ``finish`` puts usage on the finish_reason chunk,
    ``every`` on every chunk (cumulative counts), ``second_last`` on the chunk before the
    finish chunk, ``never`` nowhere. Non-stream answers and the Responses API's
    ``response.completed`` event carry usage for every placement except ``never``.
    ``chunks``: number of content pieces (stream chunks or Responses text deltas).
    ``delay``: seconds to wait before each stream chunk or event.
    ``drop``: close the connection after this many chunks (Responses API: events), without the
    end of the chunked body and without ``[DONE]``.
    ``malformed``: send every usage object with all counts None (``none``), with only
    ``total_tokens`` (``missing``), negated (``negative``) or as strings (``string``).
    ``reject_stream_options``: reply HTTP 400 to any request that has ``stream_options``.
    ``error``: reply with this HTTP status and an OpenAI-style error body.
    ``embedding_dim``: length of each embedding vector.
    ``prompt_tokens`` … ``reasoning_tokens``: fixed counts that replace the computed ones.
    """

    usage: str = "requested"
    chunks: int = 5
    delay: float = 0.0
    drop: int | None = None
    malformed: str | None = None
    reject_stream_options: bool = False
    error: int | None = None
    embedding_dim: int = 8
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None

    def replace(self, changes: dict[str, Any]) -> Controls:
        """Return a copy with ``changes`` applied. Values may be strings or native types.

        Keys may use ``-`` or ``_``. The value ``off`` clears an optional control. A value of
        None for a boolean control means true, so a bare directive such as
        ``reject_stream_options`` switches it on. Raises ControlError on any invalid key or value.
        """
        parsed: dict[str, Any] = {}
        for raw_key, raw_value in changes.items():
            key = str(raw_key).strip().replace("-", "_")
            parser = _CONTROL_PARSERS.get(key)
            if parser is None:
                known = ", ".join(sorted(_CONTROL_PARSERS))
                raise ControlError(f"unknown control {raw_key!r}; known controls: {known}")
            parsed[key] = parser(key, raw_value)
        return dataclasses.replace(self, **parsed)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_choice(choices: tuple[str, ...], optional: bool):
    def parse(key: str, value: Any) -> str | None:
        text = "" if value is None else str(value).strip().lower()
        if optional and (value is None or text == "off"):
            return None
        if text not in choices:
            allowed = ", ".join(choices + (("off",) if optional else ()))
            raise ControlError(f"invalid value {value!r} for {key}; expected one of: {allowed}")
        return text

    return parse


def _parse_int(minimum: int, maximum: int, optional: bool):
    def parse(key: str, value: Any) -> int | None:
        if optional and (value is None or str(value).strip().lower() == "off"):
            return None
        try:
            if isinstance(value, bool):
                raise ValueError(value)
            number = int(str(value).strip())
        except ValueError:
            raise ControlError(f"invalid value {value!r} for {key}; expected an integer") from None
        if not minimum <= number <= maximum:
            raise ControlError(f"invalid value {number} for {key}; expected {minimum}..{maximum}")
        return number

    return parse


def _parse_seconds(key: str, value: Any) -> float:
    try:
        seconds = float(str(value).strip())
    except ValueError:
        raise ControlError(f"invalid value {value!r} for {key}; expected seconds") from None
    if not 0.0 <= seconds <= 60.0 or math.isnan(seconds):
        raise ControlError(f"invalid value {value!r} for {key}; expected 0..60 seconds")
    return seconds


def _parse_bool(key: str, value: Any) -> bool:
    if value is None or value is True or value is False:
        return value is not False
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ControlError(f"invalid value {value!r} for {key}; expected true or false")


_TOKEN_LIMIT = 10**9
_CONTROL_PARSERS = {
    "usage": _parse_choice(USAGE_PLACEMENTS, optional=False),
    "chunks": _parse_int(0, 10_000, optional=False),
    "delay": _parse_seconds,
    "drop": _parse_int(0, 1_000_000, optional=True),
    "malformed": _parse_choice(MALFORMED_VARIANTS, optional=True),
    "reject_stream_options": _parse_bool,
    "error": _parse_int(400, 599, optional=True),
    "embedding_dim": _parse_int(1, 4096, optional=False),
    "prompt_tokens": _parse_int(0, _TOKEN_LIMIT, optional=True),
    "completion_tokens": _parse_int(0, _TOKEN_LIMIT, optional=True),
    "cached_tokens": _parse_int(0, _TOKEN_LIMIT, optional=True),
    "reasoning_tokens": _parse_int(0, _TOKEN_LIMIT, optional=True),
}


def split_model_directives(model: str) -> tuple[str, dict[str, str | None]]:
    """Split ``base@key=value,key`` into the base model name and its directives.

    A directive without ``=`` maps to None (a boolean switched on). Empty items are ignored.
    """
    base, separator, tail = model.partition("@")
    directives: dict[str, str | None] = {}
    if separator:
        for item in tail.split(","):
            item = item.strip()
            if not item:
                continue
            key, has_value, value = item.partition("=")
            directives[key.strip()] = value.strip() if has_value else None
    return base, directives


# ---------------------------------------------------------------------------
# Request reading, token counts and answer text
# ---------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Return the text of a message content: a string or a list of typed parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    return ""


def _message_text(message: Any) -> str:
    if not isinstance(message, dict):
        return ""
    text = _content_text(message.get("content"))
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            arguments = (call.get("function") or {}).get("arguments")
            if isinstance(arguments, str):
                text += arguments
    return text


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a chat completion request's messages (non-dict items dropped)."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [message for message in messages if isinstance(message, dict)]


def responses_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Return a Responses API request's ``instructions`` and ``input`` as chat-style messages."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, str):
                messages.append({"role": "user", "content": item})
            elif isinstance(item, dict):
                content = item.get("content", item.get("output", ""))
                messages.append({"role": item.get("role", item.get("type", "user")), "content": content})
    return messages


def messages_digest(messages: list[dict[str, Any]]) -> str:
    """Return a SHA-256 hex digest of the roles and texts of ``messages``."""
    digest = hashlib.sha256()
    for message in messages:
        digest.update(str(message.get("role", "")).encode())
        digest.update(b"\x00")
        digest.update(_message_text(message).encode("utf-8", "replace"))
        digest.update(b"\x01")
    return digest.hexdigest()


def looks_like_agent_zero_prompt(messages: list[dict[str, Any]]) -> bool:
    """Return whether the system prompt requests Agent Zero's JSON tool-call format.

    Agent Zero's agent prompt names the reply fields ``tool_name`` and ``tool_args``. Only
    system and developer messages are checked, because utility calls can carry earlier tool-call
    replies in their history. Without such messages, the first user message is checked.
    """
    prompts = [m for m in messages if m.get("role") in ("system", "developer")]
    if not prompts:
        prompts = [m for m in messages if m.get("role") == "user"][:1]
    for message in prompts:
        text = _message_text(message)
        if "tool_name" in text and "tool_args" in text:
            return True
    return False


@dataclasses.dataclass(frozen=True)
class TokenCounts:
    """Token counts of one reply. ``completion`` includes ``reasoning`` and ``prompt`` includes ``cached``."""

    prompt: int
    completion: int
    cached: int
    reasoning: int

    @property
    def total(self) -> int:
        return self.prompt + self.completion

    def partial(self, pieces_done: int, pieces_total: int) -> TokenCounts:
        """Return the counts after ``pieces_done`` of ``pieces_total`` pieces (cumulative usage).

        Reasoning tokens come before the first piece, so they are all counted from the start.
        """
        if pieces_total <= 0 or pieces_done >= pieces_total:
            return self
        visible = max(self.completion - self.reasoning, 0)
        completion = self.completion - visible + visible * pieces_done // pieces_total
        return dataclasses.replace(self, completion=completion)


def compute_token_counts(messages: list[dict[str, Any]], pieces: int, controls: Controls) -> TokenCounts:
    """Derive deterministic token counts from a request.

    prompt = 4 per message + ceil(characters / 4); cached = prompt // 4;
    reasoning = number of pieces; completion = reasoning + 3 per piece.
    The ``*_tokens`` controls replace the computed values.
    """
    characters = sum(len(_message_text(message)) for message in messages)
    prompt = 4 * len(messages) + math.ceil(characters / 4)
    if controls.prompt_tokens is not None:
        prompt = controls.prompt_tokens
    cached = prompt // 4 if controls.cached_tokens is None else controls.cached_tokens
    reasoning = pieces if controls.reasoning_tokens is None else controls.reasoning_tokens
    completion = reasoning + TOKENS_PER_PIECE * pieces
    if controls.completion_tokens is not None:
        completion = controls.completion_tokens
    return TokenCounts(prompt=prompt, completion=completion, cached=cached, reasoning=reasoning)


def _pick_words(digest: str, count: int) -> list[str]:
    """Return ``count`` words chosen by ``digest``, each different from the one before it."""
    words: list[str] = []
    for index in range(count):
        seed = hashlib.sha256(f"{digest}:{index}".encode()).digest()
        word = WORDS[seed[0] % len(WORDS)]
        if words and word == words[-1]:
            word = WORDS[(seed[0] + 1) % len(WORDS)]
        words.append(word)
    return words


def _split_even(text: str, parts: int) -> list[str]:
    """Split ``text`` into ``parts`` consecutive pieces of near-equal length."""
    if parts <= 0:
        return []
    size, extra = divmod(len(text), parts)
    pieces = []
    start = 0
    for index in range(parts):
        end = start + size + (1 if index < extra else 0)
        pieces.append(text[start:end])
        start = end
    return pieces


def answer_pieces(messages: list[dict[str, Any]], pieces: int) -> list[str]:
    """Return the answer for ``messages`` as ``pieces`` content pieces (deterministic).

    For Agent Zero's agent prompt the pieces join to a JSON tool call of the ``response`` tool.
    Otherwise each piece is one word followed by a space, so consecutive pieces differ.
    """
    digest = messages_digest(messages)
    if looks_like_agent_zero_prompt(messages):
        words = _pick_words(digest, max(pieces, 6))
        reply = {
            "thoughts": [f"Fake model reply {digest[:8]}.", f"The request had {len(messages)} messages."],
            "tool_name": "response",
            "tool_args": {"text": f"Fake reply {digest[:8]}: " + " ".join(words)},
        }
        return _split_even(json.dumps(reply), pieces)
    return [word + " " for word in _pick_words(digest, pieces)]


# ---------------------------------------------------------------------------
# Usage objects
# ---------------------------------------------------------------------------


def chat_usage(counts: TokenCounts) -> dict[str, Any]:
    """Return a chat completions ``usage`` object with the detail fields OpenAI sends."""
    return {
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.completion,
        "total_tokens": counts.total,
        "prompt_tokens_details": {"cached_tokens": counts.cached, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": counts.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def responses_usage(counts: TokenCounts) -> dict[str, Any]:
    """Return a Responses API ``usage`` object."""
    return {
        "input_tokens": counts.prompt,
        "input_tokens_details": {"cached_tokens": counts.cached},
        "output_tokens": counts.completion,
        "output_tokens_details": {"reasoning_tokens": counts.reasoning},
        "total_tokens": counts.total,
    }


def malform_usage(usage: dict[str, Any], variant: str | None) -> dict[str, Any]:
    """Return ``usage`` changed by a ``malformed`` variant (None returns it unchanged).

    ``none`` sets every count to None, ``missing`` keeps only ``total_tokens``, ``negative``
    negates every count (0 becomes -1), ``string`` turns every count into its decimal string.
    """
    if variant is None:
        return usage
    if variant == "missing":
        return {"total_tokens": usage["total_tokens"]}

    def transform(value: Any) -> Any:
        if isinstance(value, dict):
            return {key: transform(item) for key, item in value.items()}
        if variant == "none":
            return None
        if variant == "negative":
            return -value if value else -1
        return str(value)

    return transform(usage)


# ---------------------------------------------------------------------------
# Response bodies
# ---------------------------------------------------------------------------


def _chat_chunk(base: dict[str, Any], delta: dict[str, Any] | None, finish_reason: str | None) -> dict[str, Any]:
    chunk = dict(base)
    if delta is None:
        chunk["choices"] = []
    else:
        chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return chunk


def build_chat_stream(
    base: dict[str, Any],
    pieces: list[str],
    counts: TokenCounts,
    placement: str,
    malformed: str | None,
    include_usage_null: bool,
) -> list[dict[str, Any]]:
    """Return the chunks of a chat completion stream, with usage at the given ``placement``.

    ``placement`` must already be resolved (not ``requested``). Content chunks come first (the
    first one carries the role), then the finish chunk, then the usage chunk of the ``trailing``
    placements. ``second_last`` with no content chunk puts usage on the finish chunk.
    ``include_usage_null`` adds ``"usage": null`` to chunks without usage, as OpenAI does when
    the request asked for usage.
    """
    chunks = []
    for index, piece in enumerate(pieces):
        delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
        chunks.append(_chat_chunk(base, delta, None))
    chunks.append(_chat_chunk(base, {}, "stop"))

    def usage_after(pieces_done: int) -> dict[str, Any]:
        return malform_usage(chat_usage(counts.partial(pieces_done, len(pieces))), malformed)

    if placement == "every":
        for index, chunk in enumerate(chunks):
            chunk["usage"] = usage_after(index + 1)
    elif placement == "finish":
        chunks[-1]["usage"] = usage_after(len(pieces))
    elif placement == "second_last":
        chunks[max(len(chunks) - 2, 0)]["usage"] = usage_after(len(pieces))
    elif placement == "trailing":
        chunks.append(_chat_chunk(base, None, None))
        chunks[-1]["usage"] = usage_after(len(pieces))
    elif placement == "trailing_empty_choice":
        chunks.append(_chat_chunk(base, {}, None))
        chunks[-1]["usage"] = usage_after(len(pieces))

    if include_usage_null:
        for chunk in chunks:
            chunk.setdefault("usage", None)
    return chunks


def build_chat_completion(base: dict[str, Any], text: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    """Return a non-stream chat completion. With ``usage`` None the field is left out."""
    completion = dict(base)
    completion["object"] = "chat.completion"
    completion["choices"] = [
        {
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None, "annotations": []},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    if usage is not None:
        completion["usage"] = usage
    return completion


def _response_object(
    response_id: str, model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": {},
    }


def _output_message(item_id: str, status: str, text: str | None) -> dict[str, Any]:
    content = [] if text is None else [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return {"id": item_id, "type": "message", "status": status, "role": "assistant", "content": content}


def build_response(response_id: str, model: str, text: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    """Return a completed non-stream Responses API object."""
    item = _output_message(f"msg_{response_id[5:]}", "completed", text)
    return _response_object(response_id, model, "completed", [item], usage)


def build_response_events(
    response_id: str, model: str, pieces: list[str], usage: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """Return the Responses API stream events for one text answer, ``sequence_number`` from 0.

    Order: response.created, response.in_progress, response.output_item.added,
    response.content_part.added, one response.output_text.delta per piece,
    response.output_text.done, response.content_part.done, response.output_item.done and
    response.completed, the only event that carries usage.
    """
    item_id = f"msg_{response_id[5:]}"
    text = "".join(pieces)
    location = {"item_id": item_id, "output_index": 0, "content_index": 0}
    text_part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    empty_part = dict(text_part, text="")
    in_progress = _response_object(response_id, model, "in_progress", [], None)
    done_item = _output_message(item_id, "completed", text)
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": in_progress},
        {"type": "response.in_progress", "response": in_progress},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": _output_message(item_id, "in_progress", None),
        },
        {"type": "response.content_part.added", **location, "part": empty_part},
    ]
    for piece in pieces:
        events.append({"type": "response.output_text.delta", **location, "delta": piece, "logprobs": []})
    events += [
        {"type": "response.output_text.done", **location, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **location, "part": text_part},
        {"type": "response.output_item.done", "output_index": 0, "item": done_item},
        {
            "type": "response.completed",
            "response": _response_object(response_id, model, "completed", [done_item], usage),
        },
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events


def embedding_vector(text: str, dim: int) -> list[float]:
    """Return a deterministic unit vector of length ``dim`` for ``text``."""
    values = []
    for index in range(dim):
        seed = hashlib.sha256(f"{index}:{text}".encode("utf-8", "replace")).digest()
        values.append(int.from_bytes(seed[:4], "big") / 2**31 - 1.0)
    norm = math.sqrt(sum(value * value for value in values)) or 1.0
    return [round(value / norm, 6) for value in values]


def embedding_inputs(raw: Any) -> list[tuple[str, int]]:
    """Return ``(text, token count)`` per embedding input.

    Inputs may be a string, a list of strings, a list of token ids or a list of such lists. A
    string counts ceil(characters / 4) tokens (at least 1), a token list counts its length.
    Raises ControlError when ``raw`` is none of these.
    """
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ControlError("input must be a non-empty string or list")
    if all(isinstance(item, int) for item in raw):
        raw = [raw]
    inputs = []
    for item in raw:
        if isinstance(item, str):
            inputs.append((item, max(1, math.ceil(len(item) / 4))))
        elif isinstance(item, list) and all(isinstance(token, int) for token in item):
            inputs.append((",".join(map(str, item)), len(item)))
        else:
            raise ControlError("input items must be strings or lists of token ids")
    return inputs


def openai_error(status: int, message: str, param: str | None = None) -> dict[str, Any]:
    """Return an OpenAI-style error body."""
    error_type = {
        400: "invalid_request_error",
        401: "authentication_error",
        404: "not_found_error",
        429: "rate_limit_exceeded",
    }.get(status, "server_error")
    return {"error": {"message": message, "type": error_type, "param": param, "code": None}}


# ---------------------------------------------------------------------------
# HTTP handler
# ---------------------------------------------------------------------------


class _ClientDisconnected(Exception):
    """The client closed the connection while the server was writing."""


class _StreamDropped(Exception):
    """The server closed the connection on purpose (``drop`` control)."""


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeLLM/1.0"
    # Idle keep-alive connections end after this many seconds.
    timeout = 30

    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.fake._track_connection(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track_connection(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base class signature
        logger.debug("%s " + format, self.client_address[0], *args)

    # -- dispatch ----------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        route = path[3:] if path.startswith("/v1/") else path
        self.entry: dict[str, Any] = {
            "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds"),
            "method": method,
            "path": path,
            "model": None,
            "stream": False,
            "stream_options_sent": False,
            "stream_options": None,
            "usage": None,
            "usage_placement": None,
            "usage_chunks": 0,
            "chunks_sent": 0,
            "pieces": 0,
            "status": None,
            "tag": self.headers.get(TAG_HEADER),
            "message_count": 0,
            "prompt_chars": 0,
            "agent_zero_prompt": False,
            "dropped": False,
            "client_disconnected": False,
            "error": None,
        }
        self._started = time.monotonic()
        self._logged = False
        try:
            body = self._read_json() if method == "POST" else {}
            handlers = {
                ("POST", "/chat/completions"): self._chat_completions,
                ("POST", "/responses"): self._responses,
                ("POST", "/embeddings"): self._embeddings,
                ("GET", "/models"): self._models,
                ("GET", "/control"): self._control,
                ("POST", "/control"): self._control,
            }
            handler = handlers.get((method, route))
            if handler is None:
                self._send_error(404, f"no route for {method} {path}")
            else:
                handler(body)
        except ControlError as error:
            self._send_error(400, str(error))
        except _StreamDropped:
            pass
        except (_ClientDisconnected, BrokenPipeError, ConnectionResetError):
            self.entry["client_disconnected"] = True
            self.close_connection = True
            logger.info("client disconnected during %s %s", method, path)
        except Exception as error:
            logger.exception("fake server failed on %s %s", method, path)
            self.entry["error"] = f"{type(error).__name__}: {error}"
            self.close_connection = True
            if self.entry["status"] is None:
                self._send_json(500, openai_error(500, f"fake server failed: {type(error).__name__}"))
        finally:
            self._record(final=True)

    # -- bookkeeping ---------------------------------------------------------

    def _record(self, final: bool = False) -> None:
        """Add this request's entry to the in-memory log once, and write it to the JSONL log when final.

        The entry is added before the last bytes of a response are written, so a client that has
        read the whole response always finds it in ``FakeLLMServer.requests``.
        """
        if not self._logged:
            self._logged = True
            self.server.fake._add_entry(self.entry)
        if final:
            self.entry["duration_ms"] = round((time.monotonic() - self._started) * 1000, 3)
            self.server.fake._write_entry(self.entry)

    def _read_json(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as error:
            raise ControlError(f"request body is not valid JSON: {error}") from None
        if not isinstance(body, dict):
            raise ControlError("request body must be a JSON object")
        return body

    def _resolve_controls(self, body: dict[str, Any]) -> tuple[str, Controls]:
        """Copy model, tag and stream flags into the log entry and return the base model and controls."""
        model = body.get("model")
        if not isinstance(model, str) or not model:
            model = DEFAULT_MODEL
        self.entry["model"] = body.get("model")
        self.entry["stream"] = body.get("stream") is True
        self.entry["stream_options_sent"] = body.get("stream_options") is not None
        if isinstance(body.get("stream_options"), dict):
            self.entry["stream_options"] = body["stream_options"]
        if self.entry["tag"] is None:
            metadata = body.get("metadata")
            if isinstance(metadata, dict) and isinstance(metadata.get("tag"), str):
                self.entry["tag"] = metadata["tag"]
            elif isinstance(body.get("user"), str):
                self.entry["tag"] = body["user"]
        base_model, directives = split_model_directives(model)
        controls = self.server.fake.defaults.replace(directives)
        return base_model or DEFAULT_MODEL, controls

    def _note_messages(self, messages: list[dict[str, Any]]) -> None:
        self.entry["message_count"] = len(messages)
        self.entry["prompt_chars"] = sum(len(_message_text(message)) for message in messages)
        self.entry["agent_zero_prompt"] = looks_like_agent_zero_prompt(messages)

    def _early_error(self, body: dict[str, Any], controls: Controls) -> bool:
        """Send the error that the ``error`` or ``reject_stream_options`` control requests.

        Returns whether an error was sent.
        """
        if controls.error is not None:
            self._send_error(controls.error, f"fake error: HTTP {controls.error} requested by the error control")
            return True
        if controls.reject_stream_options and body.get("stream_options") is not None:
            self._send_error(400, "Unrecognized request argument supplied: stream_options", param="stream_options")
            return True
        return False

    # -- writing -------------------------------------------------------------

    def _send_json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.entry["status"] = status
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self._record()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str, param: str | None = None) -> None:
        self.entry["error"] = message
        logger.info("replying HTTP %d to %s: %s", status, self.entry["path"], message)
        self._send_json(status, openai_error(status, message, param))

    def _start_stream(self) -> None:
        self.entry["status"] = 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _write_frame(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        except (BrokenPipeError, ConnectionResetError) as error:
            raise _ClientDisconnected() from error

    def _send_events(self, events: list[tuple[str | None, dict[str, Any]]], controls: Controls, done: bool) -> None:
        """Stream SSE events with the ``delay`` and ``drop`` controls, ending with ``[DONE]`` if ``done``.

        Each event is ``(event name or None, data)``. Usage counters in the log entry are updated
        as events go out, so a dropped or abandoned stream logs only what was sent.
        """
        stopping = self.server.fake._stopping
        for name, data in events:
            if controls.drop is not None and self.entry["chunks_sent"] >= controls.drop:
                self._drop_connection()
            if controls.delay and stopping.wait(controls.delay):
                self.entry["error"] = "server stopped during the stream"
                self._drop_connection(by_control=False)
            usage = data.get("usage", None) if name is None else (data.get("response") or {}).get("usage")
            if usage is not None:
                self.entry["usage"] = usage
                self.entry["usage_chunks"] += 1
            line = json.dumps(data).encode()
            prefix = b"event: " + name.encode() + b"\n" if name else b""
            self.entry["chunks_sent"] += 1
            self._write_frame(prefix + b"data: " + line + b"\n\n")
        if controls.drop is not None:
            self._drop_connection()
        self._record()
        if done:
            self._write_frame(b"data: [DONE]\n\n")
        self._write_frame(b"")

    def _drop_connection(self, by_control: bool = True) -> None:
        """Close the connection without ending the chunked body; ``by_control`` marks a ``drop``."""
        self.entry["dropped"] = by_control
        self.close_connection = True
        self._record()
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _StreamDropped()

    # -- endpoints -----------------------------------------------------------

    def _chat_completions(self, body: dict[str, Any]) -> None:
        model, controls = self._resolve_controls(body)
        messages = chat_messages(body)
        self._note_messages(messages)
        if self._early_error(body, controls):
            return
        if not messages:
            self._send_error(400, "messages must be a non-empty list", param="messages")
            return

        pieces = answer_pieces(messages, controls.chunks)
        self.entry["pieces"] = len(pieces)
        counts = compute_token_counts(messages, len(pieces), controls)
        number = self.server.fake._next_number()
        base = {
            "id": f"chatcmpl-fake{number:06d}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": "fp_fake",
        }
        stream_options = body.get("stream_options") if isinstance(body.get("stream_options"), dict) else {}
        include_usage = stream_options.get("include_usage") is True
        placement = controls.usage
        if placement == "requested":
            placement = "trailing" if include_usage else "never"

        if not self.entry["stream"]:
            usage = None if controls.usage == "never" else malform_usage(chat_usage(counts), controls.malformed)
            self.entry["usage_placement"] = "body" if usage is not None else "never"
            self.entry["usage"] = usage
            self.entry["usage_chunks"] = 0
            self._send_json(200, build_chat_completion(base, "".join(pieces), usage))
            return

        self.entry["usage_placement"] = placement
        chunks = build_chat_stream(base, pieces, counts, placement, controls.malformed, include_usage)
        self._start_stream()
        self._send_events([(None, chunk) for chunk in chunks], controls, done=True)

    def _responses(self, body: dict[str, Any]) -> None:
        model, controls = self._resolve_controls(body)
        messages = responses_messages(body)
        self._note_messages(messages)
        if self._early_error(body, controls):
            return
        if not messages:
            self._send_error(400, "input must be a non-empty string or list", param="input")
            return

        pieces = answer_pieces(messages, controls.chunks)
        self.entry["pieces"] = len(pieces)
        counts = compute_token_counts(messages, len(pieces), controls)
        usage = None if controls.usage == "never" else malform_usage(responses_usage(counts), controls.malformed)
        self.entry["usage_placement"] = (
            "never" if usage is None else ("response.completed" if self.entry["stream"] else "body")
        )
        response_id = f"resp_fake{self.server.fake._next_number():06d}"

        if not self.entry["stream"]:
            self.entry["usage"] = usage
            self._send_json(200, build_response(response_id, model, "".join(pieces), usage))
            return

        events = build_response_events(response_id, model, pieces, usage)
        self._start_stream()
        self._send_events([(event["type"], event) for event in events], controls, done=False)

    def _embeddings(self, body: dict[str, Any]) -> None:
        model, controls = self._resolve_controls(body)
        inputs = embedding_inputs(body.get("input"))
        self.entry["message_count"] = len(inputs)
        self.entry["prompt_chars"] = sum(len(text) for text, _ in inputs)
        if self._early_error(body, controls):
            return

        dim = controls.embedding_dim
        if isinstance(body.get("dimensions"), int) and body["dimensions"] > 0:
            dim = min(body["dimensions"], 4096)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, (text, _) in enumerate(inputs):
            vector = embedding_vector(text, dim)
            if as_base64:
                packed = struct.pack(f"<{dim}f", *vector)
                data.append({"object": "embedding", "index": index, "embedding": base64.b64encode(packed).decode()})
            else:
                data.append({"object": "embedding", "index": index, "embedding": vector})
        tokens = sum(count for _, count in inputs)
        usage = None
        if controls.usage != "never":
            usage = malform_usage({"prompt_tokens": tokens, "total_tokens": tokens}, controls.malformed)
        self.entry["usage"] = usage
        self.entry["usage_placement"] = "never" if usage is None else "body"
        payload: dict[str, Any] = {"object": "list", "data": data, "model": model}
        if usage is not None:
            payload["usage"] = usage
        self._send_json(200, payload)

    def _models(self, body: dict[str, Any]) -> None:
        created = int(self.server.fake.started_at)
        names = [DEFAULT_MODEL, "text-embedding-3-small"]
        models = [{"id": name, "object": "model", "created": created, "owned_by": "fake"} for name in names]
        self._send_json(200, {"object": "list", "data": models})

    def _control(self, body: dict[str, Any]) -> None:
        fake = self.server.fake
        if self.command == "POST":
            fake.defaults = fake.defaults.replace(body)
            logger.info("server defaults changed: %s", json.dumps(fake.defaults.as_dict()))
        self._send_json(200, {"defaults": fake.defaults.as_dict()})


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeLLMServer


# ---------------------------------------------------------------------------
# Server object
# ---------------------------------------------------------------------------


class FakeLLMServer:
    """Fake model server on 127.0.0.1; usable as a context manager.

    ``port`` 0 picks a free port. ``log_path`` names a JSONL file that gets one line per request
    (appended). Keyword arguments set the default ``Controls``.
    """

    def __init__(self, port: int = 0, log_path: str | None = None, **defaults: Any) -> None:
        self.defaults = Controls().replace(defaults)
        self._initial_defaults = self.defaults
        self._requested_port = port
        self._log_path = log_path
        self._log_file = None
        self._lock = threading.Lock()
        self._entries_changed = threading.Condition(self._lock)
        self._entries: list[dict[str, Any]] = []
        self._connections: set[socket.socket] = set()
        self._counter = 0
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.started_at = time.time()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind and serve in a background thread, then return self. Raises RuntimeError if running."""
        if self._httpd is not None:
            raise RuntimeError("FakeLLMServer is already running")
        if self._log_path:
            self._log_file = open(self._log_path, "a", encoding="utf-8")
        self._stopping.clear()
        httpd = _HTTPServer((HOST, self._requested_port), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self.started_at = time.time()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-llm-server", daemon=True
        )
        self._thread.start()
        logger.info("fake model server listening on %s", self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the log file. Safe to call twice."""
        httpd = self._httpd
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None
        with self._lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None
        logger.info("fake model server on port %d stopped", httpd.server_address[1])

    def __enter__(self) -> FakeLLMServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() first")
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        """Root URL without ``/v1``, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://{HOST}:{self.port}"

    @property
    def base_url(self) -> str:
        """OpenAI base URL to pass as ``api_base``, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    # -- defaults and request log ---------------------------------------------

    def set_defaults(self, **changes: Any) -> Controls:
        """Change the default controls by the rules of ``Controls.replace`` and return the new ones."""
        self.defaults = self.defaults.replace(changes)
        return self.defaults

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Copy of the request log, oldest first, as fresh dicts.

        Each entry has these keys:
        - time (ISO 8601, UTC), method, path, status, error, duration_ms (once the handler ends);
        - model (as received), stream, stream_options_sent, stream_options, tag;
        - usage: the last usage object sent, exactly as sent, or None;
        - usage_placement, usage_chunks (chunks or events that carried usage);
        - chunks_sent: SSE events sent, without ``[DONE]``; pieces: content pieces of the reply;
        - message_count, prompt_chars, agent_zero_prompt (never the text itself);
        - dropped (the ``drop`` control closed the connection), client_disconnected (a write failed).
        """
        with self._lock:
            return [dict(entry) for entry in self._entries]

    def reset(self) -> None:
        """Clear the request log and restore the default controls given to the constructor."""
        with self._lock:
            self._entries.clear()
        self.defaults = self._initial_defaults

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until the log has ``count`` entries and return it. Raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._entries_changed:
            while len(self._entries) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"expected {count} logged requests, got {len(self._entries)}")
                self._entries_changed.wait(remaining)
            return [dict(entry) for entry in self._entries]

    def _add_entry(self, entry: dict[str, Any]) -> None:
        with self._entries_changed:
            self._entries.append(entry)
            self._entries_changed.notify_all()

    def _write_entry(self, entry: dict[str, Any]) -> None:
        with self._lock:
            if self._log_file is not None:
                self._log_file.write(json.dumps(entry) + "\n")
                self._log_file.flush()

    def _next_number(self) -> int:
        with self._lock:
            self._counter += 1
            return self._counter

    def _track_connection(self, connection: socket.socket, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(connection)
            else:
                self._connections.discard(connection)


# ---------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fake OpenAI-compatible model server on 127.0.0.1. Model-name directives "
        "(fake-model@usage=finish,chunks=7) override the defaults set here for one request."
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port, 0 picks a free one (default 0)")
    parser.add_argument("--log", metavar="FILE", help="append one JSON line per request to FILE")
    parser.add_argument(
        "--usage",
        choices=USAGE_PLACEMENTS,
        default="requested",
        help="where streamed chat completions carry usage (default requested)",
    )
    parser.add_argument("--chunks", type=int, default=5, help="content pieces per reply (default 5)")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each stream chunk (default 0)")
    parser.add_argument(
        "--drop", type=int, help="close the connection after this many stream chunks (Responses API: events)"
    )
    parser.add_argument("--malformed", choices=MALFORMED_VARIANTS, help="send malformed usage objects")
    parser.add_argument(
        "--reject-stream-options", action="store_true", help="reply HTTP 400 to requests that contain stream_options"
    )
    parser.add_argument("--error", type=int, help="reply with this HTTP status (400..599) to model calls")
    parser.add_argument("--embedding-dim", type=int, default=8, help="embedding vector length (default 8)")
    parser.add_argument("--verbose", action="store_true", help="log every request on stderr")
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Run the server until SIGINT or SIGTERM, printing the READY line on stdout once it serves."""
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    defaults = {
        "usage": args.usage,
        "chunks": args.chunks,
        "delay": args.delay,
        "drop": args.drop,
        "malformed": args.malformed,
        "reject_stream_options": args.reject_stream_options,
        "error": args.error,
        "embedding_dim": args.embedding_dim,
    }
    try:
        server = FakeLLMServer(port=args.port, log_path=args.log, **defaults)
        server.start()
    except (ControlError, OSError) as error:
        print(f"fake_llm_server: failed to start on {HOST}:{args.port}: {error}", file=sys.stderr)
        return 2

    stop_requested = threading.Event()

    def request_stop(signum: int, frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(f"READY {server.base_url}", flush=True)
    try:
        while not stop_requested.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
