"""Resource limits enforced on real cgroups (v1 here: hybrid host), and nothing left behind."""

import os
import signal
import time

import pytest
from support.isolation import sandbox, wait

from ansible_collections.berth.containers.plugins.module_utils.runtime import cgroups, process

MiB = 1 << 20


@pytest.fixture(scope="module")
def box():
    with sandbox() as shared:
        yield shared


def test_layout_of_this_host_nests_under_our_own_cgroup(box):
    layout = cgroups.host_layout()
    group = box.cgroup()
    own_memory = layout.own[layout.key_for("memory")]
    assert group.directories[layout.key_for("memory")] == layout.directory(
        layout.key_for("memory"), os.path.join(own_memory, box.cgroup_parent, os.path.basename(group.main_directory))
    )
    assert all(os.path.isdir(directory) for directory in group.directories.values())


def test_memory_limit_oom_kills_and_is_reported(box):
    """64 MB container allocating a 200 MB buffer is OOM-killed, and the kill is counted as OOM."""
    group = box.cgroup(cgroups.Resources(memory=64 * MiB))
    result = box.run(box.spec(["dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]), group)
    assert result.exit_code == 137
    assert result.oom_kills >= 1
    assert group.oom_kills() >= 1


def test_within_the_memory_limit_nothing_is_killed(box):
    group = box.cgroup(cgroups.Resources(memory=64 * MiB))
    result = box.run(box.spec(["dd", "if=/dev/zero", "of=/dev/null", "bs=16M", "count=2"]), group)
    assert result.exit_code == 0
    assert result.oom_kills == 0


def test_pids_limit_stops_a_fork_bomb(box):
    limit = 32
    group = box.cgroup(cgroups.Resources(pids_limit=limit))
    with open(os.path.join(group.directories["pids"], "pids.max")) as handle:
        assert handle.read().strip() == str(limit), "the limit is in place before the bomb goes off"
    bomb = "b() { b | b & }; b; sleep 2; cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/pids/pids.current"
    devnull = os.open(os.devnull, os.O_RDWR)
    read_end, write_end = os.pipe()
    try:
        started = process.start(box.spec(["sh", "-c", bomb]), group, devnull, write_end, devnull)
    finally:
        os.close(write_end)
        os.close(devnull)
    peak = 0
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        peak = max(peak, len(group.pids()))
        time.sleep(0.05)
    with open(os.path.join(group.directories["pids"], "pids.events")) as handle:
        events = handle.read()
    group.kill()
    wait(started.pid, 10)
    os.close(read_end)
    assert peak <= limit
    assert int(events.split()[-1]) > 0, "forks were refused by pids.max"
    assert group.pids() == []
    with open("/proc/loadavg") as handle:
        assert int(handle.read().split()[3].split("/")[1]) < 30000, "host process table fine"


def test_cpu_quota_throttles(box):
    group = box.cgroup(cgroups.Resources.from_cpus(0.2))
    started_at = time.monotonic()
    # Not the last command of sh -c, so sh stays PID 1 and the busy loop can be signalled.
    result = box.run(box.spec(["sh", "-c", "timeout 1 sh -c 'while :; do :; done'; exit $?"]), group)
    elapsed = time.monotonic() - started_at
    used = group.stats().cpu_usage_ns / 1e9
    assert result.exit_code in (124, 143)
    assert result.cpu_throttled > 0
    assert used < 0.2 * elapsed + 0.15, f"{used:.2f}s of CPU in {elapsed:.2f}s with a 0.2 CPU quota"


def test_cpu_shares_written(box):
    group = box.cgroup(cgroups.Resources(cpu_shares=512))
    with open(os.path.join(group.directories[cgroups.host_layout().key_for("cpu")], "cpu.shares")) as handle:
        assert handle.read().strip() == "512"


def test_stats_freeze_thaw_and_kill(box):
    group = box.cgroup(cgroups.Resources(memory=64 * MiB))
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(
            box.spec(["sh", "-c", "sleep 30 & sleep 30 & dd if=/dev/zero bs=8M count=1 | sleep 30"]),
            group,
            devnull,
            devnull,
            devnull,
        )
    finally:
        os.close(devnull)
    try:
        deadline = time.monotonic() + 5
        while len(group.pids()) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        stats = group.stats()
        assert stats.pids == 5
        assert stats.memory_limit == 64 * MiB
        assert stats.memory_usage > 0
        assert stats.cpu_usage_ns > 0
        group.freeze()
        with open(f"/proc/{started.pid}/stat") as handle:
            assert handle.read().rsplit(")", 1)[1].split()[0] in ("S", "D")
        with open(os.path.join(group.directories["freezer"], "freezer.state")) as handle:
            assert handle.read().strip() == "FROZEN"
        group.thaw()
        group.kill()
        assert group.pids() == []
    finally:
        if process.is_running(started.pid, started.start_time):
            os.kill(started.pid, signal.SIGKILL)
        wait(started.pid, 5)


def test_remove_waits_for_exiting_tasks_and_leaves_nothing(box):
    group = cgroups.Cgroup.create("rm-" + os.urandom(3).hex(), parent=box.cgroup_parent)
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(box.spec(["sleep", "30"]), group, devnull, devnull, devnull)
    finally:
        os.close(devnull)
    os.kill(started.pid, signal.SIGKILL)
    group.remove(timeout=5)
    wait(started.pid, 5)
    assert not group.exists()


@pytest.mark.slow
def test_no_leaks_after_50_start_stop_cycles(box):
    """50 containers started and stopped leave no mounts, cgroup directories or processes."""

    def snapshot():
        with open("/proc/self/mountinfo") as handle:
            mounts = [line for line in handle if box.base in line or "/merged" in line]
        layout = cgroups.host_layout()
        groups = []
        for key in layout.mounts:
            parent = layout.directory(key, os.path.join(layout.own.get(key, "/"), box.cgroup_parent))
            if os.path.isdir(parent):
                groups.extend(entry for entry in os.listdir(parent) if os.path.isdir(os.path.join(parent, entry)))
        children = sorted(int(pid) for pid in os.listdir("/proc") if pid.isdigit() and _parent(int(pid)) == os.getpid())
        return mounts, sorted(groups), children

    before = snapshot()
    for number in range(50):
        group = cgroups.Cgroup.create(f"leak{number}", cgroups.Resources(memory=32 * MiB), parent=box.cgroup_parent)
        devnull = os.open(os.devnull, os.O_RDWR)
        try:
            started = process.start(
                box.spec(["sleep", "10"] if number % 2 else ["true"]), group, devnull, devnull, devnull
            )
        finally:
            os.close(devnull)
        if number % 2:
            os.kill(started.pid, signal.SIGKILL)
        wait(started.pid, 10)
        group.remove()
    assert snapshot() == before


def _parent(pid):
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
