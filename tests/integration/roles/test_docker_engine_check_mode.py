"""The docker_engine role in check mode on this Debian host, where the docker-ce repository is not set up.

Applying the role for real needs systemd and would change the machine (its
Molecule scenario runs it in a systemd container); check mode changes
nothing, and this host is exactly the "fresh host" case for the upstream
source: no docker-ce repository, so the package, service, group and daemon
checks must be skipped with a message instead of failing.
"""

import hashlib
import os

import pytest
from support.ansible_run import run_role

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not os.path.exists("/etc/debian_version"), reason="the check-mode scenario is Debian's"),
]

ROLE = "berth.containers.docker_engine"
WATCHED = [
    "/etc/apt/sources.list.d/docker.sources",
    "/etc/apt/keyrings/docker.asc",
    "/etc/docker/daemon.json",
    "/etc/docker/.daemon.json.managed-keys",
    "/etc/systemd/system/docker.service.d/berth.conf",
]
SAVED = ["_docker_engine_repo", "_docker_engine_pending", "_docker_engine_daemon_json", "_docker_engine_install"]


def _snapshot() -> dict:
    state = {}
    for path in WATCHED:
        try:
            with open(path, "rb") as handle:
                state[path] = hashlib.sha256(handle.read()).hexdigest()
        except FileNotFoundError:
            state[path] = None
    return state


@pytest.fixture
def untouched_host():
    before = _snapshot()
    yield
    assert _snapshot() == before, "check mode changed files on the host"


@pytest.mark.skipif(os.path.exists("/etc/apt/sources.list.d/docker.sources"), reason="needs a host without the repo")
def test_fresh_host_check_mode_skips_what_needs_the_package(untouched_host) -> None:
    run = run_role(
        ROLE,
        {
            "docker_engine_repo_base_url": "https://mirrors.example.com/docker-ce",
            "docker_engine_registry_mirrors": ["https://mirror.example.com"],
            "docker_engine_daemon_options": {"log-driver": "json-file", "log-opts": {"max-size": "10m"}},
            "docker_engine_users": ["root"],
        },
        check=True,
        save=SAVED,
    )
    assert run.returncode == 0, run.stdout[-4000:]
    recap = run.recap()
    assert recap["failed"] == 0
    assert recap["changed"] >= 2
    saved = run.saved
    assert saved["_docker_engine_repo"]["changed"] is True
    assert "https://mirrors.example.com/docker-ce/linux/debian" in saved["_docker_engine_repo"]["content"]
    assert saved["_docker_engine_pending"] is True
    assert saved["_docker_engine_install"].get("skipped") is True
    assert saved["_docker_engine_daemon_json"]["changed"] is True
    assert saved["_docker_engine_daemon_json"]["config"] == {
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m"},
        "registry-mirrors": ["https://mirror.example.com"],
    }
    assert "Check mode: the docker-ce repository would be added first" in run.stdout
    assert "the docker service and the docker group are not checked" in run.stdout
    assert "Ask the daemon what it runs with" in run.stdout
    assert '+    "https://mirror.example.com"' in run.stdout, "the daemon.json diff is shown"


def test_invalid_daemon_options_fail_even_in_check_mode(untouched_host) -> None:
    run = run_role(ROLE, {"docker_engine_daemon_options": {"live-restore": "yes"}}, check=True)
    assert run.returncode != 0
    assert run.recap()["failed"] == 1
    assert "'live-restore' must be true or false, not the string 'yes'" in run.stdout


def test_hosts_option_brings_the_unit_override(untouched_host) -> None:
    run = run_role(
        ROLE,
        {"docker_engine_daemon_options": {"hosts": ["fd://", "tcp://127.0.0.1:2376"]}},
        check=True,
        save=["_docker_engine_dropin", "_docker_engine_daemon_json"],
    )
    assert run.returncode == 0, run.stdout[-4000:]
    assert run.saved["_docker_engine_daemon_json"]["changed"] is True
    assert run.saved["_docker_engine_dropin"]["changed"] is True
    # Debian's docker.io would run without -H fd:// but keeps $DOCKER_OPTS; upstream keeps --containerd.
    assert "+ExecStart=\n+ExecStart=/usr/bin/dockerd --containerd=/run/containerd/containerd.sock\n" in run.stdout
