"""Tests of compat_matrix/a0_probe.py on small stand-in A0 trees (see a0_standin.py)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from a0_standin import build_standin_v1, build_standin_v2, write

from compat_matrix import a0_probe

PROBE = Path(a0_probe.__file__)
PYTHON_312 = Path("/root/.pyenv/versions/3.12.1/bin/python")


@pytest.fixture
def standin_v1(tmp_path: Path) -> Path:
    return build_standin_v1(tmp_path / "standin-v1")


@pytest.fixture
def standin_v2(tmp_path: Path) -> Path:
    return build_standin_v2(tmp_path / "standin-v2")


# ----- facts ---------------------------------------------------------------------------------------


def test_litellm_bindings_and_calls(standin_v1: Path) -> None:
    litellm = a0_probe.probe(str(standin_v1), with_environment=False)["litellm"]

    assert litellm["bindings"] == {"models.py": ["acompletion", "completion", "embedding"]}
    assert litellm["local_bindings"] == {"plugins/_browser/helpers/browser_llm.py": ["acompletion"]}
    assert litellm["aliases"] == {"plugins/_browser/helpers/browser_llm.py": {"ask_model": "acompletion"}}
    assert litellm["submodule_bindings"] == {
        "plugins/_browser/helpers/browser_llm.py": {"litellm.main": ["completion"]}
    }
    assert litellm["attribute_calls"] == {"plugins/_browser/helpers/browser_llm.py": ["get_model_info"]}
    assert litellm["call_sites"]["models.py"] == {
        "acompletion": ["LiteLLMChatWrapper.unified_call"],
        "completion": ["LiteLLMChatWrapper._call"],
    }
    assert litellm["call_sites"]["plugins/_browser/helpers/browser_llm.py"]["acompletion"] == ["ask"]


def test_litellm_bindings_moved_in_v2(standin_v2: Path) -> None:
    facts = a0_probe.probe(str(standin_v2), with_environment=False)

    assert facts["litellm"]["bindings"] == {
        "helpers/litellm_transport.py": ["acompletion", "aresponses", "completion", "responses"],
        "models.py": ["embedding"],
    }
    assert facts["litellm"]["call_sites"]["helpers/litellm_transport.py"] == {
        "aresponses": ["LiteLLMTransport.astream"]
    }
    assert facts["agent_loop"] == {"chat_methods": {"call_chat_model_turn": True}}
    assert "Agent.call_chat_model_turn" in facts["signatures"]


def test_skipped_folders_are_not_read(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert not any(path.startswith(("usr/", "tests/")) for path in facts["litellm"]["bindings"])
    assert "docs-only" not in facts["webui"]["slots"]


def test_signatures(standin_v1: Path) -> None:
    signatures = a0_probe.probe(str(standin_v1), with_environment=False)["signatures"]

    chat = signatures["Agent.call_chat_model"]
    assert chat["async"] is True
    assert chat["file"] == "agent.py"
    assert chat["decorators"] == ["extension.extensible"]
    assert chat["parameters"] == [
        {"name": "self", "kind": "positional_or_keyword", "default": None},
        {"name": "messages", "kind": "positional_or_keyword", "default": None},
        {"name": "response_callback", "kind": "positional_or_keyword", "default": "None"},
        {"name": "explicit_caching", "kind": "keyword_only", "default": "True"},
        {"name": "kwargs", "kind": "var_keyword", "default": None},
    ]
    assert "Agent.call_chat_model_turn" not in signatures

    wrapper = signatures["LiteLLMChatWrapper.unified_call"]
    assert wrapper["file"] == "models.py"
    assert [parameter["kind"] for parameter in wrapper["parameters"]] == [
        "positional_only",
        "positional_only",
        "positional_only",
        "positional_only",
        "var_keyword",
    ]
    assert wrapper["parameters"][1]["default"] == '""'


def test_extension_points_and_hooks(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    points = facts["extension_points"]
    assert sorted(points) == ["chat_model_call_after", "chat_model_call_before", "util_model_call_before"]
    assert points["chat_model_call_before"] == {
        "call_data_keys": ["messages", "model"],
        "files": ["agent.py"],
        "kwargs": ["call_data"],
    }
    assert points["chat_model_call_after"]["kwargs"] == ["call_data", "response"]

    hooks = facts["extensible_functions"]
    assert sorted(hooks) == [
        "_functions/__main__/init_a0",
        "_functions/agent/Agent/call_chat_model",
        "_functions/agent/Agent/call_utility_model",
        "_functions/agent/Agent/monologue",
        "_functions/agent/AgentContext/reset",
    ]
    assert hooks["_functions/__main__/init_a0"] == {"async": False, "file": "run_ui.py", "qualname": "init_a0"}
    assert facts["agent_loop"] == {"chat_methods": {"call_chat_model": True}}


def test_plugin_system(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert facts["plugin_system"] == {
        "api_route": True,
        "asset_routes": ["/plugins/<plugin_name>/<path:asset_path>"],
        "loader": "helpers/plugins.py",
        "meta_file": "plugin.yaml",
        "present": True,
        "roots": ["usr/plugins", "plugins"],
    }
    assert facts["extension_system"] == {
        "extensible_decorator": True,
        "folders": ["extensions/python", "extensions/webui"],
        "module": "helpers/extension.py",
    }
    assert facts["layout"] == {"helpers_package": "helpers", "unparsed_files": []}


def test_no_plugin_system_without_loader(standin_v1: Path) -> None:
    (standin_v1 / "helpers/plugins.py").unlink()

    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert facts["plugin_system"]["present"] is False
    assert facts["plugin_system"]["roots"] == []
    assert facts["apis"]["helpers/plugins.py:get_plugin_config"] is None


def test_apis_and_agent_context(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)
    apis = facts["apis"]

    assert sorted(apis) == sorted(a0_probe.API_SYMBOLS)
    assert apis["helpers/api.py:Request"] == {"from": "flask", "kind": "import"}
    assert apis["helpers/api.py:ApiHandler"] == {"bases": [], "kind": "class"}
    assert apis["agent.py:AgentContext.get"]["decorators"] == ["staticmethod"]
    dirty = apis["helpers/state_monitor_integration.py:mark_dirty_for_context"]
    assert [parameter["name"] for parameter in dirty["parameters"]] == ["context_id", "reason"]
    assert facts["agent_context"] == {"output_data": True, "output_data_in_snapshot": True, "output_data_saved": True}


def test_context_limit(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert facts["context_limit"] == {
        "conf_holders": ["models.py:LiteLLMChatWrapper"],
        "config_classes": ["models.py:ModelConfig"],
        "default_chat_ctx_length": 128000,
    }
    assert facts["model_wrappers"] == {
        "models.py:LiteLLMChatWrapper": {"holds_model_conf": True, "methods": ["unified_call"]}
    }


def test_webui_and_pins(standin_v1: Path) -> None:
    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert facts["webui"]["slots"] == {
        "chat-top-end": ["webui/components/chat/top-section/chat-top.html"],
        "chat-top-start": ["webui/components/chat/top-section/chat-top.html"],
        "page-head": ["webui/index.html"],
    }
    assert facts["webui"]["stores"] == {"chats": ["webui/components/sidebar/chats/chats-store.js"]}
    assert facts["webui"]["alpine_store_module"] is True
    assert facts["webui"]["chats_selected_context"] is True
    assert facts["pins"] == {
        "litellm": {"file": "requirements.txt", "spec": "==1.79.3", "version": "1.79.3"},
        "wrapt": None,
    }


def test_unparsable_file_is_listed(standin_v1: Path) -> None:
    write(standin_v1, "helpers/broken.py", "def broken(:\n")

    facts = a0_probe.probe(str(standin_v1), with_environment=False)

    assert facts["layout"]["unparsed_files"] == ["helpers/broken.py"]


def test_environment_section(standin_v1: Path) -> None:
    with_environment = a0_probe.probe(str(standin_v1))["environment"]

    assert with_environment["python"] == ".".join(map(str, sys.version_info[:3]))
    assert set(with_environment) == {"python", "litellm", "wrapt"}
    assert a0_probe.probe(str(standin_v1), with_environment=False)["environment"] is None


def test_tree_version_from_git(standin_v1: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-C", str(standin_v1), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "stand-in"], check=True)
    subprocess.run([*git, "tag", "-a", "v9.9", "-m", "annotated"], check=True)
    subprocess.run([*git, "tag", "light"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    version = a0_probe.probe(str(standin_v1), with_environment=False)["tree_version"]

    assert version == {"git_head": head, "git_tags": ["light", "v9.9"]}


def test_tree_version_without_git(standin_v1: Path) -> None:
    version = a0_probe.probe(str(standin_v1), with_environment=False)["tree_version"]

    assert version == {"git_head": None, "git_tags": []}


# ----- command line --------------------------------------------------------------------------------


def run_probe(python: str, root: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([python, str(PROBE), "--root", str(root), *extra], capture_output=True, text=True, timeout=60)


def test_cli_prints_sorted_json(standin_v2: Path) -> None:
    result = run_probe(sys.executable, standin_v2, "--no-environment")

    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)
    assert facts["probe_version"] == a0_probe.PROBE_VERSION
    assert facts == a0_probe.probe(str(standin_v2), with_environment=False)
    assert result.stdout == json.dumps(facts, indent=2, sort_keys=True) + "\n"


def test_cli_rejects_tree_without_agent(tmp_path: Path) -> None:
    result = run_probe(sys.executable, tmp_path)

    assert result.returncode == 2
    assert "has no agent.py" in result.stderr
    assert result.stdout == ""


def test_cli_same_facts_under_python_312(standin_v2: Path) -> None:
    if not PYTHON_312.is_file():
        pytest.skip(f"{PYTHON_312} not found: cannot compare the facts under Python 3.12")

    ours = run_probe(sys.executable, standin_v2, "--no-environment")
    theirs = run_probe(str(PYTHON_312), standin_v2, "--no-environment")

    assert theirs.returncode == 0, theirs.stderr
    assert theirs.stdout == ours.stdout
