"""The container's root filesystem: overlay, runtime mounts, pivot_root.

:func:`plan` turns a container's description into a :class:`RootfsPlan`
(everything checked and computed on the host side, before any fork);
:func:`prepare` then runs inside the new mount namespace, mounting the
overlay and, inside it, ``/proc``, ``/dev``, ``/sys``, the cgroup tree, the
user's mounts and the ``/etc`` files; :func:`pivot` switches root with
``pivot_root(".", ".")`` (never a chroot); :func:`finalize` applies masked
and read-only paths once the container's own ``/proc`` is the only one left.

Every destination inside the rootfs is resolved by :func:`open_in_root`:
one component at a time, symlinks followed *inside* the root (an absolute
target restarts at the root, ``..`` stops there), and the result is an
``O_PATH`` descriptor that mounts use through ``/proc/self/fd/N``, so an
image's symlinks never send a mount or a write to the host (R2, R3, R8, R10).
"""

import errno
import os
import stat
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from . import copyup, libc
from .errors import ContainerError, InvalidArgument
from .fsutil import makedirs, write_atomic

MOUNT_DATA_LIMIT = 4095  # one page, including the trailing NUL
VOLATILE = "volatile"
MAX_SYMLINKS = 40

DOCKER_MASKED_PATHS = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/sys/devices/virtual/powercap",
    "/sys/firmware",
)
DOCKER_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
DEFAULT_DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
DEV_SYMLINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
    ("ptmx", "pts/ptmx"),
    ("core", "/proc/kcore"),
)
DEFAULT_SHM_SIZE = 64 * 1024 * 1024
TTY_GID = 5  # the group of terminals in Debian, Fedora and busybox images alike
SYSTEMD_COMMANDS = ("/sbin/init", "/lib/systemd/systemd", "/usr/lib/systemd/systemd", "/usr/sbin/init")

_FLAG_WORDS = {
    "ro": (libc.MS_RDONLY, True),
    "rw": (libc.MS_RDONLY, False),
    "nosuid": (libc.MS_NOSUID, True),
    "suid": (libc.MS_NOSUID, False),
    "nodev": (libc.MS_NODEV, True),
    "dev": (libc.MS_NODEV, False),
    "noexec": (libc.MS_NOEXEC, True),
    "exec": (libc.MS_NOEXEC, False),
    "noatime": (libc.MS_NOATIME, True),
    "relatime": (libc.MS_RELATIME, True),
    "strictatime": (libc.MS_STRICTATIME, True),
}
_IGNORED_WORDS = ("rbind", "bind", "rprivate", "private", "rslave", "slave", "rshared", "shared", "z", "Z")


class RootfsSpec(NamedTuple):
    """The overlay of a container.

    ``lowers`` are the image layers, top-most first; they may be short names
    relative to ``lower_cwd`` (the set-up changes directory there before
    mounting) so the mount data fits in one page.  ``volatile`` mounts the
    overlay without syncs to the upper filesystem (kernel 5.10+; without it,
    unmounting the overlay syncs the whole filesystem of the data root): for
    containers whose changes need not survive a crash of the host.
    """

    lowers: Tuple[str, ...]
    upper: str
    work: str
    merged: str
    lower_cwd: Optional[str] = None
    read_only: bool = False
    volatile: bool = False


class Mount(NamedTuple):
    """A user mount: ``bind`` / ``volume`` (a host directory or file) or ``tmpfs``.

    ``options`` are mount(8) words: ``ro``, ``nosuid``, ``noexec``...; for a
    tmpfs also its data (``size=64m``, ``mode=1777``).
    """

    destination: str
    type: str = "bind"
    source: str = ""
    read_only: bool = False
    options: Tuple[str, ...] = ()


class CgroupMount(NamedTuple):
    name: str
    fstype: str
    data: str
    writable: bool


class RootfsPlan(NamedTuple):
    """Everything the set-up child needs for the filesystem, computed on the host."""

    overlay_data: str
    merged: str
    lower_cwd: Optional[str]
    read_only: bool
    privileged: bool
    mounts: List[Mount]
    etc_files: List[Tuple[str, str]]
    cgroup_mounts: List[CgroupMount]
    cgroup_symlinks: List[Tuple[str, str]]
    cgroup_v2_root: bool
    masked_paths: List[str]
    readonly_paths: List[str]
    host_devices: List[Tuple[str, int, int]]
    shm_size: int
    systemd: bool
    tty: bool
    rootfs_flags: int = 0
    extra_tmpfs: Sequence[str] = ()
    tty_gid: int = TTY_GID


# -- pure helpers -----------------------------------------------------------------
def mount_flags(options: Sequence[str]) -> Tuple[int, int, str]:
    """Split mount(8) option words into (flags to set, flags to clear, data string)."""
    set_flags = clear_flags = 0
    data = []
    for raw in options:
        word = raw.strip()
        if not word or word in _IGNORED_WORDS:
            continue
        if word in _FLAG_WORDS:
            flag, on = _FLAG_WORDS[word]
            if on:
                set_flags |= flag
                clear_flags &= ~flag
            else:
                clear_flags |= flag
                set_flags &= ~flag
        else:
            if "," in word or "\n" in word:
                raise InvalidArgument(f"invalid mount option {word!r}")
            data.append(word)
    return set_flags, clear_flags, ",".join(data)


def _check_overlay_path(path: str, what: str) -> None:
    if not path or any(char in path for char in ",:\n") or "\\" in path:
        raise InvalidArgument(f"overlay {what} {path!r} must not be empty or contain ',', ':' or '\\'")


def overlay_options_supported() -> Tuple[str, ...]:
    """The hardening options this kernel's overlayfs understands (module parameters)."""
    wanted = ("index", "redirect_dir", "metacopy")
    directory = "/sys/module/overlay/parameters"
    if os.path.isdir(directory):
        return tuple(name for name in wanted if os.path.exists(os.path.join(directory, name)))
    return wanted


def overlay_data(spec: RootfsSpec, hardening: Sequence[str] = ("index", "redirect_dir", "metacopy")) -> str:
    """The overlay mount data; refused when it does not fit in one page."""
    if not spec.lowers:
        raise InvalidArgument("a root filesystem needs at least one image layer (lowerdir)")
    for lower in spec.lowers:
        _check_overlay_path(lower, "lower directory")
    _check_overlay_path(spec.upper, "upper directory")
    _check_overlay_path(spec.work, "work directory")
    parts = [f"lowerdir={':'.join(spec.lowers)}", f"upperdir={spec.upper}", f"workdir={spec.work}"]
    parts.extend(f"{name}=off" for name in hardening)
    if spec.volatile:
        parts.append(VOLATILE)
    data = ",".join(parts)
    if len(data) > MOUNT_DATA_LIMIT:
        raise InvalidArgument(
            f"the overlay mount options are {len(data)} bytes, more than one page ({MOUNT_DATA_LIMIT}): "
            "use short layer names relative to lower_cwd"
        )
    return data


def is_systemd_command(args: Sequence[str]) -> bool:
    return bool(args) and args[0] in SYSTEMD_COMMANDS


def clean_destination(path: str) -> str:
    """A container path in normal form; ``..`` cannot climb above ``/`` (R8)."""
    if not path.startswith("/"):
        raise InvalidArgument(f"mount destination {path!r} must be an absolute path in the container")
    parts: List[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return "/" + "/".join(parts)


def _depth(path: str) -> int:
    return len([part for part in path.split("/") if part])


def host_devices() -> List[Tuple[str, int, int]]:
    """Character and block devices of the host's /dev (for privileged containers)."""
    devices: List[Tuple[str, int, int]] = []
    for directory in ("", "net", "dri", "snd", "input", "mapper", "vfio"):
        base = os.path.join("/dev", directory)
        try:
            entries = list(os.scandir(base))
        except OSError:
            continue
        for entry in entries:
            if directory == "" and entry.name in ("pts", "shm", "mqueue", "console", "ptmx", "core"):
                continue
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode):
                devices.append((os.path.join(directory, entry.name), info.st_mode, info.st_rdev))
    return devices


def is_console(name: str) -> bool:
    """A virtual console or serial line of the host (``tty1``, ``ttyS0``, ``hvc0``...).

    A privileged systemd container does not get these: its getty units would
    start login prompts on the host's own consoles (and fight over them).
    """
    prefix = name.rstrip("0123456789")
    return prefix != name and prefix in ("tty", "ttyS", "ttyAMA", "ttyUSB", "hvc")


def cgroup_mount_plan(
    version: int, mounts: Dict[str, str], joined: Optional[Sequence[str]], systemd: bool
) -> Tuple[List[CgroupMount], List[Tuple[str, str]], bool]:
    """Which cgroup filesystems to mount under the container's /sys/fs/cgroup.

    On v2 one cgroup2 mount (writable for systemd, delegated).  On v1 one
    mount per hierarchy the container joined (all when it joined none),
    read-only except name=systemd (and the hybrid unified one) for systemd.
    """
    if version == 2:
        return [CgroupMount("", "cgroup2", "", systemd)], [], True
    result = []
    symlinks = []
    for key, mountpoint in sorted(mounts.items()):
        if joined is not None and key not in joined:
            continue
        if os.path.dirname(mountpoint) != "/sys/fs/cgroup":
            continue
        name = os.path.basename(mountpoint)
        writable = systemd and key in ("name=systemd", "")
        if key == "":
            result.append(CgroupMount(name, "cgroup2", "", writable))
        elif key.startswith("name="):
            result.append(CgroupMount(name, "cgroup", "none," + key, writable))
        else:
            result.append(CgroupMount(name, "cgroup", key, writable))
            for controller in key.split(","):
                if controller != name:
                    symlinks.append((controller, name))
    return result, symlinks, False


def plan(
    rootfs: RootfsSpec,
    *,
    mounts: Sequence[Mount] = (),
    etc_files: Optional[Dict[str, str]] = None,
    privileged: bool = False,
    systemd: bool = False,
    tty: bool = False,
    masked_paths: Optional[Sequence[str]] = None,
    readonly_paths: Optional[Sequence[str]] = None,
    shm_size: int = DEFAULT_SHM_SIZE,
    cgroup_version: int = 1,
    cgroup_mounts: Optional[Dict[str, str]] = None,
    cgroup_joined: Optional[Sequence[str]] = None,
    tty_gid: int = TTY_GID,
) -> RootfsPlan:
    """Check a container's filesystem description and compute its plan (host side, no side effects)."""
    data = overlay_data(rootfs, overlay_options_supported())
    checked: List[Mount] = []
    for item in mounts:
        if item.type not in ("bind", "volume", "tmpfs"):
            raise InvalidArgument(f"mount type {item.type!r} is not supported: use bind, volume or tmpfs")
        destination = clean_destination(item.destination)
        if destination == "/":
            raise InvalidArgument("a mount cannot replace the container's root directory")
        if item.type != "tmpfs":
            if not os.path.isabs(item.source):
                raise InvalidArgument(f"bind source {item.source!r} must be an absolute host path")
            if not os.path.exists(item.source):
                raise InvalidArgument(f"bind source path does not exist: {item.source}")
        mount_flags(item.options)
        checked.append(Mount(destination, item.type, item.source, item.read_only, tuple(item.options)))
    destinations = [item.destination for item in checked]
    duplicates = {path for path in destinations if destinations.count(path) > 1}
    if duplicates:
        raise InvalidArgument(f"duplicate mount destination {sorted(duplicates)[0]}")
    checked.sort(key=lambda item: _depth(item.destination))
    etc = []
    for destination, source in sorted((etc_files or {}).items()):
        if not os.path.isfile(source):
            raise InvalidArgument(f"{source} (for {destination}) is not a file the runtime prepared")
        etc.append((clean_destination(destination), source))
    if masked_paths is None:
        masked_paths = () if privileged else _docker_masked_paths()
    if readonly_paths is None:
        readonly_paths = () if privileged else DOCKER_READONLY_PATHS
    groups, symlinks, v2_root = cgroup_mount_plan(cgroup_version, cgroup_mounts or {}, cgroup_joined, systemd)
    extra_tmpfs = [path for path in ("/run", "/run/lock", "/tmp") if systemd and path not in destinations]
    return RootfsPlan(
        overlay_data=data,
        merged=rootfs.merged,
        lower_cwd=rootfs.lower_cwd,
        read_only=rootfs.read_only,
        privileged=privileged,
        mounts=checked,
        etc_files=etc,
        cgroup_mounts=groups,
        cgroup_symlinks=symlinks,
        cgroup_v2_root=v2_root,
        masked_paths=list(masked_paths),
        readonly_paths=list(readonly_paths),
        host_devices=[device for device in host_devices() if not (systemd and is_console(device[0]))]
        if privileged
        else [],
        shm_size=shm_size,
        systemd=systemd,
        tty=tty,
        rootfs_flags=0 if privileged else libc.MS_NODEV,
        extra_tmpfs=extra_tmpfs,
        tty_gid=tty_gid,
    )


def _docker_masked_paths() -> List[str]:
    paths = list(DOCKER_MASKED_PATHS)
    try:
        cpus = sorted(name for name in os.listdir("/sys/devices/system/cpu") if name.startswith("cpu"))
    except OSError:
        cpus = []
    for cpu in cpus:
        throttle = f"/sys/devices/system/cpu/{cpu}/thermal_throttle"
        if os.path.isdir(throttle):
            paths.append(throttle)
    return paths


# -- host-side files ------------------------------------------------------------------
HOSTS_TEMPLATE = """127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
ff00::0\tip6-mcastprefix
ff02::1\tip6-allnodes
ff02::2\tip6-allrouters
"""
FALLBACK_NAMESERVERS = ("8.8.8.8", "8.8.4.4")


def hosts_content(hostname: str, address: Optional[str] = None, extra: Sequence[Tuple[str, str]] = ()) -> str:
    """``/etc/hosts`` like Docker's: localhost lines, the container's name, ``--add-host`` entries."""
    lines = [HOSTS_TEMPLATE.rstrip("\n")]
    for name, ip in extra:
        lines.append(f"{ip}\t{name}")
    if hostname:
        lines.append(f"{address or '127.0.1.1'}\t{hostname}")
    return "\n".join(lines) + "\n"


def resolv_conf_content(host_text: str, own_network: bool) -> str:
    """The host's resolv.conf; in a network namespace of its own, loopback servers are dropped like Docker."""
    if not own_network:
        return host_text
    kept = []
    servers = 0
    for line in host_text.splitlines():
        words = line.split()
        if words[:1] == ["nameserver"] and len(words) > 1:
            if words[1].startswith("127.") or words[1] == "::1":
                continue
            servers += 1
        kept.append(line)
    if servers == 0:
        kept.extend(f"nameserver {address}" for address in FALLBACK_NAMESERVERS)
    return "\n".join(kept) + "\n"


def write_etc_files(
    directory: str,
    hostname: str,
    *,
    own_network: bool = True,
    address: Optional[str] = None,
    extra_hosts: Sequence[Tuple[str, str]] = (),
    host_resolv_conf: str = "/etc/resolv.conf",
    durable: bool = True,
) -> Dict[str, str]:
    """Write hosts, hostname and resolv.conf under *directory*; return them as ``etc_files``.

    ``durable=False`` skips the fsyncs: right for files written again at every start.
    """
    makedirs(directory)
    try:
        with open(host_resolv_conf, encoding="utf-8", errors="replace") as handle:
            resolv = handle.read()
    except OSError:
        resolv = ""
    contents = {
        "hosts": hosts_content(hostname, address, extra_hosts),
        "hostname": (hostname or "localhost") + "\n",
        "resolv.conf": resolv_conf_content(resolv, own_network),
    }
    result = {}
    for name, text in contents.items():
        path = os.path.join(directory, name)
        write_atomic(path, text.encode(), 0o644, durable=durable)
        result["/etc/" + name] = path
    return result


# -- in-root resolution -----------------------------------------------------------------
def open_in_root(root_fd: int, path: str, create: Optional[str] = None, mode: int = 0o755) -> Tuple[int, str]:
    """Resolve *path* inside the directory *root_fd* and return ``(O_PATH fd, resolved path)``.

    Symlinks are followed as if *root_fd* were ``/``; missing components are
    created as directories (the last one as a file when *create* is
    ``"file"``) when *create* is set, else ``FileNotFoundError``.
    """
    pending = [part for part in path.split("/") if part and part != "."]
    pending.reverse()
    stack = [os.dup(root_fd)]
    names: List[str] = []
    followed = 0
    try:
        while pending:
            name = pending.pop()
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                    names.pop()
                continue
            last = not pending
            fd = _open_component(stack[-1], name, create, last, mode)
            info = os.fstat(fd)
            if stat.S_ISLNK(info.st_mode):
                os.close(fd)
                followed += 1
                if followed > MAX_SYMLINKS:
                    raise OSError(40, f"too many levels of symbolic links resolving {path} in the container")
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                    names.clear()
                parts = [part for part in target.split("/") if part and part != "."]
                pending.extend(reversed(parts))
                continue
            if not last and not stat.S_ISDIR(info.st_mode):
                os.close(fd)
                raise NotADirectoryError(20, f"{'/'.join([*names, name])} is not a directory in the container")
            stack.append(fd)
            names.append(name)
        result = stack.pop() if len(stack) > 1 else os.dup(stack[0])
        return result, "/" + "/".join(names)
    finally:
        for fd in stack:
            os.close(fd)


def _open_component(parent: int, name: str, create: Optional[str], last: bool, mode: int) -> int:
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(name, flags, dir_fd=parent)
    except FileNotFoundError:
        if create is None:
            raise
    if last and create == "file":
        try:
            os.close(
                os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=parent)
            )
        except FileExistsError:
            pass
    else:
        try:
            os.mkdir(name, mode, dir_fd=parent)
        except FileExistsError:
            pass
    return os.open(name, flags, dir_fd=parent)


def _fd_path(fd: int) -> str:
    return f"/proc/self/fd/{fd}"


# -- inside the new mount namespace, before pivot_root ----------------------------------
def prepare(rootfs_plan: RootfsPlan) -> int:
    """Mount the overlay and everything inside it; return an ``O_PATH`` fd of the new root.

    Runs in the set-up child, in its own mount namespace whose propagation
    is already slave, so none of these mounts reaches the host.  Masked and
    read-only paths are applied here too, on the fresh /proc and /sys,
    with the host's /dev/null opened in this namespace (a bind source must
    belong to the caller's mount namespace).
    """
    p = rootfs_plan
    devnull = open_host_devnull()
    try:
        if p.lower_cwd:
            os.chdir(p.lower_cwd)
        _mount_overlay(p)
        root = os.open(p.merged, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        _mount_proc(root)
        _mount_dev(root, p)
        _mount_sys(root, p)
        for destination in p.extra_tmpfs:
            mode = "755" if destination == "/run" else "1777"
            target = open_in_root(root, destination, create="dir")[0]
            flags = libc.MS_NOSUID | libc.MS_NODEV | (libc.MS_NOEXEC if destination == "/run/lock" else 0)
            _mount_at(target, "tmpfs", "tmpfs", flags, f"mode={mode}")
        for item in p.mounts:
            _mount_user(root, item, p.privileged)
        for destination, source in p.etc_files:
            _bind_etc_file(root, destination, source)
        for path in p.readonly_paths:
            _readonly_path(root, path)
        for path in p.masked_paths:
            _mask_path(root, path, devnull)
    finally:
        os.close(devnull)
    return root


def _mount_overlay(p: RootfsPlan) -> None:
    data = p.overlay_data
    try:
        libc.mount("overlay", p.merged, "overlay", p.rootfs_flags, data)
        return
    except OSError as exc:
        error = exc
    volatile = "," + VOLATILE
    if error.errno == errno.EINVAL and data.endswith(volatile):
        # A kernel older than 5.10 does not know "volatile": the same mount, with syncs.
        try:
            libc.mount("overlay", p.merged, "overlay", p.rootfs_flags, data[: -len(volatile)])
            return
        except OSError as exc:
            error = exc
    raise ContainerError(f"cannot mount the container's overlay root filesystem on {p.merged}: {error.strerror}")


def _mount_at(fd: int, source: Optional[str], fstype: Optional[str], flags: int, data: Optional[str] = None) -> None:
    try:
        libc.mount(source, _fd_path(fd), fstype, flags, data)
    finally:
        os.close(fd)


def _remount(root: int, resolved: str, flags: int) -> None:
    """Change the flags of the mount just placed at *resolved* (reopened so the lookup crosses it)."""
    fd = open_in_root(root, resolved)[0]
    try:
        libc.mount(None, _fd_path(fd), None, libc.MS_BIND | libc.MS_REMOUNT | flags)
    finally:
        os.close(fd)


def _runtime_dir(root: int, name: str, refuse_other: bool) -> int:
    """The image's /proc, /sys or /dev as a real directory.

    A symlink or file at /proc or /sys is refused (CVE-2019-19921 family,
    R4); one at /dev is replaced by a directory in the container's own
    layer (R2), so the fresh tmpfs lands inside the rootfs.
    """
    try:
        info = os.stat(name, dir_fd=root, follow_symlinks=False)
    except FileNotFoundError:
        os.mkdir(name, 0o755, dir_fd=root)
        info = os.stat(name, dir_fd=root, follow_symlinks=False)
    if not stat.S_ISDIR(info.st_mode):
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a directory"
        if refuse_other:
            raise ContainerError(f"the image's /{name} is {kind}; refusing to mount {name} there (unsafe image)")
        os.unlink(name, dir_fd=root)
        os.mkdir(name, 0o755, dir_fd=root)
    return os.open(name, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)


def _mount_proc(root: int) -> None:
    target = _runtime_dir(root, "proc", refuse_other=True)
    _mount_at(target, "proc", "proc", libc.MS_NOSUID | libc.MS_NOEXEC | libc.MS_NODEV)


def _mount_dev(root: int, p: RootfsPlan) -> None:
    target = _runtime_dir(root, "dev", refuse_other=False)
    flags = libc.MS_NOSUID | libc.MS_STRICTATIME | (0 if p.privileged else libc.MS_NODEV)
    _mount_at(target, "tmpfs", "tmpfs", flags, "mode=755,size=65536k")
    dev = os.open("dev", os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
    try:
        if p.privileged:
            _make_host_nodes(dev, p.host_devices)
        else:
            for name in DEFAULT_DEVICES:
                _bind_device(dev, name)
        for name, mode in (("pts", 0o755), ("shm", 0o1777), ("mqueue", 0o755)):
            os.mkdir(name, mode, dir_fd=dev)
        _mount_at(
            os.open("pts", os.O_PATH | os.O_CLOEXEC, dir_fd=dev),
            "devpts",
            "devpts",
            libc.MS_NOSUID | libc.MS_NOEXEC,
            f"newinstance,ptmxmode=0666,mode=0620,gid={p.tty_gid}",
        )
        _mount_at(
            os.open("shm", os.O_PATH | os.O_CLOEXEC, dir_fd=dev),
            "shm",
            "tmpfs",
            libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
            f"mode=1777,size={p.shm_size}",
        )
        _mount_at(
            os.open("mqueue", os.O_PATH | os.O_CLOEXEC, dir_fd=dev),
            "mqueue",
            "mqueue",
            libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC,
        )
        for name, link in DEV_SYMLINKS:
            if name == "core" and not os.path.exists("/proc/kcore"):
                continue
            os.symlink(link, name, dir_fd=dev)
        terminal = _terminal_path() if p.tty else None
        if terminal:
            os.close(os.open("console", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600, dir_fd=dev))
            console = os.open("console", os.O_PATH | os.O_CLOEXEC, dir_fd=dev)
            _mount_at(console, terminal, None, libc.MS_BIND)
    finally:
        os.close(dev)


def _terminal_path() -> Optional[str]:
    """The path of the terminal on fd 0 in this mount namespace, for /dev/console.

    The descriptor itself cannot be the bind source: its mount belongs to
    the caller's namespace, and the kernel refuses binds across namespaces.
    """
    try:
        path = os.readlink("/proc/self/fd/0")
        if path.startswith("/dev/") and os.stat(path).st_rdev == os.fstat(0).st_rdev:
            return path
    except OSError:
        pass
    return None


def _bind_device(dev: int, name: str) -> None:
    """Bind the host's node read-only: usable, but chmod/chown cannot reach the host inode.

    Binding (instead of mknod) lets the /dev tmpfs be ``nodev``, so a node the
    container creates with CAP_MKNOD cannot be opened, on cgroup v1 and v2 alike.
    """
    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666, dir_fd=dev))
    target = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
    _mount_at(target, os.path.join("/dev", name), None, libc.MS_BIND)
    again = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dev)
    _mount_at(again, None, None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NOEXEC)


def _make_host_nodes(dev: int, devices: Sequence[Tuple[str, int, int]]) -> None:
    for relative, mode, rdev in devices:
        directory = os.path.dirname(relative)
        if directory:
            try:
                os.mkdir(directory, 0o755, dir_fd=dev)
            except FileExistsError:
                pass
        try:
            os.mknod(relative, mode, rdev, dir_fd=dev)
        except FileExistsError:
            continue
        os.chmod(relative, stat.S_IMODE(mode), dir_fd=dev)  # mknod applied the umask; keep the host's mode


def _mount_sys(root: int, p: RootfsPlan) -> None:
    target = _runtime_dir(root, "sys", refuse_other=True)
    read_only = 0 if p.privileged else libc.MS_RDONLY
    _mount_at(target, "sysfs", "sysfs", libc.MS_NOSUID | libc.MS_NOEXEC | libc.MS_NODEV | read_only)
    flags = libc.MS_NOSUID | libc.MS_NOEXEC | libc.MS_NODEV
    cgroup_dir, resolved = open_in_root(root, "/sys/fs/cgroup")
    if p.cgroup_v2_root:
        (item,) = p.cgroup_mounts
        ro = 0 if item.writable or p.privileged else libc.MS_RDONLY
        _mount_at(cgroup_dir, "cgroup2", "cgroup2", flags | ro)
        return
    _mount_at(cgroup_dir, "tmpfs", "tmpfs", flags, "mode=755")
    tree = open_in_root(root, resolved)[0]
    try:
        for item in p.cgroup_mounts:
            os.mkdir(item.name, 0o755, dir_fd=tree)
            ro = 0 if item.writable or p.privileged else libc.MS_RDONLY
            _mount_at(
                os.open(item.name, os.O_PATH | os.O_CLOEXEC, dir_fd=tree), "cgroup", item.fstype, flags | ro, item.data
            )
        for name, link in p.cgroup_symlinks:
            os.symlink(link, name, dir_fd=tree)
    finally:
        os.close(tree)
    if not p.privileged:
        _remount(root, resolved, flags | libc.MS_RDONLY)


def _check_not_proc(item: Mount, resolved: str) -> None:
    """A mount may not land on the container's / or /proc, even through an image's symlink (CVE-2019-19921)."""
    if resolved in ("/", "/proc") or resolved.startswith("/proc/"):
        raise ContainerError(f"mount destination {item.destination} resolves to {resolved} in the container; refusing")


def _mount_user(root: int, item: Mount, privileged: bool) -> None:
    set_flags, clear_flags, data = mount_flags(item.options)
    if item.read_only:
        set_flags |= libc.MS_RDONLY
    if item.type == "tmpfs":
        target, resolved = open_in_root(root, item.destination, create="dir")
        try:
            _check_not_proc(item, resolved)
        except ContainerError:
            os.close(target)
            raise
        defaults = libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC
        flags = (defaults | set_flags) & ~clear_flags
        _mount_at(target, "tmpfs", "tmpfs", flags, data or None)
        return
    source = os.open(item.source, os.O_PATH | os.O_CLOEXEC)
    try:
        kind = "dir" if stat.S_ISDIR(os.fstat(source).st_mode) else "file"
        copy_up = item.type == "volume" and kind == "dir" and _exists_in_root(root, item.destination)
        target, resolved = open_in_root(root, item.destination, create=kind)
        target_is_dir = stat.S_ISDIR(os.fstat(target).st_mode)
        try:
            _check_not_proc(item, resolved)
            if target_is_dir != (kind == "dir"):
                raise ContainerError(
                    f"cannot mount {item.source} on {item.destination}: one is a directory and the other is not"
                )
            if copy_up:
                _copy_up(target, source, item.destination)
        except BaseException:
            os.close(target)
            raise
        _mount_at(target, _fd_path(source), None, libc.MS_BIND | libc.MS_REC)
    finally:
        os.close(source)
    flags = (set_flags | (0 if privileged else libc.MS_NODEV)) & ~clear_flags
    if flags:
        _remount(root, resolved, flags)


def _exists_in_root(root: int, destination: str) -> bool:
    try:
        os.close(open_in_root(root, destination)[0])
    except OSError:
        return False
    return True


def _copy_up(target: int, source: int, destination: str) -> None:
    """Docker's copy-up: fill an empty volume with what the image has at its mount point."""
    image_dir = os.open(_fd_path(target), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        volume_dir = os.open(_fd_path(source), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            copyup.populate_empty_volume(image_dir, volume_dir)
        except OSError as exc:
            raise ContainerError(f"cannot copy the image's {destination} into its empty volume: {exc}") from None
        finally:
            os.close(volume_dir)
    finally:
        os.close(image_dir)


def _bind_etc_file(root: int, destination: str, source: str) -> None:
    """Bind a file the runtime prepared at an in-root resolved path (R10)."""
    target, resolved = open_in_root(root, destination, create="file")
    if not stat.S_ISREG(os.fstat(target).st_mode):
        os.close(target)
        raise ContainerError(f"{destination} in the image is not a regular file; cannot place the runtime's copy there")
    _mount_at(target, source, None, libc.MS_BIND)
    _remount(root, resolved, libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)


# -- switching root ------------------------------------------------------------------------
def pivot(root_fd: int) -> None:
    """``pivot_root(".", ".")`` then detach the old root: no chroot fallback, ever."""
    os.fchdir(root_fd)
    os.close(root_fd)
    try:
        libc.pivot_root(".", ".")
    except OSError as exc:
        raise ContainerError(f"pivot_root into the container's root filesystem failed: {exc.strerror}") from None
    libc.mount(None, ".", None, libc.MS_SLAVE | libc.MS_REC)
    libc.umount2(".", libc.MNT_DETACH)
    os.chdir("/")


# -- after pivot_root -----------------------------------------------------------------------
def finalize(rootfs_plan: RootfsPlan) -> None:
    """Make the root read-only when asked (the mount is the namespace's root by now)."""
    p = rootfs_plan
    if p.read_only:
        libc.mount(None, "/", None, libc.MS_BIND | libc.MS_REMOUNT | libc.MS_RDONLY | p.rootfs_flags)


def _readonly_path(root: int, path: str) -> None:
    """Bind a /proc or /sys path onto itself and remount it read-only, keeping nosuid/nodev/noexec."""
    try:
        fd, resolved = open_in_root(root, path)
    except FileNotFoundError:
        return
    try:
        libc.mount(_fd_path(fd), _fd_path(fd), None, libc.MS_BIND | libc.MS_REC)
        keep = os.statvfs(_fd_path(fd)).f_flag & (libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    finally:
        os.close(fd)
    _remount(root, resolved, libc.MS_RDONLY | keep)


def _mask_path(root: int, path: str, devnull: int) -> None:
    """Hide a /proc or /sys path: the host's /dev/null over files, an empty read-only tmpfs over directories."""
    try:
        fd = open_in_root(root, path)[0]
    except FileNotFoundError:
        return
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        _mount_at(fd, "tmpfs", "tmpfs", libc.MS_RDONLY | libc.MS_NOSUID | libc.MS_NODEV | libc.MS_NOEXEC)
    else:
        _mount_at(fd, _fd_path(devnull), None, libc.MS_BIND)


def open_host_devnull() -> int:
    """An ``O_PATH`` fd of the host's /dev/null, verified to be the char device 1:3."""
    fd = os.open("/dev/null", os.O_PATH | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISCHR(info.st_mode) or (os.major(info.st_rdev), os.minor(info.st_rdev)) != (1, 3):
        os.close(fd)
        raise ContainerError("the host's /dev/null is not the character device 1:3; refusing to use it for masking")
    return fd
