"""Attribute the LLM calls inside Agent.monologue to the agent's chat, agent number and role "other"."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterMonologueStart(Extension):
    async def execute(self, data: dict | None = None, **kwargs):
        hooks.start_scope(hooks.agent_from(data, self.agent), data, "other")
