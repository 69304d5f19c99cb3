"""Token estimates with litellm's own tokenizer, for calls whose provider sent no usage."""

from __future__ import annotations

from typing import Any

from .errors import report_error
from .usage import TokenCounts, read_usage


def estimate_chat_stream(chunks: list[Any] | None, messages: Any) -> TokenCounts | None:
    """Estimate a chat stream's usage from the chunks received so far; None when it cannot.

    Uses ``litellm.stream_chunk_builder``, which counts the prompt from ``messages`` and the completion
    from the chunks (about 1-3 ms). It can raise on unusual chunks, so errors are reported and swallowed.
    """
    if not chunks:
        return _estimate_prompt_only(messages, completion=0)
    try:
        import litellm

        rebuilt = litellm.stream_chunk_builder(list(chunks), messages=messages)
    except Exception as exc:
        report_error("estimate chat stream", exc)
        return _estimate_prompt_only(messages)
    counts = read_usage(getattr(rebuilt, "usage", None)) if rebuilt is not None else None
    if counts is None or not counts.reported:
        return _estimate_prompt_only(messages)
    return counts


def _estimate_prompt_only(messages: Any, completion: int | None = None) -> TokenCounts | None:
    if not messages:
        return None
    try:
        import litellm

        prompt = int(litellm.token_counter(messages=messages))
    except Exception as exc:
        report_error("estimate prompt", exc)
        return None
    total = prompt + completion if completion is not None else None
    return TokenCounts(prompt=prompt, completion=completion, total=total)


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
