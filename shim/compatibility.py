"""The litellm versions and shapes the shim was tested on, and the checks run before patching."""

from __future__ import annotations

import inspect
from importlib import metadata
from typing import Any

TESTED_LITELLM_MIN = (1, 79, 3)
TESTED_LITELLM_MAX = (1, 110, 2)
TESTED_LITELLM_RANGE = ">=1.79.3,<=1.110.2"

# name -> (parameters the entry point must accept, API family)
ENTRY_POINTS: dict[str, tuple[str, ...]] = {
    "acompletion": ("model", "messages"),
    "completion": ("model", "messages"),
    "aresponses": ("input", "model"),
    "responses": ("input", "model"),
}


def parse_version(text: str | None) -> tuple[int, ...] | None:
    """Parse the leading numeric part of a version string ("1.79.3.post1" -> (1, 79, 3))."""
    if not text:
        return None
    numbers: list[int] = []
    for part in text.split("."):
        digits = ""
        for char in part:
            if not char.isdigit():
                break
            digits += char
        if not digits:
            break
        numbers.append(int(digits))
        if len(digits) != len(part):
            break
    return tuple(numbers) or None


def litellm_version() -> str | None:
    """Return the installed litellm distribution's version, or None when it is not installed."""
    try:
        return metadata.version("litellm")
    except metadata.PackageNotFoundError:
        return None


def version_warning(version: str | None) -> str | None:
    """Return a warning when ``version`` lies outside the tested range, else None."""
    parsed = parse_version(version)
    if parsed is None:
        return f"litellm version {version!r} could not be read; tested range is {TESTED_LITELLM_RANGE}"
    if parsed < TESTED_LITELLM_MIN or parsed[:3] > TESTED_LITELLM_MAX:
        return f"litellm {version} is outside the tested range {TESTED_LITELLM_RANGE}"
    return None


def check_entry_point(function: Any, required: tuple[str, ...]) -> str | None:
    """Return why ``function`` does not look like the entry point the shim expects, or None when it does."""
    if not callable(function):
        return "not callable"
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError) as exc:
        return f"signature cannot be read: {exc}"
    has_var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    missing = [name for name in required if name not in parameters]
    if missing and not has_var_keyword:
        return f"parameters {missing} are missing"
    if "stream" not in parameters and not has_var_keyword:
        return "parameter 'stream' is missing"
    return None


def check_stream_type(litellm_module: Any) -> str | None:
    """Return why litellm's chat stream type lacks the iteration protocol, or None when it has it."""
    stream_type = getattr(litellm_module, "CustomStreamWrapper", None)
    if stream_type is None:
        return "litellm.CustomStreamWrapper not found"
    for name in ("__anext__", "__next__"):
        if not hasattr(stream_type, name):
            return f"litellm.CustomStreamWrapper has no {name}"
    return None
