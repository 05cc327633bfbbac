"""An isolated Berth host configuration for tests and benchmarks.

Each environment has its own data root, exec root, bridge name and subnet,
so tests never touch /var/lib/berth, the demo's berth0 or one another; the
registry mirror entry points docker.io names (``busybox``, ``nginx``) at a
local test registry, as a user behind a mirror would configure it.
"""

import json
import os
import secrets
import shutil
import subprocess
import sys
from typing import Any, Dict, List, Sequence

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BERTH = os.path.join(CHECKOUT, "bin", "berth")


class BerthEnv:
    """A daemon.json of its own and the roots it names; :meth:`destroy` removes every trace."""

    def __init__(self, mirrors: Sequence[str] = (), **settings: Any) -> None:
        token = secrets.token_hex(3)
        self.token = token
        self.base = os.path.join("/var/tmp", f"berth-it-{token}")
        os.makedirs(self.base, mode=0o700)
        octets = [int(token[i : i + 2], 16) for i in (0, 2)]
        self.settings: Dict[str, Any] = {
            "data-root": os.path.join(self.base, "data"),
            "exec-root": f"/run/berth-it-{token}",
            "bridge": f"bt{token}",
            "bip": f"10.{200 + octets[0] % 50}.{octets[1]}.1/24",
            "registry-mirrors": list(mirrors),
            "ip-forward": False,
            "ip-masq": False,
        }
        self.settings.update(settings)
        self.config_path = os.path.join(self.base, "daemon.json")
        self.write()

    def write(self) -> None:
        with open(self.config_path, "w", encoding="utf-8") as handle:
            json.dump(self.settings, handle)

    @property
    def env(self) -> Dict[str, str]:
        return {**os.environ, "BERTH_CONFIG": self.config_path}

    def config(self) -> Any:
        from ansible_collections.berth.containers.plugins.module_utils.runtime import config

        return config.load(self.config_path)

    def runtime(self) -> Any:
        from ansible_collections.berth.containers.plugins.module_utils.runtime.containers import Runtime

        return Runtime(self.config())

    def berth(self, *args: str, check: bool = True, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``bin/berth ARGS`` with this environment; output captured as text."""
        result = subprocess.run(
            [BERTH, *args], env=self.env, capture_output=True, text=True, timeout=timeout, check=False, **kwargs
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"berth {' '.join(args)} exited {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    def container_ids(self) -> List[str]:
        root = os.path.join(self.settings["data-root"], "containers")
        return sorted(name for name in os.listdir(root) if len(name) == 64) if os.path.isdir(root) else []

    def destroy(self) -> List[str]:
        """Remove every container, the network leftovers and the roots; return what went wrong."""
        problems = []
        for container_id in self.container_ids():
            result = self.berth("rm", "-f", container_id, check=False)
            if result.returncode != 0:
                problems.append(result.stderr.strip())
        result = self.berth("network", "prune", check=False)
        if result.returncode != 0:
            problems.append(result.stderr.strip())
        subprocess.run(["ip", "link", "del", self.settings["bridge"]], capture_output=True, check=False)
        subprocess.run(
            ["nft", "delete", "table", "ip", f"berth-{self.settings['bridge']}"], capture_output=True, check=False
        )
        run_root = self.settings["exec-root"]
        netns = os.path.join(run_root, "netns")
        if os.path.isdir(netns):
            for name in os.listdir(netns):
                subprocess.run(["umount", os.path.join(netns, name)], capture_output=True, check=False)
        shutil.rmtree(run_root, ignore_errors=True)
        shutil.rmtree(self.base, ignore_errors=True)
        return problems


def python() -> str:
    return sys.executable
