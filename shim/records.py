"""The usage record: one per litellm call, with the origin of every number it carries."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any


class Source(enum.StrEnum):
    """Origin of a record's token numbers."""

    PROVIDER = "provider"
    """The provider reported them (in the response, a stream chunk or litellm's hidden parameters)."""

    ESTIMATED = "estimated"
    """litellm's tokenizer counted them from the request and the received text; see ``source_reason``."""

    UNAVAILABLE = "unavailable"
    """No number could be obtained; see ``source_reason``. Token fields are then None, never zero."""


class Outcome(enum.StrEnum):
    """End of the call, as the caller experienced it."""

    COMPLETE = "complete"
    CLOSED_EARLY = "closed_early"
    ABANDONED = "abandoned"
    ERROR = "error"
    CANCELLED = "cancelled"
    """The call or its stream raised CancelledError or KeyboardInterrupt.

    A timeout of ``asyncio.wait_for`` or ``asyncio.timeout`` ends here too. Both cancel the task with no
    message, and the TimeoutError that the caller gets is raised later, in a frame above the shim, so
    the record cannot tell a timeout from any other cancellation.
    """


class Api(enum.StrEnum):
    """The litellm API family of a call."""

    CHAT_COMPLETIONS = "chat_completions"
    RESPONSES = "responses"


class ScopeAttributes(dict):
    """Read-only attributes of one scope, shared by the records of every call started in it.

    A dict subclass, so ``json.dumps``, ``pickle``, ``copy.deepcopy`` and ``isinstance(value, dict)`` behave
    as for a plain dict. The methods that would change it in place raise TypeError; ``dict(attributes)``
    or ``attributes | changes`` give a changeable copy.
    """

    __slots__ = ()

    def _reject_change(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError(
            "scope attributes are read-only; enter a new scope (shim.scope or shim.enter_scope) to change them"
        )

    __setitem__ = __delitem__ = __ior__ = _reject_change  # type: ignore[assignment]
    clear = pop = popitem = setdefault = update = _reject_change  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        # The default dict-subclass reduction refills the copy item by item, which __setitem__ rejects.
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"ScopeAttributes({dict.__repr__(self)})"


NO_SCOPE = ScopeAttributes()
"""The ``scope`` of records of calls started outside any scope; one shared empty object."""


@dataclass(slots=True)
class UsageRecord:
    """Token usage of one litellm call.

    Token fields are None when unknown. ``flags`` lists problems found in the provider's usage object
    (for example ``"prompt_tokens:negative"``); a flagged field is None and the rest are kept.
    The shim builds records with positional arguments (about 0.8 µs faster than keywords on Python
    3.11), so the field order is part of its contract with ``shim.calls`` and ``shim.response_record``.
    """

    call_id: str
    api: Api
    stream: bool
    requested_model: str | None
    response_model: str | None = None
    provider: str | None = None
    started_at: float = 0.0
    """Wall-clock start, seconds since the epoch."""

    ended_at: float = 0.0
    """Wall-clock end, seconds since the epoch."""

    first_chunk_s: float | None = None
    """Seconds from the call's start to its first stream chunk; None for non-stream calls."""

    chunk_count: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    cost: float | None = None
    """US dollars, from litellm's price map; None when litellm cannot price the model."""

    source: Source = Source.UNAVAILABLE
    source_reason: str | None = None
    outcome: Outcome = Outcome.COMPLETE
    error_type: str | None = None
    scope: Mapping[str, Any] = field(default_factory=lambda: NO_SCOPE)
    """Attributes of the scope the call started in. Records made by the shim carry a read-only
    ``ScopeAttributes`` shared by all calls of that scope."""

    flags: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Seconds between start and end."""
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (enums as their string values, the scope as a plain dict)."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["api"] = self.api.value
        data["source"] = self.source.value
        data["outcome"] = self.outcome.value
        data["scope"] = dict(self.scope)
        data["flags"] = list(self.flags)
        return data


_FIELD_NAMES = tuple(record_field.name for record_field in fields(UsageRecord))
