"""Ansible benchmark: the second (no-op) run of a play of 10 containers, berth vs community.docker.

    sudo .venv/bin/python -m bench.ansible [--runs 7] [--no-docker] [--pipelining] [--baseline DIR]

One play declares 10 containers (5 nginx, 5 busybox httpd), each with a few
options: environment, a bind-mounted volume, memory/CPU/pids limits, a
restart policy on some, published ports where the network allows.  Each play
runs once to create its containers (untimed); then the local registry is
*stopped* and every play is timed ``--runs`` times, interleaved round by round
so that the machine's noise falls on all alike.  Each timed run must end with
``changed=0`` and no failure -- which also proves that a no-op run asks no
registry anything (``pull: missing`` with the image present).

The plays, all run by this checkout's ``ansible-playbook`` (one controller,
ansible-core 2.19) against localhost, with the checkout's Python as the
modules' interpreter:

* ``berth``            -- berth.containers.container on an isolated Berth host
  (tests/support/berth_env.py): bridge network, published ports;
* ``berth (net none)`` -- the same with ``network_mode: none`` and no ports:
  option for option the docker play;
* ``docker``           -- community.docker.docker_container against Debian's
  dockerd, started here with its own root, socket and cgroup parent,
  ``--bridge=none --iptables=false`` (tests/support/dockerd.py), hence
  ``network_mode: none``.  community.docker comes from PyPI's ``ansible``
  package, installed once into a separate virtual environment under /var/tmp;
  only its collections are used;
* ``floor``            -- 10 ``ansible.builtin.ping`` tasks: Ansible's own cost
  (controller start-up, per-task connection work, the module wrapper).

The collection is copied at start, so that edits in the checkout during the
measurement cannot change the payload.  Columns: wall time and CPU time
(ansible-playbook and everything it ran; for docker plus what dockerd and its
containerd spent meanwhile), and the module's own part per task
``(play - floor) / 10``.  Target: berth's no-op run at most 0.5 x docker's.
Since every play pays the floor, the whole-play ratio cannot go below
floor / docker whatever a module does; the verdict prints both ratios.

A container found not running before a timed run (it died by itself: that
is no module's doing) is reported as an incident and brought back by an
untimed run.  ``--baseline DIR`` adds the berth play with the collection in
DIR (``git archive REV galaxy.yml meta plugins | tar -x -C DIR``): before and
after in the same measurement.
"""

import argparse
import contextlib
import fcntl
import json
import os
import resource
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from support import images, pusher
from support.berth_env import BerthEnv
from support.berth_play import PlayResult, environment
from support.registry import Registry

from bench import CHECKOUT

ANSIBLE_PACKAGE = "ansible==12.3.0"  # ships community.docker 4.8.5; pairs with ansible-core 2.19, the controller here
COMMUNITY_VENV = "/var/tmp/berth-bench-ansible-12.3.0"
DOCKER = "/usr/bin/docker"
DOCKERD = "/usr/sbin/dockerd"
PLAYBOOK = os.path.join(os.path.dirname(sys.executable), "ansible-playbook")
COLLECTION_FILES = ("galaxy.yml", "meta", "plugins")
TASKS = 10
TARGET_RATIO = 0.5
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the plays ---------------------------------------------------------------------------


def containers(data_dir: str, ports: bool) -> List[Dict[str, Any]]:
    """The 10 containers, in option names that both modules understand alike."""
    declared: List[Dict[str, Any]] = []
    for number in range(1, TASKS // 2 + 1):
        web: Dict[str, Any] = {
            "name": f"web{number}",
            "image": "nginx",
            "env": {"SITE": f"site{number}", "TIER": "front"},
            "volumes": [f"{data_dir}/site{number}:/usr/share/nginx/html:ro"],
            "memory": "128m",
            "pids_limit": 64,
            "restart_policy": "unless-stopped" if number % 2 else "no",
        }
        worker: Dict[str, Any] = {
            "name": f"worker{number}",
            "image": "busybox",
            "command": ["httpd", "-f", "-p", "8080", "-h", "/work"],
            "env": {"QUEUE": f"queue{number}"},
            "volumes": [f"{data_dir}/work{number}:/work"],
            "memory": "32m",
            "cpus": 0.5,
            "pids_limit": 16,
        }
        if ports:
            web["published_ports"] = ["127.0.0.1::80"]
            worker["published_ports"] = ["127.0.0.1::8080"]
        else:
            web["network_mode"] = worker["network_mode"] = "none"
        declared += [web, worker]
    return declared


def make_data(data_dir: str) -> None:
    for number in range(1, TASKS // 2 + 1):
        for kind in ("site", "work"):
            directory = os.path.join(data_dir, f"{kind}{number}")
            os.makedirs(directory)
            with open(os.path.join(directory, "index.html"), "w", encoding="utf-8") as handle:
                handle.write(f"{kind} {number}\n")


def play(module: str, declared: List[Dict[str, Any]], common: Dict[str, Any]) -> List[Dict[str, Any]]:
    tasks = [{"name": f"container {item['name']}", module: {**item, **common}} for item in declared]
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def floor_play() -> List[Dict[str, Any]]:
    tasks = [{"name": f"ping {number}", "ansible.builtin.ping": {}} for number in range(TASKS)]
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


class Variant:
    """One playbook in its own work directory; :meth:`run` is what is timed."""

    def __init__(self, name: str, work: str, plays: List[Dict[str, Any]], extra_env: Dict[str, str]) -> None:
        self.name = name
        self.work = work
        os.makedirs(work)
        self.playbook = os.path.join(work, "play.yml")
        with open(self.playbook, "w", encoding="utf-8") as handle:
            json.dump(plays, handle, indent=1)
        self.env = environment(work, extra_env)
        self.daemon_pids: List[int] = []  # processes outside our children that work for this play
        # The play's containers that are not running, each with what its runtime says about it.
        self.stopped: Callable[[], List[str]] = list

    def run(self) -> Tuple[float, float, PlayResult]:
        """(wall seconds, CPU seconds, result) of one ansible-playbook run."""
        argv = [PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={sys.executable}"]
        daemons_before = sum(_cpu_of(pid) for pid in self.daemon_pids)
        children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        completed = subprocess.run(
            [*argv, self.playbook], cwd=self.work, env=self.env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = children.ru_utime - children_before.ru_utime + children.ru_stime - children_before.ru_stime
        cpu += sum(_cpu_of(pid) for pid in self.daemon_pids) - daemons_before
        return wall, cpu, PlayResult(completed.returncode, completed.stdout + completed.stderr)


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process (not of its children)."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def expect(variant: Variant, result: PlayResult, changed: Optional[int]) -> None:
    """Fail loudly unless the play succeeded (with *changed* tasks, when given), saying what the modules did."""
    recap = result.recap("localhost") if result.returncode == 0 else {}
    if result.returncode == 0 and not recap["failed"] and (changed is None or recap["changed"] == changed):
        return
    got = recap or f"exit status {result.returncode}"
    reported = [line[:3000] for line in result.output.splitlines() if line.startswith(("changed:", "fatal:"))]
    raise RuntimeError(
        f"{variant.name}: expected changed={changed}, got {got}:\n{result.output[-5000:]}\n"
        "(ANSIBLE_VERBOSITY=1 in the environment shows what each task did)\n" + "\n".join(reported)
    )


def berth_stopped(env: BerthEnv, names: List[str]) -> Callable[[], List[str]]:
    def stopped() -> List[str]:
        found = []
        for container in env.runtime().list():
            state = container.observe()
            if container.name in names and state["status"] != "running":
                found.append(f"{container.name}: {state['status']} ({state.get('exit_code')}) {state.get('error', '')}")
        return found

    return stopped


def docker_stopped(docker: "DockerSide", names: List[str]) -> Callable[[], List[str]]:
    def stopped() -> List[str]:
        listing = subprocess.run(
            [*docker.cli, "ps", "-a", "--format", "{{.Names}} {{.Status}}"],
            capture_output=True,
            text=True,
            check=True,
        )
        rows = [line.split(" ", 1) for line in listing.stdout.splitlines()]
        return [f"{name}: {status}" for name, status in rows if name in names and not status.startswith("Up")]

    return stopped


def snapshot_collection(work: str, source_root: str = CHECKOUT) -> str:
    """A copy of the collection as it is now; returns the directory to put on ANSIBLE_COLLECTIONS_PATH."""
    base = tempfile.mkdtemp(prefix="collections-", dir=work)
    target = os.path.join(base, "ansible_collections", "berth", "containers")
    os.makedirs(target)
    for name in COLLECTION_FILES:
        source = os.path.join(source_root, name)
        if os.path.isdir(source):
            shutil.copytree(source, os.path.join(target, name), ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return base


# -- the peer ------------------------------------------------------------------------------


@contextlib.contextmanager
def _flock(path: str) -> Iterator[None]:
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def community_collections() -> str:
    """The directory holding ``ansible_collections/community/docker``: PyPI's ansible, installed once."""
    marker = os.path.join(COMMUNITY_VENV, ".complete")
    with _flock(COMMUNITY_VENV + ".lock"):
        if not os.path.exists(marker):
            shutil.rmtree(COMMUNITY_VENV, ignore_errors=True)
            print(f"installing {ANSIBLE_PACKAGE} into {COMMUNITY_VENV} (once, about a minute)", flush=True)
            subprocess.run([sys.executable, "-m", "venv", COMMUNITY_VENV], check=True)
            # Only its collections are used (the controller is this checkout's): no dependencies needed.
            pip = os.path.join(COMMUNITY_VENV, "bin", "pip")
            subprocess.run([pip, "install", "-q", "--no-deps", ANSIBLE_PACKAGE], check=True)
            with open(marker, "w", encoding="utf-8") as handle:
                handle.write(ANSIBLE_PACKAGE + "\n")
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    site = os.path.join(COMMUNITY_VENV, "lib", version, "site-packages")
    if not os.path.isfile(os.path.join(site, "ansible_collections", "community", "docker", "MANIFEST.json")):
        raise RuntimeError(f"community.docker is missing from {site}: remove {COMMUNITY_VENV} and run again")
    return site


def community_docker_version(site: str) -> str:
    path = os.path.join(site, "ansible_collections", "community", "docker", "MANIFEST.json")
    with open(path, encoding="utf-8") as handle:
        return str(json.load(handle)["collection_info"]["version"])


class DockerSide:
    """dockerd with its own root and socket, the registry as its docker.io mirror, its own cgroup parent."""

    def __init__(self, mirror_url: str) -> None:
        from support.dockerd import Dockerd

        self.cgroup_parent = f"/berth-bench-{secrets.token_hex(3)}"
        self.daemon = Dockerd({"registry-mirrors": [mirror_url], "cgroup-parent": self.cgroup_parent})
        self.daemon.start()
        self.cli = [DOCKER, "-H", self.daemon.docker_host]

    def pids(self) -> List[int]:
        """dockerd and its containerd: where the docker play's work happens outside the module."""
        assert self.daemon.process is not None
        containerd = self.daemon._containerd_pid()  # pylint: disable=protected-access
        return [self.daemon.process.pid] + ([containerd] if containerd else [])

    def close(self) -> None:
        ids = subprocess.run([*self.cli, "ps", "-aq"], capture_output=True, text=True, check=False).stdout.split()
        if ids:
            subprocess.run([*self.cli, "rm", "-f", *ids], capture_output=True, check=False)
        self.daemon.cleanup()
        for controller in os.listdir("/sys/fs/cgroup"):
            with contextlib.suppress(OSError):
                os.rmdir(os.path.join("/sys/fs/cgroup", controller, self.cgroup_parent.lstrip("/")))


# -- measuring and reporting ---------------------------------------------------------------


def _table(wall: Dict[str, List[float]], cpu: Dict[str, List[float]]) -> None:
    reference = "docker" if "docker" in wall else None
    floor_wall, floor_cpu = statistics.median(wall["floor"]), statistics.median(cpu["floor"])
    header = f"{'play (10 containers, no-op run)':<32} {'wall s':>7} {'min':>6} {'max':>6} {'CPU s':>6}"
    header += f" {'own ms/task':>11} {'own CPU ms':>10}"
    if reference:
        header += f" {'wall x docker':>13} {'own x docker':>12}"
    print("\n" + header)
    print("-" * len(header))
    own = {name: (statistics.median(samples) - floor_wall) / TASKS for name, samples in wall.items()}
    for name, samples in wall.items():
        median, cpu_median = statistics.median(samples), statistics.median(cpu[name])
        line = f"{name:<32} {median:>7.2f} {min(samples):>6.2f} {max(samples):>6.2f} {cpu_median:>6.2f}"
        if name == "floor":
            line += f" {'':>11} {'':>10}"
        else:
            line += f" {own[name] * 1000:>11.0f} {(cpu_median - floor_cpu) / TASKS * 1000:>10.0f}"
        if reference:
            ratio = median / statistics.median(wall[reference])
            line += f" {ratio:>13.2f}" + (f" {own[name] / own[reference]:>12.2f}" if name != "floor" else "")
        print(line)
    print(f"own: (play - floor) / {TASKS}, the module's part of each task beyond what Ansible itself costs")


def _verdict(wall: Dict[str, List[float]]) -> None:
    if "docker" not in wall:
        return
    floor, docker = statistics.median(wall["floor"]), statistics.median(wall["docker"])
    for name in ("berth", "berth (net none)"):
        ratio = statistics.median(wall[name]) / docker
        own_ratio = (statistics.median(wall[name]) - floor) / (docker - floor)
        print(
            f"{name}: {ratio:.2f} x docker's wall time ({'meets' if ratio <= TARGET_RATIO else 'MISSES'} the"
            f" <= {TARGET_RATIO} target; Ansible's own floor alone is {floor / docker:.2f} x docker),"
            f" {own_ratio:.2f} x docker's own part"
        )
    print("every timed run: changed=0, failed=0, with the registry stopped")


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=7, help="timed no-op runs per play (median)")
    parser.add_argument("--no-docker", action="store_true", help="do not start dockerd")
    parser.add_argument("--pipelining", action="store_true", help="ANSIBLE_PIPELINING=1 for every play")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also time the berth play with the collection in DIR (e.g. `git archive REV galaxy.yml meta plugins`)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: sudo .venv/bin/python -m bench.ansible", file=sys.stderr)
        return 2
    with_docker = not args.no_docker and os.access(DOCKER, os.X_OK) and os.access(DOCKERD, os.X_OK)
    site = community_collections() if with_docker else None
    work = tempfile.mkdtemp(prefix="berth-bench-ansible-", dir="/var/tmp")
    collections = snapshot_collection(work)
    extra = {"ANSIBLE_PIPELINING": "1" if args.pipelining else "0", "ANSIBLE_COLLECTIONS_PATH": collections}
    fixtures = [images.busybox_images(), images.nginx_images()]
    berth: Optional[BerthEnv] = None
    docker: Optional[DockerSide] = None
    wall: Dict[str, List[float]] = {}
    cpu: Dict[str, List[float]] = {}
    incidents: List[str] = []
    try:
        with Registry("plain") as registry:
            with registry.client() as client:
                for fixture in fixtures:
                    pusher.push(client, f"library/{fixture.name}", fixture.get("latest"))
            data_dir = os.path.join(work, "data")
            make_data(data_dir)
            berth = BerthEnv(mirrors=[registry.url])
            berth.settings["unit-dir"] = os.path.join(berth.base, "units")  # never /etc/systemd/system
            berth.write()
            with_ports = containers(data_dir, ports=True)
            without = [{**item, "name": item["name"] + "-none"} for item in containers(data_dir, ports=False)]
            variants = []
            berth_plays = [("berth", with_ports, collections), ("berth (net none)", without, collections)]
            if args.baseline:
                baseline = [{**item, "name": item["name"] + "-base"} for item in with_ports]
                berth_plays.append(("berth (baseline)", baseline, snapshot_collection(work, args.baseline)))
            for name, declared, collection in berth_plays:
                variant = Variant(
                    name,
                    os.path.join(work, name.split()[0] + str(len(variants))),
                    play("berth.containers.container", declared, {"config": berth.config_path}),
                    {**extra, "ANSIBLE_COLLECTIONS_PATH": collection},
                )
                variant.stopped = berth_stopped(berth, [item["name"] for item in declared])
                variants.append(variant)
            if site is not None:
                docker = DockerSide(registry.url)
                declared = containers(data_dir, ports=False)
                variant = Variant(
                    "docker",
                    os.path.join(work, "docker"),
                    play("community.docker.docker_container", declared, {"docker_host": docker.daemon.docker_host}),
                    {**extra, "ANSIBLE_COLLECTIONS_PATH": collections + os.pathsep + site},
                )
                variant.daemon_pids = docker.pids()
                variant.stopped = docker_stopped(docker, [item["name"] for item in declared])
                variants.append(variant)
                print(f"community.docker {community_docker_version(site)} (from {ANSIBLE_PACKAGE}), dockerd 20.10")
            else:
                print("docker: not measured (dockerd not installed, or --no-docker)")
            variants.append(Variant("floor", os.path.join(work, "floor"), floor_play(), extra))
            for variant in variants:
                seconds, _cpu, result = variant.run()
                expect(variant, result, None if variant.name == "floor" else TASKS)
                print(f"{variant.name}: first run (creates, pulls) {seconds:.1f} s", flush=True)
            registry.stop()  # a no-op run must not need it
            wall = {variant.name: [] for variant in variants}
            cpu = {variant.name: [] for variant in variants}
            for round_number in range(args.runs):
                shift = round_number % len(variants)
                for variant in variants[shift:] + variants[:shift]:
                    stopped = variant.stopped()
                    if stopped:
                        # Not the module's doing: reported, the containers brought back untimed, the round goes on.
                        incidents.append(f"{variant.name}, round {round_number + 1}: " + "; ".join(stopped))
                        print(f"WARNING: containers stopped by themselves: {incidents[-1]}", flush=True)
                        expect(variant, variant.run()[2], len(stopped))
                    seconds, cpu_seconds, result = variant.run()
                    expect(variant, result, 0)
                    wall[variant.name].append(seconds)
                    cpu[variant.name].append(cpu_seconds)
                print(f"round {round_number + 1}/{args.runs} done", flush=True)
    finally:
        if docker is not None:
            docker.close()
        if berth is not None:
            problems = berth.destroy()
            if problems:
                print("berth clean-up problems: " + "; ".join(problems), file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)
    _table(wall, cpu)
    _verdict(wall)
    for incident in incidents:
        print(f"incident (untimed restart before the run): {incident}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
