"""The wrapt wrapper functions placed around litellm's entry points.

Every wrapper returns exactly what the original returned (a stream becomes a transparent proxy of it)
and re-raises the original's exceptions unchanged. Failures of the shim's own bookkeeping are reported
through ``report_error`` and never reach the caller.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from .calls import Call
from .errors import report_error
from .records import Api
from .runtime import RUNTIME
from .stream_usage import call_with_usage_request, call_with_usage_request_async
from .streams import result_kind, wrap_stream

WRAPPER_MARKER = "__token_meter_wrapper__"


_CHAT = Api.CHAT_COMPLETIONS
_get_running_loop = asyncio.events._get_running_loop  # returns None instead of raising outside a loop
_current_task = asyncio.current_task
_thread_id = threading.get_ident


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


def _inside_call() -> bool:
    guard = RUNTIME.depth_var.get()
    return guard is not None and guard != 0 and guard == _owner()


def _begin(api: Api, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """Capture the request facts the record needs; None when that fails (the call then runs unrecorded)."""
    try:
        if api is _CHAT:
            model = kwargs.get("model", args[0] if args else None)
            messages = kwargs.get("messages", args[1] if len(args) > 1 else None)
            request_input = None
        else:
            request_input = kwargs.get("input", args[0] if args else None)
            model = kwargs.get("model", args[1] if len(args) > 1 else None)
            messages = None
        return Call(api, model, messages, request_input, bool(kwargs.get("stream")))
    except Exception as exc:
        report_error("start call record", exc)
        return None


def _handle_result(call: Call, result: Any) -> Any:
    """Record a non-stream result or wrap a stream; return what the caller must receive."""
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


def _record_failure(call: Call, exc: BaseException) -> None:
    try:
        call.finish_error(exc, during_stream=False)
    except Exception as error:
        report_error("record failed call", error)


async def _await_result(call: Call, awaitable: Any) -> Any:
    """Await a coroutine that a sync entry point returned (``completion(..., acompletion=True)``)."""
    token = RUNTIME.depth_var.set(_owner())
    try:
        result = await awaitable
    except BaseException as exc:
        _record_failure(call, exc)
        raise
    finally:
        RUNTIME.depth_var.reset(token)
    return _handle_result(call, result)


def make_sync_wrapper(api: Api) -> Callable[..., Any]:
    """Build the wrapper for a synchronous entry point (``completion``, ``responses``)."""

    def sync_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _inside_call():
            return wrapped(*args, **kwargs)
        call = _begin(api, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)

        token = RUNTIME.depth_var.set(_owner())
        try:
            if kwargs.get("stream") and RUNTIME.settings["request_stream_usage"]:
                result = call_with_usage_request(call, wrapped, args, kwargs)
            else:
                result = wrapped(*args, **kwargs)
        except BaseException as exc:
            _record_failure(call, exc)
            raise
        finally:
            RUNTIME.depth_var.reset(token)

        if isinstance(result, CoroutineType):
            return _await_result(call, result)
        return _handle_result(call, result)

    setattr(sync_wrapper, WRAPPER_MARKER, True)
    return sync_wrapper


def make_async_wrapper(api: Api) -> Callable[..., Any]:
    """Build the wrapper for a coroutine entry point (``acompletion``, ``aresponses``)."""

    async def run(wrapped: Callable[..., Any], call: Call, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        token = RUNTIME.depth_var.set(_owner())
        try:
            result = await call_with_usage_request_async(call, wrapped, args, kwargs)
        except BaseException as exc:
            _record_failure(call, exc)
            raise
        finally:
            RUNTIME.depth_var.reset(token)
        return _handle_result(call, result)

    def async_wrapper(wrapped: Callable[..., Any], instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if _inside_call():
            return wrapped(*args, **kwargs)
        call = _begin(api, args, kwargs)
        if call is None:
            return wrapped(*args, **kwargs)
        return run(wrapped, call, args, kwargs)

    setattr(async_wrapper, WRAPPER_MARKER, True)
    return async_wrapper
