"""Keep the chat model's configured context length for the token meter."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterChatModel(Extension):
    async def execute(self, call_data: dict | None = None, **kwargs):
        hooks.remember_chat_model(self.agent, call_data)
