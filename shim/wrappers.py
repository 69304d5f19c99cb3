"""The wrapt wrapper functions placed around litellm's entry points.

Every wrapper returns exactly what the original returned (a stream becomes a transparent proxy of it)
and re-raises the original's exceptions unchanged. Failures of the shim's own bookkeeping are reported
through ``report_error`` and never reach the caller.

A call starts when litellm's code starts to run: at the call of a sync entry point, and at the first
``await`` of the coroutine that an async entry point returns. The start time, the scope and the
re-entry check are taken then, so a coroutine created early and awaited later in another scope records
the scope and time of its await.

A call that did not pass ``stream=True`` runs without a ``Call`` object: its start facts stay in local
variables and its record is built straight from the response (``shim.response_record``). A ``Call`` is
made only for streams, errors and other unusual results. This path runs on every call, so the steps of
small helpers such as ``_owner`` are written out in it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from .calls import Call
from .errors import report_error
from .records import Api
from .response_record import record_response
from .runtime import RUNTIME
from .scope import Scope, call_scope
from .stream_usage import call_with_usage_request, call_with_usage_request_async
from .streams import PLAIN_RESULT as _PLAIN
from .streams import result_kind, wrap_stream
from .streams import result_kinds as _result_kinds

WRAPPER_MARKER = "__token_meter_wrapper__"


_get_running_loop = asyncio.events._get_running_loop  # returns None instead of raising outside a loop
_current_task = asyncio.current_task
_thread_id = threading.get_ident
_time = time.time
# RUNTIME keeps one ContextVar for the life of the process, so its bound methods can be kept here.
_depth_get = RUNTIME.depth_var.get
_depth_set = RUNTIME.depth_var.set
_depth_reset = RUNTIME.depth_var.reset
_settings = RUNTIME.settings  # changed in place by configure(), never replaced


def _owner() -> Any:
    """Identify the Task (or, outside an event loop, the thread) that runs the current code.

    The re-entry guard stores it. A nested call from the same Task is the same model call, because
    litellm's ``fallbacks=`` re-enters ``acompletion``. A Task or thread that litellm starts during the
    call (a callback that calls a model itself) inherits the ContextVar but is a different owner.
    """
    loop = _get_running_loop()
    if loop is not None:
        task = _current_task(loop)
        if task is not None:
            return task
    return _thread_id()


def _new_call(
    api: Api, args: tuple[Any, ...], kwargs: dict[str, Any], started_at: float, scope: Scope | None
) -> Call | None:
    """Return a ``Call`` with the given start facts, or None when that fails (the call is then not recorded)."""
    try:
        return Call(api, args, kwargs, started_at, scope)
    except Exception as exc:
        report_error("start call record", exc)
        return None


def _start_call(api: Api, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """Return a ``Call`` that starts now, or None when that fails (the call is then not recorded)."""
    try:
        return Call(api, args, kwargs, _time(), call_scope())
    except Exception as exc:
        report_error("start call record", exc)
        return None


def _handle_result(call: Call | None, result: Any) -> Any:
    """Record a non-stream result or wrap a stream; return what the caller must receive."""
    if call is None:
        return result
    try:
        already_proxied, streaming = result_kind(type(result))
        if already_proxied:
            # Another copy of the shim (or an outer call of this one) already records this stream.
            call.done = True
            return result
        if streaming:
            return wrap_stream(result, call)
        call.finish_response(result)
    except Exception as exc:
        report_error("record result", exc)
    return result


def _record_failure(call: Call | None, exc: BaseException) -> None:
    if call is None:
        return
    try:
        call.finish_error(exc, during_stream=False)
    except Exception as error:
        report_error("record failed call", error)


async def _await_result(call: Call | None, awaitable: Any) -> Any:
    """Await a coroutine that a sync entry point returned (``completion(..., acompletion=True)``).

    litellm's request runs only now, so the call's start time and scope are taken again here.
    """
    if call is not None:
        try:
            call.restart()
        except Exception as exc:
            report_error("start call record", exc)
    token = _depth_set(_owner())
    try:
        result = await awaitable
    except BaseException as exc:
        _record_failure(call, exc)
        raise
    finally:
        _depth_reset(token)
    return _handle_result(call, result)


def _run_stream_sync(
    api: Api, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], owner: Any
) -> Any:
    """Run a sync call that asked for a stream: its ``Call`` exists before the request is sent."""
    call = _start_call(api, args, kwargs)
    if call is None:
        return wrapped(*args, **kwargs)
    token = _depth_set(owner)
    try:
        if _settings["request_stream_usage"]:
            result = call_with_usage_request(call, wrapped, args, kwargs)
        else:
            result = wrapped(*args, **kwargs)
    except BaseException as exc:
        _record_failure(call, exc)
        raise
    finally:
        _depth_reset(token)
    if type(result) is CoroutineType:
        return _await_result(call, result)
    return _handle_result(call, result)


async def _run_stream_async(
    api: Api, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], owner: Any
) -> Any:
    """Async form of ``_run_stream_sync``."""
    call = _start_call(api, args, kwargs)
    if call is None:
        return await wrapped(*args, **kwargs)
    token = _depth_set(owner)
    try:
        if _settings["request_stream_usage"]:
            result = await call_with_usage_request_async(call, wrapped, args, kwargs)
        else:
            result = await wrapped(*args, **kwargs)
    except BaseException as exc:
        _record_failure(call, exc)
        raise
    finally:
        _depth_reset(token)
    return _handle_result(call, result)


def make_sync_wrapper(api: Api) -> Callable[..., Any]:
    """Build the wrapper for a synchronous entry point (``completion``, ``responses``)."""

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = _get_running_loop()
        owner = _current_task(loop) if loop is not None else None
        if owner is None:
            owner = _thread_id()
        if _depth_get() == owner:
            return wrapped(*args, **kwargs)
        if kwargs.get("stream"):
            return _run_stream_sync(api, wrapped, args, kwargs, owner)

        try:
            started_at = _time()
            scope = call_scope()
        except Exception as exc:
            report_error("start call record", exc)
            return wrapped(*args, **kwargs)
        token = _depth_set(owner)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _record_failure(_new_call(api, args, kwargs, started_at, scope), exc)
            raise
        finally:
            _depth_reset(token)

        if _result_kinds.get(type(result)) is _PLAIN:
            try:
                record_response(api, args, kwargs, started_at, scope, result)
            except Exception as exc:
                report_error("record result", exc)
            return result
        call = _new_call(api, args, kwargs, started_at, scope)
        if type(result) is CoroutineType:
            return _await_result(call, result)
        return _handle_result(call, result)

    setattr(sync_wrapper, WRAPPER_MARKER, True)
    return sync_wrapper


def make_async_wrapper(api: Api) -> Callable[..., Any]:
    """Build the wrapper for a coroutine entry point (``acompletion``, ``aresponses``).

    The wrapper is a coroutine function, so a call returns a coroutine at once, like the original.
    Nothing of the call happens before that coroutine is first awaited, including the call of the
    original entry point.
    """

    async def async_wrapper(
        wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        loop = _get_running_loop()
        owner = _current_task(loop) if loop is not None else None
        if owner is None:
            owner = _thread_id()
        if _depth_get() == owner:
            return await wrapped(*args, **kwargs)
        if kwargs.get("stream"):
            return await _run_stream_async(api, wrapped, args, kwargs, owner)

        try:
            started_at = _time()
            scope = call_scope()
        except Exception as exc:
            report_error("start call record", exc)
            return await wrapped(*args, **kwargs)
        token = _depth_set(owner)
        try:
            result = await wrapped(*args, **kwargs)
        except BaseException as exc:
            _record_failure(_new_call(api, args, kwargs, started_at, scope), exc)
            raise
        finally:
            _depth_reset(token)

        if _result_kinds.get(type(result)) is _PLAIN:
            try:
                record_response(api, args, kwargs, started_at, scope, result)
            except Exception as exc:
                report_error("record result", exc)
            return result
        return _handle_result(_new_call(api, args, kwargs, started_at, scope), result)

    setattr(async_wrapper, WRAPPER_MARKER, True)
    return async_wrapper
