"""The container process for real: namespaces, identity, capabilities, descriptors, errors, exec_in.

Runs as root with real namespaces, overlay mounts and cgroups, on a busybox
root filesystem built from Debian's busybox-static (tests/support/isolation.py).
"""

import os
import pty
import resource
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import time

import pytest
from support.isolation import sandbox, wait

from ansible_collections.berth.containers.plugins.module_utils.runtime import capabilities, process, rootfs
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError, InvalidArgument

DOCKER_CAPS = f"{capabilities.mask_of(capabilities.DOCKER_DEFAULT):016x}"


@pytest.fixture(scope="module")
def box():
    with sandbox() as shared:
        yield shared


def status_fields(text):
    fields = {}
    for line in text.splitlines():
        key, _sep, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def test_pid1_hostname_and_own_mounts(box):
    host_name = socket.gethostname()
    result = box.run(
        box.spec(
            ["sh", "-c", "echo $$; hostname; cat /proc/sys/kernel/domainname; ps -o pid; cat /proc/self/mountinfo"],
            hostname="box1",
            domainname="example.test",
        ),
        box.cgroup(),
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "1"
    assert lines[1] == "box1"
    assert lines[2] == "example.test"
    assert socket.gethostname() == host_name
    pids = [int(line) for line in lines[4:] if line.strip().isdigit()]
    assert pids[0] == 1
    assert max(pids) < 10, "only the container's own processes are visible"
    mountpoints = {line.split()[4] for line in lines if line.count(" - ") == 1}
    assert "/" in mountpoints
    assert not any(point.startswith(("/work", "/var/tmp", "/home", "/mnt")) for point in mountpoints)
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} <= mountpoints


def test_capabilities_no_new_privs_and_seccomp_of_root(box):
    result = box.run(box.spec(["cat", "/proc/1/status"]), box.cgroup())
    fields = status_fields(result.stdout)
    assert fields["CapInh"] == "0" * 16
    assert fields["CapAmb"] == "0" * 16
    assert fields["CapBnd"] == DOCKER_CAPS
    assert fields["CapPrm"] == DOCKER_CAPS
    assert fields["CapEff"] == DOCKER_CAPS
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_non_root_user_has_no_effective_capabilities(box):
    result = box.run(box.spec(["cat", "/proc/self/status"], user="nobody"))
    fields = status_fields(result.stdout)
    assert fields["Uid"].split() == ["65534"] * 4
    assert fields["CapEff"] == "0" * 16
    assert fields["CapPrm"] == "0" * 16
    assert fields["CapBnd"] == DOCKER_CAPS


def test_cap_add_and_drop(box):
    result = box.run(box.spec(["cat", "/proc/self/status"], cap_add=["NET_ADMIN"], cap_drop=["ALL"]))
    assert status_fields(result.stdout)["CapEff"] == f"{1 << 12:016x}"


def test_only_stdio_descriptors_reach_the_container(box):
    """R6: the container's PID 1 holds fds 0, 1, 2 and nothing else (CVE-2024-21626)."""
    leaked = os.open("/var/tmp", os.O_RDONLY)
    os.set_inheritable(leaked, True)  # not CLOEXEC: only the close loop keeps it out
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(box.spec(["sleep", "30"]), None, devnull, devnull, devnull)
    finally:
        os.close(leaked)
        os.close(devnull)
    try:
        assert sorted(int(fd) for fd in os.listdir(f"/proc/{started.pid}/fd")) == [0, 1, 2]
    finally:
        os.kill(started.pid, 9)
        wait(started.pid, 5)


def test_exit_codes_and_output(box):
    result = box.run(box.spec(["sh", "-c", "echo out; echo err >&2; exit 3"]))
    assert (result.exit_code, result.stdout, result.stderr) == (3, "out\n", "err\n")


def test_killed_from_the_host_is_137(box):
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(box.spec(["sleep", "30"]), None, devnull, devnull, devnull)
    finally:
        os.close(devnull)
    os.kill(started.pid, 9)
    assert wait(started.pid, 5) == 137


def test_missing_command_is_127_like_docker(box):
    with pytest.raises(process.ExecFailed, match='exec: "nosuch": executable file not found in \\$PATH') as error:
        box.run(box.spec(["nosuch"]))
    assert error.value.exit_code == 127


def test_non_executable_command_is_126(box):
    layer = os.path.join(box.base, "layers", "notexec")
    os.makedirs(os.path.join(layer, "bin"))
    with open(os.path.join(layer, "bin", "script"), "w") as handle:
        handle.write("#!/bin/sh\necho hi\n")
    with pytest.raises(process.ExecFailed, match="permission denied") as error:
        box.run(box.spec(["/bin/script"], [layer, box.busybox]))
    assert error.value.exit_code == 126


def children() -> set:
    """Pids whose parent is this process (session fixtures, such as a registry, among them)."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as handle:
                    data = handle.read()
            except OSError:
                continue
            if int(data[data.rindex(b")") + 2 :].split()[1]) == os.getpid():
                found.add(int(name))
    return found


def test_set_up_errors_come_back_before_start_returns_and_leave_no_child(box):
    before = children()
    with pytest.raises(ContainerError, match="unable to find user ghost"):
        box.run(box.spec(["true"], user="ghost"))
    assert children() == before


def test_user_and_supplementary_groups_from_the_image(box):
    """R11: uid 1000 listed in adm in the image's /etc/group gets adm; the host's groups never leak."""
    layer = box.layer(
        "users",
        passwd=b"root:x:0:0::/root:/bin/sh\nu1000:x:1000:1000::/home/u1000:/bin/sh\n",
        group=b"root:x:0:\nadm:x:4:u1000\nu1000:x:1000:\n",
    )
    result = box.run(box.spec(["sh", "-c", "id; echo $HOME"], [layer], user="1000"))
    assert result.stdout == "uid=1000(u1000) gid=1000(u1000) groups=4(adm)\n/home/u1000\n"


def test_nss_modules_of_the_image_are_never_loaded(box):
    """P4 (CVE-2019-14271): the image's nsswitch.conf and libnss_*.so are irrelevant to user lookup."""
    layer = box.layer("nss", passwd=b"root:x:0:0::/root:/bin/sh\napp:x:1234:1234::/app:/bin/sh\n")
    with open(os.path.join(layer, "etc", "nsswitch.conf"), "w") as handle:
        handle.write("passwd: evil\ngroup: evil\n")
    os.makedirs(os.path.join(layer, "usr", "lib", "x86_64-linux-gnu"), exist_ok=True)
    with open(os.path.join(layer, "usr", "lib", "x86_64-linux-gnu", "libnss_evil.so.2"), "wb") as handle:
        handle.write(b"\x7fELF garbage that would crash a loader")
    result = box.run(box.spec(["id", "-u"], [layer], user="app"))
    assert result.stdout == "1234\n"


def test_working_dir_is_created_like_docker(box):
    result = box.run(box.spec(["pwd"], cwd="/srv/new/app"))
    assert result.stdout == "/srv/new/app\n"


def test_environment_and_home(box):
    result = box.run(box.spec(["env"], env=["FOO=bar", "PATH=/bin"]))
    env = dict(line.split("=", 1) for line in result.stdout.splitlines())
    assert env["FOO"] == "bar"
    assert env["HOME"] == "/root"
    assert env["PATH"] == "/bin"


def test_rlimits_and_oom_score_adj(box):
    result = box.run(
        box.spec(
            ["sh", "-c", "ulimit -n; cat /proc/self/oom_score_adj"], rlimits={"nofile": (64, 128)}, oom_score_adj=500
        )
    )
    assert result.stdout.split() == ["64", "500"]
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    with pytest.raises(InvalidArgument, match="above this host's hard limit"):
        box.run(box.spec(["true"], rlimits={"nofile": (hard, hard + 1)}))


def test_network_none_has_only_loopback_up(box):
    result = box.run(box.spec(["sh", "-c", "ip -o link; ping -c1 -W1 127.0.0.1 >/dev/null && echo ping-ok"]))
    links = [line.split(":")[1].strip() for line in result.stdout.splitlines() if ": " in line]
    assert links == ["lo"]
    assert "UP" in result.stdout.splitlines()[0]
    assert result.stdout.endswith("ping-ok\n")


def test_network_host_sees_host_interfaces(box):
    result = box.run(box.spec(["ls", "/sys/class/net"], network="host"))
    assert sorted(result.stdout.split()) == sorted(os.listdir("/sys/class/net"))


def test_network_joins_a_namespace_by_path(box):
    name = "berthiso" + secrets.token_hex(3)
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "add", "probe0", "type", "veth", "peer", "probe1"], check=True)
        path = f"/run/netns/{name}"
        result = box.run(box.spec(["sh", "-c", "ls /sys/class/net; readlink /proc/self/ns/net"], network=path))
        assert "probe0" in result.stdout.split()
        assert result.stdout.split()[-1] == f"net:[{os.stat(path).st_ino}]"
    finally:
        subprocess.run(["ip", "netns", "del", name], check=True)


def test_tty(box):
    master, slave = pty.openpty()
    try:
        spec = box.spec(["sh", "-c", "[ -t 0 ] && echo tty-yes; ls -l /dev/console | cut -c1"], tty=True)
        started = process.start(spec, None, slave, slave, slave)
        os.close(slave)
        slave = -1
        output = b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        assert wait(started.pid, 10) == 0
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert b"tty-yes" in output
    assert b"c" in output.split(b"tty-yes")[1]


def test_read_only_root_with_writable_tmpfs(box):
    spec = box.spec(
        ["sh", "-c", "touch /x 2>/dev/null && echo root-writable; touch /scratch/y && echo tmpfs-ok"],
        [box.busybox],
        mounts=[rootfs.Mount("/scratch", type="tmpfs", options=("size=1m",))],
    )
    spec = spec._replace(rootfs=spec.rootfs._replace(read_only=True))
    assert box.run(spec).stdout == "tmpfs-ok\n"


def test_bind_mounts_and_read_only_volumes(box):
    data = os.path.join(box.base, "vol")
    os.makedirs(data)
    with open(os.path.join(data, "in"), "w") as handle:
        handle.write("from host\n")
    spec = box.spec(
        ["sh", "-c", "cat /data/in; echo out > /data/out; echo x > /ro/x 2>/dev/null || echo ro-refused"],
        mounts=[rootfs.Mount("/data", source=data), rootfs.Mount("/ro", source=data, read_only=True)],
    )
    result = box.run(spec)
    assert result.stdout == "from host\nro-refused\n"
    with open(os.path.join(data, "out")) as handle:
        assert handle.read() == "out\n"


def test_changes_land_in_the_upper_layer_only(box):
    spec = box.spec(["sh", "-c", "echo new > /etc/added; rm /bin/vi"])
    box.run(spec)
    assert os.path.isfile(os.path.join(spec.rootfs.upper, "etc", "added"))
    assert not os.path.exists(os.path.join(box.busybox, "etc", "added"))
    assert os.path.lexists(os.path.join(box.busybox, "bin", "vi"))


def test_layers_by_short_names_relative_to_lower_cwd(box):
    links = os.path.join(box.base, "l")
    os.makedirs(links, exist_ok=True)
    top = box.layer("top")
    with open(os.path.join(top, "etc", "marker"), "w") as handle:
        handle.write("top\n")
    os.symlink(top, os.path.join(links, "T"))
    os.symlink(box.busybox, os.path.join(links, "B"))
    spec = box.spec(["cat", "/etc/marker"], ["T", "B"])
    spec = spec._replace(rootfs=spec.rootfs._replace(lower_cwd=links))
    assert box.run(spec).stdout == "top\n"


def test_etc_files_are_bound(box):
    files = rootfs.write_etc_files(os.path.join(box.base, "etc-" + secrets.token_hex(3)), "web", address="10.89.0.9")
    result = box.run(box.spec(["sh", "-c", "cat /etc/hostname; grep web /etc/hosts"], etc_files=files))
    assert result.stdout == "web\n10.89.0.9\tweb\n"


def test_privileged_lifts_restrictions(box):
    result = box.run(box.spec(["sh", "-c", "grep -E 'Seccomp:|CapBnd' /proc/self/status; ls /dev"], privileged=True))
    fields = status_fields(result.stdout)
    assert fields["Seccomp"] == "0"
    assert int(fields["CapBnd"], 16) & 1 << 21, "CAP_SYS_ADMIN"
    assert "loop0" in result.stdout.split() or any(name.startswith("vd") for name in result.stdout.split())


def test_start_time_identifies_the_process(box):
    spec = box.spec(["sleep", "5"])
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(spec, None, devnull, devnull, devnull)
    finally:
        os.close(devnull)
    try:
        assert started.start_time == process.process_start_time(started.pid)
        assert process.is_running(started.pid, started.start_time)
    finally:
        os.kill(started.pid, 9)
        wait(started.pid, 5)
    assert not process.is_running(started.pid, started.start_time)


def test_late_imports_fail_loudly_instead_of_reading_the_image(box, monkeypatch):
    """After the switch of root nothing may be imported (CVE-2019-14271 class): a late import is an error."""
    real_finalize = rootfs.finalize

    def finalize_with_import(plan):
        real_finalize(plan)
        import xml.dom.pulldom  # noqa: F401 - deliberately not imported before

    monkeypatch.delitem(sys.modules, "xml.dom.pulldom", raising=False)
    monkeypatch.setattr(rootfs, "finalize", finalize_with_import)
    with pytest.raises(ContainerError, match="ModuleNotFoundError"):
        box.run(box.spec(["true"]))


def test_exec_in_gets_the_containers_security(box):
    cgroup = box.cgroup()
    spec = box.spec(["sleep", "30"], hostname="execbox")
    devnull = os.open(os.devnull, os.O_RDWR)
    started = process.start(spec, cgroup, devnull, devnull, devnull)
    try:
        read_end, write_end = os.pipe()
        exec_spec = process.ExecSpec.like(spec, ["sh", "-c", "hostname; cat /proc/self/status; echo $$"])
        child = process.exec_in(started.pid, exec_spec, devnull, write_end, write_end, start_time=started.start_time)
        os.close(write_end)
        with os.fdopen(read_end) as handle:
            output = handle.read()
        assert wait(child.pid, 10) == 0
    finally:
        os.kill(started.pid, 9)
        wait(started.pid, 5)
        os.close(devnull)
    lines = output.splitlines()
    assert lines[0] == "execbox"
    fields = status_fields(output)
    assert fields["CapEff"] == DOCKER_CAPS
    assert fields["CapBnd"] == DOCKER_CAPS
    assert fields["Seccomp"] == "2"
    assert fields["NoNewPrivs"] == "1"
    assert 1 < int(lines[-1]) < 100, "a pid inside the container's pid namespace"


def test_exec_in_sees_the_same_namespaces_and_cgroup(box):
    cgroup = box.cgroup()
    spec = box.spec(["sleep", "30"])
    devnull = os.open(os.devnull, os.O_RDWR)
    started = process.start(spec, cgroup, devnull, devnull, devnull)
    try:
        exec_spec = process.ExecSpec.like(spec, ["sleep", "30"])
        child = process.exec_in(started.pid, exec_spec, devnull, devnull, devnull)
        try:
            for name in ("mnt", "pid", "uts", "ipc", "net", "cgroup"):
                assert os.readlink(f"/proc/{child.pid}/ns/{name}") == os.readlink(f"/proc/{started.pid}/ns/{name}")
            with open(f"/proc/{child.pid}/cgroup") as mine, open(f"/proc/{started.pid}/cgroup") as theirs:
                assert mine.read() == theirs.read()
            assert child.pid in cgroup.pids()
        finally:
            os.kill(child.pid, 9)
            wait(child.pid, 5)
    finally:
        os.kill(started.pid, 9)
        wait(started.pid, 5)
        os.close(devnull)


def test_exec_in_a_stopped_container_is_refused(box):
    spec = box.spec(["true"])
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        started = process.start(spec, None, devnull, devnull, devnull)
        wait(started.pid, 5)
        with pytest.raises(ContainerError, match="not running"):
            process.exec_in(
                started.pid, process.ExecSpec(["true"]), devnull, devnull, devnull, start_time=started.start_time
            )
    finally:
        os.close(devnull)


@pytest.mark.slow
def test_start_latency(box):
    """Measure start() -> exit of /bin/true, with and without seccomp (printed; target < 30 ms)."""
    timings = {}
    for use_seccomp in (True, False):
        samples = []
        for _sample in range(20):
            spec = box.spec(["/bin/true"], seccomp=use_seccomp)
            devnull = os.open(os.devnull, os.O_RDWR)
            began = time.perf_counter()
            started = process.start(spec, None, devnull, devnull, devnull)
            assert wait(started.pid, 10) == 0
            samples.append((time.perf_counter() - began) * 1000)
            os.close(devnull)
            shutil.rmtree(os.path.dirname(spec.rootfs.upper))
        timings[use_seccomp] = statistics.median(samples)
    print(f"\nstart->exit of /bin/true, median of 20: seccomp {timings[True]:.1f} ms, without {timings[False]:.1f} ms")
    assert timings[True] < 100


@pytest.mark.parametrize("dumpable", [False, True], ids=["set-up-non-dumpable", "control-dumpable"])
def test_exec_set_up_is_hidden_from_the_container(box, monkeypatch, dumpable):
    """R9 (CVE-2016-9962 / CVE-2019-5736 class): while exec_in sets up inside the container's pid namespace,
    container processes cannot read its /proc/PID/exe (the host's Python). The control run, made dumpable,
    shows that the watcher would see it otherwise."""
    watcher = "while :; do for p in /proc/[0-9]*; do readlink $p/exe; done; sleep 0.02; done"
    read_end, write_end = os.pipe()
    devnull = os.open(os.devnull, os.O_RDWR)
    spec = box.spec(["sh", "-c", watcher])
    started = process.start(spec, None, devnull, write_end, devnull)
    os.close(write_end)
    real_look_path = process._look_path
    real_prctl = process.libc.prctl

    def slow_look_path(command, env):
        time.sleep(0.5)
        return real_look_path(command, env)

    def prctl(option, *args):
        if dumpable and option == process.libc.PR_SET_DUMPABLE:
            return 0
        return real_prctl(option, *args)

    monkeypatch.setattr(process, "_look_path", slow_look_path)
    monkeypatch.setattr(process.libc, "prctl", prctl)
    try:
        child = process.exec_in(started.pid, process.ExecSpec.like(spec, ["true"]), devnull, devnull, devnull)
        wait(child.pid, 10)
    finally:
        os.kill(started.pid, 9)
        wait(started.pid, 5)
        os.close(devnull)
    with os.fdopen(read_end) as handle:
        seen = handle.read()
    host_python = os.path.realpath(sys.executable)
    assert (host_python in seen) is dumpable


def test_a_set_up_killed_midway_is_an_error_not_a_started_container(box, monkeypatch):
    """A set-up child that dies (say, OOM-killed under a tiny memory limit) never looks like a start."""

    def vanished(*args, **kwargs):
        os._exit(3)  # as PID 1 of its namespace the child cannot SIGKILL itself; the kernel's OOM killer could

    monkeypatch.setattr(process.users, "resolve_in_container", vanished)
    with pytest.raises(ContainerError, match="died before running the command \\(exit status 3\\)"):
        box.run(box.spec(["true"]))
