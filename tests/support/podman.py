"""podman (Debian 12's 4.3) with a private store and configuration, for interoperability tests and benchmarks.

What podman needs on these machines (../shared/lab/NOTES.md): the cgroupfs
manager and file events (no systemd as PID 1), ulimits within the hard
limits (no CAP_SYS_RESOURCE), and runc (crun refuses this hybrid cgroup host
while cgroup v2 lists a controller).  Its root, run root and configuration
live under *work*, so the host's own podman state is neither used nor
changed; *wrapper* prefixes every command (``nsenter --net=...`` keeps
podman's bridge and rules inside a network namespace of the caller's).
"""

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence

CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


class PodmanError(RuntimeError):
    pass


class Podman:
    def __init__(self, work: str, wrapper: Sequence[str] = (), network_config_dir: Optional[str] = None) -> None:
        self.work = work
        os.makedirs(work, exist_ok=True)
        self.conf = os.path.join(work, "containers.conf")
        with open(self.conf, "w", encoding="utf-8") as handle:
            handle.write(CONTAINERS_CONF)
        self.cli: List[str] = [
            *wrapper,
            "podman",
            "--root",
            os.path.join(work, "root"),
            "--runroot",
            os.path.join(work, "run"),
            "--storage-driver",
            "overlay",
            "--runtime",
            shutil.which("runc") or "runc",
        ]
        if network_config_dir:
            self.cli += ["--network-config-dir", network_config_dir]

    @property
    def env(self) -> Dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": self.conf}

    def __call__(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``podman ARGS``; with *check*, a failure raises :class:`PodmanError` with its stderr."""
        completed = subprocess.run(
            [*self.cli, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if check and completed.returncode != 0:
            raise PodmanError(f"podman {' '.join(args)} failed ({completed.returncode}): {completed.stderr[-1500:]}")
        return completed

    def close(self) -> None:
        """Remove its containers and images, unmount its store and delete *work*."""
        self("rm", "-a", "-f", "-t", "0", check=False)
        self("rmi", "-a", "-f", check=False)
        subprocess.run(["umount", "-R", os.path.join(self.work, "root")], capture_output=True, check=False)
        shutil.rmtree(self.work, ignore_errors=True)


def available() -> bool:
    return shutil.which("podman") is not None and shutil.which("runc") is not None
