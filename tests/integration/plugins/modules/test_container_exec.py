"""container_exec as Ansible runs it (ansible-playbook, local connection), in real busybox containers, as root."""

import os
import time
from typing import Any, Dict, Iterator, List

import pytest
from support.ansible_run import Task, run_tasks
from support.berth_containers import Containers
from support.berth_env import BerthEnv

EXEC = "berth.containers.container_exec"


@pytest.fixture
def containers(host: BerthEnv) -> Iterator[Containers]:
    started = Containers(host)
    yield started
    assert started.remove_all() == []


def execs(host: BerthEnv, container: str, tasks: List[Dict[str, Any]], check: bool = False) -> List[Dict[str, Any]]:
    return run_tasks(
        [Task(EXEC, {"config": host.config_path, "container": container, **args}, check) for args in tasks]
    )


def test_output_exit_code_stdin_env_user_and_directory(host: BerthEnv, containers: Containers) -> None:
    name = containers.run("exec", "busybox", "sleep", "600", options=["-e", "FROM_IMAGE=container", "-e", "KEEP=kept"])
    results = execs(
        host,
        name,
        [
            {"argv": ["sh", "-c", "echo out; echo line2; echo err >&2"]},
            {"command": "echo 'two  words'   three"},
            {"argv": ["cat"], "stdin": "hello"},
            {"argv": ["cat"], "stdin": "hello", "strip_empty_ends": False},
            {"argv": ["cat"], "stdin": "hello", "stdin_add_newline": False, "strip_empty_ends": False},
            {"argv": ["sh", "-c", "echo $GREETING $FROM_IMAGE $KEEP"], "env": {"GREETING": "hi", "FROM_IMAGE": "task"}},
            {"argv": ["sh", "-c", "id -u; id -g"], "user": "berth"},
            {"command": "id -un", "user": "nobody"},
            {"command": "pwd", "chdir": "/opt/app"},
            {"command": "pwd", "chdir": "/created/by/exec"},
            {"argv": ["sh", "-c", "grep CapEff /proc/self/status"]},
            {"argv": ["sh", "-c", "grep CapEff /proc/self/status"], "privileged": True},
        ],
    )
    assert all(result["changed"] is True for result in results), results
    assert not any(result.get("failed") for result in results), results
    first = results[0]
    assert (first["rc"], first["stdout"], first["stderr"]) == (0, "out\nline2", "err")
    assert (first["stdout_lines"], first["stderr_lines"]) == (["out", "line2"], ["err"])
    assert first["cmd"] == ["sh", "-c", "echo out; echo line2; echo err >&2"]
    assert results[1]["stdout"] == "two  words three"
    assert results[1]["cmd"] == ["echo", "two  words", "three"]
    assert [results[n]["stdout"] for n in (2, 3, 4)] == ["hello", "hello\n", "hello"]
    assert results[5]["stdout"] == "hi task kept", "the task's env is added to the container's, and wins"
    assert results[6]["stdout_lines"] == ["1000", "1000"]
    assert results[7]["stdout"] == "nobody"
    assert results[8]["stdout"] == "/opt/app"
    assert results[9]["stdout"] == "/created/by/exec"
    default_caps, all_caps = (int(results[n]["stdout"].split()[1], 16) for n in (10, 11))
    assert default_caps & ~all_caps == 0
    assert all_caps != default_caps, "privileged gets capabilities the container does not have"


def test_failures_are_clear(host: BerthEnv, containers: Containers) -> None:
    name = containers.run("fail", "busybox", "sleep", "600")
    began = time.monotonic()
    results = execs(
        host,
        name,
        [
            {"argv": ["sh", "-c", "echo partial; echo why >&2; exit 3"]},
            {"argv": ["no-such-program", "--flag"]},
            {"argv": ["/etc/passwd"]},
            {"command": "id", "user": "ghost"},
            {"command": "sleep 60", "timeout": 1},
            {"command": "pwd", "chdir": "relative/dir"},
        ],
    )
    assert time.monotonic() - began < 45, "the timeout killed the sleep"
    assert all(result.get("failed") for result in results), results
    nonzero = results[0]
    assert (nonzero["rc"], nonzero["stdout"], nonzero["stderr"]) == (3, "partial", "why")
    assert nonzero["msg"] == "non-zero return code 3"
    assert nonzero["changed"] is True
    assert results[1]["rc"] == 127
    assert results[1]["stderr"] == 'exec: "no-such-program": executable file not found in $PATH'
    assert results[2]["rc"] == 126
    assert "permission denied" in results[2]["stderr"]
    assert "unable to find user ghost" in results[3]["msg"]
    assert results[4]["msg"] == "the command did not finish within 1 seconds; it was killed"
    assert "must be an absolute path" in results[5]["msg"]


def test_a_missing_or_stopped_container_fails_a_run_but_not_check_mode(host: BerthEnv, containers: Containers) -> None:
    stopped = containers.run("stopped", "busybox", "true")
    deadline = time.monotonic() + 30
    while containers.inspect(stopped)["State"]["Status"] != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    args = {"config": host.config_path, "command": "true"}
    results = run_tasks(
        [
            Task(EXEC, {**args, "container": "no-such-container"}),
            Task(EXEC, {**args, "container": stopped}),
            Task(EXEC, {**args, "container": "no-such-container"}, check=True),
            Task(EXEC, {**args, "container": stopped}, check=True),
        ]
    )
    assert results[0]["msg"] == "no such container: no-such-container"
    assert results[1]["msg"] == f"container {stopped} is not running (it is exited): start it first"
    assert [result.get("failed", False) for result in results] == [True, True, False, False]
    assert results[2]["msg"] == (
        "Command would have run in container no-such-container (it is missing now) if not in check mode"
    )
    assert results[3]["msg"] == f"Command would have run in container {stopped} (it is exited now) if not in check mode"


def test_check_mode_runs_nothing(host: BerthEnv, containers: Containers) -> None:
    name = containers.run("check", "busybox", "sleep", "600")
    marker = os.path.join(containers.upper_dir(name), "srv", "marker")
    task = {"argv": ["sh", "-c", "mkdir -p /srv && echo ran > /srv/marker"]}

    predicted = execs(host, name, [task], check=True)[0]
    assert (predicted["changed"], predicted["skipped"]) == (False, True)
    assert predicted["msg"] == f"Command would have run in container {name} if not in check mode"
    assert "rc" not in predicted
    assert not os.path.exists(marker), "check mode ran nothing"

    ran = execs(host, name, [task])[0]
    assert (ran["changed"], ran["rc"]) == (True, 0)
    with open(marker, encoding="utf-8") as handle:
        assert handle.read() == "ran\n"
