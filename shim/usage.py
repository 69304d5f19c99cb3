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


pydantic_types: dict[type, bool] = {}
"""Cache of ``pydantic_fields``: type -> whether it is a pydantic model."""


def pydantic_fields(obj: Any) -> dict[str, Any] | None:
    """Return the ``__dict__`` that contains a pydantic model's declared fields, or None for other objects.

    Reading a field there skips pydantic's ``__getattr__``, which raises and catches internally (about
    2 µs) for a missing name.
    """
    cls = type(obj)
    is_pydantic = pydantic_types.get(cls)
    if is_pydantic is None:
        # hasattr on a pydantic model class goes through its metaclass: look it up once per type.
        is_pydantic = pydantic_types[cls] = hasattr(cls, "__pydantic_fields__")
    return obj.__dict__ if is_pydantic else None


def _plain_fields(obj: Any) -> dict[str, Any] | None:
    """Return the dict holding ``obj``'s fields (a dict itself, or a pydantic model's __dict__), else None."""
    if isinstance(obj, dict):
        return obj
    return pydantic_fields(obj)


Numbers = tuple[int | None, int | None, int | None, int | None, int | None, tuple[str, ...]]
"""Prompt, completion, total, cached and reasoning tokens, then the flags: ``TokenCounts`` as a tuple."""


def _detail_count(details: Any, name: str) -> int | None | bool:
    """Return one count of a token-details object, or False when it is malformed (``read_usage`` then flags it)."""
    detail_fields = _plain_fields(details)
    if detail_fields is None:
        return False
    value = detail_fields.get(name)
    if value is not None and (type(value) is not int or value < 0):
        return False
    return value


def _read_well_formed(usage: Any) -> Numbers | None:
    """Return the numbers of a chat-style usage whose counts are all non-negative ints, else None.

    The common case on every call, without the per-field checks of ``read_usage``.
    """
    if type(usage) is dict:
        fields = usage
    elif pydantic_types.get(type(usage)):
        fields = usage.__dict__  # pydantic_fields() written out: this runs on every call
    else:
        fields = pydantic_fields(usage)
        if fields is None:
            return None
    prompt, completion, total = fields.get("prompt_tokens"), fields.get("completion_tokens"), fields.get("total_tokens")
    if type(prompt) is not int or type(completion) is not int or type(total) is not int:
        return None
    if prompt < 0 or completion < 0 or total < 0 or (total and not prompt and not completion):
        return None
    cached = reasoning = None
    details = fields.get("prompt_tokens_details")
    if details is not None:
        cached = _detail_count(details, "cached_tokens")
        if cached is False:
            return None
    details = fields.get("completion_tokens_details")
    if details is not None:
        reasoning = _detail_count(details, "reasoning_tokens")
        if reasoning is False:
            return None
    return (prompt, completion, total, cached, reasoning, ())


_NO_NUMBERS: Numbers = (None, None, None, None, None, ())


def read_numbers(usage: Any) -> Numbers:
    """Return ``read_usage(usage)`` as a tuple; the shim's per-call path, which skips building TokenCounts."""
    if usage is None:
        return _NO_NUMBERS
    numbers = _read_well_formed(usage)
    if numbers is not None:
        return numbers
    counts = _read_checked(usage)
    return (counts.prompt, counts.completion, counts.total, counts.cached, counts.reasoning, counts.flags)


def read_usage(usage: Any) -> TokenCounts:
    """Read prompt, completion, total, cached and reasoning tokens from ``usage``.

    A string of digits is accepted and flagged; negative, non-numeric and boolean values become None and
    are flagged. A missing total is computed from prompt and completion when both are known.
    """
    if usage is None:
        return TokenCounts()
    numbers = _read_well_formed(usage)
    if numbers is not None:
        return TokenCounts(*numbers)
    return _read_checked(usage)


def _read_checked(usage: Any) -> TokenCounts:
    """Read ``usage`` field by field, flagging every malformed value."""
    flags: list[str] = []
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
