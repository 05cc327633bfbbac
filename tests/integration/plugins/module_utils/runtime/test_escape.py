"""Escape probes: each runs inside a default container (root, Docker's caps, no_new_privs, seccomp) and must fail.

Every probe prints ``ESCAPED`` only if the forbidden action worked, and the
test also checks the host side where there is one (hostname, links, host
files).  Probes that need arbitrary system calls run the host's
``/usr/bin/python3`` inside the container (the host /usr bound read-only).

Note for this machine: its kernel has neither /proc/kcore nor
/proc/sysrq-trigger, so those two probes fail for want of the file; the
masking they would meet is proven on /proc/keys and /proc/timer_list
(test_rootfs.py) and the read-only /proc/sys below.
"""

import os
import secrets
import shutil
import socket
import subprocess

import pytest
from support.isolation import sandbox

from ansible_collections.berth.containers.plugins.module_utils.runtime import libc

PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def box():
    with sandbox() as shared:
        shared.marker = os.path.join(shared.base, "host-marker-" + secrets.token_hex(4))
        with open(shared.marker, "w") as handle:
            handle.write("HOST SECRET\n")
        yield shared


def probe(box, script, python=False, **kwargs):
    """Run *script* (sh, or Python when *python*) in a default container; return its output."""
    args = [PY, "-c", script] if python else ["sh", "-c", script]
    result = box.run(box.spec(args, python=True, **kwargs), box.cgroup())
    output = result.stdout + result.stderr
    assert "ESCAPED" not in output, output
    return output


def python_syscall(number, *args):
    """Python source that calls a raw system call and prints ESCAPED if it succeeds, else the errno name."""
    arguments = ", ".join(f"ctypes.c_long({arg})" for arg in args)
    return (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.syscall.restype = ctypes.c_long\n"
        f"result = libc.syscall(ctypes.c_long({number}){', ' + arguments if arguments else ''})\n"
        "print('ESCAPED' if result >= 0 else errno.errorcode[ctypes.get_errno()])\n"
    )


def test_01_cannot_see_host_processes(box):
    host_pid = os.getpid()
    output = probe(box, f"kill -0 {host_pid} 2>/dev/null && echo ESCAPED; ls /proc | grep -c '^[0-9]'")
    assert int(output.split()[-1]) < 10


@pytest.mark.parametrize(
    "command",
    ["mount -t proc proc /mnt", "mount -t tmpfs tmpfs /mnt", "mount --bind /bin /mnt", "mount -o remount,rw /proc/sys"],
)
def test_02_cannot_mount_anything(box, command):
    output = probe(box, f"mkdir -p /mnt; {command} 2>&1 && echo ESCAPED; echo done")
    assert output.endswith("done\n")
    assert "denied" in output.lower() or "not permitted" in output.lower()


def test_03_cannot_read_proc_kcore(box):
    output = probe(box, "head -c 16 /proc/kcore 2>/dev/null | wc -c")
    assert output.strip() == "0"


def test_04_cannot_write_proc_sysrq_trigger(box):
    output = probe(box, "echo h > /proc/sysrq-trigger 2>/dev/null && echo ESCAPED; echo done")
    assert output.splitlines()[0] == "done"


@pytest.mark.parametrize("path", ["/sys/class/net/lo/mtu", "/sys/kernel/mm/transparent_hugepage/enabled"])
def test_05_cannot_write_sys(box, path):
    output = probe(box, f"[ -e {path} ] || echo missing; echo 1 > {path} 2>&1 && echo ESCAPED; echo done")
    assert "Read-only file system" in output or "missing" in output


def test_06_cannot_load_kernel_modules(box):
    assert "Operation not permitted" in probe(box, "echo junk > /tmp/m.ko; insmod /tmp/m.ko 2>&1 && echo ESCAPED")
    assert probe(box, python_syscall(313, -1, 0, 0), python=True).strip() == "EPERM"  # finit_module


def test_07_cannot_change_the_host_hostname(box):
    before = socket.gethostname()
    output = probe(box, "hostname evil-host 2>&1 && echo ESCAPED; echo evil > /proc/sys/kernel/hostname 2>&1; hostname")
    assert socket.gethostname() == before
    assert "evil" not in output.splitlines()[-1]


def _host_has_link(name):
    return os.path.lexists(os.path.join("/sys/class/net", name))


def test_08_cannot_change_the_host_network(box):
    name = "e" + secrets.token_hex(3)
    output = probe(
        box,
        f"ip link add {name} type veth peer name {name}p 2>&1 && echo ESCAPED; ip route add 10.66.0.0/16 dev lo 2>&1",
    )
    assert output.count("Operation not permitted") == 2
    assert not _host_has_link(name)
    routes = subprocess.run(["ip", "route", "show", "10.66.0.0/16"], capture_output=True, text=True, check=True)
    assert routes.stdout == ""


def test_09_own_network_namespace_with_net_admin_does_not_touch_the_host(box):
    name = "e" + secrets.token_hex(3)
    result = box.run(
        box.spec(
            ["sh", "-c", f"ip link add {name} type veth peer name {name}p && ls /sys/class/net"], cap_add=["NET_ADMIN"]
        )
    )
    assert name in result.stdout.split()
    assert not _host_has_link(name)
    assert not _host_has_link(name + "p")


def test_10_device_nodes_created_in_the_container_cannot_be_opened(box):
    """CAP_MKNOD is in Docker's set, so mknod works; every writable mount is nodev, so the node is useless."""
    device = os.stat("/").st_dev
    major, minor = os.major(device), os.minor(device)
    places = ["/tmp/disk", "/dev/disk", "/dev/shm/disk", "/run/disk"]
    script = f"mknod /tmp/created b {major} {minor} && echo created; "
    script += "".join(f"mknod {path} b {major} {minor}; cat {path} 2>&1 | head -1; " for path in places)
    script += "mknod /tmp/mem c 1 1; cat /tmp/mem 2>&1 | head -1"
    lines = probe(box, script).splitlines()
    assert lines[0] == "created"
    assert lines[1:] == [f"cat: can't open '{path}': Permission denied" for path in [*places, "/tmp/mem"]]


def test_11_cannot_reach_host_files_through_proc_1_root(box):
    output = probe(box, f"cat /proc/1/root{box.marker} 2>&1 && echo ESCAPED; ls /proc/1/root/ | grep -c work")
    assert "HOST SECRET" not in output


def test_12_cannot_climb_out_of_the_root_with_dotdot(box):
    climb = "/.." * 12
    output = probe(box, f"cd {climb} && cat .{box.marker} 2>&1; cat {climb}{box.marker} 2>&1; pwd")
    assert "HOST SECRET" not in output
    assert output.splitlines()[-1] == "/"


def test_13_cannot_reach_host_files_through_proc_self_cwd(box):
    output = probe(box, f"cat /proc/self/cwd/../../..{box.marker} 2>&1; cat /proc/self/root/../..{box.marker} 2>&1")
    assert "HOST SECRET" not in output


def test_14_chroot_escape_fails(box):
    """Classic chroot break-out (CAP_SYS_CHROOT is in Docker's set): still inside the container root."""
    script = (
        "import os\n"
        "os.makedirs('/tmp/jail', exist_ok=True)\n"
        "outer = os.open('/', os.O_RDONLY)\n"
        "os.chroot('/tmp/jail')\n"
        "os.fchdir(outer)\n"
        "for _ in range(20): os.chdir('..')\n"
        "os.chroot('.')\n"
        f"print('ESCAPED' if os.path.exists({box.marker!r}) else 'contained', sorted(os.listdir('/'))[:3])\n"
    )
    assert "contained" in probe(box, script, python=True)


def test_15_setuid_binaries_gain_nothing(box):
    """R13: a setuid-root copy of id run by uid 65534 keeps euid 65534 (no_new_privs).

    The control run without no_new_privs shows the setuid bit would otherwise work.
    """
    layer = os.path.join(box.base, "layers", "suid-" + secrets.token_hex(3))
    os.makedirs(os.path.join(layer, "suidbin"))
    shutil.copy("/usr/bin/id", os.path.join(layer, "suidbin", "id"))
    os.chmod(os.path.join(layer, "suidbin", "id"), 0o4755)
    lowers = [layer, box.busybox]
    contained = box.run(box.spec(["/suidbin/id"], lowers, python=True, user="65534"))
    assert contained.stdout.startswith("uid=65534(nobody)")
    assert "euid=0" not in contained.stdout
    control = box.run(box.spec(["/suidbin/id"], lowers, python=True, user="65534", no_new_privs=False))
    assert "euid=0(root)" in control.stdout, "the control shows the setuid bit is real"


def test_16_cannot_ptrace_host_processes(box):
    script = (
        "import ctypes, errno\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        f"result = libc.ptrace(16, {os.getpid()}, 0, 0)\n"
        "print('ESCAPED' if result == 0 else errno.errorcode[ctypes.get_errno()])\n"
    )
    assert probe(box, script, python=True).strip() in ("ESRCH", "EPERM")


@pytest.mark.parametrize("command", ["unshare -U true", "unshare -m true", "unshare -n true", "nsenter -t 1 -m true"])
def test_17_namespaces_cannot_be_created_or_entered(box, command):
    output = probe(box, f"{command} 2>&1 && echo ESCAPED; echo done")
    assert "Operation not permitted" in output


def test_18_open_by_handle_at_is_denied(box):
    """The shocker exploit's system call: no CAP_DAC_READ_SEARCH, seccomp denies it."""
    assert probe(box, python_syscall(304, -100, 0, 0), python=True).strip() == "EPERM"


def test_19_keyctl_is_denied(box):
    assert probe(box, python_syscall(250, 0, 0, 0, 0, 0), python=True).strip() == "EPERM"


@pytest.mark.parametrize(
    "path", ["/proc/sys/kernel/core_pattern", "/proc/sys/vm/overcommit_memory", "/proc/sys/kernel/hostname"]
)
def test_20_proc_sys_is_read_only(box, path):
    with open(path) as handle:
        before = handle.read()
    output = probe(box, f"echo 2 > {path} 2>&1 && echo ESCAPED; echo done")
    assert "Read-only file system" in output
    with open(path) as handle:
        assert handle.read() == before


def test_21_kernel_log_is_not_readable(box):
    assert "Operation not permitted" in probe(box, "dmesg 2>&1 | head -1; ls /dev/kmsg 2>&1 && echo ESCAPED")


def test_22_cannot_raise_its_own_limits_or_leave_its_cgroup(box):
    output = probe(
        box,
        "echo -1 > /sys/fs/cgroup/memory/memory.limit_in_bytes 2>&1 && echo ESCAPED; "
        "echo $$ > /sys/fs/cgroup/pids/cgroup.procs 2>&1 && echo ESCAPED; echo done",
    )
    assert output.count("Read-only file system") == 2


def test_23_cannot_unmount_masks(box):
    output = probe(box, "umount /proc/keys 2>&1 && echo ESCAPED; umount /proc/sys 2>&1 && echo ESCAPED; echo done")
    assert output.count("Operation not permitted") == 2


def test_24_no_host_block_or_memory_devices(box):
    output = probe(box, "ls /dev/vda /dev/sda /dev/mem /dev/kmem /dev/port /dev/loop0 2>&1 | grep -vc 'No such file'")
    assert output.strip() == "0"


def test_25_raw_clone_with_namespace_flags_is_denied(box):
    """clone(CLONE_NEWUSER) is filtered by argument, clone3 answers ENOSYS so libc falls back to clone."""
    assert probe(box, python_syscall(56, libc.CLONE_NEWUSER, 0, 0, 0, 0), python=True).strip() == "EPERM"
    assert probe(box, python_syscall(435, 0, 0), python=True).strip() == "ENOSYS"


def test_probes_run_really(box):
    """The probe harness itself can see success: an allowed action prints ESCAPED-like evidence."""
    result = box.run(box.spec([PY, "-c", python_syscall(39)], python=True))
    assert result.stdout.strip() == "ESCAPED", "getpid must succeed, or every probe above proves nothing"
