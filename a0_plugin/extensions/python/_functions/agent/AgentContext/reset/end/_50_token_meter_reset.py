"""Clear a chat's token figures when A0 resets the chat."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterReset(Extension):
    def execute(self, data: dict | None = None, **kwargs):
        hooks.reset(data)
