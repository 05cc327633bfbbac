"""Child processes the fixtures own: free loopback ports, start, stop by pid.

Fixtures never end a process by name: they remember the pid of what they
started and signal that pid only, after checking that it is still the
process they started (its command line), so a recycled pid is left alone.
"""

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from typing import Callable, Dict, List, Optional

LOOPBACK = "127.0.0.1"
# Seconds a test HTTP server's handler thread waits for the next request on a kept-alive connection.
# Without a limit, a client that never closes (one left to the garbage collector) keeps a thread of
# the pytest process alive, and in-process container starts refuse a multi-threaded caller.
IDLE_CONNECTION_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on *host* that nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child when the process that started it dies (a killed pytest)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def start_detached(
    argv: List[str],
    log_path: str,
    die_with_parent: bool,
    cwd: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
) -> subprocess.Popen:
    """Start *argv* in a new session (setsid) with stdout+stderr appended to *log_path*.

    ``die_with_parent`` sends the child SIGTERM when its starter goes away, so a
    killed pytest leaves no registry behind.  PR_SET_PDEATHSIG fires when the
    *thread* that forked exits: start such children from a long-lived thread.
    Leave it off for a service meant to outlive its starter (the demo registry).
    """
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            cwd=cwd,
            env=env,
            preexec_fn=_die_with_parent if die_with_parent else None,
        )


def cmdline(pid: int) -> List[str]:
    """The argv of *pid*, or [] when it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_running(pid: int, expect: Callable[[List[str]], bool]) -> bool:
    """True when *pid* lives and its command line passes *expect* (guards against pid reuse)."""
    argv = cmdline(pid)
    return bool(argv) and expect(argv)


def stop_pid(
    pid: int, expect: Callable[[List[str]], bool], timeout: float = 10.0, popen: Optional[subprocess.Popen] = None
) -> None:
    """SIGTERM *pid* (then SIGKILL after *timeout*) if it is still the process *expect* recognises."""
    if not is_running(pid, expect):
        _reap(popen)
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if not _wait_gone(pid, expect, timeout, popen):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid, expect, 5.0, popen)
    _reap(popen)


def _wait_gone(
    pid: int, expect: Callable[[List[str]], bool], timeout: float, popen: Optional[subprocess.Popen]
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return True
        elif not is_running(pid, expect):
            return True
        time.sleep(0.02)
    return False


def _reap(popen: Optional[subprocess.Popen]) -> None:
    if popen is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            popen.wait(timeout=5)
