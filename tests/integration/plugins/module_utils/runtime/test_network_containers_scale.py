"""No leaks and no shared addresses, with real containers: many run/rm cycles, crashed monitors, parallel runs.

``network_state`` (tests/support/berth_net.py) lists bridge ports and veths,
DNAT rules (nft and iptables), leases and namespace handles of the session's
bridge; every test compares it before and after.  Servers are busybox
``httpd`` on 8080, published on free loopback ports chosen here.
"""

import json
import os
import signal
import subprocess
import time
from typing import List, Tuple

import pytest
from support.berth_env import BERTH, BerthEnv
from support.berth_net import http_get, inspect, network_state, wait_http
from support.procs import free_port

HTTPD = "mkdir -p /www && echo hello from {name} > /www/index.html && exec httpd -f -p 8080 -h /www"


def _httpd(env: BerthEnv, name: str, port: int, *options: str) -> str:
    env.berth(
        "run", "-d", "--name", name, "-p", f"{port}:8080", *options, "busybox", "sh", "-c", HTTPD.format(name=name)
    )
    return env.runtime().get(name).id


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except FileNotFoundError:
        return True


def _crash(env: BerthEnv, name: str) -> None:
    """SIGKILL the container's monitor, and its workload should that outlive the monitor: a crash, no clean-up."""
    state = inspect(env, name)
    os.kill(state["Berth"]["MonitorPid"], signal.SIGKILL)
    workload = state["State"]["Pid"]
    deadline = time.monotonic() + 2
    while not _gone(workload) and time.monotonic() < deadline:
        time.sleep(0.02)
    if not _gone(workload):
        os.kill(workload, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while not _gone(workload) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(workload), f"the workload {workload} of {name} is still there"


@pytest.mark.slow
def test_a_hundred_run_rm_cycles_with_published_ports_leave_nothing(host: BerthEnv) -> None:
    before = network_state(host)
    seen: List[str] = []
    addresses = set()
    for cycle in range(100):
        port = free_port()
        name = f"cycle-{cycle}-{os.getpid()}"
        seen.append(_httpd(host, name, port))
        if cycle % 20 == 0:
            assert wait_http(port) == (200, f"hello from {name}\n")
        addresses.add(inspect(host, name)["NetworkSettings"]["IPAddress"])
        host.berth("rm", "-f", name)
    assert network_state(host, seen) == before
    assert len(addresses) > 1, "a freed address is not handed out again at once (round robin)"


def test_sigkill_of_the_monitor_then_rm_cleans_everything(host: BerthEnv) -> None:
    before = network_state(host)
    port = free_port()
    name = f"crash-rm-{os.getpid()}"
    container_id = _httpd(host, name, port)
    wait_http(port)
    _crash(host, name)
    assert network_state(host, [container_id]) != before, "nothing was cleaned yet: the test would prove nothing"
    assert inspect(host, name)["State"]["Status"] == "exited"
    host.berth("rm", name)
    assert network_state(host, [container_id]) == before
    with pytest.raises(ConnectionRefusedError):
        http_get("127.0.0.1", port, timeout=1)


def test_sigkill_of_the_monitor_then_network_prune_cleans_everything(host: BerthEnv) -> None:
    before = network_state(host)
    survivor_port, victim_port = free_port(), free_port()
    survivor = f"survivor-{os.getpid()}"
    victim = f"crash-prune-{os.getpid()}"
    _httpd(host, survivor, survivor_port, "--network-alias", "stays")
    with_survivor = network_state(host)
    victim_id = _httpd(host, victim, victim_port)
    wait_http(victim_port)
    _crash(host, victim)
    try:
        report = host.berth("network", "prune").stdout
        assert f"removed lease {victim_id}" in report
        assert f"removed netns {victim_id}" in report
        assert network_state(host, [victim_id]) == with_survivor
        assert wait_http(survivor_port) == (200, f"hello from {survivor}\n"), "the live container keeps its port"
        hosts = host.berth("exec", survivor, "cat", "/etc/hosts").stdout
        assert victim not in hosts, "prune takes the dead container's names out of the others' /etc/hosts"
        assert host.berth("network", "prune").stdout == "", "a second prune finds nothing"
    finally:
        host.berth("rm", "-f", victim, survivor)
    assert network_state(host, [victim_id]) == before


def test_ten_parallel_runs_get_distinct_addresses_and_all_answer(host: BerthEnv) -> None:
    before = network_state(host)
    runs: List[Tuple[str, int, subprocess.Popen]] = []
    names = [f"par-{index}-{os.getpid()}" for index in range(10)]
    try:
        for name in names:
            port = free_port()
            argv = [
                BERTH,
                "run",
                "-d",
                "--name",
                name,
                "-p",
                f"{port}:8080",
                "busybox",
                "sh",
                "-c",
                HTTPD.format(name=name),
            ]
            runs.append(
                (name, port, subprocess.Popen(argv, env=host.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
            )
        for name, _port, process in runs:
            _out, err = process.communicate(timeout=120)
            assert process.returncode == 0, (name, err)
        details = json.loads(host.berth("inspect", *names).stdout)
        addresses = [item["NetworkSettings"]["IPAddress"] for item in details]
        assert len(set(addresses)) == 10, addresses
        for name, port, _process in runs:
            assert wait_http(port) == (200, f"hello from {name}\n")
        leases = network_state(host)["leases"]
        assert len(leases) == len(before["leases"]) + 10
    finally:
        host.berth("rm", "-f", *names, check=False)
    assert network_state(host) == before
