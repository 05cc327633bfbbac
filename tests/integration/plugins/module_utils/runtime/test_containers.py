"""Containers through the CLI and the public API, as root, from images pulled from the real registry."""

import json
import os
import signal
import time
from pathlib import Path

import pytest


def test_run_exit_codes_and_output(host) -> None:
    result = host.berth(
        "run", "--rm", "--network", "none", "busybox", "sh", "-c", "echo out; echo err >&2; exit 7", check=False
    )
    assert result.returncode == 7
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    missing = host.berth("run", "--rm", "busybox", "/no/such/program", check=False)
    assert missing.returncode == 127
    assert "/no/such/program" in missing.stderr


def test_detached_logs_and_inspect(host) -> None:
    cid = host.berth(
        "run", "-d", "--name", "talker", "busybox", "sh", "-c", "echo one; echo two >&2; sleep 30"
    ).stdout.strip()
    try:
        deadline = time.monotonic() + 5
        while "two" not in host.berth("logs", "talker").stderr and time.monotonic() < deadline:
            time.sleep(0.05)
        logs = host.berth("logs", "talker")
        assert logs.stdout == "one\n"
        assert logs.stderr == "two\n"
        records = [json.loads(line) for line in Path(host.runtime().get("talker").log_path).read_text().splitlines()]
        assert {(r["stream"], r["log"]) for r in records} == {("stdout", "one\n"), ("stderr", "two\n")}
        inspect = json.loads(host.berth("inspect", "talker").stdout)[0]
        assert inspect["Id"] == cid
        assert inspect["State"]["Running"] is True
        assert inspect["Config"]["Hostname"] == cid[:12]
        assert "talker" in host.berth("ps").stdout
    finally:
        host.berth("rm", "-f", "talker")
    assert "talker" not in host.berth("ps", "-a").stdout


def test_stop_waits_for_timeout_then_kills(host) -> None:
    # PID 1 with no SIGTERM handler ignores SIGTERM: stop must fall back to SIGKILL after the timeout.
    host.berth("run", "-d", "--name", "stubborn", "busybox", "sleep", "60")
    try:
        started = time.monotonic()
        host.berth("stop", "-t", "1", "stubborn")
        elapsed = time.monotonic() - started
        assert 0.9 < elapsed < 6
        state = json.loads(host.berth("inspect", "stubborn").stdout)[0]["State"]
        assert state["Status"] == "exited"
        assert state["ExitCode"] == 137
    finally:
        host.berth("rm", "-f", "stubborn")


def test_stop_with_a_handled_signal_is_quick(host) -> None:
    host.berth(
        "run", "-d", "--name", "polite", "busybox", "sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.1; done"
    )
    try:
        started = time.monotonic()
        host.berth("stop", "-t", "10", "polite")
        assert time.monotonic() - started < 3
        assert json.loads(host.berth("inspect", "polite").stdout)[0]["State"]["ExitCode"] == 0
    finally:
        host.berth("rm", "-f", "polite")


def test_restart_policy_on_failure_counts_and_stops(host) -> None:
    host.berth("run", "-d", "--name", "flaky", "--restart", "on-failure:2", "busybox", "sh", "-c", "echo run; exit 3")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            inspect = json.loads(host.berth("inspect", "flaky").stdout)[0]
            if inspect["State"]["Status"] == "exited" and not inspect["Berth"]["MonitorAlive"]:
                break
            time.sleep(0.1)
        assert inspect["State"]["Status"] == "exited"
        assert inspect["State"]["ExitCode"] == 3
        assert inspect["RestartCount"] == 2
        assert host.berth("logs", "flaky").stdout == "run\n" * 3
    finally:
        host.berth("rm", "-f", "flaky")


def test_restart_policy_always_survives_a_kill_of_the_workload(host) -> None:
    host.berth("run", "-d", "--name", "phoenix", "--restart", "always", "busybox", "sleep", "60")
    try:
        first = json.loads(host.berth("inspect", "phoenix").stdout)[0]["State"]["Pid"]
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 10
        second = first
        while time.monotonic() < deadline:
            state = json.loads(host.berth("inspect", "phoenix").stdout)[0]["State"]
            if state["Running"] and state["Pid"] != first:
                second = state["Pid"]
                break
            time.sleep(0.1)
        assert second != first
        host.berth("stop", "-t", "0", "phoenix")
        time.sleep(0.5)
        assert json.loads(host.berth("inspect", "phoenix").stdout)[0]["State"]["Status"] == "exited"
    finally:
        host.berth("rm", "-f", "phoenix")


def test_volumes_bind_named_and_tmpfs(host, tmp_path) -> None:
    (tmp_path / "in.txt").write_text("from host\n")
    host.berth(
        "run",
        "--rm",
        "-v",
        f"{tmp_path}:/data",
        "-v",
        "berthvol:/vol",
        "--tmpfs",
        "/scratch:size=1m",
        "busybox",
        "sh",
        "-c",
        "cat /data/in.txt; echo written > /data/out.txt; echo kept > /vol/file; grep -q ' /scratch tmpfs' /proc/mounts",
    )
    assert (tmp_path / "out.txt").read_text() == "written\n"
    again = host.berth("run", "--rm", "-v", "berthvol:/vol", "busybox", "cat", "/vol/file")
    assert again.stdout == "kept\n"
    ro = host.berth(
        "run", "--rm", "-v", f"{tmp_path}:/data:ro", "busybox", "sh", "-c", "echo x > /data/new", check=False
    )
    assert ro.returncode != 0
    assert not (tmp_path / "new").exists()


def test_changes_stay_in_the_container_and_go_with_rm(host) -> None:
    host.berth("run", "--name", "writer", "busybox", "sh", "-c", "echo changed > /etc/motd; rm /bin/ls")
    container = host.runtime().get("writer")
    assert Path(container.path("upper"), "etc", "motd").read_text() == "changed\n"
    clean = host.berth("run", "--rm", "busybox", "sh", "-c", "cat /etc/motd; test -e /bin/ls && echo ls-here")
    assert "changed" not in clean.stdout
    assert "ls-here" in clean.stdout
    host.berth("rm", "writer")
    assert not os.path.exists(container.directory)


def test_exec_runs_inside(host) -> None:
    host.berth("run", "-d", "--name", "target", "-e", "GREETING=hi", "busybox", "sleep", "60")
    try:
        result = host.berth(
            "exec", "target", "sh", "-c", "echo $GREETING; hostname; cat /proc/1/cmdline | tr '\\0' ' '"
        )
        lines = result.stdout.splitlines()
        assert lines[0] == "hi"
        assert lines[1] == host.runtime().get("target").id[:12]
        assert lines[2].strip() == "sleep 60"
        assert host.berth("exec", "target", "sh", "-c", "exit 4", check=False).returncode == 4
    finally:
        host.berth("rm", "-f", "target")


def test_name_conflict_is_clear(host) -> None:
    host.berth("create", "--name", "taken", "busybox", "true")
    try:
        result = host.berth("create", "--name", "taken", "busybox", "true", check=False)
        assert result.returncode == 125
        assert 'the container name "/taken" is already in use' in result.stderr
    finally:
        host.berth("rm", "taken")


def test_rm_of_running_container_needs_force(host) -> None:
    host.berth("run", "-d", "--name", "busy", "busybox", "sleep", "60")
    try:
        result = host.berth("rm", "busy", check=False)
        assert result.returncode == 1
        assert "stop it first, or force" in result.stderr
    finally:
        host.berth("rm", "-f", "busy")


def test_memory_limit_oom_kills(host) -> None:
    result = host.berth(
        "run",
        "--name",
        "hungry",
        "-m",
        "64m",
        "busybox",
        "sh",
        "-c",
        "dd if=/dev/zero of=/dev/null bs=200M count=1",
        check=False,
    )
    try:
        assert result.returncode == 137
        state = json.loads(host.berth("inspect", "hungry").stdout)[0]["State"]
        assert state["OOMKilled"] is True
    finally:
        host.berth("rm", "-f", "hungry")


def test_pids_limit_stops_a_fork_bomb(host) -> None:
    host.berth(
        "run",
        "-d",
        "--name",
        "bomb",
        "--pids-limit",
        "20",
        "busybox",
        "sh",
        "-c",
        # The bomb runs in a subshell: a shell whose fork fails exits, and PID 1 must stay to be observed.
        "(while true; do sleep 30 & done) 2>/dev/null; exec sleep 60",
    )
    try:
        pids_dir = host.runtime().get("bomb").state["cgroup"]["directories"]["pids"]
        deadline = time.monotonic() + 10
        refused = 0
        while time.monotonic() < deadline and refused == 0:
            refused = int(Path(os.path.join(pids_dir, "pids.events")).read_text().split()[1])
            time.sleep(0.1)
        assert refused > 0, "no fork was refused by the pids limit"
        assert int(Path(os.path.join(pids_dir, "pids.current")).read_text()) <= 20
    finally:
        host.berth("rm", "-f", "bomb")
    assert not os.path.exists(pids_dir)


@pytest.mark.parametrize("image", ["busybox", "nginx"])
def test_image_config_is_honoured(host, image: str) -> None:
    result = host.berth("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "echo $PATH; pwd; id -u")
    lines = result.stdout.splitlines()
    assert lines[0].startswith("/usr/local/sbin") or "/usr/sbin" in lines[0]
    assert lines[1] == "/"
    assert lines[2] == "0"


def test_privileged_device_nodes_keep_the_hosts_modes(host) -> None:
    # mknod applies the umask: /dev/null came out 0644 and unprivileged users (apt's _apt) could not write it.
    result = host.berth(
        "run", "--rm", "--privileged", "busybox", "stat", "-c", "%a %n", "/dev/null", "/dev/zero", "/dev/urandom"
    )
    assert result.stdout.split() == ["666", "/dev/null", "666", "/dev/zero", "666", "/dev/urandom"]


@pytest.mark.parametrize(("options", "expected"), [((), "1"), (("--security-opt", "no-new-privileges=false"), "0")])
def test_no_new_privileges_is_on_unless_turned_off(host, options, expected) -> None:
    result = host.berth("run", "--rm", *options, "busybox", "grep", "NoNewPrivs", "/proc/self/status")
    assert result.stdout.split() == ["NoNewPrivs:", expected]
    bad = host.berth("run", "--rm", "--security-opt", "seccomp=unconfined", "busybox", "true", check=False)
    assert bad.returncode == 125
    assert "only no-new-privileges" in bad.stderr
