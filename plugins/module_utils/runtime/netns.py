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
import errno
import os
from typing import Iterator

from . import fsutil
from .errors import NetworkError
from .libc import CLONE_NEWNET, MNT_DETACH, MS_BIND, mount, setns, umount2, unshare

_THREAD_NETNS = "/proc/thread-self/ns/net"


def _return_to(fd: int) -> None:
    """Go back to the namespace the thread came from; failing that, the thread is unusable."""
    try:
        setns(fd, CLONE_NEWNET)
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
        unshare(CLONE_NEWNET)
    except OSError as exc:
        os.close(original)
        _unlink(path)
        raise NetworkError(f"cannot create a network namespace at {path}: {exc.strerror}") from None
    try:
        mount(_THREAD_NETNS, path, None, MS_BIND)
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
    try:
        umount2(path, MNT_DETACH)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOENT):
            raise NetworkError(f"cannot unmount the network namespace {path}: {exc.strerror}") from None
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
        setns(target, CLONE_NEWNET)
    except OSError as exc:
        os.close(original)
        raise NetworkError(f"cannot enter the network namespace {path}: {exc.strerror}") from None
    finally:
        os.close(target)
    try:
        yield
    finally:
        _return_to(original)
