"""daemon_json and engine_info against a real dockerd (Debian's docker.io), run through ansible-playbook.

Every test owns a dockerd with its own socket and state directory (see
support/dockerd.py); nothing touches /etc/docker or /var/run/docker.sock.
Where the modules refuse a configuration, a test also shows that dockerd
itself refuses to start with it -- the reason for the check.
"""

import json
import subprocess
import threading
import time

import pytest
from support.ansible_run import Task, rhythm, run_module, run_tasks, warnings_of
from support.dockerd import Dockerd, dockerd

pytestmark = pytest.mark.root

MIRROR = "https://mirror.example.com"
DOCKER_CLI = "/usr/bin/docker"


def docker_info(daemon: Dockerd) -> str:
    """What the docker CLI prints: an oracle independent of engine_info."""
    completed = subprocess.run(
        [DOCKER_CLI, "-H", daemon.docker_host, "info"], capture_output=True, text=True, timeout=60, check=True
    )
    return completed.stdout


def read_config(daemon: Dockerd) -> dict:
    with open(daemon.config_path, encoding="utf-8") as handle:
        return json.load(handle)


def test_mirror_set_by_daemon_json_is_reported_after_a_restart() -> None:
    with dockerd({"log-level": "warn"}) as daemon:
        before = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host})
        assert before["engine"]["registry_mirrors"] == []

        args = {"path": daemon.config_path, "config": {"registry-mirrors": [MIRROR]}}
        check, apply, check_again, apply_again = rhythm("berth.containers.daemon_json", args)
        assert check["changed"] is True
        assert MIRROR in check["diff"]["after"]
        assert MIRROR not in check["diff"]["before"]
        assert apply["changed"] is True
        assert apply["diff"] == check["diff"]
        assert check_again["changed"] is False
        assert apply_again["changed"] is False
        config = read_config(daemon)
        assert config["registry-mirrors"] == [MIRROR]
        assert config["log-level"] == "warn", "keys the module does not manage stay"
        assert config["deprecated-key-path"] == daemon.trust_key_path

        daemon.restart()
        info = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host, "wait_timeout": 30})
        assert info["changed"] is False
        assert info["engine"]["registry_mirrors"] == [f"{MIRROR}/"]
        assert info["engine"]["server_version"].startswith("20.10")
        assert info["engine"]["storage_driver"]
        assert info["engine"]["docker_root_dir"] == daemon.data_root
        assert "Registry Mirrors:\n  https://mirror.example.com/\n" in docker_info(daemon)


def test_dropping_the_mirror_removes_it_from_the_daemon() -> None:
    with dockerd() as daemon:
        run_module(
            "berth.containers.daemon_json", {"path": daemon.config_path, "config": {"registry-mirrors": [MIRROR]}}
        )
        insecure = {"insecure-registries": ["registry.local:5000", "10.0.0.0/8"]}
        results = run_tasks(
            [Task("berth.containers.daemon_json", {"path": daemon.config_path, "config": insecure}, check)
             for check in (True, False)]
        )  # fmt: skip
        assert results[0]["changed"] is True
        assert results[0]["removed_keys"] == ["registry-mirrors"]
        assert results[1]["removed_keys"] == ["registry-mirrors"]
        daemon.restart()
        engine = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host})["engine"]
        assert engine["registry_mirrors"] == []
        assert engine["insecure_registries"] == ["registry.local:5000", "10.0.0.0/8", "127.0.0.0/8"]
        assert "Registry Mirrors" not in docker_info(daemon)


def test_engine_info_waits_through_a_restart() -> None:
    with dockerd() as daemon:
        daemon.stop()
        starter = threading.Timer(1.0, daemon.start)
        starter.start()
        try:
            info = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host, "wait_timeout": 60})
        finally:
            starter.join()
        assert info.get("failed") is not True, info
        assert info["waited"] > 0
        assert info["engine"]["server_version"].startswith("20.10")


def test_stopped_daemon_is_a_clear_error() -> None:
    with dockerd() as daemon:
        daemon.stop()
        started = time.monotonic()
        result = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host, "wait_timeout": 2})
        assert result["failed"] is True
        assert result["msg"].startswith(f"no Docker daemon answers on {daemon.docker_host} (")
        assert "is the docker service running?" in result["msg"]
        assert "(waited 2s)" in result["msg"]
        assert time.monotonic() - started < 30


def test_bad_existing_json_is_reported_and_left_untouched() -> None:
    with dockerd(start=False) as daemon:
        with open(daemon.config_path, "w", encoding="utf-8") as handle:
            handle.write('{"registry-mirrors": ["https://mirror.example.com"],}\n')
        with open(daemon.config_path, "rb") as handle:
            before = handle.read()
        refused = daemon.start_expecting_failure()
        assert "invalid character" in refused or "unable to configure the Docker daemon" in refused
        result = run_module("berth.containers.daemon_json", {"path": daemon.config_path, "config": {"debug": True}})
        assert result["failed"] is True
        assert result["msg"].startswith(f"{daemon.config_path} is not valid JSON (")
        with open(daemon.config_path, "rb") as handle:
            assert handle.read() == before


@pytest.mark.parametrize(
    ("config", "module_says", "dockerd_says"),
    [
        ({"log-opts": {"max-file": 3}}, "'max-file' must be a string", "cannot unmarshal number"),
        ({"live-restore": "yes"}, "'live-restore' must be true or false", "cannot unmarshal string"),
        ({"registry-mirrors": ["mirror.example.com"]}, "has no scheme", "invalid mirror"),
        (
            {"hosts": ["unix:///var/run/other.sock"]},
            "conflicts with the -H fd://",
            "both as a flag and in the configuration file",
        ),
    ],
)
@pytest.mark.slow
def test_values_the_module_refuses_are_values_dockerd_refuses(
    config: dict, module_says: str, dockerd_says: str
) -> None:
    with dockerd(start=False) as daemon:
        result = run_module("berth.containers.daemon_json", {"path": daemon.config_path, "config": config})
        assert result["failed"] is True
        assert module_says in result["msg"]
        assert "debug" not in read_config(daemon), "nothing was written"
        # The same content written by hand: dockerd does not start.
        daemon.write_config(config, allow_flag_keys=True)
        log = daemon.start_expecting_failure()
        assert dockerd_says in log, log


@pytest.mark.slow
def test_warned_keys_are_refused_by_dockerd_20_10() -> None:
    with dockerd(start=False) as daemon:
        typo = run_module(
            "berth.containers.daemon_json", {"path": daemon.config_path, "config": {"registry-mirrorz": [MIRROR]}}
        )
        assert any("'registry-mirrorz' is not an option this module knows" in w for w in warnings_of(typo))
        assert "don't match any configuration option: registry-mirrorz" in daemon.start_expecting_failure()

        daemon.write_config({})
        with_path = {"registry-mirrors": ["https://mirror.example.com/docker-hub"]}
        result = run_module("berth.containers.daemon_json", {"path": daemon.config_path, "config": with_path})
        assert any("has a path: dockerd 20.10 and older refuse that" in w for w in warnings_of(result))
        assert 'invalid mirror: path, query, or fragment at end of the URI "https://mirror.example.com/docker-hub"' in (
            daemon.start_expecting_failure()
        )


def test_flag_name_typo_is_refused_because_dockerd_silently_ignores_it() -> None:
    with dockerd(start=False) as daemon:
        result = run_module(
            "berth.containers.daemon_json", {"path": daemon.config_path, "config": {"registry-mirror": [MIRROR]}}
        )
        assert result["failed"] is True
        assert "Write 'registry-mirrors'" in result["msg"]
        # Written by hand, dockerd starts -- and uses no mirror at all.
        daemon.write_config({"registry-mirror": [MIRROR]})
        daemon.start()
        engine = run_module("berth.containers.engine_info", {"docker_host": daemon.docker_host})["engine"]
        assert engine["registry_mirrors"] == []
