"""The record of a non-stream call, built straight from the response that litellm returned.

This runs on every non-stream call, so it avoids helper calls where it can. On Python 3.11 each
Python function call costs about 0.07 µs, and the target for the shim's whole per-call cost is 5 µs
(``call_overhead_us`` of ``scripts/bench_shim.py``).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from .errors import report_error
from .listeners import emit
from .pricing import hidden_cost
from .records import NO_SCOPE, Api, Outcome, Source, UsageRecord
from .runtime import RUNTIME
from .scope import Scope
from .usage import pydantic_fields, pydantic_types, read_numbers

_call_numbers = itertools.count(1)
_PROCESS_TAG = f"tm-{os.getpid()}"
_NO_FIELDS: dict[str, Any] = {}  # shared and never changed
_time = time.time

# Enum members as module constants: reading Source.PROVIDER costs about 70 ns per access on Python 3.11.
_CHAT = Api.CHAT_COMPLETIONS
_PROVIDER = Source.PROVIDER
_UNAVAILABLE = Source.UNAVAILABLE
_COMPLETE = Outcome.COMPLETE


def new_call_id() -> str:
    """Return a call id unique in this process, for a call whose response carries none."""
    return f"{_PROCESS_TAG}-{next(_call_numbers)}"


def hidden_params(obj: Any) -> dict[str, Any] | None:
    """Return litellm's ``_hidden_params`` of a response or chunk, or None."""
    try:
        # pydantic keeps private attributes in __pydantic_private__; reading it there skips __getattr__.
        private = getattr(obj, "__pydantic_private__", None)
        hidden = private.get("_hidden_params") if isinstance(private, dict) else obj._hidden_params
    except Exception:
        return None
    return hidden if isinstance(hidden, dict) else None


def extra_field(obj: Any, name: str) -> Any:
    """Read a field of a pydantic model from its extras (usage lives there) or its __dict__, else by getattr."""
    fields = pydantic_fields(obj)
    if fields is None:
        try:
            return getattr(obj, name, None)
        except Exception:
            return None
    extra = obj.__pydantic_extra__
    if extra and name in extra:
        return extra[name]
    return fields.get(name)


def request_model(api: Api, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """Return the model an entry point was called with, or None when it is not a string."""
    if api is _CHAT:
        model = kwargs.get("model", args[0] if args else None)
    else:
        model = kwargs.get("model", args[1] if len(args) > 1 else None)
    return model if isinstance(model, str) else None


def record_response(
    api: Api, args: tuple[Any, ...], kwargs: dict[str, Any], started_at: float, scope: Scope | None, response: Any
) -> None:
    """Produce the record of a non-stream call and deliver it to the listeners; never raises.

    ``args`` and ``kwargs`` are the entry point's arguments, read only when a listener exists.
    """
    if not RUNTIME.listener_tuple:
        return  # no listener would receive the record
    try:
        record = build_response_record(api, request_model(api, args, kwargs), started_at, scope, response)
    except Exception as exc:
        report_error("record response", exc)
        return
    emit(record)


def build_response_record(
    api: Api, requested_model: str | None, started_at: float, scope: Scope | None, response: Any
) -> UsageRecord:
    """Build the record of a chat ``ModelResponse`` or a ``ResponsesAPIResponse`` (outcome complete)."""
    # pydantic_fields() written out for the common case of a type seen before.
    fields = response.__dict__ if pydantic_types.get(type(response)) else pydantic_fields(response)
    if fields is not None:
        # litellm keeps usage in the extras of its pydantic responses, the model among the fields and
        # its hidden parameters among the private attributes.
        extra = response.__pydantic_extra__ or _NO_FIELDS
        usage = extra["usage"] if "usage" in extra else fields.get("usage")
        model = extra["model"] if "model" in extra else fields.get("model")
        private = response.__pydantic_private__
        hidden = private.get("_hidden_params") if type(private) is dict else hidden_params(response)
    else:
        usage = extra_field(response, "usage")
        model = extra_field(response, "model")
        hidden = hidden_params(response)
    if not isinstance(hidden, dict):
        hidden = _NO_FIELDS

    prompt, completion, total, cached, reasoning, flags = read_numbers(usage)
    if prompt or completion or total:
        source, reason = _PROVIDER, None
        cost = hidden.get("response_cost")
        if type(cost) is not float or not cost >= 0:
            cost = hidden_cost(hidden)  # ints, other number types, negative or missing values
    else:
        # litellm returns a Usage of zeros when the provider sent none: all zeros mean "not reported".
        prompt = completion = total = cached = reasoning = None
        source, reason, cost = _UNAVAILABLE, "provider sent no usage", None

    call_id = hidden.get("litellm_call_id")
    if not isinstance(call_id, str):
        call_id = extra_field(response, "id")
        if not isinstance(call_id, str):
            call_id = new_call_id()
    provider = hidden.get("custom_llm_provider")
    # Positional arguments in UsageRecord's field order.
    return UsageRecord(
        call_id,
        api,
        False,
        requested_model,
        model if isinstance(model, str) else None,
        provider if isinstance(provider, str) else None,
        started_at,
        _time(),
        None,
        0,
        prompt,
        completion,
        total,
        cached,
        reasoning,
        cost,
        source,
        reason,
        _COMPLETE,
        None,
        scope.attributes if scope is not None else NO_SCOPE,
        flags,
    )
