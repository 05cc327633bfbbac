"""Containers in their own user namespace (``--userns``), as root, with real idmapped mounts.

The container's root is host uid 200000 (gid 300000, so a swapped uid/gid
shows); the image's files, the container's changes and named volumes keep
the image's ids on disk.  Escape probes check that root in the container
holds nothing over the host: no host-only file, no mount, no hostname.
"""

import json
import os
import secrets
import time
from typing import Dict, List

import pytest
from support.berth_env import BerthEnv
from support.berth_net import wait_http
from support.procs import free_port

UID, GID = 200000, 300000
USERNS = f"{UID}:{GID}:65536"


def unique(names: List[str], prefix: str) -> str:
    names.append(f"{prefix}-{secrets.token_hex(3)}")
    return names[-1]


def run(host: BerthEnv, *args: str, check: bool = True):
    return host.berth("run", "--rm", "--network", "none", "--userns", USERNS, *args, check=check)


def host_ids(pid: int) -> Dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        fields = dict(line.split(":", 1) for line in handle.read().splitlines())
    return {key: fields[key].split()[0] for key in ("Uid", "Gid")}


def inspect(host: BerthEnv, name: str) -> dict:
    return json.loads(host.berth("inspect", name).stdout)[0]


def test_root_inside_is_an_unprivileged_host_user_that_owns_the_image(host: BerthEnv) -> None:
    script = "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c %u:%g /bin/busybox /etc/passwd"
    lines = [line.split() for line in run(host, "busybox", "sh", "-c", script).stdout.splitlines()]
    assert lines[0] == ["0", str(UID), "65536"]
    assert lines[1] == ["0", str(GID), "65536"]
    assert lines[2:] == [["0"], ["0"], ["0:0"], ["0:0"]], "image files show as the container's root, not nobody"


def test_detached_process_and_exec_run_as_the_mapped_ids(host: BerthEnv, container_names: List[str]) -> None:
    name = unique(container_names, "userns")
    host.berth("run", "-d", "--name", name, "--network", "none", "--userns", USERNS, "busybox", "sleep", "300")
    pid = inspect(host, name)["State"]["Pid"]
    assert host_ids(pid) == {"Uid": str(UID), "Gid": str(GID)}
    inside = host.berth("exec", name, "sh", "-c", "id -u; cat /proc/self/uid_map; echo $$ > /tmp/exec.pid; sleep 2 &")
    assert inside.stdout.split()[:4] == ["0", "0", str(UID), "65536"]
    assert inspect(host, name)["HostConfig"]["UsernsMode"] == USERNS
    # A user of the image maps into the range too.
    assert host.berth("exec", "-u", "1000:1000", name, "id", "-u").stdout.strip() == "1000"


def test_changes_keep_the_image_ids_on_disk_and_commit_unshifted(host: BerthEnv, container_names: List[str]) -> None:
    name = unique(container_names, "userns-commit")
    host.berth(
        "run", "--name", name, "--network", "none", "--userns", USERNS, "busybox", "sh", "-c",
        "echo mine > /root-file && mkdir /app && echo app > /app/data && chown -R 1000:2000 /app && touch /etc/passwd",
    )  # fmt: skip
    upper = inspect(host, name)["GraphDriver"]["Data"]["UpperDir"]
    stats = {path: os.lstat(os.path.join(upper, path)) for path in ("root-file", "app", "app/data", "etc/passwd")}
    owners = {path: (info.st_uid, info.st_gid) for path, info in stats.items()}
    assert owners == {"root-file": (0, 0), "app": (1000, 2000), "app/data": (1000, 2000), "etc/passwd": (0, 0)}
    tag = f"example.org/userns-commit:{secrets.token_hex(3)}"
    host.berth("commit", name, tag)
    try:
        seen = host.berth("run", "--rm", "--network", "none", tag, "stat", "-c", "%u:%g %n", "/root-file", "/app/data")
        assert seen.stdout.splitlines() == ["0:0 /root-file", "1000:2000 /app/data"]
    finally:
        host.berth("rmi", tag)


def test_named_volume_is_mapped_and_copied_up_with_image_ids(host: BerthEnv, container_names: List[str]) -> None:
    name = unique(container_names, "userns-volume")
    volume = f"userns-{secrets.token_hex(3)}"
    result = host.berth(
        "run", "--name", name, "--network", "none", "--userns", USERNS, "-v", f"{volume}:/etc", "busybox", "sh", "-c",
        "stat -c %u /etc/passwd && echo new > /etc/made-inside && chown 33:33 /etc/made-inside",
    )  # fmt: skip
    assert result.stdout.strip() == "0", "the copied-up image files show as the container's root"
    source = {m["Destination"]: m["Source"] for m in inspect(host, name)["Mounts"]}["/etc"]
    made = os.lstat(os.path.join(source, "made-inside"))
    assert (made.st_uid, made.st_gid) == (33, 33)
    copied = os.lstat(os.path.join(source, "passwd"))
    assert (copied.st_uid, copied.st_gid) == (0, 0)


def test_root_inside_gets_nothing_of_the_host(host: BerthEnv, tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("host only\n")
    secret.chmod(0o600)
    probes = {
        "read a host root-only file": "cat /secret",
        "mount a tmpfs": "mount -t tmpfs none /mnt",
        "set the hostname": "hostname evil",
        "create a device node": "mknod /tmp/mem c 1 1",
        "bring an interface down": "ip link set lo down",
        "change the owner of a host file": "chown 0 /secret",
    }
    script = "; ".join(f'if {command} 2>/dev/null; then echo "ESCAPED: {what}"; fi' for what, command in probes.items())
    result = run(host, "-v", f"{secret}:/secret:ro", "busybox", "sh", "-c", script + "; echo done")
    assert result.stdout == "done\n"
    assert secret.read_text() == "host only\n"
    assert os.stat(secret).st_uid == 0


def test_bind_to_port_80_and_log_through_dev_stdout(host: BerthEnv, container_names: List[str]) -> None:
    """nginx binds :80 as the namespace's root and writes its access log to /dev/stdout (reopened pipe)."""
    name = unique(container_names, "userns-web")
    port = free_port()
    host.berth("run", "-d", "--name", name, "--userns", USERNS, "-p", f"127.0.0.1:{port}:80", "nginx")
    status, body = wait_http(port)
    assert (status, "Welcome to nginx!" in body) == (200, True)
    deadline = time.monotonic() + 5
    while '"GET / HTTP/1.1" 200' not in host.berth("logs", name).stdout and time.monotonic() < deadline:
        time.sleep(0.05)
    assert '"GET / HTTP/1.1" 200' in host.berth("logs", name).stdout
    pid = inspect(host, name)["State"]["Pid"]
    assert host_ids(pid)["Uid"] == str(UID)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--userns", "0:0:65536"], "maps the container's root to the host's root"),
        (["--userns", "abc"], "is not host, auto or HOST_UID"),
        (["--userns", USERNS, "--privileged"], "cannot be combined with privileged"),
        (["--userns", f"{UID}:{GID}:1000", "-u", "5000"], "outside the container's user namespace"),
    ],
)
def test_bad_user_namespace_requests_fail_clearly(host: BerthEnv, args: List[str], message: str) -> None:
    before = host.container_ids()
    result = host.berth("run", "--rm", "--network", "none", *args, "busybox", "true", check=False)
    assert result.returncode == 125
    assert message in result.stderr
    assert host.container_ids() == before


def test_no_idmapped_mount_reaches_the_host(host: BerthEnv) -> None:
    run(host, "busybox", "true")
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = handle.read()
    assert host.settings["data-root"] not in mounts


def test_terminals_and_pipes_can_be_reopened_by_the_namespaces_root(host: BerthEnv, container_names: List[str]) -> None:
    """/dev/console, /dev/stdout and the exec's /dev/pts/N belong to the container's root (nginx logs there)."""
    shown = run(host, "-t", "busybox", "sh", "-c", "echo console > /dev/console; stat -c %u:%g /dev/console")
    assert shown.stdout.replace("\r\n", "\n") == "console\n0:5\n"
    name = unique(container_names, "userns-exec")
    host.berth("run", "-d", "--name", name, "--network", "none", "--userns", USERNS, "busybox", "sleep", "300")
    piped = host.berth("exec", name, "sh", "-c", "echo out > /dev/stdout; echo err > /dev/stderr")
    assert (piped.stdout, piped.stderr) == ("out\n", "err\n")
    terminal = host.berth("exec", "-t", name, "sh", "-c", "echo pts > $(tty); stat -c %u:%g $(tty)")
    assert terminal.stdout.replace("\r\n", "\n") == "pts\n0:5\n"
    outside = host.berth("exec", "-u", "70000", name, "true", check=False)
    assert outside.returncode == 125
    assert "outside the container's user namespace (ids 0-65535)" in outside.stderr
