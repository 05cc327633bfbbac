"""What a Berth host leaves in the machine, as comparable snapshots: the proof of "no leaks".

Other engineers run containers on the same machine at the same time, so a
snapshot only looks at what one :class:`~support.berth_env.BerthEnv` can own:

* a **cgroup jail**: ``berth`` commands run with ``preexec_fn=jail.enter``,
  which moves them into ``<own cgroup>/berthtest-<random>`` of every
  hierarchy Berth uses.  Berth nests container cgroups under the caller's
  cgroup and the monitors stay in it, so every process and cgroup the
  commands start is inside the jail — and nothing else is;
* mounts whose line in ``/proc/self/mountinfo`` names the environment's
  data root or exec root (netns handles, overlays that escaped a namespace);
* processes in the jail, and processes whose command line names the
  environment's directory (monitors, clean-ups);
* network namespace handles, veths attached to the environment's bridge,
  its nftables table (rules without handles) and its IPAM leases;
* every path under the data root and the exec root (not their contents:
  lock files are rewritten, the seccomp cache may be refreshed).

Take the first snapshot after one warm-up cycle of every kind (the bridge,
the firewall table, the seccomp cache and lock files exist from then on)
and compare it with a later one: :func:`differences` lists what changed.
"""

import json
import os
import secrets
import subprocess
from typing import Any, Dict, List, Set

from ansible_collections.berth.containers.plugins.module_utils.runtime import cgroups

from .berth_env import BerthEnv

# The hierarchies Berth makes container cgroups in (cgroups._V1_NEEDED, name=systemd, the hybrid unified one).
JAILED_HIERARCHIES = ("memory", "cpu", "cpuacct", "pids", "freezer", "name=systemd", "")


class CgroupJail:
    """A cgroup of its own in each hierarchy Berth uses; processes started with :meth:`enter` live in it."""

    def __init__(self) -> None:
        layout = cgroups.detect()
        name = f"berthtest-{secrets.token_hex(4)}"
        self.directories: Dict[str, str] = {}
        for wanted in JAILED_HIERARCHIES:
            key = wanted if wanted in layout.mounts else layout.key_for(wanted) if wanted else None
            if key is None or key in self.directories:
                continue
            own = layout.own.get(key, "/")
            self.directories[key] = layout.directory(key, os.path.join(own, name))
        for directory in self.directories.values():
            os.mkdir(directory)

    def enter(self) -> None:
        """``preexec_fn``: move the calling (child) process into the jail."""
        for directory in self.directories.values():
            with open(os.path.join(directory, "cgroup.procs"), "w", encoding="ascii") as handle:
                handle.write("0")

    def cgroups(self) -> Set[str]:
        """Every cgroup directory inside the jail (its own ones included), relative to the hierarchy root."""
        found = set()
        for key, directory in self.directories.items():
            for root, dirs, _files in os.walk(directory):
                found.add(f"{key}:{os.path.relpath(root, directory)}")
                dirs.sort()
        return found

    def pids(self) -> Set[int]:
        """Every process in the jail or below it."""
        found: Set[int] = set()
        for directory in self.directories.values():
            for root, _dirs, _files in os.walk(directory):
                try:
                    with open(os.path.join(root, "cgroup.procs"), encoding="ascii") as handle:
                        found.update(int(line) for line in handle if line.strip())
                except OSError:
                    continue
        return found

    def remove(self) -> List[str]:
        """Remove the jail (bottom-up); what could not be removed."""
        problems = []
        for directory in self.directories.values():
            for root, _dirs, _files in sorted(os.walk(directory), key=lambda entry: -len(entry[0])):
                try:
                    os.rmdir(root)
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    problems.append(f"{root}: {exc.strerror}")
        return problems


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _processes_naming(text: str) -> Dict[int, str]:
    return {
        int(name): _cmdline(int(name))
        for name in os.listdir("/proc")
        if name.isdigit() and int(name) != os.getpid() and text in _cmdline(int(name))
    }


def _tree(root: str) -> Set[str]:
    found = set()
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(directory, name), root))
    return found


def _run(argv: List[str]) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    return result.stdout if result.returncode == 0 else f"(absent: {result.stderr.strip()[:120]})"


def take(env: BerthEnv, jail: CgroupJail) -> Dict[str, Any]:
    """Everything *env* (whose commands ran in *jail*) may have left on the machine."""
    data_root, exec_root = env.settings["data-root"], env.settings["exec-root"]
    bridge = env.settings["bridge"]
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        mounts = sorted(line.split(" ", 4)[4] for line in handle if data_root in line or exec_root in line)
    lease_file = os.path.join(exec_root, "network", bridge, "leases.json")
    try:
        with open(lease_file, encoding="utf-8") as handle:
            table = json.load(handle)
    except FileNotFoundError:
        table = {}
    leases = sorted(table.get("leases", {})) + [f"join {key}" for key in sorted(table.get("joins", {}))]
    processes = {pid: _cmdline(pid) for pid in jail.pids()}
    processes.update(_processes_naming(env.base))
    return {
        "mounts": mounts,
        "cgroups": sorted(jail.cgroups()),
        "processes": sorted(f"{pid} {cmdline}" for pid, cmdline in processes.items()),
        "netns": sorted(os.listdir(os.path.join(exec_root, "netns"))) if os.path.isdir(f"{exec_root}/netns") else [],
        "veths": sorted(
            line.split(":")[1].strip().split("@")[0]
            for line in _run(["ip", "-o", "link", "show", "master", bridge]).splitlines()
            if ":" in line
        ),
        "nft": _run(["nft", "list", "table", "ip", f"berth-{bridge}"]),
        "leases": leases,
        "data_root": sorted(_tree(data_root)),
        "exec_root": sorted(_tree(exec_root)),
    }


def differences(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    """Human-readable differences between two snapshots (empty: nothing leaked)."""
    problems = []
    for key, old in before.items():
        new = after[key]
        if old == new:
            continue
        if isinstance(old, list):
            added = [item for item in new if item not in old]
            removed = [item for item in old if item not in new]
            problems.append(f"{key}: added {added[:10]} ({len(added)}), removed {removed[:10]} ({len(removed)})")
        else:
            problems.append(f"{key}: was {old!r}, now {new!r}")
    return problems
