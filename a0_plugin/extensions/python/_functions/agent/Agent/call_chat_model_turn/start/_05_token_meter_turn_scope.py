"""Attribute the LLM calls of a chat-model turn (A0 2.x's main chat call) to the chat, agent and role "chat"."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterChatTurnStart(Extension):
    async def execute(self, data: dict | None = None, **kwargs):
        hooks.start_scope(hooks.agent_from(data, self.agent), data, "chat")
