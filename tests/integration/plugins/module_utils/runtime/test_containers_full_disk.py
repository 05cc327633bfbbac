"""A full data root: every write that fails says so clearly, and nothing stored is left corrupted.

The data root is a 24 MiB tmpfs (tmpfs keeps no blocks in reserve for root,
so it really fills up) holding busybox; a filler file takes the rest when a
step needs a full disk.  Pull, create, start, the container's log and its
exit record each meet ENOSPC in turn; afterwards ``store verify`` is clean,
the container's files are readable, and removing it leaves no trace.
"""

import errno
import json
import os
import shutil
import subprocess
import time
from typing import Any, Iterator

import pytest
from support import host_snapshot
from support.berth_env import BerthEnv

TMPFS_SIZE = "24m"


class Filler:
    """Takes every free byte of a filesystem, and gives back some on demand."""

    def __init__(self, directory: str) -> None:
        self.path = os.path.join(directory, "filler")

    def fill(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (1 << 20, 1 << 16, 1 << 12, 1):
                try:
                    while True:
                        os.write(fd, b"\0" * chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
        finally:
            os.close(fd)

    def release(self, size: int) -> None:
        os.truncate(self.path, max(0, os.path.getsize(self.path) - size))

    def remove(self) -> None:
        os.unlink(self.path)


@pytest.fixture
def small_host(mirror) -> Iterator[Any]:
    env = BerthEnv(mirrors=[mirror.url])
    mountpoint = os.path.join(env.base, "small")
    os.mkdir(mountpoint)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE},mode=0700", f"berth-full-{env.token}", mountpoint],
        check=True,
    )
    env.settings["data-root"] = os.path.join(mountpoint, "data")
    env.write()
    jail = host_snapshot.CgroupJail()
    try:
        yield env, jail, Filler(mountpoint)
    finally:
        problems = env.destroy()
        subprocess.run(["umount", mountpoint], check=False)
        shutil.rmtree(env.base, ignore_errors=True)
        problems += jail.remove()
        assert problems == []


def clear_failure(result: subprocess.CompletedProcess) -> str:
    """The one-line error of a command that failed because the disk is full."""
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert "unexpected error" not in result.stderr, result.stderr
    assert "No space left on device" in result.stderr or "no space left" in result.stderr, result.stderr
    return result.stderr


def test_full_data_root(small_host) -> None:
    env, jail, filler = small_host

    def berth(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        return env.berth(*args, check=check, preexec_fn=jail.enter)

    berth("pull", "busybox")
    berth("run", "--rm", "busybox", "true")  # bridge, firewall, caches: the host is warm
    berth("run", "-d", "--name", "warm", "busybox", "true")  # and the runtime's lasting copy, if berth needs one
    berth("rm", "-f", "warm")
    pulled = host_snapshot.take(env, jail)

    # Pull: nginx (134 MB unpacked) cannot fit in 24 MiB.  What stays are verified blobs and the
    # resumable .partial download (by design), never an unfinished layer or a half-recorded image.
    clear_failure(berth("pull", "nginx", check=False))
    assert "is intact (1 image)" in berth("store", "verify").stdout
    assert berth("images", "-q").stdout.count("\n") == 1
    before = host_snapshot.take(env, jail)
    added = set(before["data_root"]) - set(pulled["data_root"])
    assert added, "the pull stored nothing before the disk was full"
    assert all(path.startswith(("blobs/sha256/", "locks/")) for path in added), added

    # Create with not a byte free: refused, and nothing of the container remains.
    filler.fill()
    clear_failure(berth("create", "--name", "chatty", "busybox", "true", check=False))
    assert env.container_ids() == []
    assert os.listdir(os.path.join(env.settings["data-root"], "names")) == []

    # Created with some room; started when the disk is full again: refused, state intact, nothing held.
    filler.release(256 * 1024)
    # About 7 kB a second: more than the page of the log file that may still have room.
    script = f"i=0; while true; do i=$((i+1)); echo line $i {'x' * 120}; usleep 20000; done"
    berth("create", "--name", "chatty", "busybox", "sh", "-c", script)
    filler.fill()
    failure = clear_failure(berth("start", "chatty", check=False))
    assert "chatty" in failure
    assert json.loads(berth("inspect", "chatty").stdout)[0]["State"]["Status"] == "created"
    assert host_snapshot.take(env, jail)["processes"] == []
    assert host_snapshot.take(env, jail)["cgroups"] == before["cgroups"]

    # Running while the disk fills: output is dropped whole (never a torn line), the container runs on.
    filler.release(256 * 1024)
    berth("start", "chatty")
    container = env.runtime().get("chatty")
    wait_for_lines(container.log_path, 5)
    filler.fill()
    time.sleep(2)
    filler.release(512 * 1024)
    lines_after = wait_for_lines(container.log_path, count_lines(container.log_path) + 5)
    assert lines_after > 5
    state = json.loads(berth("inspect", "chatty").stdout)[0]
    assert state["State"]["Running"] is True
    assert state["Berth"]["MonitorAlive"] is True
    numbers = [int(record["log"].split()[1]) for record in log_records(container.log_path)]
    assert numbers == sorted(numbers)
    assert numbers[-1] - numbers[0] + 1 > len(numbers), "some output was written while the disk was full"

    # Stopped while the disk is full: the exit cannot be recorded, the run's resources are released anyway.
    filler.fill()
    stopped = berth("stop", "-t", "1", "chatty", check=False)
    if stopped.returncode != 0:
        clear_failure(stopped)
    snapshot = host_snapshot.take(env, jail)
    assert snapshot["processes"] == []
    assert snapshot["cgroups"] == before["cgroups"]
    assert snapshot["netns"] == before["netns"]
    assert snapshot["veths"] == before["veths"]

    # Room again: the truth is shown, the files are whole, the store is intact, removal leaves no trace.
    filler.remove()
    state = json.loads(berth("inspect", "chatty").stdout)[0]["State"]
    assert state["Status"] == "exited"
    assert state["Running"] is False
    assert all(record["stream"] == "stdout" for record in log_records(container.log_path))
    assert berth("logs", "chatty").stdout.startswith("line 1 x")
    if stopped.returncode != 0:  # neither the monitor nor stop could record the exit: ps says why it has none
        assert "without recording how it exited" in state["Error"]
    berth("rm", "chatty")
    assert "is intact (1 image)" in berth("store", "verify", "--deep").stdout
    assert berth("run", "--rm", "busybox", "echo", "room again").stdout == "room again\n"
    assert host_snapshot.differences(before, host_snapshot.take(env, jail)) == []


def log_records(path: str) -> list:
    """Every record of a json-file log (json.loads fails on a torn line)."""
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def count_lines(path: str) -> int:
    with open(path, "rb") as handle:
        return handle.read().count(b"\n")


def wait_for_lines(path: str, count: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = count_lines(path) if os.path.exists(path) else 0
        if found >= count:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {count} lines in {timeout}s")
