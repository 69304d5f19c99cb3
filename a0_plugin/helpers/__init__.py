"""Python helpers of the token_meter plugin, imported as ``usr.plugins.token_meter.helpers``."""
