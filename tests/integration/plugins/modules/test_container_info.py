"""container_info as Ansible runs it, on real running and exited busybox containers, as root."""

import os
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, Tuple

import pytest
from support.ansible_run import Task, run_tasks
from support.berth_containers import Containers
from support.berth_env import BerthEnv

INFO = "berth.containers.container_info"


@pytest.fixture
def containers(host: BerthEnv) -> Iterator[Containers]:
    started = Containers(host)
    yield started
    assert started.remove_all() == []


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def files_of(directory: str) -> Dict[str, Tuple[int, int]]:
    """Every file below *directory* with its modification time and size (the container's own files)."""
    found = {}
    for root, _dirs, names in os.walk(directory):
        for name in names:
            info = os.lstat(os.path.join(root, name))
            found[os.path.join(root, name)] = (info.st_mtime_ns, info.st_size)
    return found


def test_a_running_container_its_state_and_the_tail_of_both_streams(host: BerthEnv, containers: Containers) -> None:
    # Pauses between the lines: the order across two pipes is the order the monitor reads them in.
    script = "echo one; sleep 0.3; echo two >&2; sleep 0.3; echo three; sleep 600"
    name = containers.run("info", "busybox", "sh", "-c", script)
    container = host.runtime().get(name)

    def logged_three() -> bool:
        log = Path(container.log_path)
        return log.exists() and log.read_bytes().count(b"\n") >= 3

    wait_for(logged_three, "three log records")
    before = files_of(container.directory)
    args = {"config": host.config_path, "name": name, "logs": True, "logs_tail": 2}
    results = run_tasks(
        [
            Task(INFO, args),
            Task(INFO, args, check=True),
            Task(INFO, {**args, "name": container.id[:10], "logs_tail": -1}),
            Task(INFO, {"config": host.config_path, "name": name}),
        ]
    )
    for result in results:
        assert (result["changed"], result["exists"], result["state"]) == (False, True, "running"), result
        assert result["container"]["Id"] == container.id
        assert result["container"]["State"]["Running"] is True
        assert result["container"]["State"]["Pid"] > 0
        assert result["container"]["Name"] == f"/{name}"
    assert [(item["stream"], item["text"]) for item in results[0]["logs"]] == [("stderr", "two"), ("stdout", "three")]
    assert all(item["time"].endswith("Z") for item in results[0]["logs"])
    assert results[1]["logs"] == results[0]["logs"], "check mode gives the same answer"
    assert [item["text"] for item in results[2]["logs"]] == ["one", "two", "three"]
    assert "logs" not in results[3]
    assert files_of(container.directory) == before, "nothing in the container's directory changed"


def test_an_exited_container_and_a_missing_one(host: BerthEnv, containers: Containers) -> None:
    name = containers.run("exited", "busybox", "sh", "-c", "echo bye; exit 3")
    wait_for(lambda: containers.inspect(name)["State"]["Status"] == "exited", "the container to exit")
    results = run_tasks(
        [
            Task(INFO, {"config": host.config_path, "name": name, "logs": True}),
            Task(INFO, {"config": host.config_path, "name": "no-such-container", "logs": True}),
        ]
    )
    exited, missing = results
    assert (exited["exists"], exited["state"]) == (True, "exited")
    assert exited["container"]["State"]["ExitCode"] == 3
    assert [item["text"] for item in exited["logs"]] == ["bye"]
    assert (missing["changed"], missing["exists"], missing["state"], missing["container"]) == (
        False,
        False,
        "absent",
        None,
    )
    assert missing["logs"] == []
    assert not missing.get("failed")
