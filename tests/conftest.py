"""Shared pytest fixtures."""

import os

# litellm fetches its model price map from the internet at import time unless this is set.
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

# Let `pytest` run from any directory without installing the project.
REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from compat_matrix.fake_llm_server import FakeLLMServer  # noqa: E402


@pytest.fixture
def fake_server():
    """A running FakeLLMServer on 127.0.0.1 with default controls, stopped after the test."""
    with FakeLLMServer() as server:
        yield server
