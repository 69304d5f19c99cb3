"""Model calls made from litellm callbacks are separate calls and get their own records."""

from __future__ import annotations

import asyncio

import litellm
from litellm.integrations.custom_logger import CustomLogger

MESSAGES = [{"role": "user", "content": "Name two rivers in Spain."}]


class JudgeLogger(CustomLogger):
    """A litellm callback that calls a model once after a successful call, as a judge would."""

    def __init__(self, server) -> None:
        super().__init__()
        self.server = server
        self.judged = 0

    async def async_log_success_event(self, kwargs, response_obj, start_time, end_time):
        if self.judged:
            return
        self.judged += 1
        await litellm.acompletion(
            model="openai/fake-judge", messages=MESSAGES, api_base=self.server.base_url, api_key="sk-test"
        )


async def test_callback_call_recorded(records, fake_server):
    judge = JudgeLogger(fake_server)
    litellm.callbacks.append(judge)
    try:
        await litellm.acompletion(
            model="openai/fake-model", messages=MESSAGES, api_base=fake_server.base_url, api_key="sk-test"
        )
        for _ in range(100):  # litellm runs the callback in a Task of its own: let the loop run it
            if len(records.records) >= 2:
                break
            await asyncio.sleep(0.05)
        found = records.wait_for(2)
    finally:
        litellm.callbacks.remove(judge)

    models = sorted(record.requested_model for record in found)
    assert models == ["openai/fake-judge", "openai/fake-model"]
    assert len(fake_server.requests) == 2
