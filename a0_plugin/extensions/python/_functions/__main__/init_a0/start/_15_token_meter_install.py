"""Install the token_meter usage recorder when A0 starts."""

from helpers.extension import Extension
from usr.plugins.token_meter.helpers import hooks


class TokenMeterInstall(Extension):
    def execute(self, **kwargs):
        hooks.startup()
