"""The plugin runtime with stand-ins for A0 and real litellm calls to the fake server.

Calls go through the vendored shim (``token_meter.helpers.shim``) installed by the plugin's own hooks,
as in A0. The A0 objects are stand-ins (see conftest), so this proves the plugin's logic only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading

import litellm
import pytest

MESSAGES = [{"role": "user", "content": "Name three mountains in the Alps."}]


async def chat_call(server, model: str = "fake-model@usage=finish") -> None:
    stream = await litellm.acompletion(
        model=f"openai/{model}", messages=MESSAGES, api_base=server.base_url, api_key="sk-test", stream=True
    )
    async for _ in stream:
        pass


def utility_call(server) -> None:
    litellm.completion(model="openai/fake-utility", messages=MESSAGES, api_base=server.base_url, api_key="sk-test")


class StandInModel:
    """Stand-in for A0's model wrapper: only ``a0_model_conf`` is read."""

    def __init__(self, ctx_length: int) -> None:
        self.a0_model_conf = type("Conf", (), {"ctx_length": ctx_length, "provider": "other", "name": "fake-model"})()


async def test_chat_and_utility_attributed(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("chat-x")
    agent = context.agent0

    chat_data: dict = {"args": (agent,)}
    hooks.start_scope(agent, chat_data, "chat")
    hooks.remember_chat_model(agent, {"model": StandInModel(120000)})
    await chat_call(fake_server)
    hooks.end_scope(chat_data)
    chat_sent = fake_server.requests[-1]["usage"]

    utility_data: dict = {}
    hooks.start_scope(agent, utility_data, "utility")
    await asyncio.to_thread(utility_call, fake_server)
    hooks.end_scope(utility_data)
    utility_sent = fake_server.requests[-1]["usage"]

    figures = context.output_data["token_meter"]
    assert figures["last"]["prompt"] == chat_sent["prompt_tokens"]
    assert figures["last"]["cached"] == chat_sent["prompt_tokens_details"]["cached_tokens"]
    assert figures["last"]["source"] == "provider"
    assert figures["last"]["limit"]["tokens"] == 120000
    assert figures["last"]["fill_percent"] == round(100 * chat_sent["prompt_tokens"] / 120000, 1)
    assert figures["totals"]["chat"]["calls"] == 1
    assert figures["totals"]["utility"]["prompt"] == utility_sent["prompt_tokens"]
    assert figures["agents"]["0"]["calls"] == 2
    assert figures["status"] == {"state": "ok", "message": None}
    assert figures["view"]["level"] == "ok"
    assert "chat-x" in a0.dirty
    assert chat_data == {"args": (agent,)}, "the scope token must be removed from the hook data"


async def test_two_chats_kept_apart(plugin, fake_server):
    meter, hooks, a0 = plugin
    first, second = a0.add("chat-x"), a0.add("chat-y")

    async def one_call(context) -> None:
        data: dict = {}
        hooks.start_scope(context.agent0, data, "chat")
        await chat_call(fake_server, "fake-model@usage=finish,delay=0.01")
        hooks.end_scope(data)

    await asyncio.gather(one_call(first), one_call(second), one_call(first))

    assert first.output_data["token_meter"]["totals"]["chat"]["calls"] == 2
    assert second.output_data["token_meter"]["totals"]["chat"]["calls"] == 1


async def test_call_outside_hooks_uses_fallback(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("chat-z")
    meter.ensure_installed(None)

    a0.current = "chat-z"
    await asyncio.to_thread(utility_call, fake_server)
    a0.current = None

    figures = context.output_data["token_meter"]
    assert figures["totals"]["other"]["calls"] == 1
    assert figures["totals"]["other"]["prompt"] == fake_server.requests[-1]["usage"]["prompt_tokens"]


async def test_browser_thread_name_attributes(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("brw1")
    meter.ensure_installed(None)

    thread = threading.Thread(target=utility_call, args=(fake_server,), name="BrowserAgentbrw1")
    thread.start()
    thread.join()

    assert context.output_data["token_meter"]["totals"]["other"]["calls"] == 1


async def test_unknown_chat_goes_to_unattributed(plugin, fake_server):
    meter, hooks, a0 = plugin
    meter.ensure_installed(None)

    await asyncio.to_thread(utility_call, fake_server)

    figures = meter.unattributed_figures()
    assert figures["totals"]["other"]["calls"] == 1
    assert figures["totals"]["other"]["prompt"] == fake_server.requests[-1]["usage"]["prompt_tokens"]


async def test_idle_chat_saved_after_update(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("idle", running=False)

    data: dict = {}
    hooks.start_scope(context.agent0, data, "utility")
    await asyncio.to_thread(utility_call, fake_server)
    hooks.end_scope(data)

    assert a0.saved == ["idle"]


async def test_reset_clears_figures(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("chat-r")
    data: dict = {}
    hooks.start_scope(context.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)
    assert context.output_data["token_meter"]["totals"]["chat"]["calls"] == 1

    hooks.reset({"args": (context,)})

    figures = context.output_data["token_meter"]
    assert figures["totals"]["chat"]["calls"] == 0
    assert figures["last"] is None
    assert figures["view"]["badge"] == "no calls yet"


@pytest.mark.parametrize(("prompt_share", "level"), [(0.5, "ok"), (0.75, "warn"), (0.95, "critical")])
async def test_levels_follow_config(plugin, fake_server, prompt_share, level):
    meter, hooks, a0 = plugin
    context = a0.add("chat-l")
    data: dict = {}
    hooks.start_scope(context.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)
    prompt = fake_server.requests[-1]["usage"]["prompt_tokens"]

    meter.remember_chat_model(context.agent0, StandInModel(int(prompt / prompt_share)))
    data = {}
    hooks.start_scope(context.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)

    assert context.output_data["token_meter"]["view"]["level"] == level


async def test_refused_install_shows_unavailable(plugin, fake_server, monkeypatch):
    meter, hooks, a0 = plugin
    context = a0.add("chat-u")
    monkeypatch.delattr(litellm, "aresponses")

    data: dict = {}
    hooks.start_scope(context.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)

    figures = context.output_data["token_meter"]
    assert figures["status"]["state"] == "unavailable"
    assert "aresponses" in figures["status"]["message"]
    assert figures["totals"]["chat"]["calls"] == 0
    assert any(level == "error" for level, _ in a0.logs)


async def test_saved_figures_survive_reload(plugin, fake_server):
    meter, hooks, a0 = plugin
    context = a0.add("chat-p")
    data: dict = {}
    hooks.start_scope(context.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)
    saved = context.output_data["token_meter"]

    restored = a0.add("chat-p")  # as after an A0 restart: output_data comes back from chat.json
    restored.output_data["token_meter"] = saved
    data = {}
    hooks.start_scope(restored.agent0, data, "chat")
    await chat_call(fake_server)
    hooks.end_scope(data)

    assert restored.output_data["token_meter"]["totals"]["chat"]["calls"] == 2
    assert restored.output_data["token_meter"]["history"] == [
        saved["history"][0],
        fake_server.requests[-1]["usage"]["prompt_tokens"],
    ]


def test_missing_wrapt_reported_unavailable(plugin_tree):
    # A0's environment without wrapt: the plugin must load, say why it cannot record, and not raise.
    script = (
        "import sys; sys.modules['wrapt'] = None\n"
        "from token_meter.helpers import meter, hooks\n"
        "class Context:\n"
        "    id = 'c1'\n"
        "    output_data = {}\n"
        "    agent0 = None\n"
        "class Agent:\n"
        "    context = Context()\n"
        "    number = 0\n"
        "meter.a0_bridge.get_context = lambda context_id: Context\n"
        "data = {}\n"
        "hooks.start_scope(Agent(), data, 'chat')\n"
        "hooks.end_scope(data)\n"
        "print(Context.output_data['token_meter']['status']['state'])\n"
        "print(Context.output_data['token_meter']['status']['message'])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=plugin_tree.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(plugin_tree.parent)},
    )

    assert result.returncode == 0, result.stderr
    state, message = result.stdout.strip().splitlines()[-2:]
    assert state == "unavailable"
    assert "wrapt" in message


@pytest.mark.parametrize(
    ("saved", "expected"),
    [
        ({"history_length": 0}, {"history_length": 2}),
        ({"history_length": 100000}, {"history_length": 200}),
        ({"history_length": True}, {"history_length": 40}),
        ({"warn_at": 95, "critical_at": 90}, {"warn_at": 70, "critical_at": 90}),
        ({"warn_at": 60.5}, {"warn_at": 60}),
        ({"show_cost": 0}, {"show_cost": True}),
        ({"show_cost": False, "unknown": 1}, {"show_cost": False}),
    ],
)
def test_config_values_validated(plugin, saved, expected):
    meter, hooks, a0 = plugin
    a0.config = saved

    settings = meter.config()

    for key, value in expected.items():
        assert settings[key] == value, key
    assert "unknown" not in settings
