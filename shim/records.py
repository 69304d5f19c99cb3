"""The usage record: one per litellm call, with the origin of every number it carries."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
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


class Api(enum.StrEnum):
    """The litellm API family of a call."""

    CHAT_COMPLETIONS = "chat_completions"
    RESPONSES = "responses"


@dataclass(slots=True)
class UsageRecord:
    """Token usage of one litellm call.

    Token fields are None when unknown. ``flags`` lists problems found in the provider's usage object
    (for example ``"prompt_tokens:negative"``); a flagged field is None and the rest are kept.
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
    scope: Mapping[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        """Seconds between start and end."""
        return max(0.0, self.ended_at - self.started_at)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (enums as their string values)."""
        data = asdict(self)
        data["api"] = self.api.value
        data["source"] = self.source.value
        data["outcome"] = self.outcome.value
        data["scope"] = dict(self.scope)
        data["flags"] = list(self.flags)
        return data
