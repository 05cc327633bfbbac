"""systemd as PID 1: boots to ``running`` in a Debian container and stops cleanly on SIGRTMIN+3.

The image is the fixtures' Debian bookworm + systemd (tests/support/images.py),
unpacked once with umoci.  The container gets what systemd needs and no
more: tmpfs /run, /run/lock and /tmp, its own writable name=systemd (and
hybrid unified) cgroup, the rest of /sys/fs/cgroup read-only, container=berth.
"""

import os
import time

import pytest
from support.isolation import sandbox, systemd_rootfs, wait

from ansible_collections.berth.containers.plugins.module_utils.runtime import process

pytestmark = pytest.mark.slow


def run_inside(pid, spec, args):
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        child = process.exec_in(pid, process.ExecSpec.like(spec, args), devnull, write_end, write_end)
    finally:
        os.close(write_end)
        os.close(devnull)
    with os.fdopen(read_end) as handle:
        output = handle.read()
    wait(child.pid, 30)
    return output.strip()


def test_systemd_boots_to_running_and_stops_on_sigrtmin_3():
    lower = systemd_rootfs()
    with sandbox() as box:
        cgroup = box.cgroup(systemd=True)
        spec = box.spec(["/sbin/init"], [lower], hostname="booted", env=["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
        assert spec.is_systemd
        log_path = os.path.join(box.base, "console.log")
        devnull = os.open(os.devnull, os.O_RDWR)
        with open(log_path, "wb") as log:
            began = time.monotonic()
            started = process.start(spec, cgroup, devnull, log.fileno(), log.fileno())
        os.close(devnull)
        try:
            state = ""
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                state = run_inside(started.pid, spec, ["systemctl", "is-system-running"])
                if state in ("running", "degraded"):
                    break
                time.sleep(0.2)
            boot_seconds = time.monotonic() - began
            failed = run_inside(started.pid, spec, ["systemctl", "list-units", "--failed", "--plain", "--no-legend"])
            pid1 = run_inside(started.pid, spec, ["cat", "/proc/1/comm"])
            cgroup_view = run_inside(started.pid, spec, ["cat", "/proc/1/cgroup"])
        except BaseException:
            os.kill(started.pid, 9)
            wait(started.pid, 10)
            raise
        print(f"\nsystemd reached {state!r} in {boot_seconds:.1f}s; failed units: {failed or 'none'}")
        assert state == "running", f"state {state!r}, failed units:\n{failed}"
        assert pid1 == "systemd"
        assert "name=systemd:/init.scope" in cgroup_view, "systemd manages its own delegated cgroup"
        stop_began = time.monotonic()
        os.kill(started.pid, process.SYSTEMD_STOP_SIGNAL)
        assert wait(started.pid, 30) == 0
        print(f"stopped cleanly in {time.monotonic() - stop_began:.1f}s")
        assert cgroup.pids() == []
