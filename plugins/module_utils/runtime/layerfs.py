"""File operations confined to one directory tree, through directory fds.

The layer applier never hands a path to the kernel that could be resolved
through a symlink: every directory is reached from the tree's root fd one
component at a time with ``O_NOFOLLOW|O_DIRECTORY`` (or in one
``openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)`` call where the kernel has
it), and every final component is operated on with ``dir_fd=`` and
``follow_symlinks=False``.  A symlink or non-directory in the middle of a path
is reported, never followed.

The ctypes helpers (``openat2``, ``syncfs``) live here rather than in the
isolation engineer's ``libc.py`` so that the tar code has no dependency on
container set-up.
"""

import errno
import os
import stat
from collections import OrderedDict, deque
from typing import Callable, Deque, Dict, Iterator, List, Optional, Tuple, Union

O_PATH = getattr(os, "O_PATH", 0o10000000)
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

_SYS_OPENAT2 = 437  # the same number on every Linux architecture (new syscall table)
_RESOLVE_NO_MAGICLINKS = 0x02
_RESOLVE_NO_SYMLINKS = 0x04
_RESOLVE_BENEATH = 0x08


class NotADirectoryComponent(Exception):
    """A path component that must be a directory is a symlink or another non-directory."""

    def __init__(self, relpath: str, st: os.stat_result) -> None:
        super().__init__(relpath)
        self.relpath = relpath
        self.st = st

    @property
    def kind(self) -> str:
        return describe_mode(self.st.st_mode)


def describe_mode(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "a symlink"
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a special file"


class _Libc:
    """libc entry points, loaded once (and before any chroot; see RUNTIME-REFERENCE §3.3)."""

    def __init__(self) -> None:
        import ctypes

        self.ctypes = ctypes
        self.lib = ctypes.CDLL(None, use_errno=True)
        self.lib.syscall.restype = ctypes.c_long
        self.has_syncfs = hasattr(self.lib, "syncfs")

        class OpenHow(ctypes.Structure):
            _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

        self.OpenHow = OpenHow
        self.openat2_works: Optional[bool] = None


_libc: Optional[_Libc] = None


def libc() -> _Libc:
    global _libc
    if _libc is None:
        _libc = _Libc()
    return _libc


def openat2_beneath(dirfd: int, relpath: str, flags: int) -> int:
    """``openat2(dirfd, relpath, flags, RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS|RESOLVE_NO_MAGICLINKS)``.

    Raises ``OSError`` like ``os.open``; ``ENOSYS`` when the kernel (or a
    seccomp filter: systemd returns EPERM or ENOSYS on purpose) refuses the
    call, after which this returns ``ENOSYS`` at once.
    """
    lib = libc()
    if lib.openat2_works is False:
        raise OSError(errno.ENOSYS, "openat2 is not available")
    ctypes = lib.ctypes
    how = lib.OpenHow(flags, 0, _RESOLVE_BENEATH | _RESOLVE_NO_SYMLINKS | _RESOLVE_NO_MAGICLINKS)
    fd = lib.lib.syscall(
        ctypes.c_long(_SYS_OPENAT2),
        ctypes.c_int(dirfd),
        ctypes.c_char_p(os.fsencode(relpath)),
        ctypes.byref(how),
        ctypes.c_size_t(ctypes.sizeof(how)),
    )
    if fd >= 0:
        lib.openat2_works = True
        return fd
    code = ctypes.get_errno()
    if lib.openat2_works is None and code in (errno.ENOSYS, errno.EPERM, errno.E2BIG, errno.EINVAL):
        lib.openat2_works = False
        code = errno.ENOSYS
    raise OSError(code, os.strerror(code), relpath)


def syncfs(fd: int) -> None:
    """Flush the filesystem holding *fd* once (instead of an fsync per file)."""
    lib = libc()
    if lib.has_syncfs:
        if lib.lib.syncfs(lib.ctypes.c_int(fd)) == 0:
            return
        code = lib.ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    os.sync()


def lstat_at(dirfd: int, name: str) -> Optional[os.stat_result]:
    try:
        return os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def set_xattr(target: Union[int, str], name: str, value: bytes) -> None:
    """``fsetxattr`` on an fd, ``lsetxattr`` on a path (never following a final symlink)."""
    if isinstance(target, int):
        os.setxattr(target, name, value)
    else:
        os.setxattr(target, name, value, follow_symlinks=False)


def proc_path(dirfd: int, name: str) -> str:
    """A path reaching *name* in *dirfd* without resolving anything but the fd itself.

    The kernel follows the ``/proc/self/fd`` magic link to exactly the
    directory the fd refers to; *name* is then looked up in it, and the
    ``l*`` calls do not follow it.
    """
    return f"/proc/self/fd/{dirfd}/{name}"


def chmod_at(dirfd: int, name: str, mode: int) -> None:
    """chmod a non-symlink *name* in *dirfd* without following a symlink put there meanwhile."""
    fd = os.open(name, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        if stat.S_ISLNK(os.fstat(fd).st_mode):
            return
        os.chmod(f"/proc/self/fd/{fd}", mode)
    finally:
        os.close(fd)


_FS_TOPDIR_FL = 0x00020000  # chattr +T


def mark_top_directory(path: str) -> bool:
    """Ask the filesystem to place each subdirectory of *path* as the root of a new tree (``chattr +T``).

    ext4's Orlov allocator then spreads new subdirectories over block groups
    with many free inodes, instead of packing them next to *path*.  Each layer
    is an unrelated tree, so nothing is lost; and on ext4 without a journal,
    allocating inodes in a group where many were just freed (the ``rmi``
    before a pull, other tools' temporary trees) scans past each recently
    deleted one (``recently_deleted()``), which measured 10-25x slower per
    file here.  Best effort: False where the filesystem has no such flag.
    """
    import fcntl
    import struct

    # FS_IOC_GETFLAGS/SETFLAGS are _IOR/_IOW('f', 1/2, long), but the kernel moves an int.
    size = struct.calcsize("l") << 16
    get_flags, set_flags = (2 << 30) | size | (ord("f") << 8) | 1, (1 << 30) | size | (ord("f") << 8) | 2
    try:
        fd = os.open(path, DIR_FLAGS)
    except OSError:
        return False
    try:
        flags = struct.unpack("i", fcntl.ioctl(fd, get_flags, bytes(4)))[0]
        if not flags & _FS_TOPDIR_FL:
            fcntl.ioctl(fd, set_flags, struct.pack("i", flags | _FS_TOPDIR_FL))
        return True
    except OSError:
        return False  # ENOTTY/EOPNOTSUPP: tmpfs, overlayfs, ... have no such flag
    finally:
        os.close(fd)


FD_WINDOW = 64  # directory fds a deep walk keeps open (a hostile tree can be thousands deep)


class _Level:
    __slots__ = ("fd", "name", "subdirs")

    def __init__(self, name: str, fd: Optional[int]) -> None:
        self.name = name
        self.fd = fd
        self.subdirs: Optional[List[str]] = None


def _level_fd(stack: List[_Level], base_fd: int) -> int:
    """The fd of the deepest level, reopened by name (never following a symlink) if it was closed."""
    top = len(stack) - 1
    if stack[top].fd is not None:
        return stack[top].fd  # type: ignore[return-value]
    anchor = top
    while anchor >= 0 and stack[anchor].fd is None:
        anchor -= 1
    fd = stack[anchor].fd if anchor >= 0 else base_fd
    for index in range(anchor + 1, top + 1):
        fd = os.open(stack[index].name, DIR_FLAGS, dir_fd=fd)
        stack[index].fd = fd
        _close_beyond_window(stack, index)
    return fd  # type: ignore[return-value]


def _close_beyond_window(stack: List[_Level], index: int) -> None:
    old = index - FD_WINDOW
    if old >= 0 and stack[old].fd is not None:
        os.close(stack[old].fd)  # type: ignore[arg-type]
        stack[old].fd = None


def remove_at(dirfd: int, name: str, st: Optional[os.stat_result] = None) -> None:
    """Remove *name* (a whole tree if it is a directory) without following symlinks.

    Iterative, with at most :data:`FD_WINDOW` directory fds open: a hostile
    layer can nest deeper than Python's recursion limit and the fd limit.
    """
    if st is None:
        st = lstat_at(dirfd, name)
        if st is None:
            return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=dirfd)
        return
    stack = [_Level(name, os.open(name, DIR_FLAGS, dir_fd=dirfd))]
    try:
        while stack:
            level = stack[-1]
            fd = _level_fd(stack, dirfd)
            if level.subdirs is None:
                level.subdirs = _unlink_files(fd)
            if level.subdirs:
                child = level.subdirs.pop()
                stack.append(_Level(child, os.open(child, DIR_FLAGS, dir_fd=fd)))
                _close_beyond_window(stack, len(stack) - 1)
                continue
            stack.pop()
            os.close(fd)
            os.rmdir(level.name, dir_fd=_level_fd(stack, dirfd) if stack else dirfd)
    finally:
        for level in stack:
            if level.fd is not None:
                os.close(level.fd)


def _unlink_files(fd: int) -> List[str]:
    """Unlink every non-directory in *fd*; return the names of its subdirectories."""
    files: List[str] = []
    subdirs: List[str] = []
    with os.scandir(fd) as entries:
        for entry in entries:
            (subdirs if entry.is_dir(follow_symlinks=False) else files).append(entry.name)
    for file_name in files:
        os.unlink(file_name, dir_fd=fd)
    return subdirs


def iter_xattrs(target: Union[int, str], follow_symlinks: bool = False) -> Iterator[Tuple[str, bytes]]:
    """(name, value) of every extended attribute readable on *target* (fd or path)."""
    # fds take no follow_symlinks argument (an fd is never a symlink to follow).
    options = {} if isinstance(target, int) else {"follow_symlinks": follow_symlinks}
    try:
        names = os.listxattr(target, **options)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM, errno.ENODATA):
            return
        raise
    for name in sorted(names):
        try:
            yield name, os.getxattr(target, name, **options)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EPERM):
                raise


def _default_cache_size() -> int:
    """256 fds, or an eighth of the soft open-file limit when that is lower (other threads need fds too)."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY:
        return 256
    return max(8, min(256, soft // 8))


class DirCache:
    """Directory fds of one tree, by relative path, opened without following symlinks.

    ``get(relpath)`` returns an fd that stays valid until a later ``get`` or
    ``forget`` (least recently used fds are closed beyond *size*, also during
    a deep walk; the fds returned by the last three ``get`` calls are never
    closed by eviction, so a caller may hold two at once, e.g. for ``link``).  The fd refers to the
    directory inode: renaming or replacing the path afterwards cannot make
    later writes through the fd land outside the tree.
    """

    def __init__(self, root_fd: int, use_openat2: Optional[bool] = None, size: Optional[int] = None) -> None:
        self.root_fd = root_fd
        self._fds: OrderedDict[str, int] = OrderedDict()
        self._size = size if size is not None else _default_cache_size()
        self._recent: Deque[str] = deque(maxlen=3)
        self.use_openat2 = use_openat2 if use_openat2 is not None else True

    def get(self, relpath: str, create: Optional[Callable[[int, str, str], None]] = None) -> int:
        """The fd of directory *relpath* ("" = root).

        Missing components are made by ``create(parent_fd, name, relpath_of_component)``
        (which must create a directory there) or raise ``FileNotFoundError``;
        a symlink or other non-directory raises :class:`NotADirectoryComponent`.
        """
        if not relpath:
            return self.root_fd
        fd = self._fds.get(relpath)
        if fd is not None:
            self._fds.move_to_end(relpath)
            self._recent.append(relpath)
            return fd
        if self.use_openat2:
            try:
                fd = openat2_beneath(self.root_fd, relpath, DIR_FLAGS)
            except OSError as exc:
                if exc.errno == errno.ENOSYS:
                    self.use_openat2 = False
            else:
                self._remember(relpath, fd)
                self._recent.append(relpath)
                return fd
        fd = self._walk(relpath, create)
        self._recent.append(relpath)
        return fd

    def _walk(self, relpath: str, create: Optional[Callable[[int, str, str], None]]) -> int:
        parts = relpath.split("/")
        prefixes = []
        current = ""
        for part in parts:
            current = f"{current}/{part}" if current else part
            prefixes.append(current)
        start = len(parts)
        while start > 0 and prefixes[start - 1] not in self._fds:
            start -= 1
        fd = self._fds[prefixes[start - 1]] if start else self.root_fd
        for index in range(start, len(parts)):
            fd = self._remember(prefixes[index], self._open_component(fd, parts[index], prefixes[index], create))
        return fd

    @staticmethod
    def _open_component(
        parent_fd: int, name: str, relpath: str, create: Optional[Callable[[int, str, str], None]]
    ) -> int:
        for attempt in range(2):
            try:
                return os.open(name, DIR_FLAGS, dir_fd=parent_fd)
            except FileNotFoundError:
                if create is None or attempt:
                    raise
                create(parent_fd, name, relpath)
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                st = lstat_at(parent_fd, name)
                if st is None:
                    raise
                raise NotADirectoryComponent(relpath, st) from None
        raise AssertionError("unreachable")

    def _remember(self, relpath: str, fd: int) -> int:
        """Cache *fd*; evict others beyond the size (so a deep walk keeps few fds open)."""
        old = self._fds.pop(relpath, None)
        if old is not None and old != fd:
            os.close(old)
        self._fds[relpath] = fd
        self._evict(keep=relpath)
        return fd

    def _evict(self, keep: str = "") -> None:
        while len(self._fds) > self._size:
            for relpath in self._fds:
                if relpath != keep and relpath not in self._recent:
                    os.close(self._fds.pop(relpath))
                    break
            else:
                return

    def forget(self, relpath: str) -> None:
        """Close and drop *relpath* and everything below it (it was removed or replaced)."""
        if not relpath:
            self.close()
            return
        prefix = relpath + "/"
        for key in [key for key in self._fds if key == relpath or key.startswith(prefix)]:
            os.close(self._fds.pop(key))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def cached(self) -> Dict[str, int]:
        """The open fds by path (for tests)."""
        return dict(self._fds)
