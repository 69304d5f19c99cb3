"""End the usage scope of a chat-model turn; streams it left open are recorded now."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterChatTurnEnd(Extension):
    async def execute(self, data: dict | None = None, **kwargs):
        hooks.end_scope(data)
