"""No leaks: 200 container lifecycles through the CLI leave the machine exactly as they found it.

Mixed cycles, as users run them: ``run --rm`` and ``run -d`` + ``rm -f``,
with ``--network none`` and on the bridge with a published port, exiting
by themselves or killed.  Before and after, a snapshot (support.host_snapshot)
of the mounts, the cgroups and processes the commands started (they run in
a cgroup jail of their own), the netns handles, veths, nftables rules, IPAM
leases and every path under the data and exec roots must be identical: only
the image store remains.
"""

import pytest
from support import host_snapshot
from support.berth_env import BerthEnv

pytestmark = pytest.mark.slow

CYCLES = 200


@pytest.fixture
def jailed_host(mirror):
    """A Berth host whose commands all run in a cgroup jail (and whose jail is removed after)."""
    env = BerthEnv(mirrors=[mirror.url])
    jail = host_snapshot.CgroupJail()
    try:
        env.berth("pull", "busybox")
        yield env, jail
    finally:
        problems = env.destroy()
        problems += jail.remove()
        assert problems == []


def cycle(env: BerthEnv, jail: host_snapshot.CgroupJail, number: int) -> None:
    kind = number % 4
    run = ("run", "--network", "none") if kind in (0, 2) else ("run", "-p", "127.0.0.1::80")
    name = f"leak{number}"
    if kind < 2:
        result = env.berth(*run, "--rm", "--name", name, "busybox", "sh", "-c", f"echo {number}; exit {kind + 3}",
                           check=False, preexec_fn=jail.enter)  # fmt: skip
        assert (result.returncode, result.stdout) == (kind + 3, f"{number}\n"), result.stderr
    else:
        env.berth(*run, "-d", "--name", name, "busybox", "sleep", "60", preexec_fn=jail.enter)
        env.berth("rm", "-f", name, preexec_fn=jail.enter)


def test_two_hundred_lifecycles_leave_nothing_behind(jailed_host) -> None:
    env, jail = jailed_host
    for number in range(4):  # warm-up: the bridge, the firewall table, caches and locks exist from now on
        cycle(env, jail, number)
    before = host_snapshot.take(env, jail)
    assert not [entry for entry in before["data_root"] if entry.startswith("containers/")]
    assert before["processes"] == []
    for number in range(4, CYCLES + 4):
        cycle(env, jail, number)
    after = host_snapshot.take(env, jail)
    assert host_snapshot.differences(before, after) == []
    assert env.berth("ps", "-a", "-q").stdout == ""
    assert "is intact" in env.berth("store", "verify").stdout
