"""Asking providers for stream usage (``stream_options.include_usage``) on the caller's behalf.

Off unless the ``request_stream_usage`` setting is on. When on, a streamed chat call that did not set
``stream_options`` itself gets ``{"include_usage": True}``. When a provider rejects such a request with
HTTP 400 or 422, the call is repeated at once without the option, so the caller never sees that
failure, and the provider is remembered once the repetition succeeds. Chunks that exist only because
the shim asked are consumed by the stream proxy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .calls import Call
from .records import Api
from .runtime import RUNTIME


def _target_key(kwargs: dict[str, Any], call: Call) -> tuple[Any, ...]:
    return (kwargs.get("custom_llm_provider"), kwargs.get("api_base") or kwargs.get("base_url"), call.model)


def _should_request(call: Call, kwargs: dict[str, Any]) -> bool:
    if not RUNTIME.settings.get("request_stream_usage"):
        return False
    if call.api is not Api.CHAT_COMPLETIONS or not kwargs.get("stream"):
        return False
    if kwargs.get("stream_options") is not None:
        return False
    return _target_key(kwargs, call) not in RUNTIME.rejected_stream_options


_REJECTION_STATUSES = frozenset({400, 422})


def _is_rejection(exc: BaseException) -> bool:
    """True for an HTTP 400 or 422 error, the codes servers use for a parameter they do not accept.

    Servers word the error differently ("Extra inputs are not permitted", a pydantic location list,
    or a message naming ``stream_options``), so the message is not checked. The call is repeated
    without the option. Only when that repetition succeeds is the server remembered as rejecting it.
    """
    return getattr(exc, "status_code", None) in _REJECTION_STATUSES


def call_with_usage_request(
    call: Call, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Call ``wrapped``, adding the usage request when enabled and retrying without it on rejection."""
    if not _should_request(call, kwargs):
        return wrapped(*args, **kwargs)
    requested = {**kwargs, "stream_options": {"include_usage": True}}
    try:
        result = wrapped(*args, **requested)
    except Exception as exc:
        if not _is_rejection(exc):
            raise
        result = wrapped(*args, **kwargs)
        RUNTIME.rejected_stream_options.add(_target_key(kwargs, call))
        return result
    call.injected_usage_request = True
    return result


async def call_with_usage_request_async(
    call: Call, wrapped: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    """Async form of ``call_with_usage_request``."""
    if not _should_request(call, kwargs):
        return await wrapped(*args, **kwargs)
    requested = {**kwargs, "stream_options": {"include_usage": True}}
    try:
        result = await wrapped(*args, **requested)
    except Exception as exc:
        if not _is_rejection(exc):
            raise
        result = await wrapped(*args, **kwargs)
        RUNTIME.rejected_stream_options.add(_target_key(kwargs, call))
        return result
    call.injected_usage_request = True
    return result
