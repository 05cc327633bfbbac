"""Faults around running containers, through the CLI: what ``ps`` says afterwards is the truth.

* the supervisor (monitor) killed with SIGKILL: the kernel kills the container
  with it (PR_SET_PDEATHSIG), ``ps`` shows it exited 137 with the reason, and
  ``rm`` / ``start`` / ``stop`` release everything the run held;
* the foreground ``berth run`` killed: the same, it is the supervisor there;
* the container's init killed from the host: its monitor records 137;
* eight concurrent ``run --name same``: exactly one container, seven clear errors.

Every test compares a snapshot of what the host's commands may leave
(support.host_snapshot) before and after: nothing may remain.
"""

import json
import os
import signal
import subprocess
import time
from typing import Any, Callable, Dict, Iterator, Tuple

import pytest
from support import host_snapshot
from support.berth_env import BERTH, BerthEnv

Jailed = Tuple[BerthEnv, host_snapshot.CgroupJail]


@pytest.fixture(scope="module")
def jailed_host(mirror) -> Iterator[Jailed]:
    """One Berth host for the module, its commands in a cgroup jail; warmed up (bridge, caches) before tests."""
    env = BerthEnv(mirrors=[mirror.url])
    jail = host_snapshot.CgroupJail()
    try:
        env.berth("pull", "busybox")
        env.berth("run", "--rm", "-p", "127.0.0.1::80", "busybox", "true", preexec_fn=jail.enter)
        env.berth("run", "--rm", "--network", "none", "busybox", "true", preexec_fn=jail.enter)
        # A detached run installs the lasting copy of the runtime when berth runs from a temporary path.
        env.berth("run", "-d", "--name", "warm", "busybox", "true", preexec_fn=jail.enter)
        env.berth("rm", "-f", "warm", preexec_fn=jail.enter)
        yield env, jail
    finally:
        problems = env.destroy()
        problems += jail.remove()
        assert problems == []


@pytest.fixture
def host(jailed_host: Jailed) -> Iterator[Callable[..., Any]]:
    """``berth(*args, check=True)`` in the jail; after the test, the host must be as it was before."""
    env, jail = jailed_host
    before = host_snapshot.take(env, jail)

    def berth(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return env.berth(*args, check=check, preexec_fn=jail.enter)

    berth.env = env  # type: ignore[attr-defined]
    berth.jail = jail  # type: ignore[attr-defined]
    yield berth
    for container_id in env.container_ids():
        env.berth("rm", "-f", container_id, check=False, preexec_fn=jail.enter)
    assert host_snapshot.differences(before, host_snapshot.take(env, jail)) == []


def inspect(berth: Callable[..., Any], name: str) -> Dict[str, Any]:
    return json.loads(berth("inspect", name).stdout)[0]


def running_state(berth: Callable[..., Any], name: str) -> Any:
    """The State of container *name* when it exists and runs, else None."""
    result = berth("inspect", name, check=False)
    if result.returncode != 0:
        return None
    state = json.loads(result.stdout)[0]["State"]
    return state if state["Running"] else None


def finished(berth: Callable[..., Any], name: str) -> Any:
    """inspect of container *name* once its monitor is gone, else None."""
    info = inspect(berth, name)
    return None if info["Berth"]["MonitorAlive"] else info


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def gone(pid: int) -> bool:
    """The process has exited (reaped, or a zombie waiting for its new parent)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except FileNotFoundError:
        return True
    return data[data.rindex(b")") + 2 :].split()[0] == b"Z"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return ""


def test_killed_supervisor_takes_the_container_with_it(host) -> None:
    host("run", "-d", "--name", "orphan", "-p", "127.0.0.1::80", "busybox", "sleep", "60")
    running = inspect(host, "orphan")
    monitor, init = running["Berth"]["MonitorPid"], running["State"]["Pid"]
    assert "runtime.monitor" in cmdline(monitor)
    os.kill(monitor, signal.SIGKILL)

    wait_for(lambda: gone(init), 5, "the container's init to die with its supervisor")
    state = inspect(host, "orphan")["State"]
    assert (state["Status"], state["Running"], state["ExitCode"]) == ("exited", False, 137)
    assert "supervisor ended without recording" in state["Error"]
    assert "orphan" not in host("ps").stdout
    assert "Exited (137)" in host("ps", "-a").stdout

    # The dead run's network and cgroup are released by the next start, which works as usual.
    host("start", "orphan")
    again = inspect(host, "orphan")
    assert again["State"]["Running"] is True
    assert again["State"]["Pid"] != init
    assert again["Berth"]["MonitorAlive"] is True
    host("stop", "-t", "0", "orphan")
    assert inspect(host, "orphan")["State"]["Status"] == "exited"
    host("rm", "orphan")


def test_rm_and_stop_after_a_killed_supervisor(host) -> None:
    host("run", "-d", "--name", "widow", "busybox", "sleep", "60")
    running = inspect(host, "widow")
    os.kill(running["Berth"]["MonitorPid"], signal.SIGKILL)
    wait_for(lambda: gone(running["State"]["Pid"]), 5, "the container to die")
    host("stop", "widow")  # not running any more: nothing to stop, its resources are released
    assert inspect(host, "widow")["State"]["ExitCode"] == 137
    host("rm", "widow")
    assert host("ps", "-a", "-q").stdout == ""


def test_killed_foreground_run_takes_the_container_with_it(host) -> None:
    env, jail = host.env, host.jail
    cli = subprocess.Popen(
        [BERTH, "run", "--name", "attached", "busybox", "sleep", "60"],
        env=env.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=jail.enter,
    )
    try:
        state = wait_for(lambda: running_state(host, "attached"), 30, "the container to run")
        cli.send_signal(signal.SIGKILL)
        assert cli.wait(10) == -signal.SIGKILL
        wait_for(lambda: gone(state["Pid"]), 5, "the container to die with the berth run that supervised it")
        after = inspect(host, "attached")["State"]
        assert (after["Status"], after["ExitCode"]) == ("exited", 137)
        assert "supervisor ended without recording" in after["Error"]
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.wait()
    host("rm", "attached")


def test_init_killed_from_the_host_is_recorded_as_137(host) -> None:
    host("run", "-d", "--name", "shot", "busybox", "sh", "-c", "echo started; exec sleep 60")
    running = inspect(host, "shot")
    os.kill(running["State"]["Pid"], signal.SIGKILL)
    done = wait_for(lambda: finished(host, "shot"), 10, "the monitor to record the exit")
    assert (done["State"]["Status"], done["State"]["ExitCode"], done["State"]["Error"]) == ("exited", 137, "")
    assert done["State"]["OOMKilled"] is False
    with open(os.path.join(os.path.dirname(done["LogPath"]), "exit.json"), encoding="utf-8") as handle:
        exit_record = json.load(handle)
    assert (exit_record["pid"], exit_record["exit_code"], exit_record["log_dropped"]) == (
        running["State"]["Pid"],
        137,
        0,
    )
    assert host("logs", "shot").stdout == "started\n"
    host("rm", "shot")


def test_eight_concurrent_runs_of_one_name_make_one_container(host) -> None:
    env, jail = host.env, host.jail
    gate_read, gate_write = os.pipe()
    runs = [
        subprocess.Popen(
            ["sh", "-c", 'read go; exec "$@"', "gate", BERTH, "run", "-d", "--name", "same", "busybox", "sleep", "60"],
            env=env.env,
            stdin=gate_read,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=jail.enter,
        )
        for _run in range(8)
    ]
    os.close(gate_read)
    os.write(gate_write, b"go\n" * 8)  # all eight start their run at the same moment
    os.close(gate_write)
    results = [(run.wait(60), run.stdout.read(), run.stderr.read()) for run in runs]
    for run in runs:
        run.stdout.close()
        run.stderr.close()
    winners = [result for result in results if result[0] == 0]
    losers = [result for result in results if result[0] != 0]
    assert len(winners) == 1, results
    assert all(code == 125 for code, _out, _err in losers), losers
    assert all('the container name "/same" is already in use by container' in err for _c, _o, err in losers), losers
    assert env.container_ids() == [winners[0][1].strip()]
    listed = [line for line in host("ps", "-a").stdout.splitlines()[1:] if line.split()[-1] == "same"]
    assert len(listed) == 1
    assert inspect(host, "same")["State"]["Running"] is True
    host("rm", "-f", "same")
