"""Attribute the LLM calls inside Agent.call_chat_model to the agent's chat, agent number and role "chat"."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterChatCallStart(Extension):
    async def execute(self, data: dict | None = None, **kwargs):
        hooks.start_scope(hooks.agent_from(data, self.agent), data, "chat")
