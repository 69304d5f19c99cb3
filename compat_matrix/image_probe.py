"""Run the contract probe inside an A0 release image, with the release's own interpreter.

The probe (``a0_probe.py``) is mounted read-only into a short-lived container of the image, which
has no network. Its output replaces the committed baseline in that release's contract check, so a
moving tag such as ``latest`` is judged by what the image really holds, and the environment facts
(A0's Python, litellm and wrapt versions) are filled in.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path
from typing import Any

from . import docker_engine
from .a0_live import A0LiveError

logger = logging.getLogger(__name__)

PROBE_SCRIPT = Path(__file__).with_name("a0_probe.py")
PROBE_IN_CONTAINER = "/opt/token-meter/a0_probe.py"
A0_ROOT = "/a0"
A0_PYTHON = "/opt/venv-a0/bin/python"
PROBE_TIMEOUT_S = 180.0


def probe_image(client: Any, image: str, output: Path, *, pull: bool = False, session: str = "probe") -> Path:
    """Probe ``image``'s A0 tree at /a0 with /opt/venv-a0/bin/python; write the JSON to ``output``.

    Pulls the image when it is missing and ``pull`` is true. Returns ``output``. Raises A0LiveError
    with the reason when the image is missing, the probe fails or times out, or prints no JSON.
    """
    docker_engine.ensure_image(client, image, "missing" if pull else "never")

    from docker.types import Mount

    mount = Mount(PROBE_IN_CONTAINER, str(PROBE_SCRIPT), type="bind", read_only=True)
    argv = [A0_PYTHON, PROBE_IN_CONTAINER, "--root", A0_ROOT]
    try:
        result = docker_engine.run_in_new_container(
            client,
            image,
            argv,
            PROBE_TIMEOUT_S,
            labels=docker_engine.labels_for(session, "probe"),
            mounts=[mount],
            network_mode="none",
        )
    except subprocess.TimeoutExpired:
        raise A0LiveError(f"the contract probe in {image} took longer than {PROBE_TIMEOUT_S:.0f} s") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise A0LiveError(f"the contract probe in {image} exited with {result.returncode}: {last}")

    try:
        facts = json.loads(result.stdout)
    except ValueError:
        raise A0LiveError(f"the contract probe in {image} printed no JSON") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    logger.info("probed %s into %s", image, output)
    return output
