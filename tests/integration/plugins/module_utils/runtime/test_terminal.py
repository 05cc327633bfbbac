"""``-t`` and ``-it`` from the command line: the container gets a pty of its own, the caller relays.

The caller's terminal is a pty this test opens (its size set to 40x120), so
``berth`` runs exactly as from an interactive shell: keystrokes go in
through it, the container's output comes back through it.
"""

import fcntl
import os
import pty
import secrets
import struct
import subprocess
import termios
import time
from typing import Iterator, List, Sequence, Tuple

import pytest
from support.berth_env import BERTH, BerthEnv


def _control_the_terminal() -> None:
    """In the child: make the pty on fd 0 the session's controlling terminal, as a login shell has it."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def berth_on(terminal: int, env: BerthEnv, args: Sequence[str]) -> subprocess.Popen:
    """``berth ARGS`` with *terminal* as its stdio and the controlling terminal of its session."""
    return subprocess.Popen(
        [BERTH, *args],
        env=env.env,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=_control_the_terminal,
    )


def drive(env: BerthEnv, args: Sequence[str], keys: bytes = b"", timeout: float = 30) -> Tuple[int, str]:
    """Run ``berth ARGS`` on a fresh 40x120 terminal, type *keys*, return (exit code, what the terminal showed).

    The terminal is the controlling terminal of berth's session, as a user's is.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    process = berth_on(slave, env, args)
    os.close(slave)
    if keys:
        time.sleep(1)  # let the shell in the container start reading
        os.write(master, keys)
    shown = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: berth exited and closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return process.wait(timeout=10), shown.decode(errors="replace").replace("\r\n", "\n")


@pytest.fixture
def sleeper(host: BerthEnv) -> Iterator[str]:
    name = f"tty-{secrets.token_hex(3)}"
    host.berth("run", "-d", "--name", name, "--network", "none", "busybox", "sleep", "300")
    yield name
    host.berth("rm", "-f", name)


def lines(text: str) -> List[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def test_run_t_gives_a_terminal_of_the_callers_size(host: BerthEnv) -> None:
    script = "stty size; tty; exit 3"
    code, shown = drive(host, ["run", "--rm", "-t", "--network", "none", "busybox", "sh", "-c", script])
    assert code == 3
    assert lines(shown) == ["40 120", "/dev/console"]


def test_run_it_relays_keystrokes_and_the_exit_code(host: BerthEnv) -> None:
    code, shown = drive(
        host, ["run", "--rm", "-it", "--network", "none", "busybox", "sh"], keys=b"echo typed-$((6*7))\nexit 5\n"
    )
    assert code == 5
    assert "typed-42" in lines(shown), shown


def test_run_t_output_reaches_a_pipe_and_the_log(host: BerthEnv) -> None:
    name = f"tty-log-{secrets.token_hex(3)}"
    script = "echo out; echo err >&2"
    piped = host.berth("run", "--name", name, "-t", "--network", "none", "busybox", "sh", "-c", script)
    try:
        assert piped.stdout.replace("\r\n", "\n") == "out\nerr\n", "a terminal merges both streams"
        assert host.berth("logs", name).stdout.replace("\r\n", "\n") == "out\nerr\n"
    finally:
        host.berth("rm", name)


def test_detached_t_container_has_a_terminal(host: BerthEnv) -> None:
    name = f"tty-d-{secrets.token_hex(3)}"
    host.berth("run", "-d", "-t", "--name", name, "--network", "none", "busybox", "sh", "-c", "[ -t 1 ] && echo is-tty")
    try:
        deadline = time.monotonic() + 10
        while "is-tty" not in host.berth("logs", name).stdout and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines(host.berth("logs", name).stdout) == ["is-tty"]
    finally:
        host.berth("rm", "-f", name)


def test_exec_t_gets_a_pty_of_the_containers_own_devpts(host: BerthEnv, sleeper: str) -> None:
    code, shown = drive(host, ["exec", "-t", sleeper, "sh", "-c", "tty; stty size; exit 4"])
    assert code == 4
    assert lines(shown) == ["/dev/pts/0", "40 120"]


def test_exec_it_relays_keystrokes(host: BerthEnv, sleeper: str) -> None:
    code, shown = drive(host, ["exec", "-it", sleeper, "sh"], keys=b"echo inside-$((2+3))\nexit\n")
    assert code == 0
    assert "inside-5" in lines(shown), shown


def test_the_callers_terminal_is_restored(host: BerthEnv) -> None:
    """Raw mode while relaying, the caller's settings (echo, line editing) back afterwards."""
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    assert berth_on(slave, host, ["run", "--rm", "-it", "--network", "none", "busybox", "true"]).wait(30) == 0
    assert termios.tcgetattr(slave) == before
    os.close(slave)
    os.close(master)
