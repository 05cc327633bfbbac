"""Thin ctypes bindings for the Linux system calls Python's ``os`` lacks.

Everything the container set-up needs from libc is bound here, when this
module is imported: libc is reached through ``dlopen(NULL)`` (the symbols
already loaded into the interpreter), so nothing is ever loaded from a path
that could lie inside a container's root filesystem.  Every wrapper raises
``OSError`` with the errno and the path or namespace concerned, like ``os``
does.

System calls without a glibc wrapper on older distributions (``pivot_root``
before glibc 2.36, ``openat2``) go through ``syscall(2)`` with the number of
the running architecture.
"""

import ctypes
import os
import struct
from typing import Any, Dict, Optional, Tuple

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_BIND = 0x1000
MS_MOVE = 0x2000
MS_REC = 0x4000
MS_SILENT = 0x8000
MS_PRIVATE = 0x40000
MS_SLAVE = 0x80000
MS_SHARED = 0x100000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

MNT_DETACH = 0x2

PR_SET_PDEATHSIG = 1
PR_GET_DUMPABLE = 3
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
SECCOMP_MODE_FILTER = 2

_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_AT_FDCWD = -100
_RESOLVE_IN_ROOT = 0x10

OPEN_TREE_CLONE = 0x1
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_IDMAP = 0x100000

# System calls added since Linux 5.1 have one number on every architecture.
_UNIFIED = {"open_tree": 428, "move_mount": 429, "openat2": 437, "mount_setattr": 442}
# System call numbers of the calls glibc may not wrap, per architecture.
_SYSCALLS: Dict[str, Dict[str, int]] = {
    "x86_64": {"pivot_root": 155, **_UNIFIED},
    "aarch64": {"pivot_root": 41, **_UNIFIED},
    "ppc64le": {"pivot_root": 203, **_UNIFIED},
    "s390x": {"pivot_root": 217, **_UNIFIED},
    "riscv64": {"pivot_root": 41, **_UNIFIED},
}

_libc = ctypes.CDLL(None, use_errno=True)
_c_str = ctypes.c_char_p
_libc.mount.argtypes = [_c_str, _c_str, _c_str, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [_c_str, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
_libc.capget.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libc.capset.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_libc.syncfs.argtypes = [ctypes.c_int]
_libc.setdomainname.argtypes = [_c_str, ctypes.c_size_t]
_libc.sethostname.argtypes = [_c_str, ctypes.c_size_t]
_libc.syscall.restype = ctypes.c_long
_libc.setfsuid.argtypes = [ctypes.c_uint]
_libc.setfsgid.argtypes = [ctypes.c_uint]


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


class _MountAttr(ctypes.Structure):
    _fields_ = [
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _raise(what: str, path: Optional[str] = None) -> None:
    err = ctypes.get_errno()
    if path is None:
        raise OSError(err, f"{what}: {os.strerror(err)}")
    raise OSError(err, f"{what}: {os.strerror(err)}", path)


def _bytes(value: Optional[str]) -> Optional[bytes]:
    return None if value is None else os.fsencode(value)


def mount(
    source: Optional[str], target: str, fstype: Optional[str], flags: int = 0, data: Optional[str] = None
) -> None:
    """mount(2); *data* is the comma-separated option string of the filesystem."""
    raw = _bytes(data)
    if _libc.mount(_bytes(source), os.fsencode(target), _bytes(fstype), flags, raw) != 0:
        _raise(f"mount {fstype or 'bind'} on {target}", target)


def umount2(target: str, flags: int = 0) -> None:
    if _libc.umount2(os.fsencode(target), flags) != 0:
        _raise(f"umount {target}", target)


def unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        _raise(f"unshare({flags:#x})")


def setns(fd: int, nstype: int = 0) -> None:
    """Join the namespace *fd* refers to (an open ``/proc/PID/ns/*`` file)."""
    if _libc.setns(fd, nstype) != 0:
        _raise(f"setns({nstype:#x})")


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    result = _libc.prctl(option, arg2, arg3, arg4, arg5)
    if result < 0:
        _raise(f"prctl({option})")
    return result


def _syscall_number(name: str) -> int:
    numbers = _SYSCALLS.get(os.uname().machine)
    if numbers is None or name not in numbers:
        raise OSError(38, f"{name}: system call number unknown on {os.uname().machine}")
    return numbers[name]


def _checked_syscall(name: str, what: str, path: Optional[str], *args: Any) -> int:
    """syscall(2) of *name* with *args*; its result, or OSError naming *what* (and *path*)."""
    result = _libc.syscall(ctypes.c_long(_syscall_number(name)), *args)
    if result < 0:
        _raise(what, path)
    return result


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2), through the raw system call (glibc < 2.36 has no wrapper)."""
    what = f"pivot_root({new_root!r}, {put_old!r})"
    _checked_syscall("pivot_root", what, new_root, os.fsencode(new_root), os.fsencode(put_old))


def idmap_in_place(path: str, userns_fd: int) -> None:
    """Cover the directory *path* with an idmapped bind mount of itself (Linux 5.12+).

    Through the new mount, files appear owned as the mapping of the user
    namespace *userns_fd* says (on-disk uid 0 is that namespace's root), and
    files created through it are stored with the ids mapped back.  The bind
    is placed in the caller's mount namespace only.
    """
    target = os.fsencode(path)
    flags = ctypes.c_uint(OPEN_TREE_CLONE | os.O_CLOEXEC)
    tree = _checked_syscall("open_tree", f"open_tree {path}", path, ctypes.c_int(_AT_FDCWD), target, flags)
    try:
        attr = _MountAttr(_MOUNT_ATTR_IDMAP, 0, 0, userns_fd)
        setattr_args = (ctypes.c_uint(_AT_EMPTY_PATH), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)))
        _checked_syscall("mount_setattr", f"idmapped mount of {path}", path, ctypes.c_int(tree), b"", *setattr_args)
        move_args = (ctypes.c_int(_AT_FDCWD), target, ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH))
        _checked_syscall("move_mount", f"move_mount onto {path}", path, ctypes.c_int(tree), b"", *move_args)
    finally:
        os.close(tree)


def set_filesystem_ids(uid: int, gid: int) -> None:
    """setfsgid(2) and setfsuid(2): the ids file operations use, nothing else changes.

    They report no errors; the ids read back from the kernel are checked instead.
    """
    _libc.setfsgid(gid)
    _libc.setfsuid(uid)
    if _libc.setfsgid(0xFFFFFFFF) != gid or _libc.setfsuid(0xFFFFFFFF) != uid:
        raise OSError(1, f"cannot set the filesystem ids to {uid}:{gid}")


def syncfs(fd: int) -> None:
    """Flush the filesystem holding *fd* (one call instead of an fsync per file)."""
    if _libc.syncfs(fd) != 0:
        _raise("syncfs")


def sethostname(name: str) -> None:
    raw = name.encode()
    if _libc.sethostname(raw, len(raw)) != 0:
        _raise("sethostname")


def setdomainname(name: str) -> None:
    raw = name.encode()
    if _libc.setdomainname(raw, len(raw)) != 0:
        _raise("setdomainname")


def capget() -> Tuple[int, int, int]:
    """The calling thread's (effective, permitted, inheritable) sets as 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), ctypes.byref(data)) != 0:
        _raise("capget")
    return (
        data[0].effective | data[1].effective << 32,
        data[0].permitted | data[1].permitted << 32,
        data[0].inheritable | data[1].inheritable << 32,
    )


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set the calling thread's capability sets from 64-bit masks."""
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    low, high = 0xFFFFFFFF, 32
    data[0].effective, data[1].effective = effective & low, effective >> high
    data[0].permitted, data[1].permitted = permitted & low, permitted >> high
    data[0].inheritable, data[1].inheritable = inheritable & low, inheritable >> high
    if _libc.capset(ctypes.byref(header), ctypes.byref(data)) != 0:
        _raise("capset")


def set_seccomp_filter(program: bytes) -> None:
    """Install a classic BPF seccomp program (``struct sock_filter`` array, 8 bytes each).

    The caller must have ``no_new_privs`` set or hold CAP_SYS_ADMIN.
    """
    if not program or len(program) % 8:
        raise ValueError("a seccomp program is a non-empty array of 8-byte instructions")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    if _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0) != 0:
        _raise("prctl(PR_SET_SECCOMP)")


def openat2_supported() -> bool:
    """Whether the kernel has openat2(2) with RESOLVE_IN_ROOT (Linux 5.6+)."""
    try:
        number = _syscall_number("openat2")
    except OSError:
        return False
    how = struct.pack("QQQ", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, 0, _RESOLVE_IN_ROOT)
    fd = _libc.syscall(ctypes.c_long(number), ctypes.c_int(_AT_FDCWD), b"/", how, ctypes.c_size_t(len(how)))
    if fd < 0:
        return False
    os.close(fd)
    return True


def cap_last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", "rb") as handle:
            return int(handle.read().strip())
    except (OSError, ValueError):
        return 40
