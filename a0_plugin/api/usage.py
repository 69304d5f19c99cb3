"""POST /api/plugins/token_meter/usage: the full token figures of one chat.

Input: ``{"context_id": "<chat id>"}``. Output: ``{"ok": true, "context_id", "figures", "status"}``, or
``{"ok": false, "error"}`` for a missing or unknown id. Unknown ids never create a chat. With
``{"unattributed": true}`` it returns the figures of calls whose chat could not be determined. Uses A0's
default authentication and CSRF protection.
"""

from helpers.api import ApiHandler, Request
from usr.plugins.token_meter.helpers import meter


class TokenMeterUsage(ApiHandler):
    async def process(self, input: dict, request: Request) -> dict:
        status = meter.ensure_installed(None)
        if input.get("unattributed"):
            return {"ok": True, "figures": meter.unattributed_figures(), "status": status}

        context_id = input.get("context_id")
        if not isinstance(context_id, str) or not context_id:
            return {"ok": False, "error": "context_id is missing: pass the chat id as a string"}
        figures = meter.chat_figures(context_id)
        if figures is None:
            return {"ok": False, "error": f"chat {context_id!r} not found"}
        return {"ok": True, "context_id": context_id, "figures": figures, "status": status}
