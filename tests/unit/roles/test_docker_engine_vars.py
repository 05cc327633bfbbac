"""The docker_engine role's derived variables and drop-in template, rendered by Ansible's own templar.

Package specs, daemon.json keys and the unit override are computed in
vars/main.yml from the per-family tables; a wrong expression there would
only show on a real host, so each family and source is rendered here.
"""

import os
from typing import Any, Dict

import pytest
import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

ROLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "roles", "docker_engine")


def _trusted(value: Any) -> Any:
    """Role files are trusted templates when Ansible loads them; mark them so here too."""
    if isinstance(value, str):
        return trust_as_template(value)
    if isinstance(value, list):
        return [_trusted(item) for item in value]
    if isinstance(value, dict):
        return {key: _trusted(item) for key, item in value.items()}
    return value


def _load(relative: str) -> Dict[str, Any]:
    with open(os.path.join(ROLE, relative), encoding="utf-8") as handle:
        return _trusted(yaml.safe_load(handle))


def templar(family: str, major: str = "9", **overrides: Any) -> Templar:
    variables: Dict[str, Any] = {}
    for relative in ("defaults/main.yml", f"vars/{family}.yml", "vars/main.yml"):
        variables.update(_load(relative))
    variables["ansible_facts"] = {"os_family": family, "distribution_major_version": major}
    variables["ansible_managed"] = "Ansible managed"
    variables.update(overrides)
    return Templar(loader=DataLoader(), variables=variables)


def derived(name: str, family: str, major: str = "9", **overrides: Any) -> Any:
    engine = templar(family, major, **overrides)
    return engine.template(engine.available_variables[name])


@pytest.mark.parametrize(
    ("family", "source", "version", "specs"),
    [
        ("Debian", "upstream", "", ["docker-ce", "docker-ce-cli", "containerd.io"]),
        ("Debian", "upstream", "27.3.1", ["docker-ce=*27.3.1[-+~]*", "docker-ce-cli=*27.3.1[-+~]*", "containerd.io"]),
        (
            "Debian",
            "upstream",
            "5:27.3.1-1~debian.12~bookworm",
            ["docker-ce=5:27.3.1-1~debian.12~bookworm", "docker-ce-cli=5:27.3.1-1~debian.12~bookworm", "containerd.io"],
        ),
        ("Debian", "distro", "20.10.24", ["docker.io=*20.10.24[-+~]*"]),
        ("RedHat", "upstream", "", ["docker-ce", "docker-ce-cli", "containerd.io"]),
        ("RedHat", "upstream", "27.3.1", ["docker-ce-27.3.1", "docker-ce-cli-27.3.1", "containerd.io"]),
        ("RedHat", "distro", "", ["moby-engine"]),
    ],
)
def test_package_specs_pin_engine_and_cli_only(family: str, source: str, version: str, specs: list) -> None:
    assert (
        derived(
            "_docker_engine_package_specs", family, docker_engine_package_source=source, docker_engine_version=version
        )
        == specs
    )


def test_extra_packages_are_appended_unpinned() -> None:
    specs = derived(
        "_docker_engine_package_specs",
        "RedHat",
        docker_engine_version="27.3.1",
        docker_engine_extra_packages=["docker-buildx-plugin"],
    )
    assert specs == ["docker-ce-27.3.1", "docker-ce-cli-27.3.1", "containerd.io", "docker-buildx-plugin"]


def test_pinned_version_installs_with_state_present() -> None:
    assert derived("_docker_engine_package_state", "Debian", docker_engine_package_state="latest") == "latest"
    state = derived(
        "_docker_engine_package_state", "Debian", docker_engine_package_state="latest", docker_engine_version="1.0"
    )
    assert state == "present"


@pytest.mark.parametrize(
    ("family", "major", "dependencies"),
    [
        ("RedHat", "7", ["yum-utils", "device-mapper-persistent-data", "lvm2"]),
        ("RedHat", "8", ["dnf-plugins-core"]),
        ("RedHat", "10", ["dnf-plugins-core"]),
        ("Debian", "12", ["ca-certificates"]),
    ],
)
def test_dependencies_per_family_and_release(family: str, major: str, dependencies: list) -> None:
    assert derived("_docker_engine_dependencies", family, major) == dependencies
    assert derived("_docker_engine_dependencies", family, major, docker_engine_dependencies=[]) == []


def test_conflicting_packages_follow_the_source() -> None:
    upstream = derived("_docker_engine_conflicting_packages", "RedHat")
    assert {"podman", "runc", "buildah", "docker", "docker-engine"} <= set(upstream)
    assert derived("_docker_engine_conflicting_packages", "Debian", docker_engine_package_source="distro") == [
        "docker-ce",
        "docker-ce-cli",
        "containerd.io",
        "docker-ce-rootless-extras",
    ]
    assert derived("_docker_engine_conflicting_packages", "Debian", docker_engine_conflicting_packages=["x"]) == ["x"]


def test_first_class_mirrors_win_and_empty_lists_remove_their_keys() -> None:
    overrides = {
        "docker_engine_registry_mirrors": ["https://mirror.example.com"],
        "docker_engine_daemon_options": {"registry-mirrors": ["https://other"], "live-restore": True},
    }
    assert derived("_docker_engine_daemon_config", "Debian", **overrides) == {
        "registry-mirrors": ["https://mirror.example.com"],
        "live-restore": True,
    }
    assert derived("_docker_engine_daemon_absent", "Debian", **overrides) == ["insecure-registries"]
    assert derived("_docker_engine_daemon_absent", "Debian") == ["registry-mirrors", "insecure-registries"]
    kept = {"docker_engine_daemon_options": {"insecure-registries": ["registry.local:5000"]}}
    assert derived("_docker_engine_daemon_absent", "Debian", **kept) == ["registry-mirrors"]


@pytest.mark.parametrize(
    ("family", "source", "options", "execstart"),
    [
        ("RedHat", "upstream", {"hosts": ["fd://"]}, "/usr/bin/dockerd --containerd=/run/containerd/containerd.sock"),
        ("RedHat", "upstream", {"containerd": "/run/other.sock"}, "/usr/bin/dockerd -H fd://"),
        (
            "Debian",
            "distro",
            {"hosts": ["fd://"]},
            "/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock $DOCKER_OPTS",
        ),
        ("RedHat", "distro", {"hosts": ["fd://"]}, "/usr/bin/dockerd"),
        ("Debian", "upstream", {"hosts": ["fd://"], "containerd": "/run/c.sock"}, "/usr/bin/dockerd"),
    ],
)
def test_unit_flags_are_dropped_when_daemon_json_sets_them(
    family: str, source: str, options: dict, execstart: str
) -> None:
    settings = derived(
        "_docker_engine_dropin_settings",
        family,
        docker_engine_package_source=source,
        docker_engine_daemon_options=options,
    )
    assert settings == {"Service": {"ExecStart": ["", execstart]}}


def test_no_overrides_means_no_drop_in() -> None:
    assert derived("_docker_engine_dropin_settings", "Debian") == {}


def test_drop_in_template() -> None:
    engine = templar(
        "RedHat",
        docker_engine_daemon_options={"hosts": ["fd://", "tcp://127.0.0.1:2376"]},
        docker_engine_service_overrides={
            "Service": {"LimitNOFILE": 1048576, "Environment": ["HTTP_PROXY=http://proxy:3128", "NO_PROXY=localhost"]},
            "Unit": {"StartLimitBurst": 5, "RefuseManualStop": False},
        },
    )
    with open(os.path.join(ROLE, "templates", "dropin.conf.j2"), encoding="utf-8") as handle:
        text = engine.template(trust_as_template(handle.read()))
    assert text.startswith("# Ansible managed\n")
    assert "from docker_engine_service_overrides and the daemon.json keys hosts." in text
    assert (
        "\n[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/bin/dockerd --containerd=/run/containerd/containerd.sock\n"
        "LimitNOFILE=1048576\n"
        "Environment=HTTP_PROXY=http://proxy:3128\n"
        "Environment=NO_PROXY=localhost\n"
    ) in text
    assert "\n[Unit]\nStartLimitBurst=5\nRefuseManualStop=no\n" in text


def test_argument_specs_cover_every_default() -> None:
    with open(os.path.join(ROLE, "defaults", "main.yml"), encoding="utf-8") as handle:
        defaults = yaml.safe_load(handle)
    with open(os.path.join(ROLE, "meta", "argument_specs.yml"), encoding="utf-8") as handle:
        options = yaml.safe_load(handle)["argument_specs"]["main"]["options"]
    assert set(defaults) == set(options)
    for name, value in defaults.items():
        if value is not None:
            assert options[name].get("default") == value, name
