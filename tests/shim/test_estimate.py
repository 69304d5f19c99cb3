"""``streamed_text``: the generated text of chat chunks that stream estimates count.

litellm's own chunk types take a fast path; any other objects take the general one. Both must give
the same text: reasoning, content and tool-call arguments, in chunk order.
"""

from __future__ import annotations

from types import SimpleNamespace

from litellm.types.utils import ChatCompletionDeltaToolCall, Delta, Function, ModelResponseStream, StreamingChoices

from shim.estimate import _any_streamed_text, streamed_text


def litellm_chunks() -> list:
    tool_call = ChatCompletionDeltaToolCall(
        id="call-1", type="function", index=0, function=Function(name="lookup", arguments='{"city": "Oslo"}')
    )
    return [
        ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(reasoning_content="think "))]),
        ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content="Hello "))]),
        ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content="world"))]),
        ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content=None, tool_calls=[tool_call]))]),
        ModelResponseStream(choices=[]),
        ModelResponseStream(choices=[StreamingChoices(index=0, delta=Delta(content=""), finish_reason="stop")]),
    ]


def plain_chunks() -> list:
    def chunk(**delta) -> SimpleNamespace:
        values = {"content": None, "reasoning_content": None, "tool_calls": None, **delta}
        return SimpleNamespace(choices=[SimpleNamespace(delta=SimpleNamespace(**values))])

    tool_call = SimpleNamespace(function=SimpleNamespace(arguments='{"city": "Oslo"}'))
    return [
        chunk(reasoning_content="think "),
        chunk(content="Hello "),
        chunk(content="world"),
        chunk(tool_calls=[tool_call]),
        SimpleNamespace(choices=[]),
        chunk(content=""),
    ]


EXPECTED = 'think Hello world{"city": "Oslo"}'


def test_streamed_text_litellm_chunks():
    assert streamed_text(litellm_chunks()) == EXPECTED


def test_streamed_text_general_path_agrees():
    assert _any_streamed_text(litellm_chunks()) == EXPECTED


def test_streamed_text_plain_objects():
    assert streamed_text(plain_chunks()) == EXPECTED


def test_streamed_text_mixed_chunks():
    mixed = litellm_chunks()[:2] + plain_chunks()[2:]

    assert streamed_text(mixed) == EXPECTED


def test_streamed_text_no_chunks():
    assert streamed_text([]) == ""
