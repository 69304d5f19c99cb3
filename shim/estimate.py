"""Token estimates with litellm's own tokenizer, for calls whose provider sent no usage."""

from __future__ import annotations

from typing import Any

from .errors import report_error
from .usage import TokenCounts


def estimate_chat_stream(chunks: list[Any] | None, messages: Any, model: str | None) -> TokenCounts | None:
    """Estimate a chat stream's usage from the messages and the chunks received so far; None when it cannot.

    The prompt is ``litellm.token_counter(messages=...)``. The completion counts the text of the chunks'
    content, reasoning and tool-call argument deltas. Usage fields inside the chunks are ignored, so a
    malformed provider usage cannot leak into the estimate.
    """
    if not messages:
        return None
    try:
        import litellm

        prompt = int(litellm.token_counter(model=model or "", messages=messages))
        text = streamed_text(chunks or ())
        completion = int(litellm.token_counter(model=model or "", text=text)) if text else 0
    except Exception as exc:
        report_error("estimate chat stream", exc)
        return None
    return TokenCounts(prompt=prompt, completion=completion, total=prompt + completion)


def _value(obj: Any, name: str) -> Any:
    """Read a field of a pydantic object from its __dict__ or extras, else by getattr."""
    if hasattr(type(obj), "__pydantic_fields__"):
        value = obj.__dict__.get(name)
        if value is None and obj.__pydantic_extra__:
            value = obj.__pydantic_extra__.get(name)
        return value
    return getattr(obj, name, None)


def streamed_text(chunks: Any) -> str:
    """Concatenate the generated text of chat chunks: content, reasoning and tool-call arguments."""
    parts: list[str] = []
    for chunk in chunks:
        for choice in _value(chunk, "choices") or ():
            delta = _value(choice, "delta")
            if delta is None:
                continue
            for name in ("reasoning_content", "content"):
                value = _value(delta, name)
                if isinstance(value, str):
                    parts.append(value)
            for tool_call in _value(delta, "tool_calls") or ():
                function = getattr(tool_call, "function", None)
                arguments = getattr(function, "arguments", None)
                if isinstance(arguments, str):
                    parts.append(arguments)
    return "".join(parts)


def estimate_text(model: str | None, prompt_text: str, completion_text: str) -> TokenCounts | None:
    """Estimate usage from plain prompt and completion text (Responses API streams)."""
    try:
        import litellm

        prompt = int(litellm.token_counter(model=model or "", text=prompt_text)) if prompt_text else 0
        completion = int(litellm.token_counter(model=model or "", text=completion_text)) if completion_text else 0
    except Exception as exc:
        report_error("estimate text", exc)
        return None
    if not prompt and not completion:
        return None
    return TokenCounts(prompt=prompt, completion=completion, total=prompt + completion)


def responses_input_text(value: Any) -> str:
    """Flatten a Responses API ``input`` (a string or a list of items) into text for counting."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    parts: list[str] = []
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        content = item.get("content") if isinstance(item, dict) else getattr(item, "content", None)
        if isinstance(content, str):
            parts.append(content)
        elif isinstance(content, list | tuple):
            for piece in content:
                text = piece.get("text") if isinstance(piece, dict) else getattr(piece, "text", None)
                if isinstance(text, str):
                    parts.append(text)
    return "\n".join(parts)
