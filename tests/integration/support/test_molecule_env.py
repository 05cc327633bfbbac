"""Self-test of the Molecule scenarios' berth host helper (support/molecule_env.py): up, then down leaves nothing."""

import json
import os
import subprocess
import tempfile
from typing import Iterator

import pytest
from support import engine_hosts, molecule_env, procs
from support.berth_env import BERTH

pytestmark = [pytest.mark.root, pytest.mark.slow]


@pytest.fixture
def state_dir() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="berth-molecule-env-") as directory:
        yield directory
        assert molecule_env.down(directory) == []


def test_up_pulls_the_instance_image_into_a_berth_host_of_its_own_and_down_removes_it(state_dir: str) -> None:
    name = engine_hosts.DEBIAN_ENGINE_HOST.name
    result = molecule_env.up(state_dir, [f"one={name}", f"two={name}"])
    with open(os.path.join(state_dir, molecule_env.STATE_FILE), encoding="utf-8") as handle:
        state = json.load(handle)
    assert {key: state[key] for key in result} == result
    config = result["berth_config"]
    assert os.path.realpath(os.path.join(state_dir, molecule_env.CONFIG_LINK)) == config
    with open(config, encoding="utf-8") as handle:
        settings = json.load(handle)
    assert settings["data-root"].startswith(state["berth_env"]["base"])
    listed = subprocess.run([BERTH, "--config", config, "images"], capture_output=True, text=True, check=True)
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert [f"{row[0]}:{row[1]}" for row in rows] == [result["instances"]["one"]["image"]]
    assert result["instances"]["one"]["image"] == result["instances"]["two"]["image"]
    for instance in result["instances"].values():
        assert os.path.isdir(instance["docker_root"])
    storage = result["hub_mirror"]["storage"]
    assert os.path.isdir(os.path.join(storage, "docker", "registry", "v2", "repositories", "library", "busybox"))
    registry_config = os.path.join(os.path.dirname(storage), "config.yml")
    with open(registry_config, encoding="utf-8") as handle:
        assert result["instances"]["one"]["image"].split("/", 1)[0] in handle.read()
    serving = [pid for pid in os.listdir("/proc") if pid.isdigit() and registry_config in procs.cmdline(int(pid))]
    assert serving == [], "the registry used for the pull is still running"
    assert os.path.isfile(os.path.join(result["docker_ce_mirror"]["root"], "linux", "debian", "gpg"))

    assert molecule_env.down(state_dir) == []
    assert not os.path.exists(state["berth_env"]["base"])
    assert not os.path.lexists(os.path.join(state_dir, molecule_env.CONFIG_LINK))
    assert not os.path.exists(os.path.join(state_dir, molecule_env.STATE_FILE))
    link = subprocess.run(["ip", "link", "show", settings["bridge"]], capture_output=True, check=False)
    assert link.returncode != 0, "the bridge is left"


def test_down_without_up_does_nothing(state_dir: str) -> None:
    assert molecule_env.down(state_dir) == []


def test_an_unknown_image_is_refused_before_anything_is_made(state_dir: str) -> None:
    with pytest.raises(SystemExit, match="'one=centos' is not NAME=IMAGE with IMAGE one of debian-engine-host"):
        molecule_env.up(state_dir, ["one=centos"])
    assert os.listdir(state_dir) == []
