"""Per-call bookkeeping: what a call asked for, what came back, and the record it produces."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from typing import Any

from .errors import report_error
from .estimate import estimate_chat_stream, estimate_text, responses_input_text
from .listeners import emit
from .pricing import hidden_cost, price
from .records import Api, Outcome, Source, UsageRecord
from .runtime import RUNTIME
from .scope import Scope
from .usage import TokenCounts, read_usage

_call_numbers = itertools.count(1)
_drain_tasks: set[asyncio.Task[None]] = set()  # strong references until each background read ends
DRAIN_TIMEOUT_S = 30.0
_PROCESS_TAG = f"tm-{os.getpid()}"
_RESPONSES_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


# Enum members as module constants: reading Source.PROVIDER costs about 70 ns per access on Python 3.11.
_CHAT = Api.CHAT_COMPLETIONS
_RESPONSES = Api.RESPONSES
_PROVIDER = Source.PROVIDER
_ESTIMATED = Source.ESTIMATED
_UNAVAILABLE = Source.UNAVAILABLE
_COMPLETE = Outcome.COMPLETE
_ABANDONED = Outcome.ABANDONED
_CANCELLED = Outcome.CANCELLED
_CLOSED_EARLY = Outcome.CLOSED_EARLY
_ERROR = Outcome.ERROR


def _hidden_params(obj: Any) -> dict[str, Any] | None:
    try:
        # pydantic keeps private attributes in __pydantic_private__; reading it there skips __getattr__.
        private = getattr(obj, "__pydantic_private__", None)
        hidden = private.get("_hidden_params") if isinstance(private, dict) else obj._hidden_params
    except Exception:
        return None
    return hidden if isinstance(hidden, dict) else None


def _extra_field(obj: Any, name: str) -> Any:
    """Read a pydantic model's field cheaply: extras first (usage lives there), then normal lookup."""
    try:
        extra = obj.__pydantic_extra__
    except AttributeError:
        extra = None
    if extra and name in extra:
        return extra[name]
    if hasattr(type(obj), "__pydantic_fields__"):
        # A missing attribute makes pydantic raise and catch internally (microseconds); __dict__ does not.
        return obj.__dict__.get(name)
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _lacks_details(usage: Any) -> bool:
    """True when a Responses API usage object has neither input nor output token details."""
    for name in ("input_tokens_details", "output_tokens_details"):
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        if value is not None:
            return False
    return True


def _fallback_scope() -> Scope | None:
    """Build a detached scope from the host's fallback callable, for a call made outside any scope."""
    fallback = RUNTIME.scope_fallback
    if fallback is None:
        return None
    try:
        attributes = fallback()
    except Exception as exc:
        report_error("scope fallback", exc)
        return None
    return Scope(dict(attributes)) if attributes else None


class Call:
    """One litellm call from its start to its record.

    ``finish*`` methods produce the record exactly once, whichever runs first (stream end, error, close,
    scope end or garbage collection); later calls return False.
    """

    __slots__ = (
        "api",
        "stream",
        "model",
        "messages",
        "request_input",
        "started_at",
        "started_perf",
        "first_chunk_s",
        "chunk_count",
        "scope",
        "call_id",
        "provider",
        "response_model",
        "chunks",
        "visible_usage",
        "text_parts",
        "done",
        "finalizer",
        "injected_usage_request",
        "own_chunks",
        "stream_object",
        "draining",
    )

    def __init__(self, api: Api, model: Any, messages: Any, request_input: Any, stream: bool) -> None:
        self.api = api
        self.stream = stream
        self.model = model if isinstance(model, str) else None
        self.messages = messages
        self.request_input = request_input
        self.started_at = time.time()
        self.started_perf = time.perf_counter()
        self.first_chunk_s: float | None = None
        self.chunk_count = 0
        self.scope = RUNTIME.scope_var.get() or _fallback_scope()
        self.call_id: str | None = None
        self.provider: str | None = None
        self.response_model: str | None = None
        self.chunks: list[Any] | None = None
        self.visible_usage: Any = None
        self.text_parts: list[str] | None = None
        self.done = False
        self.finalizer: Any = None
        self.injected_usage_request = False
        self.own_chunks: list[Any] | None = None
        self.stream_object: Any = None
        self.draining = False

    # ----- start of a stream ------------------------------------------------------------------------

    def attach_stream(self, stream: Any) -> None:
        """Read the stream's identifying facts and register with the scope for finalisation at its end."""
        self.stream = True
        try:
            logging_obj = getattr(stream, "logging_obj", None)
            call_id = getattr(logging_obj, "litellm_call_id", None)
            self.call_id = call_id if isinstance(call_id, str) else None
            provider = getattr(stream, "custom_llm_provider", None)
            self.provider = provider if isinstance(provider, str) else None
            chunks = getattr(stream, "chunks", None)
            if isinstance(chunks, list):
                self.chunks = chunks
            elif self.api is _CHAT:
                self.own_chunks = self.chunks = []
        except Exception as exc:
            report_error("read stream facts", exc)
        if self.api is _RESPONSES:
            self.text_parts = []
        if RUNTIME.settings.get("drain_abandoned") and hasattr(type(stream), "__anext__"):
            self.stream_object = stream
        if self.scope is not None:
            self.scope.open_calls.add(self)

    # ----- per chunk (hot path) ---------------------------------------------------------------------

    def observe_responses(self, event: Any) -> None:
        """Note one Responses API event's text delta or final usage (the proxy counts the events)."""
        kind = getattr(event, "type", None)
        if kind == "response.output_text.delta":
            delta = getattr(event, "delta", None)
            if isinstance(delta, str) and self.text_parts is not None:
                self.text_parts.append(delta)
        elif kind in _RESPONSES_FINAL_EVENTS:
            response = getattr(event, "response", None)
            usage = getattr(response, "usage", None)
            if usage is not None:
                self.visible_usage = usage
            model = getattr(response, "model", None)
            if isinstance(model, str):
                self.response_model = model

    # ----- endings ----------------------------------------------------------------------------------

    def _claim(self) -> bool:
        if not self.stream:
            # A non-stream call is finished once, by the wrapper on the caller's thread: no lock needed.
            if self.done:
                return False
            self.done = True
            return True
        with RUNTIME.lock:
            if self.done:
                return False
            self.done = True
        if self.scope is not None:
            self.scope.open_calls.discard(self)
        if self.finalizer is not None:
            self.finalizer.detach()
            self.finalizer = None
        self.stream_object = None
        return True

    def finish_response(self, response: Any) -> None:
        """Record a non-stream result (chat ``ModelResponse`` or ``ResponsesAPIResponse``); never raises."""
        if not self._claim():
            return
        try:
            self._record_response(response)
        except Exception as exc:
            report_error("record response", exc)

    def _record_response(self, response: Any) -> None:
        hidden = _hidden_params(response)
        counts = read_usage(_extra_field(response, "usage"))
        model = _extra_field(response, "model")
        call_id = hidden.get("litellm_call_id") if hidden else None
        if not isinstance(call_id, str):
            call_id = _extra_field(response, "id")
        self.call_id = call_id if isinstance(call_id, str) else None
        provider = hidden.get("custom_llm_provider") if hidden else None
        self.provider = provider if isinstance(provider, str) else None
        self.response_model = model if isinstance(model, str) else None

        if counts.reported:
            source, reason = _PROVIDER, None
        else:
            counts, source, reason = TokenCounts(flags=counts.flags), _UNAVAILABLE, "provider sent no usage"
        cost = hidden_cost(hidden) if counts.reported else None
        self._emit(counts, source, reason, _COMPLETE, None, cost)

    def finish_error(self, exc: BaseException, during_stream: bool) -> bool:
        """Record a call that raised, before or during its stream."""
        if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
            outcome, reason = _CANCELLED, "cancelled"
        elif isinstance(exc, GeneratorExit):
            outcome, reason = _CLOSED_EARLY, "closed early"
        else:
            outcome, reason = _ERROR, "error"
        return self._finish_stream_or_error(outcome, reason, type(exc).__name__, during_stream)

    def finish_stream(self, outcome: Outcome, reason: str) -> bool:
        """Record a stream that ended: complete, closed early or abandoned."""
        return self._finish_stream_or_error(outcome, reason, None, True)

    def finish_abandoned(self, reason: str = "abandoned", drain: bool = False) -> bool:
        """Record a stream the caller stopped reading without closing it.

        ``drain`` marks the garbage-collector path, where no one can read the stream any more. With it
        and the ``drain_abandoned`` setting, an async stream on a thread with a running event loop is
        first read to its end in a background task, for at most ``DRAIN_TIMEOUT_S``. Usage sent in the stream's
        last chunks is then still the provider's. The chunks read there reach no one.
        """
        if self.done or self.draining:
            return False
        if drain and self.stream_object is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                self.draining = True
                self.start_drain(reason)
                return True
        return self.finish_stream(_ABANDONED, reason)

    def start_drain(self, reason: str) -> None:
        """Start the background read of an abandoned stream on the running loop (``draining`` is set).

        While ``draining`` is set, other finishing paths (a scope end) leave the call alone.
        """
        try:
            task = asyncio.get_running_loop().create_task(self._drain(reason))
        except Exception as exc:
            report_error("start background read", exc)
            self.draining = False
            self.finish_stream(_ABANDONED, reason)
            return
        _drain_tasks.add(task)
        task.add_done_callback(_drain_tasks.discard)

    async def _drain(self, reason: str) -> None:
        stream, self.stream_object = self.stream_object, None
        read = 0
        try:
            async with asyncio.timeout(DRAIN_TIMEOUT_S):
                while True:
                    chunk = await stream.__anext__()
                    read += 1
                    self._observe_drained(chunk)
        except StopAsyncIteration:
            pass
        except BaseException as exc:  # includes the timeout and cancellation at loop shutdown
            if not isinstance(exc, Exception | asyncio.CancelledError):
                raise
        finally:
            self.draining = False
            suffix = f"; {read} unread chunks read in the background" if read else ""
            self.finish_stream(_ABANDONED, reason + suffix)

    def _observe_drained(self, chunk: Any) -> None:
        """Keep what the record needs from a chunk read after abandonment, without counting it."""
        if self.api is _RESPONSES:
            self.observe_responses(chunk)
        elif self.own_chunks is not None:
            self.own_chunks.append(chunk)

    def _finish_stream_or_error(
        self, outcome: Outcome, reason: str, error_type: str | None, during_stream: bool
    ) -> bool:
        """Produce the record unless one exists; never raises (errors are reported and swallowed)."""
        try:
            if not self._claim():
                return False
            self._record_stream_or_error(outcome, reason, error_type, during_stream)
        except Exception as exc:
            report_error("record stream", exc)
        return True

    def _record_stream_or_error(
        self, outcome: Outcome, reason: str, error_type: str | None, during_stream: bool
    ) -> None:
        counts = self._provider_usage()
        flags = counts.flags
        missing_reason = "provider sent no usage" if outcome is _COMPLETE else reason
        if counts.reported:
            # An abandoned stream keeps its reason even with provider numbers: they may be partial.
            source, source_reason = _PROVIDER, (reason if outcome is _ABANDONED else None)
        else:
            estimate = self._estimate() if during_stream else None
            if estimate is None:
                counts, source, source_reason = TokenCounts(flags=flags), _UNAVAILABLE, missing_reason
            else:
                counts, source, source_reason = estimate, _ESTIMATED, missing_reason
                counts.flags = flags
        cost = price(self.response_model or self.model, self.provider, counts.prompt, counts.completion)
        self._emit(counts, source, source_reason, outcome, error_type, cost)

    def _provider_usage(self) -> TokenCounts:
        """Return the provider-reported usage of a stream, or empty counts.

        For chat streams this is the newest chunk in litellm's ``chunks`` list whose usage has a non-zero
        number. Chunks that litellm builds itself after the stream (its own estimate, shown to callers
        who set ``stream_options``) never enter that list, so they are not mistaken for the provider's.
        """
        if self.api is _RESPONSES:
            if self.visible_usage is None:
                return TokenCounts()
            counts = read_usage(self.visible_usage)
            if counts.reported and _lacks_details(self.visible_usage):
                # litellm 1.110 fills a missing response.completed usage with its own count, which has
                # no token details; providers send both detail objects. Treat such usage as not sent.
                return TokenCounts(flags=counts.flags)
            return counts
        flags: tuple[str, ...] = ()
        for chunk in reversed(self.chunks or ()):
            usage = _extra_field(chunk, "usage")
            if usage is None:
                continue
            counts = read_usage(usage)
            if counts.reported:
                return counts
            flags = flags or counts.flags
        return TokenCounts(flags=flags)

    def _estimate(self) -> TokenCounts | None:
        if not RUNTIME.settings.get("estimate", True):
            return None
        if self.api is _CHAT:
            return estimate_chat_stream(self.chunks, self.messages, self.model)
        completion_text = "".join(self.text_parts or ())
        return estimate_text(self.model, responses_input_text(self.request_input), completion_text)

    def _emit(
        self,
        counts: TokenCounts,
        source: Source,
        reason: str | None,
        outcome: Outcome,
        error_type: str | None,
        cost: float | None,
    ) -> None:
        if self.stream and self.response_model is None and self.chunks:
            model = _extra_field(self.chunks[-1], "model")
            self.response_model = model if isinstance(model, str) else None
        record = UsageRecord(
            call_id=self.call_id or f"{_PROCESS_TAG}-{next(_call_numbers)}",
            api=self.api,
            stream=self.stream,
            requested_model=self.model,
            response_model=self.response_model,
            provider=self.provider,
            started_at=self.started_at,
            ended_at=time.time(),
            first_chunk_s=self.first_chunk_s,
            chunk_count=self.chunk_count,
            prompt_tokens=counts.prompt,
            completion_tokens=counts.completion,
            total_tokens=counts.total,
            cached_tokens=counts.cached,
            reasoning_tokens=counts.reasoning,
            cost=cost,
            source=source,
            source_reason=reason,
            outcome=outcome,
            error_type=error_type,
            scope=self.scope.attributes if self.scope is not None else {},
            flags=counts.flags,
        )
        # Drop references to request data and chunks as soon as the record exists.
        self.messages = None
        self.request_input = None
        self.chunks = None
        self.text_parts = None
        emit(record)
