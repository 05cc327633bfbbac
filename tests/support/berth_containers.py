"""Containers for tests of the modules and the connection plugin, started with ``bin/berth`` and removed after.

``Containers(env)`` runs containers under unique names (``<prefix>-<random>``)
in a :class:`support.berth_env.BerthEnv`, remembers them, and removes them in
:meth:`Containers.remove_all`; ``upper_dir`` and ``inspect`` look at them from
the host side through the runtime's public API.
"""

import secrets
import time
from typing import Any, Dict, List, Sequence

from .berth_env import BerthEnv


class Containers:
    """The containers a test started in one Berth environment."""

    def __init__(self, env: BerthEnv) -> None:
        self.env = env
        self.names: List[str] = []

    def run(self, prefix: str, image: str, *command: str, options: Sequence[str] = ()) -> str:
        """``berth run -d`` under a unique name; returns the name."""
        name = f"{prefix}-{secrets.token_hex(3)}"
        self.names.append(name)
        self.env.berth("run", "-d", "--name", name, *options, image, *command, timeout=120)
        return name

    def inspect(self, name: str) -> Dict[str, Any]:
        runtime = self.env.runtime()
        return runtime.inspect(runtime.get(name))

    def upper_dir(self, name: str) -> str:
        """The container's writable layer on the host: what it wrote, seen from outside."""
        return self.inspect(name)["GraphDriver"]["Data"]["UpperDir"]

    def exec(self, name: str, *argv: str, check: bool = True) -> str:
        return self.env.berth("exec", name, *argv, check=check).stdout

    def wait_for_systemd(self, name: str, timeout: float = 90) -> str:
        """Wait until systemd in the container finished booting; its final state (``running``, ``degraded``)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.exec(name, "systemctl", "is-system-running", check=False).strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.3)
        failed = self.exec(name, "systemctl", "list-units", "--failed", "--no-legend", check=False)
        raise AssertionError(f"systemd in {name} did not finish booting in {timeout}s: {state!r}; failed: {failed}")

    def remove_all(self) -> List[str]:
        """Remove every container started here; the errors (there should be none)."""
        problems = []
        for name in self.names:
            result = self.env.berth("rm", "-f", name, check=False, timeout=120)
            if result.returncode != 0 and "no such container" not in result.stderr:
                problems.append(result.stderr.strip())
        self.names.clear()
        return problems
