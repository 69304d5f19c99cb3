"""Scopes: which attributes a record carries, across nesting, hooks, Tasks and threads.

Calls go through real litellm over HTTP to the fake model server; the ``records`` fixture installs the
shim and collects the records.
"""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import threading

import litellm
import pytest

import shim
from shim import Outcome

MESSAGES = [{"role": "user", "content": "Describe a harbor at dawn."}]


def chat_kwargs(server, tag: str, *, directives: str = "usage=finish,chunks=4", **extra) -> dict:
    return {
        "model": f"openai/{tag}@{directives}",
        "messages": MESSAGES,
        "api_base": server.base_url,
        "api_key": "fake-key",
        **extra,
    }


def record_for(records, tag: str):
    """Return the one record whose requested model starts with ``openai/<tag>@``."""
    matches = [r for r in records if (r.requested_model or "").startswith(f"openai/{tag}@")]
    assert len(matches) == 1, f"expected one record tagged {tag!r}, got {len(matches)}"
    return matches[0]


async def read_stream(stream) -> int:
    count = 0
    async for _ in stream:
        count += 1
    return count


# ----- capture time and nesting -------------------------------------------------------------------------


async def test_scope_captured_at_call_start(records, fake_server):
    outer = shim.enter_scope(chat="c1", role="chat")
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "captured", stream=True))
    inner = shim.enter_scope(chat="c2", role="utility")
    await read_stream(stream)
    shim.exit_scope(inner)
    shim.exit_scope(outer)

    record = records.only()
    assert dict(record.scope) == {"chat": "c1", "role": "chat"}
    assert record.outcome is Outcome.COMPLETE


async def test_call_outside_scope_has_empty_scope(records, fake_server):
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "unscoped", stream=True))
    with shim.scope(chat="entered-after-start"):
        await read_stream(stream)

    record = records.only()
    assert dict(record.scope) == {}


async def test_nested_scopes_merge(records, fake_server):
    with shim.scope(chat="c1", role="chat") as outer_attributes:
        assert dict(outer_attributes) == {"chat": "c1", "role": "chat"}
        with shim.scope(role="utility", agent=2):
            assert dict(shim.current_scope()) == {"chat": "c1", "role": "utility", "agent": 2}
            await litellm.acompletion(**chat_kwargs(fake_server, "inner"))
        await litellm.acompletion(**chat_kwargs(fake_server, "outer"))
    assert dict(shim.current_scope()) == {}
    await litellm.acompletion(**chat_kwargs(fake_server, "after"))

    got = records.wait_for(3)
    assert dict(record_for(got, "inner").scope) == {"chat": "c1", "role": "utility", "agent": 2}
    assert dict(record_for(got, "outer").scope) == {"chat": "c1", "role": "chat"}
    assert dict(record_for(got, "after").scope) == {}


async def test_scope_attributes_are_a_snapshot(records, fake_server):
    with shim.scope(chat="c1"):
        await litellm.acompletion(**chat_kwargs(fake_server, "first"))
        with shim.scope(chat="c1-child"):
            pass
        await litellm.acompletion(**chat_kwargs(fake_server, "second"))

    got = records.wait_for(2)
    assert dict(record_for(got, "first").scope) == {"chat": "c1"}
    assert dict(record_for(got, "second").scope) == {"chat": "c1"}


# ----- enter and exit in separate hook calls ---------------------------------------------------------------


class HookHost:
    """Imitates a host whose "before" and "after" hooks are separate awaited calls."""

    def __init__(self) -> None:
        self.token = None

    async def before(self, context_id: str) -> None:
        self.token = shim.enter_scope(chat=context_id, role="chat")

    async def after(self) -> int:
        return shim.exit_scope(self.token, finalize_open_streams=True)


async def test_enter_exit_in_separate_hooks(records, fake_server):
    host = HookHost()

    await host.before("ctx-41")
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "hooked", stream=True))
    chunks = await read_stream(stream)
    finalised = await host.after()

    record = records.only()
    assert finalised == 0
    assert dict(record.scope) == {"chat": "ctx-41", "role": "chat"}
    assert record.chunk_count == chunks
    assert dict(shim.current_scope()) == {}


async def test_exit_finalises_open_stream(records, fake_server):
    host = HookHost()

    await host.before("ctx-42")
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "abandoned", stream=True))
    await stream.__anext__()
    finalised = await host.after()

    record = records.only()
    assert finalised == 1
    assert record.outcome is Outcome.ABANDONED
    assert record.source_reason == "scope ended"
    assert dict(record.scope) == {"chat": "ctx-42", "role": "chat"}

    remaining = await read_stream(stream)
    assert remaining > 0
    assert len(records.records) == 1


async def test_exit_keeps_open_stream_when_asked(records, fake_server):
    token = shim.enter_scope(chat="ctx-43")
    stream = await litellm.acompletion(**chat_kwargs(fake_server, "kept-open", stream=True))

    assert shim.exit_scope(token, finalize_open_streams=False) == 0
    await read_stream(stream)

    record = records.only()
    assert record.outcome is Outcome.COMPLETE
    assert dict(record.scope) == {"chat": "ctx-43"}


async def test_exit_from_another_task(records, fake_server, caplog):
    errors_before = shim.error_counts()
    token = shim.enter_scope(chat="ctx-44")
    await litellm.acompletion(**chat_kwargs(fake_server, "cross-task"))

    async def exit_elsewhere() -> int:
        return shim.exit_scope(token)

    with caplog.at_level("WARNING", logger="token_meter.shim"):
        finalised = await asyncio.create_task(exit_elsewhere())

    assert finalised == 0
    assert shim.error_counts() == errors_before
    assert [r for r in caplog.records if r.name == "token_meter.shim"] == []
    assert dict(records.only().scope) == {"chat": "ctx-44"}
    shim.exit_scope(token)
    assert dict(shim.current_scope()) == {}


def test_exit_from_another_thread(records):
    token = shim.enter_scope(chat="ctx-45")
    results: list = []

    def exit_elsewhere() -> None:
        try:
            results.append(shim.exit_scope(token))
        except BaseException as exc:  # the assertion below reports it
            results.append(exc)

    thread = threading.Thread(target=exit_elsewhere)
    thread.start()
    thread.join()

    assert results == [0]
    shim.exit_scope(token)
    assert dict(shim.current_scope()) == {}


# ----- Tasks and threads ------------------------------------------------------------------------------------


async def test_concurrent_tasks_keep_own_scope(records, fake_server):
    async def chat(index: int) -> None:
        with shim.scope(chat=f"task-{index}"):
            await asyncio.sleep(0.001 * (10 - index))
            stream = await litellm.acompletion(
                **chat_kwargs(fake_server, f"task-{index}", directives="usage=finish,chunks=6,delay=0.003", stream=True)
            )
            await read_stream(stream)
            await litellm.acompletion(**chat_kwargs(fake_server, f"task-{index}-plain"))

    await asyncio.gather(*(chat(index) for index in range(10)))

    got = records.wait_for(20)
    assert len(got) == 20
    for index in range(10):
        assert dict(record_for(got, f"task-{index}").scope) == {"chat": f"task-{index}"}
        assert dict(record_for(got, f"task-{index}-plain").scope) == {"chat": f"task-{index}"}


async def test_child_task_inherits_scope(records, fake_server):
    with shim.scope(chat="parent"):
        task = asyncio.create_task(litellm.acompletion(**chat_kwargs(fake_server, "child")))
    await task

    assert dict(records.only().scope) == {"chat": "parent"}


async def test_to_thread_keeps_scope(records, fake_server):
    with shim.scope(chat="threaded", role="utility"):
        response = await asyncio.to_thread(litellm.completion, **chat_kwargs(fake_server, "to-thread"))
        stream = await asyncio.to_thread(
            litellm.completion, **chat_kwargs(fake_server, "to-thread-stream", stream=True)
        )
        chunks = await asyncio.to_thread(lambda: sum(1 for _ in stream))

    got = records.wait_for(2)
    plain = record_for(got, "to-thread")
    streamed = record_for(got, "to-thread-stream")
    assert dict(plain.scope) == {"chat": "threaded", "role": "utility"}
    assert dict(streamed.scope) == {"chat": "threaded", "role": "utility"}
    assert plain.prompt_tokens == response.usage.prompt_tokens
    assert streamed.chunk_count == chunks


@pytest.mark.parametrize("api", ["responses", "aresponses"])
async def test_responses_api_carries_scope(records, fake_server, api):
    kwargs = {
        "model": f"openai/{api}-scoped@chunks=3",
        "input": "Describe a harbor at dawn.",
        "api_base": fake_server.base_url,
        "api_key": "fake-key",
    }
    with shim.scope(chat=f"{api}-chat"):
        if api == "aresponses":
            await litellm.aresponses(**kwargs)
        else:
            await asyncio.to_thread(litellm.responses, **kwargs)

    record = records.only()
    assert dict(record.scope) == {"chat": f"{api}-chat"}
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["input_tokens"]


# ----- read-only attributes ---------------------------------------------------------------------------------


async def test_record_scope_is_read_only(records, fake_server):
    with shim.scope(chat="c9", role="chat"):
        await litellm.acompletion(**chat_kwargs(fake_server, "frozen-1"))
        await litellm.acompletion(**chat_kwargs(fake_server, "frozen-2"))

    first, second = records.wait_for(2)
    # Records of one scope share one mapping, so a change through one record would reach the others.
    assert first.scope is second.scope
    for change in (
        lambda scope: scope.__setitem__("chat", "other"),
        lambda scope: scope.__delitem__("chat"),
        lambda scope: scope.update(role="utility"),
        lambda scope: scope.setdefault("agent", 1),
        lambda scope: scope.pop("chat"),
        lambda scope: scope.popitem(),
        lambda scope: scope.clear(),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change(first.scope)
    with pytest.raises(TypeError, match="read-only"):
        first.scope |= {"role": "utility"}
    assert dict(second.scope) == {"chat": "c9", "role": "chat"}


async def test_record_scope_serialises_like_dict(records, fake_server):
    with shim.scope(chat="c10", agent_no=1):
        await litellm.acompletion(**chat_kwargs(fake_server, "serialised"))

    record = records.only()
    assert isinstance(record.scope, dict)
    assert json.loads(json.dumps(record.scope)) == {"chat": "c10", "agent_no": 1}
    assert pickle.loads(pickle.dumps(record.scope)) == {"chat": "c10", "agent_no": 1}
    assert copy.deepcopy(record.scope) == {"chat": "c10", "agent_no": 1}
    assert copy.deepcopy(record).scope == {"chat": "c10", "agent_no": 1}
    data = record.to_dict()
    assert type(data["scope"]) is dict
    data["scope"]["chat"] = "changed"
    assert record.scope["chat"] == "c10"
    assert dict(record.scope) | {"role": "chat"} == {"chat": "c10", "agent_no": 1, "role": "chat"}


def test_current_scope_is_read_only(records):
    with shim.scope(chat="c11") as attributes:
        assert attributes is shim.current_scope()
        with pytest.raises(TypeError, match="read-only"):
            attributes["chat"] = "other"
        assert shim.current_scope()["chat"] == "c11"
    with pytest.raises(TypeError, match="read-only"):
        shim.current_scope()["chat"] = "outside"
    assert dict(shim.current_scope()) == {}


async def test_fallback_attributes_copied(records, fake_server):
    provided = {"chat": "fallback-chat"}
    shim.set_scope_fallback(lambda: provided)
    try:
        await litellm.acompletion(**chat_kwargs(fake_server, "fallback"))
    finally:
        shim.set_scope_fallback(None)
    provided["chat"] = "changed by the host"

    record = records.only()
    assert dict(record.scope) == {"chat": "fallback-chat"}
