"""A systemd container through the CLI: boots to ``running``, stops cleanly with ``berth stop``, leaves nothing.

The fixtures' Debian + systemd image (Cmd ``/sbin/init``, StopSignal
``SIGRTMIN+3``), run detached as Molecule and the connection plugin's tests
run it: unprivileged with the command given, and ``--privileged`` with the
image's own command.  ``berth exec`` asks systemd for its state.  A privileged
container gets the host's devices but not its consoles (``tty1``...), so no
getty of the container fights over the host's terminals.
"""

import json
import time
from typing import Any, Callable, Iterator, List

import pytest
from support import host_snapshot
from support.berth_env import BerthEnv

pytestmark = pytest.mark.slow

IMAGE = "debian-systemd"


@pytest.fixture(scope="module")
def systemd_host(mirror, push_image, systemd_layout) -> Iterator[Any]:
    push_image(mirror, systemd_layout)
    env = BerthEnv(mirrors=[mirror.url])
    jail = host_snapshot.CgroupJail()
    try:
        env.berth("pull", IMAGE, timeout=600)
        # The bridge, caches and the shared "berth" parent cgroups (systemd's hierarchies too) exist from now on.
        env.berth("run", "--rm", "--systemd", "true", IMAGE, "true", preexec_fn=jail.enter)
        # A detached run installs the lasting copy of the runtime when berth runs from a temporary path.
        env.berth("run", "-d", "--name", "warm", IMAGE, "true", preexec_fn=jail.enter)
        env.berth("rm", "-f", "warm", preexec_fn=jail.enter)
        yield env, jail
    finally:
        problems = env.destroy()
        problems += jail.remove()
        assert problems == []


def booted_state(berth: Callable[..., Any], name: str, timeout: float = 60) -> str:
    """``systemctl is-system-running`` once systemd finished booting (or the last answer at the timeout)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = berth("exec", name, "systemctl", "is-system-running", check=False).stdout.strip()
        if state in ("running", "degraded", "maintenance", "stopping"):
            break
        time.sleep(0.2)
    return state


@pytest.mark.parametrize(
    ("options", "command", "halt_code"),
    [
        ([], ["/sbin/init"], 0),  # without CAP_SYS_BOOT systemd ends with exit(0)
        (["--privileged"], [], 130),  # with it, reboot(2) halts the pid namespace: its init dies of SIGINT
    ],
    ids=["unprivileged", "privileged"],
)
def test_systemd_boots_to_running_and_stops_cleanly(
    systemd_host, options: List[str], command: List[str], halt_code: int
) -> None:
    env, jail = systemd_host

    def berth(*args: str, check: bool = True) -> Any:
        return env.berth(*args, check=check, preexec_fn=jail.enter)

    before = host_snapshot.take(env, jail)
    name = f"booted{len(options)}"
    berth("run", "-d", "--name", name, *options, IMAGE, *command)
    try:
        state = booted_state(berth, name)
        failed = berth("exec", name, "systemctl", "list-units", "--failed", "--plain", "--no-legend", check=False)
        assert state == "running", f"systemd is {state!r}; failed units:\n{failed.stdout}"
        assert berth("exec", name, "cat", "/proc/1/comm").stdout == "systemd\n"
        assert "name=systemd:/init.scope" in berth("exec", name, "cat", "/proc/1/cgroup").stdout
        consoles = berth("exec", name, "sh", "-c", "ls /dev | grep -E '^tty[0-9]+$' || true").stdout
        assert consoles == ""
        inspect = json.loads(berth("inspect", name).stdout)[0]
        assert inspect["Config"]["StopSignal"] == "SIGRTMIN+3"
        assert "container=berth" in inspect["Config"]["Env"] or inspect["Berth"]["Effective"]["systemd"]

        started = time.monotonic()
        berth("stop", name)
        stop_seconds = time.monotonic() - started
        stopped = json.loads(berth("inspect", name).stdout)[0]["State"]
        assert stopped["Status"] == "exited"
        assert stopped["ExitCode"] == halt_code, stopped
        assert stop_seconds < 10, f"systemd took {stop_seconds:.1f}s: the stop timeout (SIGKILL) ended it"
        assert stopped["Error"] == ""
    finally:
        berth("rm", "-f", name, check=False)
    assert host_snapshot.differences(before, host_snapshot.take(env, jail)) == []
