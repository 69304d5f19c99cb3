"""The scope fallback: attributes for calls that start outside any scope."""

from __future__ import annotations

import litellm

import shim


def call(server) -> None:
    litellm.completion(
        model="openai/fake-model",
        messages=[{"role": "user", "content": "Say three words."}],
        api_base=server.base_url,
        api_key="sk-test",
    )


def test_fallback_used_outside_scope(records, fake_server):
    shim.set_scope_fallback(lambda: {"chat": "from-fallback"})
    try:
        call(fake_server)
        with shim.scope(chat="explicit"):
            call(fake_server)
    finally:
        shim.set_scope_fallback(None)

    first, second = records.wait_for(2)
    assert dict(first.scope) == {"chat": "from-fallback"}
    assert dict(second.scope) == {"chat": "explicit"}, "an entered scope must win over the fallback"


def test_raising_fallback_records_call(records, fake_server):
    def broken() -> dict:
        raise RuntimeError("fallback failed on purpose")

    shim.set_scope_fallback(broken)
    try:
        call(fake_server)
    finally:
        shim.set_scope_fallback(None)

    record = records.only()
    assert dict(record.scope) == {}
    assert record.prompt_tokens == fake_server.requests[-1]["usage"]["prompt_tokens"]
    assert shim.error_counts()[("scope fallback", "RuntimeError")] >= 1
