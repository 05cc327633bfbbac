"""Pseudo-terminals for ``-t``: the container's side gets a fresh pty, the caller relays.

A container process with a terminal makes it its controlling terminal
(``TIOCSCTTY``), which only a terminal that is no other session's can be:
so it never gets the caller's own terminal, as Docker never passes it
either.  It gets the slave of a new pty; the caller keeps the master,
copies its own terminal's size to it (and again on SIGWINCH), switches its
terminal to raw mode while keystrokes are relayed, and copies the
container's output (one stream: a terminal merges stdout and stderr) back.
"""

import contextlib
import errno
import fcntl
import os
import select
import signal
import stat
import struct
import termios
import tty
from typing import Iterator, Optional, Tuple

from .monitor import write_all

DEFAULT_SIZE = (24, 80)
_PTMX_DEVICE = (5, 2)
_TIOCSPTLCK = 0x40045431
_TIOCGPTPEER = 0x5441  # Linux 4.13+: the slave, opened without a path lookup
READ_SIZE = 64 * 1024


def _caller_terminal(*fds: int) -> Optional[int]:
    return next((fd for fd in fds if os.isatty(fd)), None)


def open_pty(size_from: Optional[int] = None) -> Tuple[int, int]:
    """A new pty ``(master, slave)``, both close-on-exec, sized like the terminal *size_from* (else 24x80)."""
    master, slave = os.openpty()
    _set_winsize(master, *_size_of(size_from))
    return master, slave


def open_pty_in(pid: int, size_from: Optional[int] = None) -> Tuple[int, int]:
    """A new pty of the devpts instance of the container whose process is *pid* (``/dev/pts/N`` inside).

    ``docker exec -t`` gives the process a terminal of the container's own
    /dev/pts, so that ``tty`` and every ``ttyname`` user find it.  Its
    ``ptmx`` is resolved inside the container's root (an image's symlink
    cannot send the host anywhere else) and must be the ptmx device before
    it is opened for reading and writing.
    """
    from .rootfs import open_in_root

    root = os.open(f"/proc/{pid}/root", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        found = open_in_root(root, "/dev/pts/ptmx")[0]
    finally:
        os.close(root)
    try:
        info = os.fstat(found)
        if not stat.S_ISCHR(info.st_mode) or (os.major(info.st_rdev), os.minor(info.st_rdev)) != _PTMX_DEVICE:
            raise OSError(errno.ENODEV, "the container's /dev/pts/ptmx is not the ptmx device")
        master = os.open(f"/proc/self/fd/{found}", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    finally:
        os.close(found)
    try:
        fcntl.ioctl(master, _TIOCSPTLCK, struct.pack("i", 0))
        slave = fcntl.ioctl(master, _TIOCGPTPEER, os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        os.close(master)
        raise
    _set_winsize(master, *_size_of(size_from))
    return master, slave


def _size_of(fd: Optional[int]) -> Tuple[int, int]:
    if fd is not None and os.isatty(fd):
        with contextlib.suppress(OSError):
            return _winsize(fd)
    return DEFAULT_SIZE


def _winsize(fd: int) -> Tuple[int, int]:
    """(rows, columns) of the terminal *fd* (``struct winsize``; termios.tcgetwinsize is 3.11+)."""
    rows, columns, _x, _y = struct.unpack("HHHH", fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8))
    return rows, columns


def _set_winsize(fd: int, rows: int, columns: int) -> None:
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))


@contextlib.contextmanager
def attached(master: int, stdin: Optional[int]) -> Iterator[None]:
    """While inside: the caller's terminal (stdin, else stdout) is raw and its size follows into *master*.

    Nothing changes when the caller has no terminal (output redirected, CI).
    """
    own = _caller_terminal(*(fd for fd in (stdin, 1) if fd is not None))
    if own is None:
        yield
        return

    def resize(_signum: int, _frame: object) -> None:
        with contextlib.suppress(OSError):
            _set_winsize(master, *_winsize(own))

    previous_handler = signal.signal(signal.SIGWINCH, resize)
    saved = termios.tcgetattr(own) if stdin is not None and os.isatty(stdin) else None
    try:
        if saved is not None:
            tty.setraw(own, termios.TCSAFLUSH)  # keys such as ^C reach the container's terminal as bytes
        yield
    finally:
        if saved is not None:
            termios.tcsetattr(own, termios.TCSAFLUSH, saved)
        signal.signal(signal.SIGWINCH, previous_handler)


def relay(master: int, stdin: Optional[int], stdout: int) -> None:
    """Copy *stdin* into the terminal and its output to *stdout* until every process let go of it."""
    poller = select.poll()
    poller.register(master, select.POLLIN)
    if stdin is not None:
        poller.register(stdin, select.POLLIN)
    while True:
        try:
            events = poller.poll()
        except InterruptedError:
            continue
        for fd, _event in events:
            data = _read(fd)
            if fd == master:
                if not data:
                    return
                with contextlib.suppress(OSError):  # the caller's output went away: keep draining
                    write_all(stdout, data)
            elif data:
                with contextlib.suppress(OSError):
                    write_all(master, data)
            else:
                poller.unregister(fd)


def _read(fd: int) -> bytes:
    """What is there to read; ``b""`` at the end (a master whose slave is closed answers EIO)."""
    while True:
        try:
            return os.read(fd, READ_SIZE)
        except InterruptedError:
            continue
        except OSError:
            return b""
