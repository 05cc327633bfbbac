"""Hostile images against the real root filesystem set-up (R1-R4, R7, R8, R10) and mount hygiene."""

import os
import secrets

import pytest
from support.isolation import sandbox

from ansible_collections.berth.containers.plugins.module_utils.runtime import process, rootfs
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ContainerError, InvalidArgument


@pytest.fixture(scope="module")
def box():
    with sandbox() as shared:
        yield shared


def hostile_layer(box, name):
    """An empty layer to put on top of busybox; the test plants its trap in it."""
    path = os.path.join(box.base, "layers", name + "-" + secrets.token_hex(3))
    os.makedirs(path)
    return path


def host_mounts(base):
    """The host's mounts that concern this sandbox (other tests on the machine mount things too:
    a dockerd's overlay2 .../merged must not count; this sandbox's overlays are mounted below *base*)."""
    with open("/proc/self/mountinfo") as handle:
        return [line for line in handle if base in line]


@pytest.mark.parametrize("kind", ["symlink", "file"])
def test_proc_that_is_not_a_directory_is_refused(box, kind):
    """R4 (CVE-2019-19921 family): /proc as a symlink or a regular file -> the start is refused."""
    layer = hostile_layer(box, "proc")
    os.makedirs(os.path.join(box.base, "elsewhere"), exist_ok=True)
    if kind == "symlink":
        os.symlink(os.path.join(box.base, "elsewhere"), os.path.join(layer, "proc"))
    else:
        with open(os.path.join(layer, "proc"), "w") as handle:
            handle.write("not procfs\n")
    with pytest.raises(ContainerError, match="the image's /proc is"):
        box.run(box.spec(["true"], [layer, box.busybox]))
    assert os.listdir(os.path.join(box.base, "elsewhere")) == []


def test_dev_symlink_gets_a_fresh_tmpfs_and_nothing_is_written_outside(box):
    """R2 (CVE-2026-41579): /dev -> a host directory; the container gets its own /dev, the host dir stays empty."""
    victim = os.path.join(box.base, "victim-dev")
    os.makedirs(victim)
    layer = hostile_layer(box, "dev")
    os.symlink(victim, os.path.join(layer, "dev"))
    result = box.run(box.spec(["sh", "-c", "stat -c '%F %t:%T' /dev/null; ls /dev/pts/ptmx"], [layer, box.busybox]))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "character special file 1:3\n/dev/pts/ptmx\n"
    assert os.listdir(victim) == []


def test_masked_paths_use_the_hosts_dev_null_even_if_the_image_plants_one(box):
    """R1 (CVE-2025-31133): the image's /dev/null (here a symlink to a secret) is never the mask source."""
    layer = hostile_layer(box, "devnull")
    os.makedirs(os.path.join(layer, "dev"))
    os.makedirs(os.path.join(layer, "etc"))
    with open(os.path.join(layer, "etc", "secret"), "w") as handle:
        handle.write("image secret\n")
    os.symlink("/etc/secret", os.path.join(layer, "dev", "null"))
    probe = "for p in /proc/keys /proc/timer_list; do stat -c '%F %t:%T' $p; cat $p; done; ls /sys/firmware | wc -l"
    result = box.run(box.spec(["sh", "-c", probe], [layer, box.busybox]))
    assert result.stdout == "character special file 1:3\n" * 2 + "0\n"


def test_working_dir_through_proc_fd_is_refused(box):
    """R7 (CVE-2024-21626): WorkingDir /proc/self/fd/N never starts."""
    for number in (3, 4, 5, 7):
        with pytest.raises(InvalidArgument, match="inside /proc"):
            box.run(box.spec(["pwd"], cwd=f"/proc/self/fd/{number}"))


def test_working_dir_symlinked_into_proc_fd_never_lands_outside(box):
    """R7 via an image symlink: /work -> /proc/self/fd/N is refused or stays inside, never a host directory."""
    for number in range(3, 8):
        layer = hostile_layer(box, "cwd")
        os.symlink(f"/proc/self/fd/{number}", os.path.join(layer, "work"))
        try:
            result = box.run(box.spec(["pwd"], [layer, box.busybox], cwd="/work"))
        except ContainerError:
            continue
        assert result.stdout.startswith("/")
        assert not result.stdout.startswith(("/var/tmp", "/work/main", "/proc"))


def test_etc_hosts_symlink_to_a_host_path_is_not_written_through(box):
    """R10 (CVE-2015-3627 class): /etc/hosts -> an absolute host path; the host file is untouched."""
    victim = os.path.join(box.base, "victim-hosts")
    with open(victim, "w") as handle:
        handle.write("host original\n")
    layer = hostile_layer(box, "hosts")
    os.makedirs(os.path.join(layer, "etc"))
    os.symlink(victim, os.path.join(layer, "etc", "hosts"))
    os.symlink("/etc/../../" + victim, os.path.join(layer, "etc", "hostname"))
    files = rootfs.write_etc_files(os.path.join(box.base, "etc-" + secrets.token_hex(3)), "web")
    spec = box.spec(
        ["sh", "-c", "grep -c web /etc/hosts; echo overwrite > /etc/hosts; cat /etc/resolv.conf | wc -l"],
        [layer, box.busybox],
        etc_files=files,
    )
    result = box.run(spec)
    assert result.stdout.split()[0] == "1"
    assert int(result.stdout.split()[1]) > 0
    with open(victim) as handle:
        assert handle.read() == "host original\n"
    assert os.path.isfile(spec.rootfs.upper + victim), "the symlink was resolved inside the container's root"


def test_volume_destination_cannot_climb_out(box):
    """R8 (CVE-2022-23648): a destination like /../../x stays inside the root."""
    name = "berth-r8-" + secrets.token_hex(4)
    result = box.run(
        box.spec(
            ["sh", "-c", f"echo inside > /{name}/file && cat /{name}/file"],
            mounts=[rootfs.Mount(f"/../../{name}", type="tmpfs")],
        )
    )
    assert result.stdout == "inside\n"
    assert not os.path.exists(f"/{name}")


def test_mount_destination_symlinked_to_host_root_stays_inside(box):
    """R3 (CVE-2021-30465 / CVE-2024-45310): a destination that is a symlink to a host path is resolved in the root."""
    target = os.path.join(box.base, "host-target")
    os.makedirs(target)
    layer = hostile_layer(box, "mnt")
    os.symlink(target, os.path.join(layer, "data"))
    source = os.path.join(box.base, "src-" + secrets.token_hex(3))
    os.makedirs(source)
    result = box.run(
        box.spec(
            ["sh", "-c", f"touch /data/written; ls -d {target}/written"],
            [layer, box.busybox],
            mounts=[rootfs.Mount("/data", source=source)],
        )
    )
    assert result.stdout == f"{target}/written\n", "landed in the container's copy of that path"
    assert os.listdir(target) == []
    assert os.listdir(source) == ["written"]


@pytest.mark.parametrize("link", ["/proc", "/", "../proc/sys"])
def test_mount_destinations_resolving_to_proc_or_root_are_refused(box, link):
    layer = hostile_layer(box, "procmnt")
    os.symlink(link, os.path.join(layer, "data"))
    with pytest.raises(ContainerError, match="resolves to"):
        box.run(box.spec(["true"], [layer, box.busybox], mounts=[rootfs.Mount("/data", type="tmpfs")]))


def test_devices_are_usable_but_host_nodes_cannot_be_changed(box):
    result = box.run(
        box.spec(
            [
                "sh",
                "-c",
                "echo x > /dev/null && head -c 4 /dev/zero | wc -c;"
                " chmod 600 /dev/null 2>/dev/null || echo chmod-refused",
            ]
        )
    )
    assert result.stdout == "4\nchmod-refused\n"
    assert os.stat("/dev/null").st_mode & 0o777 == 0o666


def test_default_dev_contents(box):
    result = box.run(box.spec(["ls", "-A", "/dev"]))
    names = set(result.stdout.split())
    assert {"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue", "ptmx", "fd"} <= names
    assert {"stdin", "stdout", "stderr"} <= names
    assert not names & {"vda", "loop0", "mem", "kmsg", "kvm"}


def test_sys_and_cgroup_tree_are_read_only(box):
    result = box.run(
        box.spec(["sh", "-c", "touch /sys/x 2>&1; touch /sys/fs/cgroup/x 2>&1; ls /sys/fs/cgroup"]), box.cgroup()
    )
    assert result.stdout.count("Read-only file system") == 2
    assert result.stdout.split()[-5:] == ["cpu", "cpuacct", "freezer", "memory", "pids"]


def test_no_mount_ever_reaches_the_host(box):
    before = host_mounts(box.base)
    data = os.path.join(box.base, "vol-" + secrets.token_hex(3))
    os.makedirs(data)
    files = rootfs.write_etc_files(os.path.join(box.base, "etc-" + secrets.token_hex(3)), "x")
    spec = box.spec(
        ["true"],
        mounts=[rootfs.Mount("/v", source=data), rootfs.Mount("/t", type="tmpfs")],
        etc_files=files,
    )
    assert box.run(spec, box.cgroup()).exit_code == 0
    assert host_mounts(box.base) == before == []


def test_overlay_uses_the_hardening_options(box):
    result = box.run(box.spec(["grep", " / ", "/proc/self/mountinfo"]))
    options = result.stdout.split(" - ")[1]
    assert "overlay" in options
    assert "nodev" in result.stdout.split(" - ")[0]
    for name in rootfs.overlay_options_supported():
        assert f"{name}=off" in options or name not in options


def test_process_spec_systemd_mounts(box):
    """The tmpfs and cgroup arrangement of a systemd container (the boot itself is test_systemd.py)."""
    result = box.run(
        box.spec(
            [
                "sh",
                "-c",
                "grep -E ' (/run|/run/lock|/tmp|/sys/fs/cgroup/systemd) ' /proc/self/mountinfo; echo $container",
            ],
            systemd=True,
        ),
        box.cgroup(systemd=True),
    )
    lines = result.stdout.splitlines()
    points = {line.split()[4]: line for line in lines[:-1]}
    assert set(points) == {"/run", "/run/lock", "/tmp", "/sys/fs/cgroup/systemd"}
    assert points["/sys/fs/cgroup/systemd"].split()[5].startswith("rw")
    assert lines[-1] == "berth"
    assert process.SYSTEMD_STOP_SIGNAL == 37 or process.SYSTEMD_STOP_SIGNAL > 32
