"""Attribute the LLM calls inside Agent.call_utility_model to the agent's chat, agent number and role "utility"."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterUtilityCallStart(Extension):
    async def execute(self, data: dict | None = None, **kwargs):
        hooks.start_scope(hooks.agent_from(data, self.agent), data, "utility")
