"""Per-call bookkeeping: what a call asked for, what came back, and the record it produces."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .errors import report_error
from .estimate import estimate_chat_stream, estimate_text, responses_input_text
from .listeners import emit
from .pricing import price
from .records import NO_SCOPE, Api, Outcome, Source, UsageRecord
from .response_record import build_response_record, extra_field, new_call_id, request_model
from .runtime import RUNTIME
from .scope import Scope, call_scope
from .usage import TokenCounts, read_usage

_drain_tasks: set[asyncio.Task[None]] = set()  # strong references until each background read ends


async def _close_quietly(stream: Any) -> None:
    """Close a stream read in the background; what closing raises is logged once per kind, not raised."""
    try:
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()
    except BaseException as exc:
        if not isinstance(exc, Exception | asyncio.CancelledError):
            raise
        report_error("close stream after background read", exc)


DRAIN_TIMEOUT_S = 30.0

# Event-loop turns a stream left open at a scope end waits for a close already under way: asyncio's
# finaliser of a freed async generator creates the closing task (one turn), which runs the next turn.
_SCOPE_END_TURNS = 3
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

_time = time.time
_perf_counter = time.perf_counter
_NO_FIELDS: dict[str, Any] = {}  # shared and never changed


def _lacks_details(usage: Any) -> bool:
    """True when a Responses API usage object has neither input nor output token details."""
    for name in ("input_tokens_details", "output_tokens_details"):
        value = usage.get(name) if isinstance(usage, dict) else getattr(usage, name, None)
        if value is not None:
            return False
    return True


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

    def __init__(
        self, api: Api, args: tuple[Any, ...], kwargs: dict[str, Any], started_at: float, scope: Scope | None
    ) -> None:
        """Take the request facts from the entry point's arguments; ``scope`` comes from ``call_scope()``.

        The wrappers make a Call for streams, errors and unusual results only. A non-stream result is
        recorded by ``shim.response_record`` without one.
        """
        self.api = api
        if api is _CHAT:
            self.messages = kwargs.get("messages", args[1] if len(args) > 1 else None)
            self.request_input = None
        else:
            self.request_input = kwargs.get("input", args[0] if args else None)
            self.messages = None
        self.model = request_model(api, args, kwargs)
        self.stream = stream = bool(kwargs.get("stream"))
        self.started_at = started_at
        # Only a stream's first-chunk time needs the monotonic clock; attach_stream fills it in otherwise.
        self.started_perf = _perf_counter() if stream else 0.0
        self.scope = scope
        self.first_chunk_s: float | None = None
        self.chunk_count = 0
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

    def restart(self) -> None:
        """Take the start time and scope again, for a call whose request starts later than its creation."""
        self.started_at = _time()
        self.started_perf = _perf_counter()
        self.scope = call_scope()

    # ----- start of a stream ------------------------------------------------------------------------

    def attach_stream(self, stream: Any) -> None:
        """Read the stream's identifying facts and register with the scope for finalisation at its end."""
        if not self.stream:
            # The request did not say stream=True by keyword, so the start has no perf_counter time yet.
            self.stream = True
            self.started_perf = _perf_counter() - (_time() - self.started_at)
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
        if not self.stream:
            # The wrapper finishes a non-stream call once, on the caller's thread: _claim's lock is not needed.
            if self.done:
                return
            self.done = True
        elif not self._claim():
            return
        if not RUNTIME.listener_tuple:
            return  # no listener would receive the record
        try:
            record = build_response_record(self.api, self.model, self.started_at, self.scope, response)
        except Exception as exc:
            report_error("record response", exc)
            return
        emit(record)

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

        ``drain`` marks the paths where no one reads the stream any more: the garbage collector, or a
        scope end whose host declared so (``exit_scope(..., finalize_open_streams=True)``). With it
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
                if self.finalizer is not None:  # the proxy may be collected while the read runs
                    self.finalizer.detach()
                    self.finalizer = None
                self.start_drain(reason, close=True)
                return True
        return self.finish_stream(_ABANDONED, reason)

    def finish_at_scope_end(self) -> bool:
        """Record a stream still open when its scope ends with ``finalize_open_streams``; True if handled.

        A kept async stream (``drain_abandoned``) on a thread with a running loop gets a few more turns
        of the loop first (``_SCOPE_END_TURNS``): A0 2.x leaves its transport generator when the tool
        call is complete, and asyncio closes the freed generator from a task it creates one turn later
        and runs the turn after; the generator's ``finally`` closes the stream. That close starts the
        background read (``drain_on_close``); a stream still open after those turns is recorded as
        abandoned, as any other open stream is at once.
        """
        if self.done or self.draining:
            return False
        if self.stream_object is not None:
            try:
                asyncio.get_running_loop().call_soon(self._finish_if_still_open, "scope ended", _SCOPE_END_TURNS)
                return True
            except RuntimeError:
                pass
        return self.finish_stream(_ABANDONED, "scope ended")

    def _finish_if_still_open(self, reason: str, turns: int) -> None:
        try:
            if self.done or self.draining:
                return
            if turns > 1:
                asyncio.get_running_loop().call_soon(self._finish_if_still_open, reason, turns - 1)
                return
            self.finish_stream(_ABANDONED, reason)
        except Exception as exc:
            report_error("finalise stream at scope end", exc)
            self.finish_stream(_ABANDONED, reason)

    def drain_on_close(self) -> bool:
        """Hand a stream the caller closes early to a background read; return True when it started.

        Only a stream kept for ``drain_abandoned`` (``stream_object``), on a thread with a running event
        loop, qualifies. The background task reads the remaining chunks for usage (at most
        ``DRAIN_TIMEOUT_S``), then closes the stream and records the call as closed early. The caller's
        ``aclose()`` returns at once; the chunks read there reach no one.
        """
        if self.done or self.draining or self.stream_object is None:
            return False
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return False
        self.draining = True
        if self.finalizer is not None:  # the proxy may be collected while the read runs
            self.finalizer.detach()
            self.finalizer = None
        self.start_drain("closed early", _CLOSED_EARLY, close=True)
        return True

    def start_drain(self, reason: str, outcome: Outcome = _ABANDONED, close: bool = False) -> None:
        """Start the background read of a stream on the running loop (``draining`` is set).

        While ``draining`` is set, other finishing paths (a scope end) leave the call alone. With
        ``close`` the stream is closed after the read.
        """
        try:
            task = asyncio.get_running_loop().create_task(self._drain(reason, outcome, close))
        except Exception as exc:
            report_error("start background read", exc)
            self.draining = False
            self.finish_stream(outcome, reason)
            return
        _drain_tasks.add(task)
        task.add_done_callback(_drain_tasks.discard)

    async def _drain(self, reason: str, outcome: Outcome = _ABANDONED, close: bool = False) -> None:
        stream, self.stream_object = self.stream_object, None
        if stream is None:
            return  # another background read took the stream; it produces the record
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
            if close:
                await _close_quietly(stream)
            self.draining = False
            suffix = f"; {read} unread chunks read in the background" if read else ""
            self.finish_stream(outcome, reason + suffix)

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
            if RUNTIME.listener_tuple:
                self._record_stream_or_error(outcome, reason, error_type, during_stream)
            else:
                self._drop_request_data()  # no listener would receive the record: skip the estimate
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
            # A stream that did not complete keeps its reason even with provider numbers: they may be
            # partial, or come from chunks read in the background.
            source, source_reason = _PROVIDER, (reason if outcome is not _COMPLETE else None)
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
            # A stream without usage is read back to its first chunk, so pydantic chunks are read without
            # extra_field(): a declared field is never among the extras, so "extras, else __dict__" is exact.
            try:
                usage = (chunk.__pydantic_extra__ or _NO_FIELDS).get("usage") or chunk.__dict__.get("usage")
            except AttributeError:  # not a pydantic model
                usage = extra_field(chunk, "usage")
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
            model = extra_field(self.chunks[-1], "model")
            self.response_model = model if isinstance(model, str) else None
        scope = self.scope
        # Positional arguments in UsageRecord's field order.
        record = UsageRecord(
            self.call_id or new_call_id(),
            self.api,
            self.stream,
            self.model,
            self.response_model,
            self.provider,
            self.started_at,
            _time(),
            self.first_chunk_s,
            self.chunk_count,
            counts.prompt,
            counts.completion,
            counts.total,
            counts.cached,
            counts.reasoning,
            cost,
            source,
            reason,
            outcome,
            error_type,
            scope.attributes if scope is not None else NO_SCOPE,
            counts.flags,
        )
        self._drop_request_data()
        emit(record)

    def _drop_request_data(self) -> None:
        """Drop references to request data and chunks once they are no longer needed."""
        self.messages = None
        self.request_input = None
        self.chunks = None
        self.own_chunks = None
        self.text_parts = None
