"""The chat model's context window: A0's configured limit, checked against litellm's model info."""

from __future__ import annotations

import functools
from typing import Any


@functools.lru_cache(maxsize=256)
def model_input_window(model: str, provider: str | None) -> tuple[int | None, str | None]:
    """Return (max input tokens, None) from litellm's model map, or (None, why) when it is unknown.

    litellm raises for unknown models (a plain Exception on 1.79.3, ``ModelNotMappedError`` later).
    """
    try:
        import litellm

        info = litellm.get_model_info(model=model, custom_llm_provider=provider)
    except Exception:
        return None, f"model {model!r} is unknown to litellm's model map"
    for key in ("max_input_tokens", "max_tokens"):
        value = info.get(key) if isinstance(info, dict) else None
        if isinstance(value, int) and value > 0:
            return value, None
    return None, f"litellm's model map has no input window for {model!r}"


def context_limit(configured: Any, model: str | None, provider: str | None) -> dict[str, Any]:
    """Return the limit the meter divides by, with a warning when it looks wrong.

    ``configured`` is A0's ``ctx_length`` for the chat model (including per-chat overrides). The result
    has ``tokens`` (the configured limit, or litellm's window when nothing valid is configured),
    ``configured``, ``model_window`` and ``warning`` (None or one sentence).
    """
    configured_tokens = configured if isinstance(configured, int) and configured > 0 else None
    window, unknown = (None, None)
    if model:
        window, unknown = model_input_window(model, provider)

    warning = None
    if configured_tokens is None and window is None:
        warning = "no context length is configured and the model's window is unknown"
    elif configured_tokens is None:
        warning = f"no context length is configured; using the model's window of {window} tokens"
    elif window is not None and configured_tokens > window:
        warning = (
            f"the configured context length {configured_tokens} exceeds the model's input window of {window} tokens"
        )
    elif unknown:
        warning = f"{unknown}, so the configured context length cannot be checked"

    return {
        "tokens": configured_tokens or window,
        "configured": configured_tokens,
        "model_window": window,
        "warning": warning,
    }
