"""Cost of a call from litellm's price map, with a cache of models it cannot price."""

from __future__ import annotations

from typing import Any

_unpriced: set[tuple[str | None, str]] = set()


def price(model: str | None, provider: str | None, prompt: int | None, completion: int | None) -> float | None:
    """Return the cost in US dollars, or None when litellm has no price for ``model``.

    litellm raises for unknown models (a plain Exception on 1.79.3, ``ModelNotMappedError`` later); such
    models are remembered so the lookup is not repeated on every call.
    """
    if not model or prompt is None or completion is None:
        return None
    key = (provider, model)
    if key in _unpriced:
        return None
    try:
        import litellm

        prompt_cost, completion_cost = litellm.cost_per_token(
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            custom_llm_provider=provider,
        )
        return float(prompt_cost) + float(completion_cost)
    except Exception:
        _unpriced.add(key)
        return None


def hidden_cost(hidden: Any) -> float | None:
    """Return litellm's own ``response_cost`` from a response's hidden parameters, if it is a number."""
    if not isinstance(hidden, dict):
        return None
    value = hidden.get("response_cost")
    if type(value) is float and value >= 0:
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None
