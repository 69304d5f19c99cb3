"""Model calls made from litellm callbacks are separate calls and get their own records."""

from __future__ import annotations

import litellm

MESSAGES = [{"role": "user", "content": "Name two rivers in Spain."}]


def test_callback_call_recorded(records, fake_server):
    judged: list[int] = []

    def judge(kwargs, response, start_time, end_time) -> None:
        """A success callback that calls a model once, as a judge would; litellm runs it on its own thread."""
        if judged:
            return
        judged.append(1)
        litellm.completion(
            model="openai/fake-judge", messages=MESSAGES, api_base=fake_server.base_url, api_key="sk-test"
        )

    saved = list(litellm.success_callback)
    litellm.success_callback = [*saved, judge]
    try:
        litellm.completion(
            model="openai/fake-model", messages=MESSAGES, api_base=fake_server.base_url, api_key="sk-test"
        )
        found = records.wait_for(2, timeout=15)
    finally:
        litellm.success_callback = saved

    models = sorted(record.requested_model for record in found)
    assert models == ["openai/fake-judge", "openai/fake-model"]
    assert len(fake_server.requests) == 2
