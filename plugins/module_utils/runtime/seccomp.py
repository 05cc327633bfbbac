"""Docker's default seccomp profile, compiled with libseccomp through ctypes.

The profile below is Docker's ``default.json`` (moby/profiles, Apache-2.0)
restated as data: EPERM for every system call not listed, the allow list,
and the groups that depend on the container's capabilities, architecture or
kernel.  libseccomp (``libseccomp.so.2``, a systemd dependency present on
every target distribution) compiles it for the native architecture and its
compat ones; the compiled BPF program is cached per capability set and
installed by the container set-up with a plain ``prctl`` right before
``execve``, so nothing is loaded after the switch of root.

Where libseccomp is missing, containers run without a filter and
:func:`status` says so (``berth info`` shows it).
"""

import contextlib
import ctypes
import hashlib
import os
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

from .capabilities import NAMES as CAPABILITY_NAMES
from .fsutil import makedirs, write_atomic

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64
clock_nanosleep clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3
epoll_create epoll_create1 epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old
eventfd eventfd2 execve execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate
fanotify_mark fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer
getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid
getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt get_thread_area gettid
gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self
lchown lchown32 lgetxattr link linkat listen listmount listxattr listxattrat llistxattr _llseek
lremovexattr lseek lsetxattr lstat lstat64 madvise map_shadow_stack membarrier memfd_create memfd_secret
mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 mprotect mq_getsetattr mq_notify
mq_open mq_timedreceive mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal
msgctl msgget msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free
pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom recvmmsg
recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename renameat renameat2
restart_syscall riscv_hwprobe rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity
sched_getattr sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop semtimedop_time64 send
sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32 setresuid
setresuid32 setreuid setreuid32 setrlimit set_robust_list setsid setsockopt set_thread_area
set_tid_address setuid setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack
signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64
statmount statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64
ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64 utimes vfork vmsplice
wait4 waitid waitpid write writev
"""

_SYS_ADMIN_CALLS = """
bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie lsm_get_self_attr lsm_list_modules
lsm_set_self_attr mount mount_setattr move_mount open_tree perf_event_open quotactl quotactl_fd setdomainname
sethostname setns syslog umount umount2 unshare
"""

# Socket families allowed besides those below 12 (AF_DECnet=12, AF_ALG=38, AF_VSOCK=40... stay denied).
_SOCKET_FAMILIES = (13, 14, 15, 16, 17, 18, 21, 22, 24, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 39, 41, 42, 43, 44, 45)
# Namespace flags of clone(2): CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
_CLONE_NAMESPACE_FLAGS = 0x7E020000

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_EPERM = 1
_ENOSYS = 38
_COMPARE = {"NE": 1, "LT": 2, "LE": 3, "EQ": 4, "GE": 5, "GT": 6, "MASKED_EQ": 7}


class Rule(NamedTuple):
    """One group of Docker's profile: *names* get *errno* (or are allowed when ``None``)."""

    names: Tuple[str, ...]
    errno: Optional[int] = None
    args: Tuple[Tuple[int, str, int], ...] = ()
    caps: Tuple[str, ...] = ()
    arches: Tuple[str, ...] = ()
    not_caps: Tuple[str, ...] = ()
    not_arches: Tuple[str, ...] = ()
    min_kernel: Optional[Tuple[int, int]] = None


RULES: Tuple[Rule, ...] = (
    Rule(tuple(_ALLOWED.split())),
    Rule(("process_vm_readv", "process_vm_writev", "ptrace"), min_kernel=(4, 8)),
    Rule(("socket",), args=((0, "LT", 12),)),
    *(Rule(("socket",), args=((0, "EQ", family),)) for family in _SOCKET_FAMILIES),
    *(Rule(("personality",), args=((0, "EQ", value),)) for value in (0, 8, 0x20000, 0x20008, 0xFFFFFFFF)),
    Rule(("sync_file_range2", "swapcontext"), arches=("ppc64le",)),
    Rule(
        ("arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"),
        arches=("arm", "arm64"),
    ),
    Rule(("arch_prctl",), arches=("amd64", "x32")),
    Rule(("modify_ldt",), arches=("amd64", "x32", "x86")),
    Rule(("s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"), arches=("s390", "s390x")),
    Rule(("riscv_flush_icache",), arches=("riscv64",)),
    Rule(("open_by_handle_at",), caps=("CAP_DAC_READ_SEARCH",)),
    Rule(tuple(_SYS_ADMIN_CALLS.split()), caps=("CAP_SYS_ADMIN",)),
    Rule(
        ("clone",),
        args=((0, "MASKED_EQ", _CLONE_NAMESPACE_FLAGS),),
        not_caps=("CAP_SYS_ADMIN",),
        not_arches=("s390", "s390x"),
    ),
    Rule(
        ("clone",),
        args=((1, "MASKED_EQ", _CLONE_NAMESPACE_FLAGS),),
        arches=("s390", "s390x"),
        not_caps=("CAP_SYS_ADMIN",),
    ),
    # clone3's flags live in a struct seccomp cannot read: ENOSYS makes glibc fall back to clone.
    Rule(("clone3",), errno=_ENOSYS, not_caps=("CAP_SYS_ADMIN",)),
    Rule(("reboot",), caps=("CAP_SYS_BOOT",)),
    Rule(("chroot",), caps=("CAP_SYS_CHROOT",)),
    Rule(("delete_module", "init_module", "finit_module"), caps=("CAP_SYS_MODULE",)),
    Rule(("acct",), caps=("CAP_SYS_PACCT",)),
    Rule(
        ("kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"),
        caps=("CAP_SYS_PTRACE",),
    ),
    Rule(("iopl", "ioperm"), caps=("CAP_SYS_RAWIO",)),
    Rule(("settimeofday", "stime", "clock_settime", "clock_settime64"), caps=("CAP_SYS_TIME",)),
    Rule(("vhangup",), caps=("CAP_SYS_TTY_CONFIG",)),
    Rule(("get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"), caps=("CAP_SYS_NICE",)),
    Rule(("syslog",), caps=("CAP_SYSLOG",)),
    Rule(("bpf",), caps=("CAP_BPF",)),
    Rule(("perf_event_open",), caps=("CAP_PERFMON",)),
)

# Docker's architecture names (Go's GOARCH) for uname -m, and the libseccomp
# architectures a filter covers on each (native first, then compat ones).
_GOARCH = {"x86_64": "amd64", "aarch64": "arm64", "ppc64le": "ppc64le", "s390x": "s390x", "riscv64": "riscv64"}
_FILTER_ARCHES = {
    "x86_64": ("x86_64", "x86", "x32"),
    "aarch64": ("aarch64", "arm"),
    "s390x": ("s390x", "s390"),
    "ppc64le": ("ppc64le",),
    "riscv64": ("riscv64",),
}


class _ArgCompare(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


_library: Optional[ctypes.CDLL] = None
_library_error: Optional[str] = None
_programs: Dict[int, bytes] = {}


def _load() -> Optional[ctypes.CDLL]:
    """Open libseccomp once (before any container set-up switches root)."""
    global _library, _library_error
    if _library is not None or _library_error is not None:
        return _library
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError as exc:
        _library_error = f"libseccomp.so.2 not found ({exc}); install libseccomp2 (Debian) or libseccomp (EL)"
        return None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_resolve_name.restype = ctypes.c_uint32
    lib.seccomp_arch_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCompare),
    ]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    _library = lib
    return lib


def available() -> bool:
    """Whether containers get the default seccomp filter on this host."""
    return _load() is not None and os.uname().machine in _FILTER_ARCHES


def status() -> Dict[str, object]:
    """What ``berth info`` shows about seccomp."""
    lib = _load()
    if lib is None:
        return {"enabled": False, "profile": None, "reason": _library_error}
    if os.uname().machine not in _FILTER_ARCHES:
        return {"enabled": False, "profile": None, "reason": f"no seccomp support for {os.uname().machine}"}
    version = lib.seccomp_version().contents
    return {
        "enabled": True,
        "profile": "builtin (Docker's default)",
        "library": f"libseccomp {version.major}.{version.minor}.{version.micro}",
    }


def _kernel_version() -> Tuple[int, int]:
    numbers = []
    for part in os.uname().release.split(".")[:2]:
        digits = "".join(char for char in part if char.isdigit()) or "0"
        numbers.append(int(digits))
    return numbers[0], numbers[1] if len(numbers) > 1 else 0


def applicable(rule: Rule, capabilities: Sequence[str], goarch: str, kernel: Tuple[int, int]) -> bool:
    """Docker's include/exclude logic for one group of the profile."""
    if rule.caps and not all(cap in capabilities for cap in rule.caps):
        return False
    if rule.arches and goarch not in rule.arches:
        return False
    if rule.min_kernel and kernel < rule.min_kernel:
        return False
    if rule.not_caps and any(cap in capabilities for cap in rule.not_caps):
        return False
    return not (rule.not_arches and goarch in rule.not_arches)


def capability_names(mask: int) -> Tuple[str, ...]:
    return tuple(name for number, name in enumerate(CAPABILITY_NAMES) if mask >> number & 1)


def default_program(capability_mask: int, cache_dir: Optional[str] = None) -> Optional[bytes]:
    """The compiled BPF of Docker's profile for a container with these capabilities.

    ``None`` when seccomp is not available here.  Cached in memory per
    capability set, and in *cache_dir* (a root-only directory such as the
    exec root) when given: compiling takes ~20 ms, a cached read ~0.1 ms,
    which matters for ``berth run`` starting a fresh process each time.
    """
    if capability_mask in _programs:
        return _programs[capability_mask]
    lib = _load()
    machine = os.uname().machine
    if lib is None or machine not in _FILTER_ARCHES:
        return None
    cache_path = os.path.join(cache_dir, _cache_name(lib, machine, capability_mask)) if cache_dir else None
    program = _read_cache(cache_path) if cache_path else None
    if program is None:
        program = _compile(lib, machine, capability_names(capability_mask))
        if cache_path:
            with contextlib.suppress(OSError):
                makedirs(os.path.dirname(cache_path))
                write_atomic(cache_path, program, 0o600)
    _programs[capability_mask] = program
    return program


def _cache_name(lib: ctypes.CDLL, machine: str, capability_mask: int) -> str:
    """A name that changes with everything the program depends on: profile, library, kernel, arch, caps."""
    version = lib.seccomp_version().contents
    key = repr((RULES, machine, os.uname().release, (version.major, version.minor, version.micro), capability_mask))
    return f"seccomp-{hashlib.sha256(key.encode()).hexdigest()[:32]}.bpf"


def _read_cache(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as handle:
            data = handle.read(1 << 20)
    except OSError:
        return None
    return data if data and len(data) % 8 == 0 else None


def _compile(lib: ctypes.CDLL, machine: str, capabilities: Sequence[str]) -> bytes:
    ctx = lib.seccomp_init(_ACT_ERRNO | _EPERM)
    if not ctx:
        raise OSError(ctypes.get_errno(), "seccomp_init failed")
    try:
        for arch in _FILTER_ARCHES[machine][1:]:
            token = lib.seccomp_arch_resolve_name(arch.encode())
            if token:
                result = lib.seccomp_arch_add(ctx, token)
                if result not in (0, -17):  # -EEXIST: already there
                    raise OSError(-result, f"seccomp_arch_add({arch}) failed")
        goarch = _GOARCH[machine]
        kernel = _kernel_version()
        for rule in RULES:
            if not applicable(rule, capabilities, goarch, kernel):
                continue
            action = _ACT_ALLOW if rule.errno is None else _ACT_ERRNO | rule.errno
            compares = (_ArgCompare * max(1, len(rule.args)))()
            for index, (arg, op, value) in enumerate(rule.args):
                # For MASKED_EQ the value is the mask and the expected result is 0, as in Docker's profile.
                compares[index] = _ArgCompare(arg, _COMPARE[op], value, 0)
            for name in rule.names:
                number = lib.seccomp_syscall_resolve_name(name.encode())
                if number < 0:
                    continue  # unknown to this libseccomp: the default (EPERM) applies, as with Docker
                result = lib.seccomp_rule_add_array(ctx, action, number, len(rule.args), compares)
                if result < 0 and result != -13:  # -EACCES: same action as the default
                    raise OSError(-result, f"seccomp rule for {name} rejected: {os.strerror(-result)}")
        fd = os.memfd_create("berth-seccomp", os.MFD_CLOEXEC)
        try:
            result = lib.seccomp_export_bpf(ctx, fd)
            if result < 0:
                raise OSError(-result, f"seccomp_export_bpf failed: {os.strerror(-result)}")
            size = os.lseek(fd, 0, os.SEEK_END)
            return os.pread(fd, size, 0)
        finally:
            os.close(fd)
    finally:
        lib.seccomp_release(ctx)
