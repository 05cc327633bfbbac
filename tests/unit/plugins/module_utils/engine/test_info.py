"""`docker info` facts from the daemon's answers (recorded from Debian's dockerd 20.10)."""

import json
import os

from ansible_collections.berth.containers.plugins.module_utils.engine import info

FIXTURES = os.path.join(os.path.dirname(__file__), "fixtures")


def _load(name: str) -> dict:
    with open(os.path.join(FIXTURES, name), encoding="utf-8") as handle:
        return json.load(handle)


def test_summary_of_a_real_daemon_matches_what_docker_info_printed() -> None:
    # The same daemon printed, with `docker info`: Server Version 20.10.24+dfsg1, Storage Driver overlay2,
    # Cgroup Driver cgroupfs, Cgroup Version 1, Insecure Registries registry.local:5000 10.0.0.0/8 127.0.0.0/8,
    # Registry Mirrors https://mirror.example.com/ http://10.1.2.3:5000/.
    summary = info.summarize(_load("docker-20.10-info.json"), _load("docker-20.10-version.json"))
    assert summary["server_version"] == "20.10.24+dfsg1"
    assert summary["api_version"] == "1.41"
    assert summary["storage_driver"] == "overlay2"
    assert summary["cgroup_driver"] == "cgroupfs"
    assert summary["cgroup_version"] == "1"
    assert summary["logging_driver"] == "json-file"
    assert summary["registry_mirrors"] == ["https://mirror.example.com/", "http://10.1.2.3:5000/"]
    assert summary["insecure_registries"] == ["registry.local:5000", "10.0.0.0/8", "127.0.0.0/8"]
    assert summary["containers"] == summary["containers_running"] == summary["images"] == 0
    assert summary["live_restore_enabled"] is False
    assert summary["operating_system"] == "Debian GNU/Linux 12 (bookworm)"
    assert "runc" in summary["runtimes"]
    assert summary["docker_root_dir"].endswith("/data")


def test_missing_fields_give_empty_values_not_errors() -> None:
    summary = info.summarize({}, {})
    assert summary["server_version"] == ""
    assert summary["registry_mirrors"] == []
    assert summary["insecure_registries"] == []
    assert summary["containers"] == 0
    assert summary["cgroup_version"] == ""


def test_mirrors_fall_back_to_the_docker_io_index() -> None:
    answer = {"RegistryConfig": {"IndexConfigs": {"docker.io": {"Mirrors": ["https://m.example/"]}}}}
    assert info.registry_mirrors(answer) == ["https://m.example/"]


def test_counts_ignore_non_integers() -> None:
    summary = info.summarize({"Containers": "3", "ContainersRunning": True, "Images": 7}, {"Version": "27.3.1"})
    assert (summary["containers"], summary["containers_running"], summary["images"]) == (0, 0, 7)
    assert summary["server_version"] == "27.3.1"


def test_missing_mirrors_compare_without_trailing_slashes() -> None:
    reported = ["https://mirror.example.com/", "http://10.1.2.3:5000/"]
    assert info.missing_mirrors(reported, ["https://mirror.example.com", "http://10.1.2.3:5000/"]) == []
    assert info.missing_mirrors(reported, ["https://other.example.com"]) == ["https://other.example.com"]
