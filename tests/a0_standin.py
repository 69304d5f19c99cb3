"""Stand-in A0 trees for the probe and contract tests.

The stand-ins imitate the parts of A0's layout that compat_matrix/a0_probe.py reads (agent.py, models.py,
helpers/, run_ui.py, webui/, requirements). They are not A0 code.
"""

from __future__ import annotations

import textwrap
from pathlib import Path


def write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")


STANDIN_AGENT_V1 = """
    from helpers import extension


    class AgentContext:
        def __init__(self, id, output_data=None):
            self.id = id
            self.output_data = output_data or {}

        @staticmethod
        def get(id: str):
            return None

        @staticmethod
        def current():
            return None

        def is_running(self):
            return False

        def output(self):
            return {"id": self.id, **self.output_data}

        @extension.extensible
        def reset(self):
            pass


    class Agent:
        @extension.extensible
        async def monologue(self):
            response, _ = await self.call_chat_model(messages=[])
            return response

        @extension.extensible
        async def call_utility_model(self, system: str, message: str, callback=None, background: bool = False):
            call_data = {"model": None, "system": system, "message": message}
            await extension.call_extensions_async("util_model_call_before", self, call_data=call_data)

        @extension.extensible
        async def call_chat_model(self, messages, response_callback=None, *, explicit_caching: bool = True, **kwargs):
            call_data = {"model": None, "messages": messages}
            await extension.call_extensions_async("chat_model_call_before", self, call_data=call_data)
            await extension.call_extensions_async("chat_model_call_after", self, call_data=call_data, response="")
            return "", ""
"""

STANDIN_MODELS_V1 = """
    from dataclasses import dataclass
    from litellm import completion, acompletion, embedding
    import litellm


    @dataclass
    class ModelConfig:
        name: str
        ctx_length: int = 0


    class LiteLLMChatWrapper:
        def __init__(self, model_config):
            self.a0_model_conf = model_config

        async def unified_call(self, system_message="", user_message="", messages=None, /, **kwargs):
            return await acompletion(model="x", messages=messages, stream=True)

        def _call(self):
            return completion(model="x", messages=[])
"""

STANDIN_EXTENSION = """
    from helpers import subagents


    def extensible(func):
        return func


    class Extension:
        def __init__(self, agent, **kwargs):
            self.agent = agent


    async def call_extensions_async(extension_point, agent=None, **kwargs):
        return subagents.get_paths(agent, "extensions/python", extension_point)


    def get_webui_extensions(agent, extension_point):
        return subagents.get_paths(agent, "extensions/webui", extension_point)
"""

STANDIN_PLUGINS = """
    from typing import Literal
    from helpers import files

    META_FILE_NAME = "plugin.yaml"

    # A PEP 695 alias: Python 3.11 cannot parse it, so the probe retries with it rewritten.
    type ToggleState = Literal["enabled", "disabled"]


    def get_plugin_roots(plugin_name: str = ""):
        return [
            files.get_abs_path(files.USER_DIR, files.PLUGINS_DIR, plugin_name),
            files.get_abs_path(files.PLUGINS_DIR, plugin_name),
        ]


    def get_plugin_config(plugin_name, agent=None):
        return {}


    def find_plugin_dir(name):
        return None
"""

STANDIN_API = """
    from flask import Request, Response
    from helpers import plugins


    class ApiHandler:
        async def process(self, input: dict, request: Request) -> dict:
            return {}


    def dispatch(path):
        if path.startswith("plugins/"):
            return plugins.find_plugin_dir(path.split("/")[1])
"""


def build_standin_v1(root: Path) -> Path:
    """Write a stand-in of an A0 1.x tree (plugin system, litellm names bound in models.py)."""
    write(root, "agent.py", STANDIN_AGENT_V1)
    write(root, "models.py", STANDIN_MODELS_V1)
    write(root, "helpers/__init__.py", "")
    write(root, "helpers/files.py", 'USER_DIR = "usr"\nPLUGINS_DIR = "plugins"\n')
    write(root, "helpers/extension.py", STANDIN_EXTENSION)
    write(root, "helpers/plugins.py", STANDIN_PLUGINS)
    write(root, "helpers/api.py", STANDIN_API)
    write(
        root,
        "helpers/state_monitor_integration.py",
        "def mark_dirty_for_context(context_id: str, *, reason: str | None = None) -> None:\n    pass\n",
    )
    write(root, "helpers/persist_chat.py", 'def save_tmp_chat(context):\n    data = {"output_data": {}}\n')
    write(
        root,
        "helpers/print_style.py",
        """
        class PrintStyle:
            @staticmethod
            def info(*args): pass

            @staticmethod
            def warning(*args): pass

            @staticmethod
            def error(*args): pass
        """,
    )
    write(
        root,
        "run_ui.py",
        """
        from helpers import extension

        ROUTE = "/plugins/<plugin_name>/<path:asset_path>"


        @extension.extensible
        def init_a0():
            pass


        if __name__ == "__main__":
            init_a0()
        """,
    )
    write(
        root,
        "plugins/_browser/helpers/browser_llm.py",
        """
        import litellm as ll


        async def ask():
            from litellm import acompletion as ask_model
            from litellm.main import completion
            ll.get_model_info("x")
            return await ask_model(model="x", messages=[])
        """,
    )
    write(
        root,
        "plugins/_model_config/default_config.yaml",
        """
        chat_model:
          provider: "openai"
          ctx_length: 128000
        utility_model:
          ctx_length: 64000
        """,
    )
    write(
        root,
        "webui/components/chat/top-section/chat-top.html",
        '<div><x-extension id="chat-top-start"></x-extension><x-extension id="chat-top-end"></x-extension></div>\n',
    )
    write(root, "webui/index.html", "<body><x-extension id='page-head'></x-extension></body>\n")
    write(root, "webui/js/AlpineStore.js", "export function createStore(name, initialState) { return {}; }\n")
    write(
        root,
        "webui/components/sidebar/chats/chats-store.js",
        'const model = { selectedContext: null };\nconst store = createStore("chats", model);\n',
    )
    write(root, "requirements.txt", "flask==3.0.0\nlitellm==1.79.3  # pinned\n")
    write(root, "requirements2.txt", "litellm>=1.80\n")

    # Skipped by the probe: installed plugins and user data under usr/, tests, documentation.
    write(root, "usr/plugins/other/helpers/x.py", "from litellm import text_completion\n")
    write(root, "tests/test_models.py", "from litellm import atext_completion\n")
    write(root, "docs/page.html", '<x-extension id="docs-only"></x-extension>\n')
    return root


def build_standin_v2(root: Path) -> Path:
    """Write a stand-in of an A0 2.x tree: litellm names in helpers/litellm_transport.py, a chat turn method."""
    build_standin_v1(root)
    agent = STANDIN_AGENT_V1.replace(
        "response, _ = await self.call_chat_model(messages=[])",
        "response = await self.call_chat_model_turn(messages=[])",
    )
    agent += """
        @extension.extensible
        async def call_chat_model_turn(self, messages, response_callback=None, background: bool = False):
            return None
    """
    write(root, "agent.py", agent)
    write(
        root,
        "models.py",
        STANDIN_MODELS_V1.replace(
            "from litellm import completion, acompletion, embedding", "from litellm import embedding"
        )
        .replace("return await acompletion(", "return await transport(")
        .replace("return completion(", "return transport("),
    )
    write(
        root,
        "helpers/litellm_transport.py",
        """
        from litellm import (
            acompletion,
            aresponses,
            completion,
            responses,
        )


        class LiteLLMTransport:
            async def astream(self):
                return await aresponses(input="x", model="y", stream=True)
        """,
    )
    return root
