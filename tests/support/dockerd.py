"""Debian's dockerd (docker.io), started by hand for the engine modules' tests.

Each instance lives in its own directory under /var/tmp (data root, exec
root, pid file, log, its managed containerd) and listens on its own unix
socket there -- never /var/run/docker.sock, so it cannot collide with a
benchmark's daemon or another engineer's.  It is started with
``--bridge=none --iptables=false --ip-masq=false --ip-forward=false`` so it
creates no docker0 bridge, no iptables rules and leaves ip_forward alone;
stopping signals only the pids this object started (checked against their
command lines) and removes the directory.

The daemon.json under test is passed with ``--config-file``; the flags above
are therefore keys that file must not contain (dockerd refuses an option
given both ways).
"""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from typing import Any, Dict, Iterator, List, Optional, Tuple

DOCKERD = "/usr/sbin/dockerd"
BASE_DIR = "/var/tmp"
FLAG_KEYS = ("hosts", "data-root", "exec-root", "pidfile", "bridge", "iptables", "ip-masq", "ip-forward")


class DockerdError(RuntimeError):
    """dockerd did not start (the message carries the end of its log)."""


def _cmdline(pid: int) -> List[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return [part.decode(errors="replace") for part in handle.read().split(b"\0") if part]
    except OSError:
        return []


class Dockerd:
    """One dockerd with its own state directory and socket."""

    def __init__(
        self,
        config: Optional[Dict[str, Any]] = None,
        root: Optional[str] = None,
        binary: str = DOCKERD,
        bin_dirs: Tuple[str, ...] = (),
    ) -> None:
        """*binary* and *bin_dirs* (searched first for containerd, runc, docker-init) run an engine
        installed elsewhere, for example into a package manager's install root."""
        self.binary = binary
        self.search_path = ":".join([*bin_dirs, "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
        # Short paths: containerd's socket lives under the exec root and unix
        # socket paths are limited to 107 bytes.
        self.root = root or tempfile.mkdtemp(prefix="bd-", dir=BASE_DIR)
        os.chmod(self.root, 0o755)
        self.config_path = os.path.join(self.root, "daemon.json")
        self.socket_path = os.path.join(self.root, "docker.sock")
        self.data_root = os.path.join(self.root, "data")
        self.exec_root = os.path.join(self.root, "exec")
        self.pidfile = os.path.join(self.root, "dockerd.pid")
        self.log_path = os.path.join(self.root, "dockerd.log")
        self.process: Optional[subprocess.Popen] = None
        if config is not None:
            self.write_config(config)
        elif not os.path.exists(self.config_path):
            self.write_config({})

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def trust_key_path(self) -> str:
        return os.path.join(self.root, "key.json")

    def write_config(self, config: Dict[str, Any], allow_flag_keys: bool = False) -> None:
        """Write the daemon.json dockerd starts with.

        dockerd 20.10 creates a trust key in /etc/docker/key.json unless
        ``deprecated-key-path`` (a daemon.json key, there is no flag) points
        elsewhere, so the fixture adds that key to keep /etc/docker untouched.
        ``allow_flag_keys`` writes keys that clash with the fixture's flags, for
        tests that show dockerd refusing exactly that.
        """
        clashing = sorted(set(config) & set(FLAG_KEYS))
        if clashing and not allow_flag_keys:
            raise ValueError(f"the fixture passes {clashing} as flags; leave them out of daemon.json")
        content = {"deprecated-key-path": self.trust_key_path, **config}
        with open(self.config_path, "w", encoding="utf-8") as handle:
            json.dump(content, handle, indent=2)

    def argv(self) -> List[str]:
        return [
            self.binary,
            f"--config-file={self.config_path}",
            f"--host=unix://{self.socket_path}",
            f"--data-root={self.data_root}",
            f"--exec-root={self.exec_root}",
            f"--pidfile={self.pidfile}",
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
            "--ip-forward=false",
        ]

    def _ours(self, argv: List[str]) -> bool:
        return any(self.root in part for part in argv)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 60.0) -> None:
        """Start dockerd and wait until it answers /_ping; raise DockerdError with its log otherwise."""
        if self.running():
            return
        if not os.access(self.binary, os.X_OK):
            raise DockerdError(f"{self.binary} is missing: run `make setup` (apt-get install docker.io)")
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={"PATH": self.search_path, "HOME": self.root},
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise DockerdError(f"dockerd exited with status {self.process.returncode}:\n{self.log_tail()}")
            if self.ping():
                return
            time.sleep(0.1)
        self.stop()
        raise DockerdError(f"dockerd did not answer within {timeout:g}s:\n{self.log_tail()}")

    def start_expecting_failure(self, timeout: float = 30.0) -> str:
        """Start dockerd with a configuration it should refuse; return its log once it exited."""
        self.start_process_only()
        assert self.process is not None
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise DockerdError(f"dockerd kept running although it was expected to refuse:\n{self.log_tail()}") from None
        return self.log_tail()

    def start_process_only(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env={"PATH": self.search_path, "HOME": self.root},
            )

    def ping(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(self.socket_path)
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                answer = sock.recv(4096)
        except OSError:
            return False
        return answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n", 1)[0]

    def _containerd_pid(self) -> Optional[int]:
        path = os.path.join(self.exec_root, "containerd", "containerd.pid")
        try:
            with open(path, encoding="utf-8") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM our dockerd (SIGKILL after *timeout*), then our managed containerd if it outlived it."""
        containerd = self._containerd_pid()
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        self.process.kill()
                    self.process.wait(timeout=10)
            self.process = None
        if containerd and self._ours(_cmdline(containerd)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(containerd, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self._ours(_cmdline(containerd)):
                time.sleep(0.05)
            if self._ours(_cmdline(containerd)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(containerd, signal.SIGKILL)

    def restart(self, timeout: float = 60.0) -> None:
        self.stop()
        self.start(timeout)

    def log_tail(self, lines: int = 40) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def _unmount_below_root(self) -> None:
        with open("/proc/self/mountinfo", encoding="utf-8") as handle:
            mounts = [line.split()[4] for line in handle]
        for mount_point in sorted((m for m in mounts if m.startswith(self.root + "/")), key=len, reverse=True):
            subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)

    def cleanup(self) -> None:
        """Stop and remove everything this instance created."""
        self.stop()
        self._unmount_below_root()
        shutil.rmtree(self.root, ignore_errors=True)

    def executable(self) -> str:
        """The binary the running daemon was started from (from /proc, not from our argv)."""
        assert self.process is not None
        return os.readlink(f"/proc/{self.process.pid}/exe")


@contextlib.contextmanager
def dockerd(
    config: Optional[Dict[str, Any]] = None, start: bool = True, binary: str = DOCKERD, bin_dirs: Tuple[str, ...] = ()
) -> Iterator[Dockerd]:
    """A dockerd for the duration of a ``with`` block; always stopped and removed afterwards."""
    daemon = Dockerd(config, binary=binary, bin_dirs=bin_dirs)
    try:
        if start:
            daemon.start()
        yield daemon
    finally:
        daemon.cleanup()
