"""Small filesystem helpers every part of the store uses.

Metadata is always written atomically (temporary file in the same directory,
fsync, rename, fsync of the directory) so a crash leaves either the old or
the new content, never a torn file.
"""

import contextlib
import errno
import fcntl
import os
from typing import Any, Iterator, Optional


def write_atomic(path: str, data: bytes, mode: int = 0o600, durable: bool = True) -> None:
    """Replace *path* with *data* so readers see the old or the new bytes only.

    ``durable=False`` skips both fsyncs: still atomic for readers, but a machine
    crash may lose the change.  For state that does not outlive a reboot anyway
    (files under the tmpfs exec root), where an fsync would only cost time.
    """
    directory = os.path.dirname(path) or "."
    # Not tempfile.mkstemp: importing tempfile costs 2-3 ms on every CLI command.
    tmp = os.path.join(directory, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), mode)
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable:
        fsync_dir(directory)


def write_json_atomic(path: str, value: Any, mode: int = 0o600, durable: bool = True) -> None:
    """Atomically write *value* as JSON (sorted keys, so equal data gives equal bytes)."""
    import json

    data = json.dumps(value, indent=2, sort_keys=True).encode() + b"\n"
    write_atomic(path, data, mode, durable)


def read_json(path: str, default: Any = None) -> Any:
    """Read a JSON file, or return *default* when it does not exist."""
    import json

    try:
        with open(path, "rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return default


def fsync_dir(path: str) -> None:
    """Make a rename or unlink in *path* durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path: str, mode: int = 0o700) -> str:
    """Create *path* and its parents with *mode* (not subject to the umask)."""
    if not os.path.isdir(path):
        parent = os.path.dirname(path.rstrip("/"))
        if parent and not os.path.isdir(parent):
            makedirs(parent, mode)
        try:
            os.mkdir(path, mode)
            os.chmod(path, mode)
        except FileExistsError:
            pass
    return path


@contextlib.contextmanager
def locked(path: str, shared: bool = False, blocking: bool = True) -> Iterator[Optional[int]]:
    """Hold an ``flock`` on *path* (created if missing) for the ``with`` block.

    With ``blocking=False`` the block receives ``None`` instead of waiting when
    another process holds the lock.
    """
    makedirs(os.path.dirname(path) or ".")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        flags = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
        if not blocking:
            flags |= fcntl.LOCK_NB
        try:
            fcntl.flock(fd, flags)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN) and not blocking:
                yield None
                return
            raise
        yield fd
    finally:
        os.close(fd)


def remove_tree(path: str) -> None:
    """Remove *path* recursively without following symlinks; missing is fine.

    Through directory descriptors (:func:`layerfs.remove_at`): a symlink
    found on the way is removed, never followed, and trees deeper than the
    recursion or descriptor limits come out too.  (Not ``shutil.rmtree``:
    importing shutil cost ~2 ms of every ``berth run --rm``.)
    """
    from .layerfs import remove_at

    parent, name = os.path.split(os.path.abspath(path))
    try:
        parent_fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        remove_at(parent_fd, name)
    finally:
        os.close(parent_fd)
