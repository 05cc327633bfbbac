"""Start a container's PID 1, and exec into a running container.

:func:`start` forks the container init as a direct child of the caller,
already PID 1 of a new pid namespace (the caller's pid namespace for
children is switched with ``unshare(CLONE_NEWPID)`` around the fork and
restored with ``setns``), so the caller can ``waitpid`` it.  The child then
joins its cgroup, creates the mount/uts/ipc/cgroup (and net) namespaces,
builds the root filesystem (:mod:`.rootfs`), switches root with
``pivot_root``, drops to the container's user and capabilities, installs
``no_new_privs`` and seccomp, closes every descriptor above 2, checks its
working directory and execs the command.  Any failure is reported through a
close-on-exec pipe before :func:`start` returns, with Docker's exit code
semantics (127: command not found, 126: not executable).

Requirements on the caller, both checked: root, and **a single thread**
(forking a multi-threaded process leaves locks held in the child; pull
threads and pyroute2's asyncio loop must live in another process).

Nothing is imported or ``dlopen``-ed after the switch of root: every module
the set-up uses is imported here, the path-based importers are removed in
the child before it touches the container's files, and libc/libseccomp are
loaded by the parent (CVE-2019-14271 class).  The set-up child is
non-dumpable until ``execve`` (CVE-2016-9962, CVE-2019-5736 class).
"""

import _socket  # the C module: `socket` would cost ~2 ms of every start for one ioctl
import contextlib
import errno
import fcntl
import importlib.machinery
import json
import os
import resource
import select
import signal
import stat
import struct
import sys
import termios
import time
from typing import Callable, Dict, List, Mapping, NamedTuple, NoReturn, Optional, Sequence, Tuple

from . import capabilities, libc, rootfs, seccomp, userns, users
from .cgroups import Cgroup, Layout, host_layout, join_file, parse_proc_cgroup
from .config import DEFAULT_EXEC_ROOT
from .errors import ContainerError, InvalidArgument
from .rootfs import DEFAULT_SHM_SIZE, Mount, RootfsSpec
from .userns import IdMap

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SETUP_TIMEOUT = 60.0
# Compiled seccomp programs are kept here between runs (seccomp.default_program); callers with
# another exec-root set it from their configuration, None keeps them in memory only.
SECCOMP_CACHE_DIR: Optional[str] = os.path.join(DEFAULT_EXEC_ROOT, "seccomp")
SYSTEMD_STOP_SIGNAL = int(signal.SIGRTMIN) + 3
EXIT_CANNOT_INVOKE = 126
EXIT_NOT_FOUND = 127
EXIT_SETUP_FAILED = 125

_RLIMITS = {
    name[len("RLIMIT_") :].lower(): getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")
}
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_KEPT_IMPORTERS = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter)
# Written to the report pipe right before execve: EOF without it means the set-up died (killed, OOM).
_EXEC_MARKER = b"\x00"


class ContainerSpec(NamedTuple):
    """Everything needed to start a container's PID 1.

    ``network``: ``"none"`` (a new namespace with only ``lo``), ``"host"``,
    or the path of a network namespace to join (``/run/berth/netns/<id>``,
    prepared by the network code).  ``user``: Docker's ``User`` (``""``,
    ``name``, ``uid``, ``name:group``, ``uid:gid``), resolved in the
    container's own /etc/passwd and /etc/group.  ``etc_files``: container
    path -> host file the runtime prepared (see :func:`rootfs.write_etc_files`).
    ``masked_paths``/``readonly_paths``: ``None`` means Docker's defaults
    (none for privileged).  ``rlimits``: name (``nofile``, ``nproc``...) ->
    (soft, hard), never above the caller's hard limit.  ``systemd``: ``None``
    = automatic when the command is systemd/init.  ``no_new_privs``:
    ``None`` = on, except for systemd containers, where setuid tools (sudo,
    su) are part of what a booted system runs.  ``die_with_parent``: the
    kernel kills the container (SIGKILL to its PID 1, which takes the whole
    pid namespace with it) when the process that started it dies, so a
    container never outlives its supervisor unobserved.  ``userns``: run in
    a user namespace with this id map (see :mod:`.userns`), the directories
    in ``idmapped_paths`` (layers, the container's own directory, volumes)
    shown through idmapped mounts.
    """

    rootfs: RootfsSpec
    args: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    user: str = ""
    group_add: Sequence[str] = ()
    hostname: str = ""
    domainname: str = ""
    etc_files: Mapping[str, str] = {}  # one shared empty mapping: specs are never changed in place
    mounts: Sequence[Mount] = ()
    network: str = "none"
    cgroupns: bool = True
    privileged: bool = False
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    no_new_privs: Optional[bool] = None
    seccomp: bool = True
    masked_paths: Optional[Sequence[str]] = None
    readonly_paths: Optional[Sequence[str]] = None
    rlimits: Mapping[str, Tuple[int, int]] = {}
    oom_score_adj: Optional[int] = None
    systemd: Optional[bool] = None
    tty: bool = False
    shm_size: int = DEFAULT_SHM_SIZE
    die_with_parent: bool = True
    userns: Optional[IdMap] = None
    idmapped_paths: Sequence[str] = ()

    @property
    def is_systemd(self) -> bool:
        return self.systemd if self.systemd is not None else rootfs.is_systemd_command(self.args)


class ExecSpec(NamedTuple):
    """A process to run inside a running container (``docker exec``).

    Its security settings should be the container's: build it with
    :meth:`like` from the container's spec.
    """

    args: Sequence[str]
    env: Sequence[str] = ()
    cwd: str = "/"
    user: str = ""
    group_add: Sequence[str] = ()
    tty: bool = False
    privileged: bool = False
    cap_add: Sequence[str] = ()
    cap_drop: Sequence[str] = ()
    no_new_privs: bool = True
    seccomp: bool = True

    @classmethod
    def like(
        cls,
        container: ContainerSpec,
        args: Sequence[str],
        *,
        env: Optional[Sequence[str]] = None,
        cwd: Optional[str] = None,
        user: Optional[str] = None,
        tty: bool = False,
        privileged: Optional[bool] = None,
    ) -> "ExecSpec":
        """An exec with the container's user, caps, no_new_privs and seccomp unless overridden."""
        return cls(
            args=list(args),
            env=list(container.env if env is None else env),
            cwd=container.cwd if cwd is None else cwd,
            user=container.user if user is None else user,
            group_add=list(container.group_add),
            tty=tty,
            privileged=container.privileged if privileged is None else privileged,
            cap_add=list(container.cap_add),
            cap_drop=list(container.cap_drop),
            no_new_privs=_no_new_privs(container),
            seccomp=container.seccomp,
        )


class Started(NamedTuple):
    """The container init: its host pid and start time (``/proc/PID/stat`` field 22, for PID-reuse-safe checks)."""

    pid: int
    start_time: int


class ExecFailed(ContainerError):
    """The command could not be executed; ``exit_code`` follows Docker (126, 127)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class _Security(NamedTuple):
    capabilities: int
    last_cap: int
    no_new_privs: bool
    seccomp_program: Optional[bytes]


class _Plan(NamedTuple):
    """What the set-up child executes, computed by the parent (no decisions left to the child)."""

    args: List[str]
    env: List[str]
    cwd: str
    user: str
    group_add: List[str]
    security: _Security
    stdio: Tuple[int, int, int]
    tty: bool
    cgroup_procs: List[str]
    rlimits: List[Tuple[int, int, int]]
    keep_fds: List[int]
    hostname: str = ""
    domainname: str = ""
    unshare_flags: int = 0
    netns_fd: Optional[int] = None
    new_network: bool = False
    rootfs_plan: Optional[rootfs.RootfsPlan] = None
    oom_score_adj: Optional[int] = None
    join_fds: Sequence[Tuple[int, int]] = ()
    die_with_parent: bool = False
    idmap: Optional[IdMap] = None
    userns_fd: Optional[int] = None
    idmapped_paths: Sequence[str] = ()


# -- helpers the caller may use -----------------------------------------------------------
def process_start_time(pid: int) -> Optional[int]:
    """Field 22 of ``/proc/PID/stat`` (clock ticks after boot), or ``None`` when *pid* is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(b")") + 2 :].split()
    return int(fields[19])


def is_running(pid: int, start_time: int) -> bool:
    """True when *pid* is still the process that started at *start_time* (and not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    fields = data[data.rindex(b")") + 2 :].split()
    return fields[0] != b"Z" and int(fields[19]) == start_time


def _no_new_privs(spec: ContainerSpec) -> bool:
    return spec.no_new_privs if spec.no_new_privs is not None else not spec.is_systemd


def _require_single_thread() -> None:
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        threads = 1
    if threads > 1:
        raise ContainerError(
            f"containers must be started from a single-threaded process (this one has {threads} threads): "
            "run pulls and netlink work in another process"
        )
    if os.geteuid() != 0:
        raise ContainerError("starting a container needs root")


def _available_capabilities() -> int:
    permitted = libc.capget()[1]
    bounding = 0
    for number in range(libc.cap_last_cap() + 1):
        try:
            if libc.prctl(libc.PR_CAPBSET_READ, number) == 1:
                bounding |= 1 << number
        except OSError:
            break
    return permitted & bounding


def _security(
    privileged: bool, cap_add: Sequence[str], cap_drop: Sequence[str], nnp: bool, use_seccomp: bool
) -> _Security:
    mask = capabilities.resolve(privileged, cap_add, cap_drop, _available_capabilities())
    program = None
    if use_seccomp and not privileged:
        try:
            program = seccomp.default_program(mask, SECCOMP_CACHE_DIR)
        except OSError as exc:
            raise ContainerError(f"cannot build the seccomp filter: {exc}") from None
    return _Security(mask, libc.cap_last_cap(), nnp, program)


def _rlimits(requested: Mapping[str, Tuple[int, int]]) -> List[Tuple[int, int, int]]:
    result = []
    for name, (soft, hard) in sorted(requested.items()):
        key = name.lower().replace("rlimit_", "")
        if key not in _RLIMITS:
            raise InvalidArgument(f"unknown rlimit {name!r}: use one of {', '.join(sorted(_RLIMITS))}")
        number = _RLIMITS[key]
        current_hard = resource.getrlimit(number)[1]
        infinity = resource.RLIM_INFINITY
        if current_hard != infinity and (hard == infinity or hard > current_hard):
            raise InvalidArgument(
                f"rlimit {key} hard limit {hard} is above this host's hard limit {current_hard}; "
                "it cannot be raised without CAP_SYS_RESOURCE: lower it"
            )
        if hard != infinity and (soft == infinity or soft > hard):
            raise InvalidArgument(f"rlimit {key}: the soft limit {soft} is above the hard limit {hard}")
        result.append((number, soft, hard))
    return result


def _check_oom_score_adj(value: Optional[int]) -> Optional[int]:
    if value is None:
        return None
    if not -1000 <= value <= 1000:
        raise InvalidArgument(f"oom_score_adj must be between -1000 and 1000, not {value}")
    with open("/proc/self/oom_score_adj", encoding="ascii") as handle:
        current = int(handle.read().strip())
    if value < current and not _available_capabilities() >> capabilities.NUMBERS["CAP_SYS_RESOURCE"] & 1:
        raise InvalidArgument(
            f"oom_score_adj {value} is below this process's {current}, which needs CAP_SYS_RESOURCE; "
            f"use {current} or more"
        )
    return value


def _check_cwd(cwd: str) -> str:
    if not cwd.startswith("/"):
        raise InvalidArgument(f"the working directory {cwd!r} must be an absolute path")
    clean = rootfs.clean_destination(cwd)
    if clean == "/proc" or clean.startswith("/proc/"):
        raise InvalidArgument(f"the working directory {cwd!r} is inside /proc; refusing it (CVE-2024-21626)")
    return clean


def _cloexec_pipe() -> Tuple[int, int]:
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    fds = []
    for fd in (read_fd, write_fd):
        if fd < 3:
            fds.append(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3))
            os.close(fd)
        else:
            fds.append(fd)
    return fds[0], fds[1]


def _open_netns(network: str) -> Tuple[int, Optional[int]]:
    if network == "host":
        return 0, None
    if network in ("none", "new", ""):
        return libc.CLONE_NEWNET, None
    if not os.path.isabs(network):
        raise InvalidArgument(f"network must be 'none', 'host' or the path of a network namespace, not {network!r}")
    try:
        fd = os.open(network, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise ContainerError(f"cannot open the network namespace {network}: {exc.strerror}") from None
    return 0, fd


# -- start -------------------------------------------------------------------------------------
def start(
    spec: ContainerSpec,
    cgroup: Optional[Cgroup],
    stdin: int,
    stdout: int,
    stderr: int,
    *,
    layout: Optional[Layout] = None,
    timeout: float = SETUP_TIMEOUT,
) -> Started:
    """Start the container's PID 1 with *stdin*/*stdout*/*stderr* as its fds 0-2.

    Returns once the command has been exec'd; raises :class:`ContainerError`
    (or :class:`ExecFailed`) when anything in the set-up failed, after the
    child is reaped.  The caller owns the returned process: it must
    ``waitpid`` it, and remove *cgroup* afterwards.
    """
    _require_single_thread()
    if not spec.args:
        raise InvalidArgument("no command: the image has no Entrypoint or Cmd and none was given")
    plan = _plan_start(spec, cgroup, (stdin, stdout, stderr), layout)
    try:
        if spec.userns is not None:
            plan = plan._replace(userns_fd=userns.create(spec.userns))
            plan.keep_fds.append(plan.userns_fd)
        return _fork_and_wait(plan, None, timeout, _container_child)
    finally:
        for fd in (plan.netns_fd, plan.userns_fd):
            if fd is not None:
                os.close(fd)


def _plan_start(
    spec: ContainerSpec, cgroup: Optional[Cgroup], stdio: Tuple[int, int, int], layout: Optional[Layout]
) -> _Plan:
    systemd = spec.is_systemd
    if spec.userns is not None and (spec.privileged or systemd):
        what = "privileged" if spec.privileged else "systemd"
        raise InvalidArgument(
            f"userns: {what} containers need the host's user namespace (they mount and own devices): use userns host"
        )
    layout = layout or host_layout()
    joined = list(cgroup.directories) if cgroup is not None else None
    rootfs_plan = rootfs.plan(
        spec.rootfs,
        mounts=spec.mounts,
        etc_files=spec.etc_files,
        privileged=spec.privileged,
        systemd=systemd,
        tty=spec.tty,
        masked_paths=spec.masked_paths,
        readonly_paths=spec.readonly_paths,
        shm_size=spec.shm_size,
        cgroup_version=layout.version,
        cgroup_mounts=layout.mounts,
        cgroup_joined=joined,
        tty_gid=spec.userns.host_gid(rootfs.TTY_GID) if spec.userns else rootfs.TTY_GID,
    )
    env = list(spec.env)
    if systemd and not any(item.startswith("container=") for item in env):
        env.append("container=berth")
    security = _security(spec.privileged, spec.cap_add, spec.cap_drop, _no_new_privs(spec), spec.seccomp)
    rlimits = _rlimits(spec.rlimits)
    oom = _check_oom_score_adj(spec.oom_score_adj)
    cwd = _check_cwd(spec.cwd)
    flags = libc.CLONE_NEWNS | libc.CLONE_NEWUTS | libc.CLONE_NEWIPC
    if spec.cgroupns and os.path.exists("/proc/self/ns/cgroup"):
        flags |= libc.CLONE_NEWCGROUP
    net_flag, netns_fd = _open_netns(spec.network)
    keep = [netns_fd] if netns_fd is not None else []
    return _Plan(
        args=list(spec.args),
        env=env,
        cwd=cwd,
        user=spec.user,
        group_add=list(spec.group_add),
        security=security,
        stdio=stdio,
        tty=spec.tty,
        cgroup_procs=cgroup.join_files() if cgroup is not None else [],
        rlimits=rlimits,
        keep_fds=keep,
        hostname=spec.hostname,
        domainname=spec.domainname,
        unshare_flags=flags | net_flag,
        netns_fd=netns_fd,
        new_network=bool(net_flag),
        rootfs_plan=rootfs_plan,
        oom_score_adj=oom,
        die_with_parent=spec.die_with_parent,
        idmap=spec.userns,
        idmapped_paths=list(spec.idmapped_paths) if spec.userns else [],
    )


def _fork_and_wait(
    plan: _Plan, target_pidns: Optional[int], timeout: float, child: Callable[[_Plan, int], NoReturn]
) -> Started:
    """Fork *child* into a new pid namespace (or *target_pidns*) and wait for its exec or its error."""
    err_read, err_write = _cloexec_pipe()
    own_pidns = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        if target_pidns is None:
            libc.unshare(libc.CLONE_NEWPID)
        else:
            libc.setns(target_pidns, libc.CLONE_NEWPID)
        try:
            pid = os.fork()
        except BaseException:
            libc.setns(own_pidns, libc.CLONE_NEWPID)
            raise
        if pid == 0:
            child(plan, err_write)
        libc.setns(own_pidns, libc.CLONE_NEWPID)
    finally:
        os.close(own_pidns)
        os.close(err_write)
    try:
        start_time = process_start_time(pid)
        report = _read_report(err_read, pid, timeout)
    finally:
        os.close(err_read)
    if report is not None:
        _reap(pid)
        message = report.get("message", "container set-up failed")
        code = int(report.get("exit_code", EXIT_SETUP_FAILED))
        error = ExecFailed(message, code) if code in (EXIT_CANNOT_INVOKE, EXIT_NOT_FOUND) else ContainerError(message)
        error.where = str(report.get("where", ""))  # type: ignore[attr-defined]
        raise error
    return Started(pid, start_time or 0)


def _read_report(fd: int, pid: int, timeout: float) -> Optional[Dict[str, object]]:
    deadline = time.monotonic() + timeout
    chunks = []
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
            raise ContainerError(f"the container set-up did not finish within {timeout:.0f}s; it was killed")
        ready = select.select([fd], [], [], remaining)[0]
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    data = b"".join(chunks)
    reached_exec = data.startswith(_EXEC_MARKER)
    payload = data[len(_EXEC_MARKER) :] if reached_exec else data
    if not payload:
        if reached_exec:
            return None
        status = _reap(pid)[1]
        return {"message": f"the container set-up died before running the command ({_describe(status)})"}
    try:
        return json.loads(payload)
    except ValueError:
        return {"message": "the container set-up failed and sent an unreadable report"}


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        hint = "; out of memory? the memory limit may be too small" if number == signal.SIGKILL else ""
        return f"killed by signal {number}{hint}"
    return f"exit status {os.waitstatus_to_exitcode(status)}"


def _reap(pid: int) -> Tuple[int, int]:
    try:
        return os.waitpid(pid, 0)
    except ChildProcessError:
        return pid, 0


# -- the set-up child (runs between fork and execve; must never return) -----------------------------
def _report(fd: int, stage: str, exc: BaseException) -> int:
    if isinstance(exc, ExecFailed):
        message, code = str(exc), exc.exit_code
    elif isinstance(exc, (ContainerError, InvalidArgument)):
        message, code = str(exc), EXIT_SETUP_FAILED
    elif isinstance(exc, OSError):
        detail = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        message, code = f"{stage}: {detail}{where}", EXIT_SETUP_FAILED
    else:
        message, code = f"{stage}: {type(exc).__name__}: {exc}", EXIT_SETUP_FAILED
    where = []
    trace = exc.__traceback__
    while trace is not None:
        where.append(f"{os.path.basename(trace.tb_frame.f_code.co_filename)}:{trace.tb_lineno}")
        trace = trace.tb_next
    report = {"stage": stage, "message": message[:3000], "exit_code": code, "where": " ".join(where[-4:])}
    payload = json.dumps(report).encode()
    try:
        os.write(fd, payload)
    except OSError:
        pass
    return code


def _reset_signals() -> None:
    for number in range(1, signal.NSIG):
        if number in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(number, signal.SIG_DFL)
        except (OSError, ValueError, RuntimeError):
            pass
    signal.pthread_sigmask(signal.SIG_SETMASK, [])


def _setup_stdio(stdio: Tuple[int, int, int], tty: bool) -> None:
    copies = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in stdio]
    for target, fd in enumerate(copies):
        os.dup2(fd, target, inheritable=True)
    for fd in copies:
        os.close(fd)
    os.setsid()
    if tty:
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _close_fds(keep: Sequence[int]) -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _drop_importers() -> None:
    """From here on an import fails loudly instead of reading the container's files."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if finder in _KEPT_IMPORTERS]
    sys.path_hooks[:] = []
    sys.path_importer_cache.clear()
    sys.path[:] = []


def _loopback_up() -> None:
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_DGRAM, 0)
    try:
        request = struct.pack("16sH22x", b"lo", 0)
        flags = struct.unpack("16sH22x", fcntl.ioctl(sock.fileno(), _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock.fileno(), _SIOCSIFFLAGS, struct.pack("16sH22x", b"lo", flags | _IFF_UP))
    finally:
        sock.close()


def _write_file(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _become(security: _Security, user: users.ExecUser) -> None:
    """Drop to the container's identity: bounding set, ids, capabilities, then no_new_privs/seccomp."""
    if security.no_new_privs:
        libc.prctl(libc.PR_SET_NO_NEW_PRIVS, 1)
    elif security.seccomp_program is not None:
        # Without no_new_privs the filter needs CAP_SYS_ADMIN, so it goes in before the drop.
        libc.set_seccomp_filter(security.seccomp_program)
    for number in range(security.last_cap + 1):
        if not security.capabilities >> number & 1:
            libc.prctl(libc.PR_CAPBSET_DROP, number)
    os.setgroups(list(user.groups))
    os.setresgid(user.gid, user.gid, user.gid)
    os.setresuid(user.uid, user.uid, user.uid)
    granted = security.capabilities if user.uid == 0 else 0
    libc.capset(granted, granted, 0)
    libc.prctl(libc.PR_CAP_AMBIENT, libc.PR_CAP_AMBIENT_CLEAR_ALL)
    if security.no_new_privs and security.seccomp_program is not None:
        libc.set_seccomp_filter(security.seccomp_program)


def _environment(env: Sequence[str], home: str) -> Dict[str, str]:
    result: Dict[str, str] = {}
    for item in env:
        key, _sep, value = item.partition("=")
        if key:
            result[key] = value
    result.setdefault("PATH", DEFAULT_PATH)
    result.setdefault("HOME", home)
    return result


def _look_path(command: str, env: Mapping[str, str]) -> str:
    """The executable for *command*, searched inside the container like Docker (126/127 semantics)."""
    if "/" in command:
        candidates = [command]
    else:
        candidates = [os.path.join(directory or ".", command) for directory in env.get("PATH", DEFAULT_PATH).split(":")]
    denied = None
    for path in candidates:
        try:
            info = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and os.access(path, os.X_OK):
            return path
        denied = path
    if denied is not None:
        raise ExecFailed(
            f'exec: "{command}": permission denied ({denied} is not an executable file)', EXIT_CANNOT_INVOKE
        )
    if "/" in command:
        raise ExecFailed(f'exec: "{command}": no such file or directory in the container', EXIT_NOT_FOUND)
    raise ExecFailed(f'exec: "{command}": executable file not found in $PATH', EXIT_NOT_FOUND)


def _enter_workdir(cwd: str) -> None:
    """chdir into the working directory, creating it (as root) if the image lacks it, like Docker."""
    try:
        os.chdir(cwd)
    except FileNotFoundError:
        os.makedirs(cwd, 0o755, exist_ok=True)
        os.chdir(cwd)
    except NotADirectoryError:
        raise ContainerError(f"the working directory {cwd} is not a directory in the container") from None


def _verify_cwd() -> None:
    """After closing descriptors: the cwd must still be a path inside the container (R7)."""
    try:
        current = os.getcwd()
    except OSError:
        current = ""
    if not current.startswith("/") or current == "/proc" or current.startswith("/proc/"):
        raise ContainerError(
            "the working directory is outside the container's root; refusing to start (CVE-2024-21626)"
        )


def _exec(plan: _Plan, err_write: int, stage: List[str]) -> NoReturn:
    stage[0] = "resolving the user"
    user = users.resolve_in_container(plan.user, plan.group_add)
    if plan.idmap is not None:
        _check_mapped(user, plan.idmap)
    env = _environment(plan.env, user.home)
    for number, soft, hard in plan.rlimits:
        resource.setrlimit(number, (soft, hard))
    stage[0] = f"entering the working directory {plan.cwd}"
    _enter_workdir(plan.cwd)
    stage[0] = "dropping privileges"
    _become(plan.security, user)
    stage[0] = "looking up the command"
    path = _look_path(plan.args[0], env)
    stage[0] = "closing descriptors"
    _close_fds([err_write])
    _verify_cwd()
    # Set after the last change of credentials (which clears it).  Should the parent be gone
    # already, the marker below has no reader and SIGPIPE ends this child before execve.
    libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL if plan.die_with_parent else 0)
    stage[0] = f"executing {plan.args[0]}"
    os.write(err_write, _EXEC_MARKER)
    try:
        os.execve(path, plan.args, env)
    except OSError as exc:
        code = EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_CANNOT_INVOKE
        raise ExecFailed(f'exec: "{plan.args[0]}": {exc.strerror}', code) from None
    raise AssertionError("execve returned")


def _check_mapped(user: users.ExecUser, idmap: IdMap) -> None:
    outside = [i for i in (user.uid, user.gid, *user.groups) if i >= idmap.size]
    if outside:
        raise ContainerError(
            f"id {outside[0]} of user {user.uid}:{user.gid} is outside the container's user namespace "
            f"(ids 0-{idmap.size - 1})"
        )


def _child(plan: _Plan, err_write: int, enter: Callable[[_Plan, List[str]], None]) -> NoReturn:
    """The forked child: detach from the parent's signals and fds, join the cgroup, *enter*, exec.

    *enter* sets up (a new container) or joins (exec) the namespaces; it
    names what it is doing in ``stage[0]``.  Any failure is reported to the
    parent through *err_write*: nothing may escape the fork.
    """
    stage = ["starting"]
    code = EXIT_SETUP_FAILED
    try:
        _reset_signals()
        _setup_stdio(plan.stdio, plan.tty)
        libc.prctl(libc.PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(libc.PR_SET_DUMPABLE, 0)
        _close_fds([err_write, *plan.keep_fds])
        stage[0] = "joining the cgroup"
        for path in plan.cgroup_procs:
            _write_file(path, "0")
        enter(plan, stage)
        _exec(plan, err_write, stage)
    except BaseException as exc:
        code = _report(err_write, stage[0], exc)
    finally:
        os._exit(code)


def _container_child(plan: _Plan, err_write: int) -> NoReturn:
    _child(plan, err_write, _enter_new_container)


def _enter_new_container(plan: _Plan, stage: List[str]) -> None:
    if plan.netns_fd is not None:
        stage[0] = "joining the network namespace"
        libc.setns(plan.netns_fd, libc.CLONE_NEWNET)
        os.close(plan.netns_fd)
    stage[0] = "creating namespaces"
    libc.unshare(plan.unshare_flags)
    if plan.new_network:
        _loopback_up()
    libc.mount(None, "/", None, libc.MS_SLAVE | libc.MS_REC)
    if plan.idmap is not None:
        stage[0] = "mapping the container's files to its user namespace"
        _map_files(plan)
    _drop_importers()
    stage[0] = "preparing the root filesystem"
    if plan.rootfs_plan is None:
        raise ContainerError("internal error: no root filesystem plan")
    root = rootfs.prepare(plan.rootfs_plan)
    stage[0] = "switching root"
    rootfs.pivot(root)
    rootfs.finalize(plan.rootfs_plan)
    stage[0] = "setting the hostname"
    if plan.hostname:
        libc.sethostname(plan.hostname)
    if plan.domainname:
        libc.setdomainname(plan.domainname)
    if plan.oom_score_adj is not None:
        _write_file("/proc/self/oom_score_adj", str(plan.oom_score_adj))
    if plan.userns_fd is not None:
        stage[0] = "entering the user namespace"
        libc.setns(plan.userns_fd, libc.CLONE_NEWUSER)
        os.close(plan.userns_fd)


def _give_stdio(idmap: IdMap, tty: bool) -> None:
    """Make the container's root the owner of its anonymous stdio pipes and sockets, and of its terminal.

    Images link log files to ``/dev/stdout`` (nginx), and reopening a pipe
    or a terminal through ``/proc/self/fd`` checks its owner, which the
    container's root otherwise is not.  A terminal given with *tty* is the
    container's own (it becomes its controlling terminal; group tty, as
    devpts gives it); files of the caller are left alone.
    """
    for fd in (0, 1, 2):
        try:
            kind = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if kind.startswith(("pipe:", "socket:")):
            os.fchown(fd, idmap.uid, idmap.gid)
        elif tty and os.isatty(fd):
            os.fchown(fd, idmap.uid, idmap.host_gid(rootfs.TTY_GID))


def _map_files(plan: _Plan) -> None:
    """Show the container's files through idmapped mounts, and create them as the container's root.

    The overlay keeps the credentials of its mounter for every later
    copy-up, and an idmapped mount refuses to create files for ids it does
    not map: so the set-up works with the filesystem ids of the container's
    root (capabilities raised again, since leaving fsuid 0 clears them).
    The namespace's network may then bind ports below 1024: its root holds
    no capability over a network namespace the host's user namespace owns.
    """
    if plan.idmap is None or plan.userns_fd is None:
        raise ContainerError("internal error: a user namespace without its id map")
    if plan.new_network or plan.netns_fd is not None:
        _write_file("/proc/sys/net/ipv4/ip_unprivileged_port_start", "0")
    _give_stdio(plan.idmap, plan.tty)
    _effective, permitted, inheritable = libc.capget()
    libc.set_filesystem_ids(plan.idmap.uid, plan.idmap.gid)
    libc.capset(permitted, permitted, inheritable)
    for path in plan.idmapped_paths:
        try:
            libc.idmap_in_place(path, plan.userns_fd)
        except OSError as exc:
            raise ContainerError(
                f"cannot map {path} into the container's user namespace ({exc.strerror}): user namespaces need "
                "idmapped mounts (Linux 5.19+, on ext4, xfs, btrfs or tmpfs)"
            ) from None


# -- exec into a running container ------------------------------------------------------------
_EXEC_NAMESPACES = (
    ("cgroup", libc.CLONE_NEWCGROUP),
    ("ipc", libc.CLONE_NEWIPC),
    ("uts", libc.CLONE_NEWUTS),
    ("net", libc.CLONE_NEWNET),
    ("mnt", libc.CLONE_NEWNS),
)


def exec_in(
    pid: int,
    spec: ExecSpec,
    stdin: int,
    stdout: int,
    stderr: int,
    *,
    start_time: Optional[int] = None,
    layout: Optional[Layout] = None,
    timeout: float = SETUP_TIMEOUT,
) -> Started:
    """Run *spec* inside the container whose init is *pid*; return the new process (a child of the caller).

    The process joins the init's namespaces (mnt, pid, uts, ipc, net,
    cgroup, and user when it has its own) and cgroups, and gets the
    capabilities, no_new_privs and seccomp filter *spec* asks for (the
    container's, via :meth:`ExecSpec.like`), and the init's rlimits.
    """
    _require_single_thread()
    if not spec.args:
        raise InvalidArgument("exec needs a command")
    if start_time is not None and not is_running(pid, start_time):
        raise ContainerError(f"the container's process {pid} is not running")
    layout = layout or host_layout()
    cwd = _check_cwd(spec.cwd)
    security = _security(spec.privileged, spec.cap_add, spec.cap_drop, spec.no_new_privs, spec.seccomp)
    opened: List[int] = []
    try:
        join_fds = []
        for name, flag in _EXEC_NAMESPACES:
            try:
                fd = os.open(f"/proc/{pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                if name == "cgroup":
                    continue
                raise ContainerError(f"the container's process {pid} is gone") from None
            opened.append(fd)
            join_fds.append((fd, flag))
        idmap = None
        if not userns.is_own(pid):
            idmap = userns.IdMap.of_process(pid)
            fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
            opened.append(fd)
            join_fds.append((fd, libc.CLONE_NEWUSER))  # last: the others belong to the host's namespace
        pidns = os.open(f"/proc/{pid}/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
        opened.append(pidns)
        plan = _Plan(
            args=list(spec.args),
            env=list(spec.env),
            cwd=cwd,
            user=spec.user,
            group_add=list(spec.group_add),
            security=security,
            stdio=(stdin, stdout, stderr),
            tty=spec.tty,
            cgroup_procs=_cgroup_procs_of(pid, layout),
            rlimits=_rlimits_of(pid),
            keep_fds=[fd for fd, _flag in join_fds],
            join_fds=join_fds,
            idmap=idmap,
        )
        return _fork_and_wait(plan, pidns, timeout, _exec_child)
    except OSError as exc:
        raise ContainerError(f"cannot exec in container process {pid}: {exc.strerror}") from None
    finally:
        for fd in opened:
            os.close(fd)


def _cgroup_procs_of(pid: int, layout: Layout) -> List[str]:
    try:
        with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
            own = parse_proc_cgroup(handle.read())
    except FileNotFoundError:
        raise ContainerError(f"the container's process {pid} is gone") from None
    return [join_file(layout.directory(key, path), key) for key, path in own.items() if key in layout.mounts]


def _rlimits_of(pid: int) -> List[Tuple[int, int, int]]:
    limits = []
    for number in sorted(set(_RLIMITS.values())):
        try:
            soft, hard = resource.prlimit(pid, number)
        except (OSError, ValueError):
            continue
        limits.append((number, soft, hard))
    return limits


def _exec_child(plan: _Plan, err_write: int) -> NoReturn:
    _child(plan, err_write, _join_running_container)


def _join_running_container(plan: _Plan, stage: List[str]) -> None:
    if plan.idmap is not None:
        _give_stdio(plan.idmap, plan.tty)
    stage[0] = "joining the container's namespaces"
    for fd, flag in plan.join_fds:
        libc.setns(fd, flag)
        os.close(fd)
    _drop_importers()
