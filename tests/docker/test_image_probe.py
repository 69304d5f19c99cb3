"""Tests of the contract probe run inside a release image (compat_matrix.image_probe) and of the A0
axis using its output instead of the committed baseline.

They need a Docker engine and the local base image (see test_docker_backend.py) and skip otherwise.
The "release image" is made here: the base image plus a stand-in A0 tree at /a0 (tests/a0_standin.py,
not A0 code) and /opt/venv-a0/bin/python pointing at the image's python3, committed as a local tag.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from compat_matrix import a0_probe, contract, docker_engine
from compat_matrix.a0_axis import A0AxisOptions, A0AxisStage
from compat_matrix.a0_live import A0LiveError
from compat_matrix.a0_live_plan import LiveOptions, probe_engine
from compat_matrix.image_probe import probe_image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from a0_standin import build_standin_v2  # noqa: E402

BASE_IMAGE = os.environ.get("TOKEN_METER_DOCKER_BASE_IMAGE", "token-meter/a0-base:bookworm")
STAND_IN_IMAGE = "token-meter/test-a0-standin:probe"


def _tree_archive(tree: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(tree, arcname="a0")
        link = tarfile.TarInfo("opt/venv-a0/bin/python")
        link.type = tarfile.SYMTYPE
        link.linkname = "/usr/bin/python3"
        archive.addfile(link)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def standin_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, str]]:
    reason = docker_engine.no_engine_reason()
    if reason:
        pytest.skip(reason)
    client = docker_engine.connect()
    from docker.errors import ImageNotFound

    try:
        client.images.get(BASE_IMAGE)
    except ImageNotFound:
        client.close()
        pytest.skip(f"base image {BASE_IMAGE} is missing; build it with scripts/build_base_image")

    tree = build_standin_v2(tmp_path_factory.mktemp("standin") / "a0")
    container = client.containers.create(BASE_IMAGE, command=["true"], network_mode="none")
    try:
        container.put_archive("/", _tree_archive(tree))
        container.commit(*STAND_IN_IMAGE.split(":"))
    finally:
        container.remove(force=True)
    yield client, str(tree)
    client.images.remove(STAND_IN_IMAGE, force=True)
    client.close()


def test_image_probe_matches_host_probe(standin_image, tmp_path: Path) -> None:
    client, tree = standin_image

    output = probe_image(client, STAND_IN_IMAGE, tmp_path / "probe.json")

    facts = json.loads(output.read_text())
    on_host = a0_probe.probe(tree, with_environment=False)
    environment = facts.pop("environment")
    on_host.pop("environment")
    assert facts == on_host
    assert environment["python"].startswith("3.11")  # Debian bookworm's python3 inside the image
    assert contract.evaluate(facts | {"environment": environment}).status == contract.evaluate(on_host).status


def test_missing_image_not_pulled(standin_image, tmp_path: Path) -> None:
    client, _ = standin_image
    with pytest.raises(A0LiveError, match="token-meter/no-such-image:1 is not present and pulling is off"):
        probe_image(client, "token-meter/no-such-image:1", tmp_path / "probe.json")
    assert not (tmp_path / "probe.json").exists()


def test_a0_axis_judges_a_release_by_its_image(standin_image, tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(
        f'[[a0_release]]\ntag = "v2.6"\nimage = "{STAND_IN_IMAGE}"\nrepository = "a/b"\nlitellm = "1.88.1"\n'
    )
    options = A0AxisOptions(
        project_root=tmp_path, reports_dir=tmp_path / "reports", live=LiveOptions(mode="docker"), data_file=matrix
    )

    checked, targets, _ = A0AxisStage(options, engine_probe=probe_engine).plan()

    assert checked[0].facts_from == str(tmp_path / "reports" / "a0_live" / "v2.6" / "probe.json")
    # The stand-in binds litellm.main.completion on purpose; the committed v2.6 baseline does not.
    assert checked[0].verdict.status == "unsupported"
    assert targets == {}
