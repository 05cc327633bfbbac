"""Run benchmark (issue 4): ``run --rm IMAGE true`` latency, and the memory of 50 idle containers.

    sudo .venv/bin/python -m bench.run [--runs 11] [--idle 50] [--only latency|memory] [--no-docker] [--no-podman]

Latency: the wall time of ``run --rm IMAGE true`` for busybox and Debian+nginx
(the test fixtures' images), with ``--network none`` and on the default
bridge, median of ``--runs``; rounds rotate the tools so the machine's noise
falls on each alike:

* ``berth`` -- ``bin/berth`` in an isolated BerthEnv, images pulled from a
  local registry through the docker.io mirror entry;
* ``docker`` -- Debian's dockerd with its default bridge, iptables rules and
  FORWARD policy, started in a **private network namespace** (those changes stay
  in there) with its own data root and socket; images come in by ``docker load``;
* ``podman`` -- podman with its own storage and containers.conf (ulimits within
  the hard limits, cgroupfs, file events), run through ``nsenter`` into a
  private network namespace of its own (its CNI bridge, rules and ip_forward stay
  there), with runc: crun refuses this hybrid cgroup host while cgroup v2
  lists a controller;
* ``runc`` -- ``runc run`` of an OCI bundle (umoci unpack of the same image,
  network namespace only): the floor, no image store and no network set-up.

Memory: ``--idle`` detached ``sleep`` containers per tool (``--network none``);
the PSS of what each keeps per container (/proc/PID/smaps_rollup): berth's
monitor, podman's conmon, docker's containerd-shim.

Targets: berth busybox ``--network none`` at most 0.25 x docker's median in
the same run; at most 3 MB PSS per berth monitor.  Only processes this
benchmark started are stopped; the host's ip_forward and iptables FORWARD
policy are compared before and after and restored should they have moved.
"""

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

from support import images, pusher
from support.berth_env import BERTH, BerthEnv
from support.podman import Podman as PrivatePodman
from support.registry import Registry

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns
from bench.peers import (
    NSENTER,
    PrivateDockerd,
    docker_archive,
    host_network_state,
    private_netns,
    restore_host,
)
from bench.peers import run as _run

DOCKER = "/usr/bin/docker"
IMAGES = ("busybox", "nginx")
NETWORKS = ("none", "bridge")
TARGET_RATIO = 0.25
TARGET_PSS_KB = 3 * 1024

Case = Tuple[str, str]  # (image, network)


def pss_kb(pid: int) -> int:
    """Proportional set size of *pid* in kB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def processes(comm: str, marker: str) -> List[int]:
    """Pids whose name is *comm* and whose command line contains *marker*."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/comm", encoding="utf-8") as handle:
                if handle.read().strip() != comm:
                    continue
            with open(f"/proc/{name}/cmdline", "rb") as handle:
                if marker.encode() in handle.read():
                    found.append(int(name))
        except OSError:
            continue
    return found


class Tool:
    """One runtime: ``command(case)`` is timed; ``idle(count)`` returns the pids of its per-container processes."""

    name = ""
    cases: Tuple[Case, ...] = tuple((image, network) for image in IMAGES for network in NETWORKS)
    per_container = ""

    def command(self, case: Case) -> List[str]:
        raise NotImplementedError

    def env(self) -> Optional[Dict[str, str]]:
        return None

    def idle(self, count: int) -> List[int]:
        raise NotImplementedError

    def remove_idle(self) -> None:
        pass

    def close(self) -> None:
        pass


class Berth(Tool):
    name = "berth"
    per_container = "monitor"

    def __init__(self, registry: Registry) -> None:
        self.berth = BerthEnv(mirrors=[registry.url])
        for image in IMAGES:
            self.berth.berth("pull", image)
        self.names: List[str] = []

    def command(self, case: Case) -> List[str]:
        return [BERTH, "run", "--rm", "--network", case[1], case[0], "true"]

    def env(self) -> Optional[Dict[str, str]]:
        return self.berth.env

    def idle(self, count: int) -> List[int]:
        pids = []
        for number in range(count):
            name = f"idle{number}"
            self.names.append(name)
            self.berth.berth("run", "-d", "--network", "none", "--name", name, "busybox", "sleep", "3600")
            info = json.loads(self.berth.berth("inspect", name).stdout)[0]
            pids.append(info["Berth"]["MonitorPid"])
        return pids

    def remove_idle(self) -> None:
        if self.names:
            self.berth.berth("rm", "-f", *self.names)
            self.names = []

    def close(self) -> None:
        problems = self.berth.destroy()
        if problems:
            print(f"berth clean-up problems: {problems}")


class Docker(Tool):
    name = "docker"
    per_container = "containerd-shim"

    def __init__(self, work: str, archives: Dict[str, str]) -> None:
        self.netns = private_netns(os.path.join(work, "docker-netns"))
        try:
            self.daemon = PrivateDockerd(self.netns)
            self.daemon.start()
        except BaseException:
            netns.delete(self.netns)
            raise
        self.cli = [DOCKER, "-H", self.daemon.docker_host]
        for archive in archives.values():
            _run([*self.cli, "load", "-q", "-i", archive])

    def command(self, case: Case) -> List[str]:
        return [*self.cli, "run", "--rm", "--network", case[1], f"{case[0]}:latest", "true"]

    def idle(self, count: int) -> List[int]:
        for _number in range(count):
            _run(
                [*self.cli, "run", "-d", "--network", "none", "--label", "berth-bench=idle", "busybox", "sleep", "3600"]
            )
        return processes("containerd-shim", self.daemon.root)

    def remove_idle(self) -> None:
        ids = _run([*self.cli, "ps", "-aq", "--filter", "label=berth-bench=idle"]).split()
        if ids:
            _run([*self.cli, "rm", "-f", *ids])

    def close(self) -> None:
        try:
            self.daemon.cleanup()
        finally:
            netns.delete(self.netns)


class Podman(Tool):
    name = "podman"
    per_container = "conmon"

    def __init__(self, work: str, archives: Dict[str, str]) -> None:
        self.netns = private_netns(os.path.join(work, "podman-netns"))
        self.work = os.path.join(work, "podman")
        self.podman = PrivatePodman(
            self.work, wrapper=[NSENTER, f"--net={self.netns}", "--"], network_config_dir=f"{self.work}/net"
        )
        for name, archive in archives.items():
            loaded = self.podman("load", "-q", "-i", archive).stdout
            self.podman("tag", loaded.split()[-1], f"{name}:latest")

    def env(self) -> Optional[Dict[str, str]]:
        return self.podman.env

    def command(self, case: Case) -> List[str]:
        return [*self.podman.cli, "run", "--rm", "--network", case[1], f"localhost/{case[0]}:latest", "true"]

    def idle(self, count: int) -> List[int]:
        for _number in range(count):
            self.podman("run", "-d", "--network", "none", "localhost/busybox:latest", "sleep", "3600")
        return processes("conmon", self.work)

    def remove_idle(self) -> None:
        self.podman("rm", "-a", "-f", "-t", "0", check=False)

    def close(self) -> None:
        try:
            self.podman.close()
        finally:
            netns.delete(self.netns)


class Runc(Tool):
    name = "runc (floor)"
    cases = tuple((image, "none") for image in IMAGES)

    def __init__(self, work: str, layouts: Dict[str, images.FixtureImages]) -> None:
        self.state = os.path.join(work, "runc-state")
        self.bundles = {}
        for name, layout in layouts.items():
            bundle = os.path.join(work, f"bundle-{name}")
            _run(["umoci", "unpack", "--image", f"{layout.layout_path}:latest", bundle])
            config_path = os.path.join(bundle, "config.json")
            with open(config_path, encoding="utf-8") as handle:
                config = json.load(handle)
            config["process"].update(args=["true"], terminal=False)
            with open(config_path, "w", encoding="utf-8") as handle:
                json.dump(config, handle)
            self.bundles[name] = bundle

    def command(self, case: Case) -> List[str]:
        return ["runc", "--root", self.state, "run", "-b", self.bundles[case[0]], f"bench-{secrets.token_hex(4)}"]


def measure_latency(tools: List[Tool], runs: int) -> Dict[Case, Dict[str, List[float]]]:
    results: Dict[Case, Dict[str, List[float]]] = {}
    for round_number in range(runs):
        order = tools[round_number % len(tools) :] + tools[: round_number % len(tools)]
        for image in IMAGES:
            for network in NETWORKS:
                case = (image, network)
                for tool in order:
                    if case not in tool.cases:
                        continue
                    argv, env = tool.command(case), tool.env()
                    started = time.perf_counter()
                    completed = subprocess.run(
                        argv, env=env, capture_output=True, check=False, stdin=subprocess.DEVNULL
                    )
                    elapsed = time.perf_counter() - started
                    if completed.returncode != 0:
                        raise RuntimeError(f"{tool.name}: {' '.join(argv)}: {completed.stderr.decode()[-800:]}")
                    results.setdefault(case, {}).setdefault(tool.name, []).append(elapsed)
        print(f"latency round {round_number + 1}/{runs} done", flush=True)
    return results


def latency_table(results: Dict[Case, Dict[str, List[float]]], tools: List[Tool]) -> Optional[float]:
    """Print the table; return berth's busybox --network none median as a fraction of docker's."""
    names = [tool.name for tool in tools]
    header = f"{'image':<8} {'network':<8}" + "".join(f" {name:>22}" for name in names)
    print("\nrun --rm IMAGE true, median ms (min) and x docker\n" + header + "\n" + "-" * len(header))
    verdict = None
    for image in IMAGES:
        for network in NETWORKS:
            row = results.get((image, network), {})
            docker = statistics.median(row["docker"]) if "docker" in row else None
            cells = []
            for name in names:
                samples = row.get(name)
                if not samples:
                    cells.append(f" {'-':>22}")
                    continue
                median = statistics.median(samples)
                ratio = f" {median / docker:5.2f}x" if docker else ""
                cells.append(f" {median * 1000:8.0f} ({min(samples) * 1000:4.0f}){ratio:>7}")
            print(f"{image:<8} {network:<8}" + "".join(cells))
            if (image, network) == ("busybox", "none") and docker and "berth" in row:
                verdict = statistics.median(row["berth"]) / docker
    return verdict


def measure_memory(tools: List[Tool], count: int) -> Dict[str, Tuple[int, int]]:
    """{tool: (processes found, sum of their PSS in kB)} with *count* idle containers each (one tool at a time)."""
    results = {}
    for tool in tools:
        if not tool.per_container:
            continue
        try:
            pids = tool.idle(count)
            time.sleep(1.0)  # let start-up garbage settle
            results[tool.name] = (len(pids), sum(pss_kb(pid) for pid in pids))
        finally:
            tool.remove_idle()
        print(f"memory of {count} idle {tool.name} containers measured", flush=True)
    return results


def memory_table(results: Dict[str, Tuple[int, int]], tools: List[Tool], count: int) -> Optional[float]:
    print(f"\n{count} idle containers (--network none): PSS of the per-container process")
    print(f"{'tool':<10} {'process':<16} {'found':>5} {'sum MB':>8} {'per container MB':>17} {'x berth':>8}")
    berth = results.get("berth")
    for tool in tools:
        if tool.name not in results:
            continue
        found, total = results[tool.name]
        per = total / max(found, 1) / 1024
        ratio = f"{(total / max(found, 1)) / (berth[1] / max(berth[0], 1)):8.2f}" if berth and berth[1] else ""
        print(f"{tool.name:<10} {tool.per_container:<16} {found:>5} {total / 1024:8.1f} {per:17.2f} {ratio}")
    return berth[1] / max(berth[0], 1) if berth else None


def build_tools(args: argparse.Namespace, registry: Registry, work: str) -> Tuple[List[Tool], List[str]]:
    layouts = {"busybox": images.busybox_images(), "nginx": images.nginx_images()}
    tools: List[Tool] = [Berth(registry)]
    skipped = []
    archives: Dict[str, str] = {}
    if (not args.no_docker or not args.no_podman) and shutil.which("skopeo"):
        archives = {name: docker_archive(layout.layout_path, name, work) for name, layout in layouts.items()}
    starters: List[Tuple[str, bool, str, Callable[[], Tool]]] = [
        ("docker", args.no_docker, "/usr/sbin/dockerd", lambda: Docker(work, archives)),
        ("podman", args.no_podman, "podman", lambda: Podman(work, archives)),
        ("runc", False, "runc", lambda: Runc(work, layouts)),
    ]
    for name, unwanted, binary, start in starters:
        if unwanted:
            skipped.append(f"{name}: not measured (--no-{name})")
        elif not shutil.which(binary) or (name != "runc" and not archives):
            skipped.append(f"{name}: not measured ({binary} or skopeo is not installed)")
        else:
            try:
                tools.append(start())
            except (RuntimeError, OSError) as exc:
                skipped.append(f"{name}: could not be started: {exc}")
    skipped.append("crun: not measured (it refuses this hybrid cgroup host while cgroup v2 lists a controller)")
    return tools, skipped


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=11, help="runs per tool and case (median)")
    parser.add_argument("--idle", type=int, default=50, help="idle containers for the memory measurement")
    parser.add_argument("--only", choices=("latency", "memory"))
    parser.add_argument("--no-docker", action="store_true")
    parser.add_argument("--no-podman", action="store_true")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: sudo .venv/bin/python -m bench.run", file=sys.stderr)
        return 2
    before = host_network_state()
    work = tempfile.mkdtemp(prefix="berth-bench-run-", dir="/var/tmp")
    tools: List[Tool] = []
    status = 0
    ratio: Optional[float] = None
    pss: Optional[float] = None
    try:
        with Registry("plain") as registry:
            with registry.client() as client:
                for name, layout in (("busybox", images.busybox_images()), ("nginx", images.nginx_images())):
                    pusher.push(client, f"library/{name}", layout.image("latest"), "latest", "oci")
            tools, skipped = build_tools(args, registry, work)
            for line in skipped:
                print(line)
            if args.only in (None, "latency"):
                ratio = latency_table(measure_latency(tools, args.runs), tools)
            if args.only in (None, "memory"):
                pss = memory_table(measure_memory(tools, args.idle), tools, args.idle)
    finally:
        for tool in reversed(tools):
            try:
                tool.close()
            except (RuntimeError, OSError) as exc:
                print(f"{tool.name}: clean-up failed: {exc}")
        shutil.rmtree(work, ignore_errors=True)
        restored = restore_host(before)
        if restored:
            print(f"restored on the host: {', '.join(restored)}")
    verdicts = []
    if ratio is not None:
        verdicts.append(f"berth busybox --network none is {ratio:.2f} x docker: "
                        f"{'meets' if ratio <= TARGET_RATIO else 'MISSES'} the <= {TARGET_RATIO} target")  # fmt: skip
        status |= ratio > TARGET_RATIO
    if pss is not None:
        verdicts.append(f"berth monitor {pss / 1024:.2f} MB PSS per container: "
                        f"{'meets' if pss <= TARGET_PSS_KB else 'MISSES'} the <= 3 MB target")  # fmt: skip
        status |= pss > TARGET_PSS_KB
    print("\n" + "\n".join(verdicts))
    return int(status)


if __name__ == "__main__":
    sys.exit(main())
