"""Fixtures for the isolation tests: busybox root filesystems and a one-shot container runner.

A busybox layer is built from Debian's static busybox (``/bin/busybox`` of
busybox-static) with an applet symlink for every name ``busybox --list``
knows, in /bin; with ``python=True`` the container also gets the host's
/usr bound read-only (and /lib, /lib64 symlinks into it), so probes that
need arbitrary system calls can run ``/usr/bin/python3`` inside.

Everything lives under a per-test temporary directory and every cgroup the
runner creates is removed, also on failure.
"""

import contextlib
import gc
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Sequence

from ansible_collections.berth.containers.plugins.module_utils.runtime import cgroups, process
from ansible_collections.berth.containers.plugins.module_utils.runtime.rootfs import Mount, RootfsSpec

BUSYBOX = "/bin/busybox"
CACHE = "/var/tmp/berth-isolation-cache"
PASSWD = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = b"root:x:0:\nnogroup:x:65534:\n"


def build_busybox_layer(path: str, passwd: bytes = PASSWD, group: bytes = GROUP) -> str:
    """A minimal busybox root filesystem at *path* (created)."""
    for directory in ("bin", "sbin", "etc", "tmp", "root", "proc", "sys", "dev", "home", "var", "usr", "run"):
        os.makedirs(os.path.join(path, directory), exist_ok=True)
    os.chmod(os.path.join(path, "tmp"), 0o1777)
    shutil.copy2(BUSYBOX, os.path.join(path, "bin", "busybox"))
    applets = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout.split()
    for applet in applets:
        link = os.path.join(path, "bin", applet)
        if not os.path.lexists(link) and applet != "busybox":
            os.symlink("busybox", link)
    for name in ("lib", "lib64"):
        os.symlink(f"usr/{name}", os.path.join(path, name))
    with open(os.path.join(path, "etc", "passwd"), "wb") as handle:
        handle.write(passwd)
    with open(os.path.join(path, "etc", "group"), "wb") as handle:
        handle.write(group)
    return path


def systemd_rootfs() -> str:
    """The fixtures' Debian + systemd image unpacked with umoci (an independent tool), cached by its diff_ids.

    About 15 s the first time (after the fixture image itself, ~80 s cold), then instant.
    """
    from ansible_collections.berth.containers.plugins.module_utils.runtime.fsutil import locked

    from . import images

    fixture = images.systemd_images()
    key = fixture.image().layers[-1].diff_id.split(":")[1][:16]
    bundle = os.path.join(CACHE, f"systemd-{key}")
    rootfs = os.path.join(bundle, "rootfs")
    with locked(os.path.join(CACHE, "systemd.lock")):
        if not os.path.isfile(os.path.join(bundle, "complete")):
            shutil.rmtree(bundle, ignore_errors=True)
            subprocess.run(["umoci", "unpack", "--image", fixture.ref(), bundle], check=True, capture_output=True)
            with open(os.path.join(bundle, "complete"), "w") as handle:
                handle.write(fixture.ref() + "\n")
    return rootfs


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str
    oom_kills: int = 0
    cpu_throttled: int = 0


@dataclass
class Sandbox:
    """A temporary directory holding layers and container directories for one test."""

    base: str
    cgroup_parent: str = field(default_factory=lambda: "berth-test-" + secrets.token_hex(4))
    created_cgroups: List[cgroups.Cgroup] = field(default_factory=list)

    _busybox: Optional[str] = None

    def layer(self, name: str = "busybox", **kwargs: bytes) -> str:
        return build_busybox_layer(os.path.join(self.base, "layers", name), **kwargs)

    @property
    def busybox(self) -> str:
        """The sandbox's plain busybox layer, built on first use."""
        if self._busybox is None:
            self._busybox = self.layer()
        return self._busybox

    def rootfs(self, lowers: Sequence[str], read_only: bool = False) -> RootfsSpec:
        container = tempfile.mkdtemp(prefix="c-", dir=self.base)
        for name in ("upper", "work", "merged"):
            os.mkdir(os.path.join(container, name))
        return RootfsSpec(
            lowers=tuple(lowers),
            upper=os.path.join(container, "upper"),
            work=os.path.join(container, "work"),
            merged=os.path.join(container, "merged"),
            read_only=read_only,
        )

    def spec(self, args: Sequence[str], lowers: Optional[Sequence[str]] = None, python: bool = False, **kwargs):
        mounts = list(kwargs.pop("mounts", []))
        if python:
            mounts.append(Mount("/usr", source="/usr", read_only=True))
        env = kwargs.pop("env", ["PATH=/bin:/sbin:/usr/bin"])
        return process.ContainerSpec(
            rootfs=self.rootfs(lowers or [self.busybox]), args=list(args), env=env, mounts=mounts, **kwargs
        )

    def cgroup(self, resources: Optional[cgroups.Resources] = None, systemd: bool = False) -> cgroups.Cgroup:
        group = cgroups.Cgroup.create("c" + secrets.token_hex(4), resources, parent=self.cgroup_parent, systemd=systemd)
        self.created_cgroups.append(group)
        return group

    def run(
        self,
        spec: process.ContainerSpec,
        cgroup: Optional[cgroups.Cgroup] = None,
        timeout: float = 30.0,
        stdin: Optional[bytes] = None,
    ) -> Result:
        """Start *spec*, wait for it, and return its exit code and output."""
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            read_end, write_end = os.pipe()
            try:
                started = process.start(spec, cgroup, read_end, out.fileno(), err.fileno())
            finally:
                os.close(read_end)
            if stdin:
                os.write(write_end, stdin)
            os.close(write_end)
            status = wait(started.pid, timeout)
            out.seek(0)
            err.seek(0)
            return Result(
                exit_code=status,
                stdout=out.read().decode(errors="replace"),
                stderr=err.read().decode(errors="replace"),
                oom_kills=cgroup.oom_kills() if cgroup else 0,
                cpu_throttled=cgroup.cpu_throttled() if cgroup else 0,
            )

    def cleanup(self) -> None:
        for group in self.created_cgroups:
            with contextlib.suppress(Exception):
                group.kill()
            with contextlib.suppress(Exception):
                group.remove()
        layout = cgroups.host_layout()
        for key in layout.mounts:
            parent = layout.directory(key, os.path.join(layout.own.get(key, "/"), self.cgroup_parent))
            with contextlib.suppress(OSError):
                os.rmdir(parent)
        shutil.rmtree(self.base, ignore_errors=True)


def wait_single_threaded(timeout: float = 30.0) -> None:
    """Wait for the test servers' threads of earlier tests to end: ``process.start`` forks, so it refuses
    to run in a multi-threaded process, and a test would otherwise fail for a neighbour's reason.

    Clients left to the garbage collector are collected first, so their connections close; a server's
    handler thread ends at the latest ``procs.IDLE_CONNECTION_TIMEOUT`` seconds after its last request.
    """
    gc.collect()
    deadline = time.monotonic() + timeout
    while threading.active_count() > 1:
        if time.monotonic() > deadline:
            names = ", ".join(thread.name for thread in threading.enumerate() if thread is not threading.main_thread())
            raise AssertionError(f"threads of earlier tests still run ({names}): close their servers and clients")
        time.sleep(0.01)


def wait(pid: int, timeout: float) -> int:
    """waitpid with a deadline; the process is killed when it overstays. Docker's exit code convention."""
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return exit_code(status)
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise TimeoutError(f"container {pid} still running after {timeout}s")
        time.sleep(0.002)


def exit_code(status: int) -> int:
    code = os.waitstatus_to_exitcode(status)
    return 128 - code if code < 0 else code


@contextlib.contextmanager
def sandbox() -> Iterator[Sandbox]:
    wait_single_threaded()
    base = tempfile.mkdtemp(prefix="berth-iso-", dir="/var/tmp")
    box = Sandbox(base)
    try:
        yield box
    finally:
        box.cleanup()
