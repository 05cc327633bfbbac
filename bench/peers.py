"""Running peers on this host without changing it: commands, private network namespaces, dockerd in one.

Shared by the benchmarks that measure docker: dockerd keeps its default
networking (docker0, iptables rules, docker-proxy, the FORWARD policy it sets
to DROP) but inside a network namespace of the benchmark's, and the host's
network settings are recorded before and put back after should they have
moved anyway.
"""

import os
import shutil
import subprocess
from typing import Dict, List, Optional, Sequence

from support.dockerd import Dockerd

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns

NSENTER = "/usr/bin/nsenter"
HOST_SYSCTLS = (
    "/proc/sys/net/ipv4/ip_forward",
    "/proc/sys/net/bridge/bridge-nf-call-iptables",
    "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
)


def run(argv: Sequence[str], env: Optional[Dict[str, str]] = None, timeout: float = 300) -> str:
    """Run *argv*; its stdout, or RuntimeError with the end of its stderr."""
    done = subprocess.run(list(argv), env=env, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-1500:]}")
    return done.stdout


def private_netns(path: str) -> str:
    """A new network namespace bound at *path*, its loopback up (netns.delete removes it)."""
    created = netns.create(path)
    try:
        run([NSENTER, f"--net={created}", "ip", "link", "set", "lo", "up"])
    except BaseException:
        netns.delete(created)
        raise
    return created


class PrivateDockerd(Dockerd):
    """dockerd with its default networking (docker0, iptables, docker-proxy) inside the namespace at *netns_path*."""

    def __init__(self, netns_path: str) -> None:
        super().__init__()
        self.netns_path = netns_path

    def argv(self) -> List[str]:
        own = ("--bridge=", "--iptables=", "--ip-masq=", "--ip-forward=")
        daemon = [arg for arg in super().argv() if not arg.startswith(own)]
        return [NSENTER, f"--net={self.netns_path}", "--", *daemon]


def docker_archive(layout_path: str, name: str, work: str) -> str:
    """``docker load``'s input for the OCI layout at *layout_path* (tag latest), as *name*:latest."""
    path = os.path.join(work, f"{name}.tar")
    run(["skopeo", "copy", "-q", f"oci:{layout_path}:latest", f"docker-archive:{path}:{name}:latest"])
    return path


def host_network_state() -> Dict[str, str]:
    """What dockerd would change on the host were it not in its own namespace: sysctls, the FORWARD policy."""
    state = {}
    for path in HOST_SYSCTLS:
        try:
            with open(path, encoding="ascii") as handle:
                state[path] = handle.read().strip()
        except OSError:
            state[path] = ""
    rules = run(["iptables-save", "-t", "filter"]) if shutil.which("iptables-save") else ""
    forward = next((line for line in rules.splitlines() if line.startswith(":FORWARD ")), "")
    state["FORWARD policy"] = forward.split(" [")[0]
    return state


def restore_host(before: Dict[str, str]) -> List[str]:
    """Put back the sysctls and the FORWARD policy if they moved; what was restored."""
    after = host_network_state()
    restored = []
    for path in HOST_SYSCTLS:
        if before[path] and after[path] != before[path]:
            with open(path, "w", encoding="ascii") as handle:
                handle.write(before[path])
            restored.append(f"{path}={before[path]}")
    if before["FORWARD policy"] and after["FORWARD policy"] != before["FORWARD policy"]:
        policy = before["FORWARD policy"].split()[1]
        run(["iptables", "-P", "FORWARD", policy])
        restored.append(f"iptables FORWARD policy {policy}")
    return restored
