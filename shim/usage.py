"""Read token counts out of whatever usage object a provider or litellm produced.

Accepts litellm ``Usage`` objects, the Responses API's ``ResponseAPIUsage``, plain dicts and anything
else. Never raises: malformed fields are dropped and named in ``flags``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Chat Completions names first, Responses API names second.
_PROMPT_NAMES = ("prompt_tokens", "input_tokens")
_COMPLETION_NAMES = ("completion_tokens", "output_tokens")
_PROMPT_DETAIL_NAMES = ("prompt_tokens_details", "input_tokens_details")
_COMPLETION_DETAIL_NAMES = ("completion_tokens_details", "output_tokens_details")


@dataclass(slots=True)
class TokenCounts:
    """Token numbers read from one usage object; None where the field was missing or invalid."""

    prompt: int | None = None
    completion: int | None = None
    total: int | None = None
    cached: int | None = None
    reasoning: int | None = None
    flags: tuple[str, ...] = ()

    @property
    def reported(self) -> bool:
        """True when at least one main count is a positive number.

        litellm returns a Usage of zeros when the provider sent none, so all zeros mean "not reported".
        """
        return bool(self.prompt or self.completion or self.total)


def _field(obj: Any, name: str) -> Any:
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    if hasattr(type(obj), "__pydantic_fields__"):
        value = obj.__dict__.get(name)
        if value is not None:
            return value
        extra = obj.__pydantic_extra__
        return extra.get(name) if extra else None
    try:
        return getattr(obj, name, None)
    except Exception:  # a broken property on a foreign object
        return None


def _count(value: Any, name: str, flags: list[str]) -> int | None:
    """Convert one field to a non-negative int, or flag it and return None."""
    if value is None:
        return None
    if isinstance(value, bool):
        flags.append(f"{name}:invalid")
        return None
    if isinstance(value, int):
        if value < 0:
            flags.append(f"{name}:negative")
            return None
        return value
    if isinstance(value, float) and value.is_integer():
        return _count(int(value), name, flags)
    if isinstance(value, str):
        flags.append(f"{name}:string")
        stripped = value.strip()
        if stripped.isdigit():
            return int(stripped)
        return None
    flags.append(f"{name}:invalid")
    return None


def _first(obj: Any, names: tuple[str, ...]) -> tuple[str, Any]:
    for name in names:
        value = _field(obj, name)
        if value is not None:
            return name, value
    return names[0], None


def _plain_fields(obj: Any) -> dict[str, Any] | None:
    if isinstance(obj, dict):
        return obj
    if hasattr(type(obj), "__pydantic_fields__"):
        return obj.__dict__
    return None


def _read_well_formed(usage: Any) -> TokenCounts | None:
    """Return the counts of a chat-style usage whose counts are all non-negative ints, else None.

    The common case on every call, without the per-field checks of ``read_usage``.
    """
    fields = _plain_fields(usage)
    if fields is None:
        return None
    prompt, completion, total = fields.get("prompt_tokens"), fields.get("completion_tokens"), fields.get("total_tokens")
    if type(prompt) is not int or type(completion) is not int or type(total) is not int:
        return None
    if prompt < 0 or completion < 0 or total < 0 or (total and not prompt and not completion):
        return None
    details = []
    for container, name in (
        ("prompt_tokens_details", "cached_tokens"),
        ("completion_tokens_details", "reasoning_tokens"),
    ):
        detail_fields = fields.get(container)
        if detail_fields is None:
            details.append(None)
            continue
        detail_fields = _plain_fields(detail_fields)
        value = detail_fields.get(name) if detail_fields is not None else False
        if value is not None and (type(value) is not int or value < 0):
            return None
        details.append(value)
    return TokenCounts(prompt, completion, total, details[0], details[1])


def read_usage(usage: Any) -> TokenCounts:
    """Read prompt, completion, total, cached and reasoning tokens from ``usage``.

    A string of digits is accepted and flagged; negative, non-numeric and boolean values become None and
    are flagged. A missing total is computed from prompt and completion when both are known.
    """
    flags: list[str] = []
    if usage is None:
        return TokenCounts()
    well_formed = _read_well_formed(usage)
    if well_formed is not None:
        return well_formed

    prompt_name, prompt_value = _first(usage, _PROMPT_NAMES)
    completion_name, completion_value = _first(usage, _COMPLETION_NAMES)
    prompt = _count(prompt_value, prompt_name, flags)
    completion = _count(completion_value, completion_name, flags)
    total_value = _field(usage, "total_tokens")
    total = _count(total_value, "total_tokens", flags)
    if total and prompt == 0 and completion == 0:
        # litellm fills absent counts with 0; a positive total with two zeros means they were not sent.
        prompt = completion = None
        flags.extend((f"{prompt_name}:missing", f"{completion_name}:missing"))
    if total is None and total_value is None and prompt is not None and completion is not None:
        total = prompt + completion

    _, prompt_details = _first(usage, _PROMPT_DETAIL_NAMES)
    _, completion_details = _first(usage, _COMPLETION_DETAIL_NAMES)
    cached = _count(_field(prompt_details, "cached_tokens"), "cached_tokens", flags)
    reasoning = _count(_field(completion_details, "reasoning_tokens"), "reasoning_tokens", flags)

    return TokenCounts(prompt, completion, total, cached, reasoning, tuple(flags))
