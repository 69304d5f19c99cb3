"""Contract probe: read an Agent Zero (A0) source tree and print the facts Token Meter relies on as JSON.

Run it with A0's own interpreter inside the tree it describes::

    python a0_probe.py --root /a0 [--no-environment] [--output FILE]

The probe uses only the standard library and never imports A0: it parses Python files with ``ast`` and
reads HTML, JavaScript, YAML and requirements files as text, so it works on a tree whose dependencies are
not installed. It is written for Python 3.9 and later and tested on 3.11, 3.12 and 3.13. A file with
syntax newer than the running interpreter is retried with PEP 695 ``type X = ...`` aliases rewritten as
plain assignments (A0 0.9.8 to 2.6 use them in the subagents helper, and 0.9.9.0 to 2.6 in the plugins
helper). A file that still fails is listed in ``layout.unparsed_files``.

The output is deterministic: keys sorted, lists sorted, paths relative to the root with ``/``. Only the
``environment`` section depends on the interpreter (its Python, litellm and wrapt versions), and
``--no-environment`` sets it to null, so that the same tree gives the same facts under any interpreter.

Where the probe looks: every file under the root except hidden folders, ``__pycache__``, ``node_modules``,
``tests``/``test`` folders, virtual environments, and the top-level ``usr``, ``tmp``, ``logs``, ``docs``
and ``knowledge`` folders (user data, runtime state and documentation, including any installed plugin).
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import re
import sys
import warnings
import zlib
from collections.abc import Iterator
from typing import Any

PROBE_VERSION = 1

TOP_LEVEL_SKIPPED = {"usr", "tmp", "logs", "docs", "knowledge"}
SKIPPED_ANYWHERE = {"__pycache__", "node_modules", "tests", "test", "venv", ".venv", "site-packages"}

# The A0 names the Token Meter plugin imports or calls, as "file:qualified name".
API_SYMBOLS = (
    "agent.py:AgentContext",
    "agent.py:AgentContext.current",
    "agent.py:AgentContext.get",
    "agent.py:AgentContext.is_running",
    "helpers/api.py:ApiHandler",
    "helpers/api.py:ApiHandler.process",
    "helpers/api.py:Request",
    "helpers/extension.py:Extension",
    "helpers/extension.py:extensible",
    "helpers/persist_chat.py:save_tmp_chat",
    "helpers/plugins.py:get_plugin_config",
    "helpers/print_style.py:PrintStyle",
    "helpers/print_style.py:PrintStyle.error",
    "helpers/print_style.py:PrintStyle.info",
    "helpers/print_style.py:PrintStyle.warning",
    "helpers/state_monitor_integration.py:mark_dirty_for_context",
)

# Agent methods whose signatures are reported when the class defines them.
AGENT_METHODS = ("call_chat_model", "call_chat_model_turn", "call_utility_model")

# Functions that run a named extension point: module-level (A0 0.9.9+) and Agent's method (A0 0.9.8).
EXTENSION_CALLERS = {"call_extensions", "call_extensions_async", "call_extensions_sync"}

# A model wrapper is a class that defines this method. Its methods starting with the prefix are reported.
MODEL_WRAPPER_METHOD = "unified_call"
MODEL_WRAPPER_PREFIX = "unified_"

PINNED_PACKAGES = ("litellm", "wrapt")

_TYPE_ALIAS_RE = re.compile(r"^([ \t]*)type[ \t]+([A-Za-z_]\w*)[ \t]*(\[[^\]\n]*\])?[ \t]*=", re.MULTILINE)
_SLOT_RE = re.compile(r"<x-extension\b[^>]*?\bid\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)
_CREATE_STORE_RE = re.compile(r"\bcreateStore\(\s*[\"']([^\"']+)[\"']")
_EXPORT_CREATE_STORE_RE = re.compile(r"\bexport\s+(?:async\s+)?function\s+createStore\b")
_REQUIREMENT_RE = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(\[[^\]]*\])?\s*([<>=!~][^;#]*)?")


# ----- files -----------------------------------------------------------------------------------------


def list_files(root: str) -> dict[str, list[str]]:
    """Return the relative paths of the ``.py``, ``.html`` and ``.js`` files the probe reads, sorted."""
    found: dict[str, list[str]] = {".py": [], ".html": [], ".js": []}
    for folder, subfolders, names in os.walk(root):
        relative_folder = os.path.relpath(folder, root)
        at_top = relative_folder == "."
        subfolders[:] = [
            name
            for name in subfolders
            if not name.startswith(".") and name not in SKIPPED_ANYWHERE and not (at_top and name in TOP_LEVEL_SKIPPED)
        ]
        for name in names:
            extension = os.path.splitext(name)[1]
            if extension in found:
                path = name if at_top else os.path.join(relative_folder, name)
                found[extension].append(path.replace(os.sep, "/"))
    for paths in found.values():
        paths.sort()
    return found


def read_text(root: str, relative: str) -> str | None:
    """Return a file's text (UTF-8, undecodable bytes replaced), or None when it cannot be read."""
    try:
        with open(os.path.join(root, relative), encoding="utf-8", errors="replace") as file:
            return file.read()
    except OSError:
        return None


def parse_python(source: str, relative: str) -> ast.Module | None:
    """Parse a module, retrying with PEP 695 type aliases rewritten. Return None when it still fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(source, relative)
        except SyntaxError:
            pass
        rewritten = _TYPE_ALIAS_RE.sub(lambda match: f"{match.group(1)}{match.group(2)} =", source)
        if rewritten == source:
            return None
        try:
            return ast.parse(rewritten, relative)
        except SyntaxError:
            return None


def module_name(relative: str) -> str:
    """Return the dotted module name of a file path: ``helpers/api.py`` -> ``helpers.api``."""
    stem = relative[: -len(".py")] if relative.endswith(".py") else relative
    if stem.endswith("/__init__"):
        stem = stem[: -len("/__init__")]
    return stem.replace("/", ".")


# ----- Python facts ----------------------------------------------------------------------------------


def source_text(source: str, node: ast.AST) -> str:
    """Return the source text of a node, or its unparsed form when the segment is unavailable."""
    segment = ast.get_source_segment(source, node)
    if segment is not None:
        return " ".join(segment.split())
    return ast.unparse(node) if hasattr(ast, "unparse") else ast.dump(node)


def signature_of(function: ast.AST, source: str) -> dict[str, Any]:
    """Describe a function: async or not, decorators, and its parameters with kind and default source."""
    arguments = function.args  # type: ignore[attr-defined]
    parameters: list[dict[str, Any]] = []

    positional = list(arguments.posonlyargs) + list(arguments.args)
    defaults: list[ast.AST | None] = [None] * (len(positional) - len(arguments.defaults)) + list(arguments.defaults)
    for index, argument in enumerate(positional):
        kind = "positional_only" if index < len(arguments.posonlyargs) else "positional_or_keyword"
        default = defaults[index]
        parameters.append(
            {"name": argument.arg, "kind": kind, "default": None if default is None else source_text(source, default)}
        )
    if arguments.vararg is not None:
        parameters.append({"name": arguments.vararg.arg, "kind": "var_positional", "default": None})
    # zip(strict=True) needs Python 3.10, and the ast grammar gives both lists the same length.
    for argument, default in zip(arguments.kwonlyargs, arguments.kw_defaults):  # noqa: B905
        parameters.append(
            {
                "name": argument.arg,
                "kind": "keyword_only",
                "default": None if default is None else source_text(source, default),
            }
        )
    if arguments.kwarg is not None:
        parameters.append({"name": arguments.kwarg.arg, "kind": "var_keyword", "default": None})

    return {
        "async": isinstance(function, ast.AsyncFunctionDef),
        "decorators": [source_text(source, decorator) for decorator in function.decorator_list],  # type: ignore
        "kind": "function",
        "parameters": parameters,
    }


def _decorator_name(decorator: ast.AST) -> str | None:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    return None


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _is_main_guard(node: ast.AST) -> bool:
    """True for ``if __name__ == "__main__":`` (either operand order)."""
    if not isinstance(node, ast.If) or not isinstance(node.test, ast.Compare):
        return False
    compare = node.test
    if len(compare.ops) != 1 or not isinstance(compare.ops[0], ast.Eq):
        return False
    operands = [compare.left, *compare.comparators]
    names = [operand.id for operand in operands if isinstance(operand, ast.Name)]
    strings = [operand.value for operand in operands if isinstance(operand, ast.Constant)]
    return names == ["__name__"] and strings == ["__main__"]


class ModuleScan(ast.NodeVisitor):
    """Collect the facts of one module in one pass over its syntax tree.

    ``qualname`` follows Python's ``__qualname__`` without ``<locals>`` (the form A0's ``@extensible`` uses
    to build hook paths).
    """

    def __init__(self, relative: str, source: str, tree: ast.Module) -> None:
        self.relative = relative
        self.source = source
        self.tree = tree
        self.stack: list[tuple[str, str, ast.AST]] = []  # (kind "class" or "def", name, node)

        self.litellm_module_names: dict[str, str] = {}  # bound name -> original litellm name (module scope)
        self.litellm_local_names: dict[str, str] = {}  # same, bound inside a function or class body
        self.litellm_submodule: dict[str, list[str]] = {}  # "litellm.main" -> names
        self.litellm_aliases: dict[str, str] = {}  # name bound to the litellm package -> "litellm"
        self.litellm_attribute_calls: list[str] = []
        self.litellm_call_sites: dict[str, list[str]] = {}  # original name -> qualnames calling it

        self.extension_calls: list[dict[str, Any]] = []
        self.extensible: list[dict[str, Any]] = []
        self.has_main_guard = any(_is_main_guard(node) for node in tree.body)

    # -- scope helpers --

    def qualname(self, name: str | None = None) -> str:
        parts = [part for _, part, _ in self.stack]
        if name:
            parts.append(name)
        return ".".join(parts)

    def enclosing_function(self) -> ast.AST | None:
        for kind, _, node in reversed(self.stack):
            if kind == "def":
                return node
        return None

    # -- visitors --

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.stack.append(("class", node.name, node))
        self.generic_visit(node)
        self.stack.pop()

    def _visit_function(self, node: ast.AST) -> None:
        name = node.name  # type: ignore[attr-defined]
        if any(_decorator_name(decorator) == "extensible" for decorator in node.decorator_list):  # type: ignore
            self.extensible.append({"qualname": self.qualname(name), "async": isinstance(node, ast.AsyncFunctionDef)})
        self.stack.append(("def", name, node))
        self.generic_visit(node)
        self.stack.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name == "litellm":
                self.litellm_aliases[alias.asname or "litellm"] = "litellm"
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module == "litellm":
            target = self.litellm_local_names if self.stack else self.litellm_module_names
            for alias in node.names:
                target[alias.asname or alias.name] = alias.name
        elif node.level == 0 and node.module and node.module.startswith("litellm."):
            names = self.litellm_submodule.setdefault(node.module, [])
            names.extend(alias.name for alias in node.names)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        self._record_litellm_call(node)
        self._record_extension_call(node)
        self.generic_visit(node)

    def _record_litellm_call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in self.litellm_aliases:
                self.litellm_attribute_calls.append(func.attr)
                self.litellm_call_sites.setdefault(func.attr, []).append(self.qualname() or "<module>")
            return
        if isinstance(func, ast.Name):
            original = self.litellm_local_names.get(func.id) or self.litellm_module_names.get(func.id)
            if original:
                self.litellm_call_sites.setdefault(original, []).append(self.qualname() or "<module>")

    def _record_extension_call(self, node: ast.Call) -> None:
        if _called_name(node) not in EXTENSION_CALLERS:
            return
        point_node: ast.AST | None = node.args[0] if node.args else None
        for keyword in node.keywords:
            if keyword.arg == "extension_point":
                point_node = keyword.value
        if not (isinstance(point_node, ast.Constant) and isinstance(point_node.value, str)):
            return  # a computed name (for example @extensible's start/end points)
        kwargs = sorted(
            keyword.arg for keyword in node.keywords if keyword.arg not in (None, "agent", "extension_point")
        )
        call_data_keys: list[str] = []
        for keyword in node.keywords:
            if keyword.arg == "call_data":
                call_data_keys = self._dict_literal_keys(keyword.value)
        self.extension_calls.append({"point": point_node.value, "kwargs": kwargs, "call_data_keys": call_data_keys})

    def _dict_literal_keys(self, value: ast.AST) -> list[str]:
        """Return the constant keys of a dict literal, or of the dict literal a local name was assigned."""
        if isinstance(value, ast.Dict):
            return sorted(
                key.value for key in value.keys if isinstance(key, ast.Constant) and isinstance(key.value, str)
            )
        if not isinstance(value, ast.Name):
            return []
        function = self.enclosing_function()
        if function is None:
            return []
        for statement in ast.walk(function):
            if (
                isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)
                and statement.targets[0].id == value.id
                and isinstance(statement.value, ast.Dict)
            ):
                return self._dict_literal_keys(statement.value)
        return []


def scan_modules(root: str, paths: list[str]) -> tuple[dict[str, ModuleScan], list[str]]:
    """Parse and scan every Python file. Return the scans by path and the files that could not be parsed."""
    scans: dict[str, ModuleScan] = {}
    unparsed: list[str] = []
    for relative in paths:
        source = read_text(root, relative)
        tree = parse_python(source, relative) if source is not None else None
        if tree is None:
            unparsed.append(relative)
            continue
        scan = ModuleScan(relative, source or "", tree)
        scan.visit(tree)
        scans[relative] = scan
    return scans, unparsed


def top_level(tree: ast.Module, name: str) -> ast.AST | None:
    """Return the last top-level statement that binds ``name`` (def, class, import or assignment)."""
    found: ast.AST | None = None
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            found = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                bound = alias.asname or alias.name.split(".")[0]
                if bound == name:
                    found = node
        elif isinstance(node, ast.Assign):
            if any(isinstance(target, ast.Name) and target.id == name for target in node.targets):
                found = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name:
            found = node
    return found


def class_member(node: ast.ClassDef, name: str) -> ast.AST | None:
    """Return the last function defined as ``name`` in a class body."""
    found: ast.AST | None = None
    for member in node.body:
        if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name == name:
            found = member
    return found


def describe_symbol(scan: ModuleScan, qualname: str) -> dict[str, Any] | None:
    """Describe ``Name`` or ``Class.method`` of a module, or None when the module does not define it."""
    head, _, rest = qualname.partition(".")
    node = top_level(scan.tree, head)
    if node is None:
        return None
    if rest:
        if not isinstance(node, ast.ClassDef):
            return None
        member = class_member(node, rest)
        if member is None:
            return None
        return signature_of(member, scan.source)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return signature_of(node, scan.source)
    if isinstance(node, ast.ClassDef):
        return {"bases": [source_text(scan.source, base) for base in node.bases], "kind": "class"}
    if isinstance(node, ast.ImportFrom):
        return {"from": ("." * node.level) + (node.module or ""), "kind": "import"}
    if isinstance(node, ast.Import):
        return {"from": None, "kind": "import"}
    return {"kind": "assignment"}


def api_facts(scans: dict[str, ModuleScan]) -> dict[str, dict[str, Any] | None]:
    apis: dict[str, dict[str, Any] | None] = {}
    for symbol in API_SYMBOLS:
        relative, _, qualname = symbol.partition(":")
        scan = scans.get(relative)
        apis[symbol] = describe_symbol(scan, qualname) if scan is not None else None
    return apis


def _sorted_unique(values: Any) -> list[Any]:
    return sorted(set(values))


def litellm_facts(scans: dict[str, ModuleScan]) -> dict[str, Any]:
    """Return where A0 binds and calls litellm's functions, by file."""
    bindings: dict[str, list[str]] = {}
    local_bindings: dict[str, list[str]] = {}
    aliases: dict[str, dict[str, str]] = {}
    submodule: dict[str, dict[str, list[str]]] = {}
    attribute_calls: dict[str, list[str]] = {}
    call_sites: dict[str, dict[str, list[str]]] = {}
    for relative, scan in scans.items():
        if scan.litellm_module_names:
            bindings[relative] = _sorted_unique(scan.litellm_module_names.values())
        if scan.litellm_local_names:
            local_bindings[relative] = _sorted_unique(scan.litellm_local_names.values())
        renamed = {
            bound: original
            for bound, original in {**scan.litellm_module_names, **scan.litellm_local_names}.items()
            if bound != original
        }
        if renamed:
            aliases[relative] = dict(sorted(renamed.items()))
        if scan.litellm_submodule:
            submodule[relative] = {
                name: _sorted_unique(values) for name, values in sorted(scan.litellm_submodule.items())
            }
        if scan.litellm_attribute_calls:
            attribute_calls[relative] = _sorted_unique(scan.litellm_attribute_calls)
        if scan.litellm_call_sites:
            call_sites[relative] = {
                name: _sorted_unique(sites) for name, sites in sorted(scan.litellm_call_sites.items())
            }
    return {
        "aliases": aliases,
        "attribute_calls": attribute_calls,
        "bindings": bindings,
        "call_sites": call_sites,
        "local_bindings": local_bindings,
        "submodule_bindings": submodule,
    }


def extension_point_facts(scans: dict[str, ModuleScan]) -> dict[str, dict[str, list[str]]]:
    """Extension points run with a literal name: calling files, keyword arguments, ``call_data`` keys."""
    points: dict[str, dict[str, set]] = {}
    for relative, scan in scans.items():
        for call in scan.extension_calls:
            entry = points.setdefault(call["point"], {"files": set(), "kwargs": set(), "call_data_keys": set()})
            entry["files"].add(relative)
            entry["kwargs"].update(call["kwargs"])
            entry["call_data_keys"].update(call["call_data_keys"])
    return {point: {key: sorted(values) for key, values in entry.items()} for point, entry in sorted(points.items())}


def extensible_facts(scans: dict[str, ModuleScan]) -> dict[str, dict[str, Any]]:
    """Functions decorated ``@extensible`` by their implicit hook path (each has ``/start`` and ``/end``).

    The module part follows A0's decorator: the module's dotted name split into folders. Files run as a
    script (with a ``__main__`` guard, such as ``run_ui.py``) use ``__main__``.
    NOTE: A0 loads extension and API files by path under generated module names, so hook paths of
    ``@extensible`` functions in those files are estimates from their file path.
    """
    hooks: dict[str, dict[str, Any]] = {}
    for relative, scan in scans.items():
        module = "__main__" if scan.has_main_guard else module_name(relative)
        for function in scan.extensible:
            path = "/".join(["_functions", *module.split("."), *function["qualname"].split(".")])
            hooks[path] = {"async": function["async"], "file": relative, "qualname": function["qualname"]}
    return dict(sorted(hooks.items()))


def agent_facts(scans: dict[str, ModuleScan]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (signatures of Agent's model-call methods, agent loop facts, AgentContext facts)."""
    signatures: dict[str, Any] = {}
    loop: dict[str, Any] = {"chat_methods": {}}
    context: dict[str, Any] = {"output_data": False, "output_data_in_snapshot": False, "output_data_saved": False}
    scan = scans.get("agent.py")
    agent = top_level(scan.tree, "Agent") if scan is not None else None

    if scan is not None and isinstance(agent, ast.ClassDef):
        for name in AGENT_METHODS:
            member = class_member(agent, name)
            if member is not None:
                signatures[f"Agent.{name}"] = dict(signature_of(member, scan.source), file="agent.py")
        loop["chat_methods"] = _loop_chat_methods(agent)

    agent_context = top_level(scan.tree, "AgentContext") if scan is not None else None
    if isinstance(agent_context, ast.ClassDef):
        context["output_data"] = _assigns_self_attribute(agent_context, "output_data")
        context["output_data_in_snapshot"] = _unpacks_self_attribute(agent_context, "output_data")

    persist = scans.get("helpers/persist_chat.py")
    if persist is not None:
        context["output_data_saved"] = any(
            isinstance(node, ast.Constant) and node.value == "output_data" for node in ast.walk(persist.tree)
        )
    return signatures, loop, context


def _loop_chat_methods(agent: ast.ClassDef) -> dict[str, bool]:
    """Map each ``self.call_chat_model*`` method that ``Agent.monologue`` calls to whether it is @extensible."""
    monologue = class_member(agent, "monologue")
    if monologue is None:
        return {}
    called = set()
    for node in ast.walk(monologue):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "self"
            and node.func.attr.startswith("call_chat_model")
        ):
            called.add(node.func.attr)
    result = {}
    for name in sorted(called):
        member = class_member(agent, name)
        decorators = member.decorator_list if member is not None else []  # type: ignore[attr-defined]
        result[name] = any(_decorator_name(decorator) == "extensible" for decorator in decorators)
    return result


def _assigns_self_attribute(cls: ast.ClassDef, attribute: str) -> bool:
    for node in ast.walk(cls):
        targets: list[ast.AST] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if (
                isinstance(target, ast.Attribute)
                and target.attr == attribute
                and isinstance(target.value, ast.Name)
                and target.value.id == "self"
            ):
                return True
    return False


def _unpacks_self_attribute(cls: ast.ClassDef, attribute: str) -> bool:
    """True when a method builds a dict with ``**self.<attribute>`` (A0's chat snapshot does this)."""
    for node in ast.walk(cls):
        if not isinstance(node, ast.Dict):
            continue
        for key, value in zip(node.keys, node.values):  # noqa: B905 (Python 3.9 has no strict=)
            if (
                key is None
                and isinstance(value, ast.Attribute)
                and value.attr == attribute
                and isinstance(value.value, ast.Name)
                and value.value.id == "self"
            ):
                return True
    return False


def model_facts(scans: dict[str, ModuleScan]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Return (signatures of the model wrappers' call methods, model wrappers, context limit facts)."""
    signatures: dict[str, Any] = {}
    wrappers: dict[str, Any] = {}
    config_classes: list[str] = []
    conf_holders: list[str] = []
    for relative, scan in scans.items():
        for node in scan.tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            key = f"{relative}:{node.name}"
            if _has_field(node, "ctx_length"):
                config_classes.append(key)
            holds_conf = _assigns_self_attribute(node, "a0_model_conf") or _has_field(node, "a0_model_conf")
            if holds_conf:
                conf_holders.append(key)
            if class_member(node, MODEL_WRAPPER_METHOD) is None:
                continue
            methods = []
            for member in node.body:
                if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and member.name.startswith(
                    MODEL_WRAPPER_PREFIX
                ):
                    methods.append(member.name)
                    signatures[f"{node.name}.{member.name}"] = dict(signature_of(member, scan.source), file=relative)
            wrappers[key] = {"holds_model_conf": holds_conf, "methods": sorted(set(methods))}
    context_limit = {"conf_holders": sorted(conf_holders), "config_classes": sorted(config_classes)}
    return signatures, dict(sorted(wrappers.items())), context_limit


def _has_field(cls: ast.ClassDef, name: str) -> bool:
    """True when the class body declares ``name`` (annotated or assigned at class level)."""
    for member in cls.body:
        if isinstance(member, ast.AnnAssign) and isinstance(member.target, ast.Name) and member.target.id == name:
            return True
        if isinstance(member, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in member.targets
        ):
            return True
    return False


def find_helper(scans: dict[str, ModuleScan], name: str) -> str | None:
    """Return the path of a helper module: ``helpers/<name>.py`` (A0 0.9.9+) or ``python/helpers/<name>.py``."""
    for candidate in (f"helpers/{name}.py", f"python/helpers/{name}.py"):
        if candidate in scans:
            return candidate
    return None


def _string_constants(tree: ast.AST) -> dict[str, str]:
    """Module-level ``NAME = "text"`` assignments."""
    constants: dict[str, str] = {}
    for node in getattr(tree, "body", []):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    constants[target.id] = node.value.value
    return constants


def _resolve_path_prefix(call: ast.Call, constants: dict[str, str]) -> str | None:
    """Join the leading constant arguments of a path call (``get_abs_path(files.USER_DIR, "x", name)``)."""
    parts: list[str] = []
    for argument in call.args:
        if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
            parts.append(argument.value)
        elif isinstance(argument, ast.Attribute) and argument.attr in constants:
            parts.append(constants[argument.attr])
        elif isinstance(argument, ast.Name) and argument.id in constants:
            parts.append(constants[argument.id])
        else:
            break
    joined = "/".join(part.strip("/") for part in parts if part.strip("/"))
    return joined or None


def plugin_system_facts(scans: dict[str, ModuleScan]) -> dict[str, Any]:
    """Return whether A0 has a plugin loader, the folders it searches (in priority order) and its routes."""
    facts: dict[str, Any] = {
        "api_route": False,
        "asset_routes": [],
        "loader": None,
        "meta_file": None,
        "present": False,
        "roots": [],
    }
    asset_routes = set()
    for scan in scans.values():
        for node in ast.walk(scan.tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.match(r"^/(usr/)?plugins/<", node.value)
            ):
                asset_routes.add(node.value)
    facts["asset_routes"] = sorted(asset_routes)

    loader = find_helper(scans, "plugins")
    if loader is None:
        return facts
    facts["loader"] = loader
    scan = scans[loader]
    constants = dict(_string_constants(scan.tree))
    files_module = find_helper(scans, "files")
    if files_module is not None:
        constants = {**_string_constants(scans[files_module].tree), **constants}
    facts["meta_file"] = constants.get("META_FILE_NAME")

    roots_function = top_level(scan.tree, "get_plugin_roots")
    search = roots_function if roots_function is not None else scan.tree
    roots: list[str] = []
    for node in ast.walk(search):
        if isinstance(node, ast.Call) and _called_name(node) == "get_abs_path":
            prefix = _resolve_path_prefix(node, constants)
            plugins_dir = constants.get("PLUGINS_DIR", "plugins")
            if prefix and prefix.split("/")[-1] == plugins_dir and prefix not in roots:
                roots.append(prefix)
    facts["roots"] = roots  # priority order, as the loader lists them
    facts["present"] = bool(roots)

    api_module = find_helper(scans, "api")
    if api_module is not None:
        api_tree = scans[api_module].tree
        calls_finder = any(
            isinstance(node, ast.Call) and _called_name(node) == "find_plugin_dir" for node in ast.walk(api_tree)
        )
        has_prefix = any(isinstance(node, ast.Constant) and node.value == "plugins/" for node in ast.walk(api_tree))
        facts["api_route"] = calls_finder and has_prefix
    return facts


def extension_system_facts(scans: dict[str, ModuleScan]) -> dict[str, Any]:
    """Return the extension module and the sub-folders it loads extensions from (its ``get_paths`` arguments)."""
    module = find_helper(scans, "extension")
    if module is None:
        return {"extensible_decorator": False, "folders": [], "module": None}
    tree = scans[module].tree
    folders = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _called_name(node) == "get_paths":
            for argument in node.args:
                if isinstance(argument, ast.Constant) and isinstance(argument.value, str):
                    folders.add(argument.value)
    decorator = top_level(tree, "extensible")
    return {
        "extensible_decorator": isinstance(decorator, (ast.FunctionDef, ast.AsyncFunctionDef)),
        "folders": sorted(folders),
        "module": module,
    }


def layout_facts(scans: dict[str, ModuleScan], unparsed: list[str]) -> dict[str, Any]:
    helpers = None
    if any(path.startswith("helpers/") for path in scans):
        helpers = "helpers"
    elif any(path.startswith("python/helpers/") for path in scans):
        helpers = "python/helpers"
    return {"helpers_package": helpers, "unparsed_files": sorted(unparsed)}


# ----- text facts ------------------------------------------------------------------------------------


def webui_facts(root: str, html_files: list[str], js_files: list[str]) -> dict[str, Any]:
    """``<x-extension id>`` slots, Alpine stores created with ``createStore("name")`` and the store module."""
    slots: dict[str, set] = {}
    for relative in html_files:
        text = read_text(root, relative) or ""
        for slot in _SLOT_RE.findall(text):
            slots.setdefault(slot, set()).add(relative)

    stores: dict[str, set] = {}
    chats_selected_context = False
    for relative in js_files:
        text = read_text(root, relative) or ""
        if "createStore" not in text:
            continue
        for name in _CREATE_STORE_RE.findall(text):
            stores.setdefault(name, set()).add(relative)
            if name == "chats" and "selectedContext" in text:
                chats_selected_context = True

    store_module = read_text(root, "webui/js/AlpineStore.js")
    return {
        "alpine_store_module": bool(store_module and _EXPORT_CREATE_STORE_RE.search(store_module)),
        "chats_selected_context": chats_selected_context,
        "slots": {slot: sorted(paths) for slot, paths in sorted(slots.items())},
        "stores": {name: sorted(paths) for name, paths in sorted(stores.items())},
    }


def default_chat_ctx_length(root: str) -> int | None:
    """Read ``chat_model.ctx_length`` from the model-config plugin's default_config.yaml, if it sets one.

    A line-based reader for the two-level mapping A0 uses there (no YAML library in the standard library).
    """
    text = read_text(root, "plugins/_model_config/default_config.yaml")
    if text is None:
        return None
    inside = False
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace():
            inside = line.split("#", 1)[0].strip() == "chat_model:"
            continue
        if inside:
            key, _, value = line.strip().partition(":")
            if key == "ctx_length":
                value = value.split("#", 1)[0].strip().strip("\"'")
                return int(value) if value.isdigit() else None
    return None


def pinned_versions(root: str) -> dict[str, dict[str, Any] | None]:
    """Return the first requirement line for litellm and wrapt in the root's ``requirements*.txt`` files."""
    pins: dict[str, dict[str, Any] | None] = {name: None for name in PINNED_PACKAGES}
    try:
        names = sorted(name for name in os.listdir(root) if name.startswith("requirements") and name.endswith(".txt"))
    except OSError:
        names = []
    for name in names:
        for line in (read_text(root, name) or "").splitlines():
            match = _REQUIREMENT_RE.match(line.split("#", 1)[0])
            if not match:
                continue
            package = match.group(1).lower().replace("_", "-")
            if package not in pins or pins[package] is not None:
                continue
            spec = (match.group(3) or "").strip().replace(" ", "")
            exact = spec[2:] if spec.startswith("==") and "," not in spec and "*" not in spec else None
            pins[package] = {"file": name, "spec": spec, "version": exact}
    return pins


def environment_facts() -> dict[str, str | None]:
    """Python, litellm and wrapt versions of the interpreter running the probe (None when not installed)."""
    from importlib import metadata

    facts: dict[str, str | None] = {"python": platform.python_version()}
    for package in PINNED_PACKAGES:
        try:
            facts[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            facts[package] = None
    return facts


# ----- tree version ----------------------------------------------------------------------------------


def _read_bytes(path: str) -> bytes | None:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return None


def _git_refs(git_dir: str) -> Iterator[tuple[str, str, str | None]]:
    """Yield (ref name, object id, peeled commit id or None) from packed-refs and loose refs."""
    packed = _read_bytes(os.path.join(git_dir, "packed-refs"))
    if packed:
        last: list[Any] | None = None
        for raw in packed.decode("utf-8", "replace").splitlines():
            if raw.startswith("#") or not raw.strip():
                continue
            if raw.startswith("^") and last is not None:
                last[2] = raw[1:].strip()
                continue
            if last is not None:
                yield last[0], last[1], last[2]
            sha, _, name = raw.partition(" ")
            last = [name.strip(), sha.strip(), None]
        if last is not None:
            yield last[0], last[1], last[2]
    refs_root = os.path.join(git_dir, "refs")
    for folder, _, names in os.walk(refs_root):
        for name in names:
            data = _read_bytes(os.path.join(folder, name))
            if data:
                ref = os.path.relpath(os.path.join(folder, name), git_dir).replace(os.sep, "/")
                yield ref, data.decode("ascii", "replace").strip(), None


def _peel_loose_tag(git_dir: str, sha: str) -> str | None:
    """Return the object an annotated tag points to, when the tag object is stored loose."""
    data = _read_bytes(os.path.join(git_dir, "objects", sha[:2], sha[2:]))
    if not data:
        return None
    try:
        raw = zlib.decompress(data)
    except zlib.error:
        return None
    if not raw.startswith(b"tag "):
        return None
    body = raw.split(b"\0", 1)[-1].decode("utf-8", "replace")
    for line in body.splitlines():
        if line.startswith("object "):
            return line.split(" ", 1)[1].strip()
    return None


def tree_version(root: str) -> dict[str, Any]:
    """Return the commit a ``.git`` folder at the root checks out and the tags pointing at it (empty without git)."""
    git_dir = os.path.join(root, ".git")
    head = _read_bytes(os.path.join(git_dir, "HEAD"))
    if not os.path.isdir(git_dir) or head is None:
        return {"git_head": None, "git_tags": []}
    text = head.decode("ascii", "replace").strip()
    refs = list(_git_refs(git_dir))
    sha: str | None = text
    if text.startswith("ref: "):
        wanted = text[len("ref: ") :]
        sha = next((object_id for name, object_id, _ in refs if name == wanted), None)
    tags = set()
    if sha:
        for name, object_id, peeled in refs:
            if not name.startswith("refs/tags/"):
                continue
            target = peeled or _peel_loose_tag(git_dir, object_id) or object_id
            if target == sha:
                tags.add(name[len("refs/tags/") :])
    return {"git_head": sha, "git_tags": sorted(tags)}


# ----- entry point -----------------------------------------------------------------------------------


def probe(root: str, with_environment: bool = True) -> dict[str, Any]:
    """Return the facts of the A0 tree at ``root``."""
    files = list_files(root)
    scans, unparsed = scan_modules(root, files[".py"])

    agent_signatures, loop, context = agent_facts(scans)
    wrapper_signatures, wrappers, context_limit = model_facts(scans)
    context_limit["default_chat_ctx_length"] = default_chat_ctx_length(root)

    return {
        "agent_context": context,
        "agent_loop": loop,
        "apis": api_facts(scans),
        "context_limit": context_limit,
        "environment": environment_facts() if with_environment else None,
        "extensible_functions": extensible_facts(scans),
        "extension_points": extension_point_facts(scans),
        "extension_system": extension_system_facts(scans),
        "layout": layout_facts(scans, unparsed),
        "litellm": litellm_facts(scans),
        "model_wrappers": wrappers,
        "pins": pinned_versions(root),
        "plugin_system": plugin_system_facts(scans),
        "probe_version": PROBE_VERSION,
        "signatures": dict(sorted({**agent_signatures, **wrapper_signatures}.items())),
        "tree_version": tree_version(root),
        "webui": webui_facts(root, files[".html"], files[".js"]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="a0_probe.py",
        description="Print the facts of an Agent Zero source tree that the Token Meter plugin relies on, as JSON.",
    )
    parser.add_argument("--root", required=True, help="folder of the A0 tree (the folder holding agent.py)")
    parser.add_argument(
        "--no-environment",
        action="store_true",
        help="leave out the interpreter's Python, litellm and wrapt versions (the 'environment' key is null)",
    )
    parser.add_argument("--output", help="write the JSON to this file instead of standard output")
    args = parser.parse_args(argv)

    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        print(f"a0_probe: error: --root {args.root!r} is not a folder", file=sys.stderr)
        return 2
    if not os.path.isfile(os.path.join(root, "agent.py")):
        print(f"a0_probe: error: {root} has no agent.py; pass the root folder of an A0 tree", file=sys.stderr)
        return 2

    text = json.dumps(probe(root, with_environment=not args.no_environment), indent=2, sort_keys=True) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as file:
            file.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
