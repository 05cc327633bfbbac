"""Network namespaces by path: create (bind mount), enter for a moment, delete.

A container's network namespace is a bind mount of an nsfs file at
``<exec_root>/netns/<id>``, so it outlives the process that created it and
the container set-up joins it by path (``setns``).  Creating one needs no
fork: the calling *thread* unshares its network namespace, the new namespace
is bind-mounted, and the thread returns to where it was.  :func:`entered`
does the same to run netlink calls inside a namespace: a socket opened there
stays bound to that namespace; other threads of the process are unaffected.
"""

import contextlib
import ctypes
import errno
import os
from typing import Iterator

from . import fsutil
from .errors import NetworkError

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MNT_DETACH = 0x2
_THREAD_NETNS = "/proc/thread-self/ns/net"

_libc = ctypes.CDLL(None, use_errno=True)
_libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
_libc.unshare.argtypes = [ctypes.c_int]
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _check(result: int, what: str, path: str) -> None:
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}", path)


def _setns(fd: int, path: str) -> None:
    _check(_libc.setns(fd, CLONE_NEWNET), "setns", path)


def _return_to(fd: int) -> None:
    """Go back to the namespace the thread came from; failing that, the thread is unusable."""
    try:
        _setns(fd, _THREAD_NETNS)
    except OSError as exc:
        raise SystemExit(f"berth: cannot return to the original network namespace: {exc}") from None
    finally:
        os.close(fd)


def is_netns(path: str) -> bool:
    """True when *path* is a network namespace handle (an nsfs file), not a plain file."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/net").st_dev
    except OSError:
        return False


def create(path: str) -> str:
    """A new, empty network namespace bind-mounted at *path*; an existing one is kept (idempotent)."""
    if is_netns(path):
        return path
    fsutil.makedirs(os.path.dirname(path))
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_CLOEXEC, 0o444))
    original = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.unshare(CLONE_NEWNET), "unshare", path)
    except OSError as exc:
        os.close(original)
        _unlink(path)
        raise NetworkError(f"cannot create a network namespace at {path}: {exc.strerror}") from None
    try:
        _check(_libc.mount(_THREAD_NETNS.encode(), path.encode(), None, MS_BIND, None), "mount", path)
    except OSError as exc:
        _unlink(path)
        raise NetworkError(f"cannot bind-mount a network namespace at {path}: {exc.strerror}") from None
    finally:
        _return_to(original)
    return path


def delete(path: str) -> None:
    """Unmount and remove a namespace handle; a missing one is fine.

    The namespace itself lives on while a process is in it; the caller deletes
    the host end of its veth first (the kernel frees the pair asynchronously).
    """
    if _libc.umount2(path.encode(), MNT_DETACH) != 0:
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOENT):
            raise NetworkError(f"cannot unmount the network namespace {path}: {os.strerror(code)}")
    _unlink(path)


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def entered(path: str) -> Iterator[None]:
    """Run the block with the calling thread inside the network namespace at *path*."""
    try:
        target = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise NetworkError(f"cannot open the network namespace {path}: {exc.strerror}") from None
    original = os.open(_THREAD_NETNS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _setns(target, path)
    except OSError as exc:
        os.close(original)
        raise NetworkError(f"cannot enter the network namespace {path}: {exc.strerror}") from None
    finally:
        os.close(target)
    try:
        yield
    finally:
        _return_to(original)
