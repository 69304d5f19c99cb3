"""Transparent stream proxies that pass every chunk through and finalise the call's record once.

A proxy class is assembled per stream type from the protocols that type really has, so that
``hasattr(proxy, "aclose")`` and the like return the same as for the bare stream. Context-manager methods
are the exception: ``wrapt.ObjectProxy`` always defines them, so a proxy of a stream without them raises
the same TypeError the bare stream raises instead of forwarding.
"""

from __future__ import annotations

import asyncio
import copy
import queue
import threading
import weakref
from time import perf_counter
from typing import Any

import wrapt

from .calls import Call
from .errors import report_error
from .records import Api, Outcome

PROXY_MARKER = "__token_meter_stream_proxy__"


def _finish(call: Call, method: str, *args: Any) -> None:
    """Call a finishing method of ``call``; nothing it raises reaches the stream's consumer."""
    try:
        getattr(call, method)(*args)
    except Exception as exc:
        report_error("finalise stream", exc)


_GC_REASON = "abandoned (garbage collected)"
_deferred: queue.SimpleQueue[Call] = queue.SimpleQueue()
_worker_lock = threading.Lock()
_worker: list[threading.Thread] = []


def _finish_abandoned(call: Call) -> None:
    """Finalise a stream proxy that was garbage collected, outside the garbage collector's callback.

    The collector can run inside any allocation, also while a listener holds a lock, so producing the
    record here could deadlock or re-enter the listener. A daemon worker thread of the shim produces
    it instead. Only a stream to be read to its end (``drain_abandoned``) is handed to a callback on the
    running event loop, which starts the background read there.
    """
    try:
        if call.draining:
            return  # a background read started by aclose() owns the call
        if call.stream_object is not None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None and not call.done:
                # Claim the call now, so a scope end that runs before the callback leaves it alone.
                call.draining = True
                loop.call_soon(_finish, call, "start_drain", _GC_REASON)
                return
        _deferred.put(call)
        _ensure_worker()
    except Exception as exc:  # a closed loop or no thread left: finish here rather than lose the record
        report_error("defer finalisation", exc)
        _finish(call, "finish_abandoned", _GC_REASON, False)


def _ensure_worker() -> None:
    if _worker and _worker[0].is_alive():
        return
    if not _worker_lock.acquire(blocking=False):
        return  # another thread is starting it; the queued call waits for that worker
    try:
        if not (_worker and _worker[0].is_alive()):
            thread = threading.Thread(target=_run_worker, name="token_meter-finaliser", daemon=True)
            thread.start()
            _worker[:] = [thread]
    finally:
        _worker_lock.release()


def _run_worker() -> None:
    while True:
        _finish(_deferred.get(), "finish_abandoned", _GC_REASON, False)


_states: dict[int, tuple[Any, ...]] = {}
"""Per-proxy state for the per-chunk methods, keyed by ``id(proxy)``.

Each value is ``(wrapped __anext__ or None, wrapped __next__ or None, call, chunk observer or None,
weak reference to the proxy)``. Reading an attribute of a Python subclass of ``wrapt.ObjectProxy``
goes through ``__getattr__`` hook machinery (about 0.1 µs per read on Python 3.11), while ``id`` and a
dict lookup cost a fifth of that. The weak reference's callback removes the entry while the proxy is
being freed, before its address, and so its id, can be reused.
"""


def _forget_state(key: int) -> Any:
    return lambda reference: _states.pop(key, None)


class _StreamProxy(wrapt.ObjectProxy):
    """Base of all stream proxies; state lives in ``_self_*`` attributes and in ``_states``."""

    __token_meter_stream_proxy__ = True

    def __init__(self, wrapped: Any, call: Call) -> None:
        super().__init__(wrapped)
        self._self_call = call
        self._self_origin = None  # the proxy this one was copied from (copy.copy), kept alive by the copy
        # Chat streams with litellm's chunk list need only counting, done inline in the iteration methods.
        if call.api is Api.RESPONSES:
            observe = call.observe_responses
        elif call.own_chunks is not None:
            observe = call.own_chunks.append
        else:
            observe = None
        key = id(self)
        _states[key] = (
            getattr(wrapped, "__anext__", None),
            getattr(wrapped, "__next__", None),
            call,
            observe,
            weakref.ref(self, _forget_state(key)),
        )

    def __reduce_ex__(self, protocol: int) -> Any:  # pragma: no cover - streams are not picklable anyway
        return self.__wrapped__.__reduce_ex__(protocol)

    def __copy__(self) -> Any:
        """Return a proxy of ``copy.copy(stream)`` that reports to the same call.

        A shallow copy of a litellm stream shares its connection and its ``chunks`` list (litellm
        1.79.3 to 1.110.2), so it is the same model call: chunks read through either object count for
        one record. The copy keeps the original proxy alive, so the original's garbage-collection
        finalisation cannot record the call as abandoned while the copy can still be read.
        """
        duplicate = type(self)(copy.copy(self.__wrapped__), self._self_call)
        duplicate._self_origin = self._self_origin or self
        return duplicate

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        """Return ``copy.deepcopy(stream)`` itself, or raise what deep-copying the bare stream raises.

        litellm streams hold a coroutine or a lock and raise TypeError here, like the bare stream. A
        stream type that can be deep-copied gives an independent stream that is not part of this call,
        so it is returned without a proxy.
        """
        return copy.deepcopy(self.__wrapped__, memo)

    def _self_end(self, exc: BaseException | None) -> None:
        """Finalise after the caller left a ``with`` block or closed the stream."""
        if exc is not None:
            _finish(self._self_call, "finish_error", exc, True)
        else:
            _finish(self._self_call, "finish_stream", Outcome.CLOSED_EARLY, "closed early")


_COMPLETE = Outcome.COMPLETE


class _AsyncIteration:
    def __aiter__(self) -> Any:
        return self

    async def __anext__(self) -> Any:
        anext, _, call, observe, _ = _states[id(self)]
        try:
            chunk = await anext()
        except StopAsyncIteration:
            _finish(call, "finish_stream", _COMPLETE, "complete")
            raise
        except BaseException as exc:
            _finish(call, "finish_error", exc, True)
            raise
        count = call.chunk_count
        if not count:
            call.first_chunk_s = perf_counter() - call.started_perf
        call.chunk_count = count + 1
        if observe is not None:
            try:
                observe(chunk)
            except Exception as exc:
                report_error("observe chunk", exc)
        return chunk


def _exists_only_for_usage(chunk: Any) -> bool:
    """True for a usage chunk litellm yields only because ``stream_options.include_usage`` was set.

    Such a chunk carries usage and either no choice or one choice with an empty delta and no finish
    reason. Content, tool-call and finish chunks are never matched.
    """
    extra = getattr(chunk, "__pydantic_extra__", None)
    if not extra or extra.get("usage") is None:
        return False
    choices = getattr(chunk, "choices", None)
    if not choices:
        return True
    if len(choices) != 1:
        return False
    choice = choices[0]
    if getattr(choice, "finish_reason", None) is not None:
        return False
    delta = getattr(choice, "delta", None)
    for name in ("content", "tool_calls", "function_call", "reasoning_content", "audio"):
        if getattr(delta, name, None):
            return False
    return True


class _AsyncIterationHidingUsage(_AsyncIteration):
    """Async iteration that consumes the usage chunks the shim itself asked for."""

    async def __anext__(self) -> Any:
        while True:
            chunk = await _AsyncIteration.__anext__(self)
            try:
                if _exists_only_for_usage(chunk):
                    self._self_call.chunk_count -= 1
                    continue
            except Exception as exc:
                report_error("filter usage chunk", exc)
            return chunk


class _SyncIteration:
    def __iter__(self) -> Any:
        return self

    def __next__(self) -> Any:
        _, step, call, observe, _ = _states[id(self)]
        try:
            chunk = step()
        except StopIteration:
            _finish(call, "finish_stream", _COMPLETE, "complete")
            raise
        except BaseException as exc:
            _finish(call, "finish_error", exc, True)
            raise
        # The same steps as _AsyncIteration.__anext__, inlined: a shared helper adds a call per chunk.
        count = call.chunk_count
        if not count:
            call.first_chunk_s = perf_counter() - call.started_perf
        call.chunk_count = count + 1
        if observe is not None:
            try:
                observe(chunk)
            except Exception as exc:
                report_error("observe chunk", exc)
        return chunk


class _SyncIterationHidingUsage(_SyncIteration):
    """Sync iteration that consumes the usage chunks the shim itself asked for."""

    def __next__(self) -> Any:
        while True:
            chunk = _SyncIteration.__next__(self)
            try:
                if _exists_only_for_usage(chunk):
                    self._self_call.chunk_count -= 1
                    continue
            except Exception as exc:
                report_error("filter usage chunk", exc)
            return chunk


class _AsyncClose:
    async def aclose(self) -> Any:
        """Close the stream; with ``drain_abandoned``, read its rest for usage in the background first.

        A0 2.x closes the chat stream as soon as the agent's tool call is complete, before the
        chunk that carries the usage. The background read returns ``None`` at once, as the stream's
        own ``aclose()`` does, and closes the stream when it ends.
        """
        call = self._self_call
        if call.draining:
            return None  # a background read owns the stream and closes it when it ends
        if call.stream_object is not None:
            try:
                if call.drain_on_close():
                    return None
            except Exception as exc:
                report_error("start background read", exc)
        try:
            return await self.__wrapped__.aclose()
        finally:
            self._self_end(None)


class _SyncClose:
    def close(self) -> Any:
        try:
            return self.__wrapped__.close()
        finally:
            self._self_end(None)


class _AsyncContext:
    async def __aenter__(self) -> Any:
        entered = await self.__wrapped__.__aenter__()
        return self if entered is self.__wrapped__ else entered

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return await self.__wrapped__.__aexit__(exc_type, exc, tb)
        finally:
            self._self_end(exc)


class _SyncContext:
    def __enter__(self) -> Any:
        entered = self.__wrapped__.__enter__()
        return self if entered is self.__wrapped__ else entered

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            return self.__wrapped__.__exit__(exc_type, exc, tb)
        finally:
            self._self_end(exc)


class _NoAsyncContext:
    async def __aenter__(self) -> Any:
        raise TypeError(
            f"'{type(self.__wrapped__).__name__}' object does not support the asynchronous context manager protocol"
        )

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        raise TypeError(
            f"'{type(self.__wrapped__).__name__}' object does not support the asynchronous context manager protocol"
        )


class _NoSyncContext:
    def __enter__(self) -> Any:
        raise TypeError(f"'{type(self.__wrapped__).__name__}' object does not support the context manager protocol")

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        raise TypeError(f"'{type(self.__wrapped__).__name__}' object does not support the context manager protocol")


_proxy_classes: dict[tuple[bool, ...], type] = {}


def _features(stream_type: type) -> tuple[bool, ...]:
    return (
        hasattr(stream_type, "__anext__"),
        hasattr(stream_type, "__next__"),
        hasattr(stream_type, "aclose"),
        hasattr(stream_type, "close"),
        hasattr(stream_type, "__aenter__"),
        hasattr(stream_type, "__enter__"),
    )


def proxy_class_for(stream_type: type, hide_usage_chunks: bool = False) -> type:
    """Return (and cache) the proxy class matching the protocols of ``stream_type``.

    ``hide_usage_chunks`` selects iteration that consumes the usage chunks the shim asked for.
    """
    features = (*_features(stream_type), hide_usage_chunks)
    cls = _proxy_classes.get(features)
    if cls is not None:
        return cls
    has_anext, has_next, has_aclose, has_close, has_aenter, has_enter, hide = features
    bases: list[type] = []
    if has_anext:
        bases.append(_AsyncIterationHidingUsage if hide else _AsyncIteration)
    if has_next:
        bases.append(_SyncIterationHidingUsage if hide else _SyncIteration)
    if has_aclose:
        bases.append(_AsyncClose)
    if has_close:
        bases.append(_SyncClose)
    bases.append(_AsyncContext if has_aenter else _NoAsyncContext)
    bases.append(_SyncContext if has_enter else _NoSyncContext)
    name = "StreamProxy_" + "".join("1" if flag else "0" for flag in features)
    cls = type(name, (*bases, _StreamProxy), {})
    _proxy_classes[features] = cls
    return cls


PLAIN_RESULT = (False, False)
"""The ``result_kind`` of a result that is neither a stream nor a proxy (one shared tuple, compared with ``is``)."""

result_kinds: dict[type, tuple[bool, bool]] = {}  # type -> (is a proxy, is a stream), filled by result_kind


def result_kind(result_type: type) -> tuple[bool, bool]:
    """Return (is a stream proxy of the shim, is a stream) for a result type, cached per type."""
    kind = result_kinds.get(result_type)
    if kind is None:
        # hasattr on pydantic model classes goes through their metaclass and costs microseconds.
        kind = (
            getattr(result_type, PROXY_MARKER, False) is True,
            hasattr(result_type, "__anext__") or hasattr(result_type, "__next__"),
        )
        if kind == PLAIN_RESULT:
            kind = PLAIN_RESULT
        result_kinds[result_type] = kind
    return kind


def is_stream(result: Any) -> bool:
    """True for objects that iterate as a stream (they define ``__anext__`` or ``__next__``)."""
    return result_kind(type(result))[1]


def is_proxy(result: Any) -> bool:
    """True when ``result`` is already a stream proxy of this or another copy of the shim."""
    return result_kind(type(result))[0]


def wrap_stream(stream: Any, call: Call) -> Any:
    """Return a proxy of ``stream`` that reports to ``call``; on any failure return ``stream`` itself."""
    try:
        call.attach_stream(stream)
        proxy = proxy_class_for(type(stream), call.injected_usage_request)(stream, call)
        call.finalizer = weakref.finalize(proxy, _finish_abandoned, call)
        call.finalizer.atexit = False
        return proxy
    except Exception as exc:
        report_error("wrap stream", exc)
        return stream
