"""What the docker_engine role leaves on an instance, checked through Ansible and the berth connection plugin.

Testinfra's ansible backend runs each command as an ``ansible -m shell`` task
over ``berth.containers.berth`` (it has no native backend for that
connection, about two seconds a command), so there are few commands with
much in each, and none with ``{{``: Ansible would template it.  The expected
values are the scenario's own inventory (extensions/molecule/config.yml) and
what create.yml recorded about its mirrors (``berth-host.json``).
"""

import json
import os
import re
from typing import Any, Dict, List

import pytest
import testinfra.utils.ansible_runner

testinfra_hosts = testinfra.utils.ansible_runner.AnsibleRunner(os.environ["MOLECULE_INVENTORY_FILE"]).get_hosts("all")

DOCKER_CE_MIRROR = "http://127.0.0.1:8080"
PACKAGES = ("docker-ce", "docker-ce-cli", "containerd.io")


@pytest.fixture(scope="module")
def berth_host() -> Dict[str, Any]:
    with open(os.path.join(os.environ["MOLECULE_EPHEMERAL_DIRECTORY"], "berth-host.json"), encoding="utf-8") as handle:
        return json.load(handle)


@pytest.fixture(scope="module")
def settings(host) -> Dict[str, Any]:
    """The role's variables as the scenario's inventory sets them."""
    return host.ansible.get_variables()


@pytest.fixture(scope="module")
def facts(host) -> Dict[str, Any]:
    return host.ansible("ansible.builtin.setup", "gather_subset=!all,!min,distribution")["ansible_facts"]


def docker_info_field(text: str, name: str) -> List[str]:
    """The value(s) of ``Name:`` in ``docker info`` output: the rest of its line, or the indented lines below it."""
    match = re.search(rf"^( *){re.escape(name)}:(.*)$", text, re.MULTILINE)
    assert match, f"docker info shows no {name!r}:\n{text}"
    if match.group(2).strip():
        return [match.group(2).strip()]
    values = []
    for line in text[match.end() :].splitlines()[1:]:
        if len(line) - len(line.lstrip()) <= len(match.group(1)):
            break
        values.append(line.strip())
    return values


def test_the_instance_is_the_os_family_its_scenario_tests(facts: Dict[str, Any], settings: Dict[str, Any]) -> None:
    if settings["inventory_hostname"].startswith("rocky"):
        assert (facts["ansible_os_family"], facts["ansible_distribution"]) == ("RedHat", "Rocky")
        assert facts["ansible_distribution_major_version"] == "9"
    else:
        assert (facts["ansible_os_family"], facts["ansible_distribution"]) == ("Debian", "Debian")


def test_docker_is_enabled_and_running_under_systemd_with_its_containerd(host) -> None:
    show = host.check_output("systemctl show -p Id,UnitFileState,ActiveState,SubState docker containerd")
    units = [dict(line.split("=", 1) for line in block.splitlines()) for block in show.split("\n\n")]
    state = {unit["Id"]: (unit["UnitFileState"], unit["ActiveState"], unit["SubState"]) for unit in units}
    assert state["docker.service"] == ("enabled", "active", "running")
    # Started through docker.service's Wants= (the packages do not enable it; presets decide that on EL).
    assert state["containerd.service"][1:] == ("active", "running")


def test_the_docker_users_are_in_the_docker_group(host, settings: Dict[str, Any]) -> None:
    for user in settings["docker_engine_users"]:
        assert "docker" in host.check_output(f"id -nG {user}").split(), user


def test_the_packages_came_from_the_local_docker_ce_mirror(
    host, facts: Dict[str, Any], berth_host: Dict[str, Any]
) -> None:
    version = berth_host["docker_ce_mirror"]["version"]
    if facts["ansible_os_family"] == "RedHat":
        listing = host.check_output("dnf -q --cacheonly list --installed " + " ".join(PACKAGES))
        rows = [line.split() for line in listing.splitlines()[1:]]
        installed = {name.rsplit(".", 1)[0]: (evr, repo) for name, evr, repo in rows}
        assert sorted(installed) == sorted(PACKAGES), listing
        assert all(repo == "@docker-ce-stable" for _evr, repo in installed.values()), listing
        assert installed["docker-ce"][0].startswith(f"3:{version}-"), listing
    else:
        policy = host.check_output("apt-cache policy " + " ".join(PACKAGES))
        assert policy.count(f"{DOCKER_CE_MIRROR}/linux/debian bookworm/stable amd64 Packages") == len(PACKAGES), policy
        assert f"Installed: 5:{version}-1~debian.12~bookworm" in policy, policy
        assert "Installed: (none)" not in policy, policy


def test_engine_info_through_ansible_reports_the_configured_mirrors(host, settings: Dict[str, Any]) -> None:
    result = host.ansible("berth.containers.engine_info", "wait_timeout=30", check=False)
    assert not result.get("failed"), result
    engine = result["engine"]
    assert [mirror.rstrip("/") for mirror in engine["registry_mirrors"]] == settings["docker_engine_registry_mirrors"]
    assert set(settings["docker_engine_insecure_registries"]) <= set(engine["insecure_registries"])
    assert engine["storage_driver"] == "overlay2"


def test_docker_info_inside_reports_the_mirror_and_the_daemon_options(host, settings: Dict[str, Any]) -> None:
    info = host.check_output("docker info")
    mirrors = [mirror.rstrip("/") for mirror in docker_info_field(info, "Registry Mirrors")]
    assert mirrors == settings["docker_engine_registry_mirrors"]
    assert set(settings["docker_engine_insecure_registries"]) <= set(docker_info_field(info, "Insecure Registries"))
    assert docker_info_field(info, "Live Restore Enabled") == ["true"]
    assert docker_info_field(info, "Logging Driver") == ["json-file"]
    # NO_PROXY is set by the role's systemd drop-in: the override reached dockerd's environment.
    assert docker_info_field(info, "No Proxy") == ["127.0.0.1,localhost"]


def test_docker_pulls_through_the_configured_mirror(host, berth_host: Dict[str, Any]) -> None:
    # The instance has no route to Docker Hub: the pull can only succeed through the mirror.
    pulled = host.check_output("docker pull -q busybox && docker image inspect busybox")
    inspected = json.loads(pulled[pulled.index("[") :])
    assert inspected[0]["Id"] == berth_host["hub_mirror"]["busybox_id"]
