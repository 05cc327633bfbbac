"""Pull benchmark: cold pulls of busybox and Debian+nginx from a local registry, berth vs its peers.

    sudo .venv/bin/python -m bench.pull [--runs 5] [--warm-runs 15] [--no-docker]

Measured in one process, interleaved round by round so that the machine's
noise falls on every tool alike; each cell is the median of ``--runs``:

* ``berth``  -- ``bin/berth pull`` (download, verify, unpack every layer), cold:
  the image is removed (``rmi``, its layers collected) before each run;
* ``skopeo`` -- ``skopeo copy docker://... dir:...``: download only, the floor
  set by the network and the registry;
* ``docker`` -- Debian's dockerd, started here with its own data root and
  socket under /var/tmp (never the system's), ``docker rmi`` before each run;
* ``podman`` -- ``podman pull`` with its own storage root, when installed.

Then the warm re-pull of berth: the image is present, the registry is asked
whether the tag moved (the command's start-up, imports and one manifest
request).  Targets: cold nginx at most 0.8 x docker, warm under 150 ms.
The fixture images are built (or taken from the cache) by tests/support.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

from support import images, pusher
from support.berth_env import BerthEnv
from support.podman import Podman as PrivatePodman
from support.registry import Registry

from bench.peers import run as _run

DOCKER = "/usr/bin/docker"
IMAGES = ("busybox", "nginx")
TARGET_COLD_RATIO = 0.8
TARGET_WARM_SECONDS = 0.150


def _load() -> str:
    """The machine's load averages and cores: read the table against them (the lab machine is shared)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def _timed(action: Callable[[], None]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


class Tool:
    """One puller: ``reset(ref)`` makes the next pull cold (untimed), ``pull(ref)`` is timed."""

    name = ""

    def reset(self, ref: str) -> None:
        raise NotImplementedError

    def pull(self, ref: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Berth(Tool):
    name = "berth"

    def __init__(self) -> None:
        self.env = BerthEnv()

    def reset(self, ref: str) -> None:
        present = self.env.berth("images", "-q").stdout.split()
        if present:
            self.env.berth("rmi", *present)
        if self.env.berth("images", "-q").stdout.strip():
            raise RuntimeError("berth still lists images after rmi")

    def pull(self, ref: str) -> None:
        self.env.berth("pull", ref)

    def close(self) -> None:
        self.env.destroy()


class Skopeo(Tool):
    name = "skopeo (download only)"

    def __init__(self) -> None:
        self.work = tempfile.mkdtemp(prefix="berth-bench-skopeo-", dir="/var/tmp")

    def reset(self, ref: str) -> None:
        shutil.rmtree(os.path.join(self.work, "dir"), ignore_errors=True)

    def pull(self, ref: str) -> None:
        _run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{ref}", f"dir:{self.work}/dir"])

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)


class Docker(Tool):
    name = "docker"

    def __init__(self) -> None:
        from support.dockerd import Dockerd

        self.daemon = Dockerd()
        self.daemon.start()
        self.cli = [DOCKER, "-H", self.daemon.docker_host]

    def reset(self, ref: str) -> None:
        present = subprocess.run([*self.cli, "images", "-q"], capture_output=True, text=True, check=True).stdout.split()
        if present:
            subprocess.run([*self.cli, "rmi", "-f", *present], capture_output=True, check=False)
        remaining = subprocess.run([*self.cli, "images", "-q"], capture_output=True, text=True, check=True)
        if remaining.stdout.strip():
            raise RuntimeError(f"docker still lists images after rmi: {remaining.stdout}")

    def pull(self, ref: str) -> None:
        _run([*self.cli, "pull", "-q", ref])

    def close(self) -> None:
        self.daemon.cleanup()


class Podman(Tool):
    name = "podman"

    def __init__(self) -> None:
        self.podman = PrivatePodman(tempfile.mkdtemp(prefix="berth-bench-podman-", dir="/var/tmp"))

    def reset(self, ref: str) -> None:
        self.podman("rmi", "-f", ref, check=False)

    def pull(self, ref: str) -> None:
        self.podman("pull", "-q", "--tls-verify=false", ref)

    def close(self) -> None:
        self.podman.close()


def _tools(with_docker: bool) -> List[Tool]:
    tools: List[Tool] = [Berth(), Skopeo()]
    if with_docker and os.path.exists(DOCKER) and os.path.exists("/usr/sbin/dockerd"):
        tools.append(Docker())
    else:
        print("docker: not measured (dockerd not installed or --no-docker)")
    if shutil.which("podman"):
        tools.append(Podman())
    else:
        print("podman: not measured (not installed here: apt-get install podman)")
    return tools


def _table(results: Dict[str, Dict[str, List[float]]], tools: List[Tool]) -> None:
    reference = "docker" if any(tool.name == "docker" for tool in tools) else None
    header = f"{'image':<8} {'tool':<24} {'median s':>9} {'min s':>7} {'max s':>7}"
    print("\n" + header + (f" {'x docker':>9}" if reference else ""))
    print("-" * (len(header) + (10 if reference else 0)))
    for image in IMAGES:
        base = statistics.median(results[image][reference]) if reference else None
        for tool in tools:
            samples = results[image][tool.name]
            median = statistics.median(samples)
            line = f"{image:<8} {tool.name:<24} {median:>9.2f} {min(samples):>7.2f} {max(samples):>7.2f}"
            if base:
                line += f" {median / base:>9.2f}"
            print(line)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=5, help="cold pulls per tool and image (median)")
    parser.add_argument("--warm-runs", type=int, default=15, help="warm re-pulls of berth (median)")
    parser.add_argument("--no-docker", action="store_true", help="do not start dockerd")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("run as root: sudo .venv/bin/python -m bench.pull", file=sys.stderr)
        return 2
    fixtures = {"busybox": images.busybox_images(), "nginx": images.nginx_images()}
    sizes = {name: sum(layer.size for layer in fx.image().layers) for name, fx in fixtures.items()}
    with Registry("plain") as registry:
        client = registry.client()
        for name, fixture in fixtures.items():
            pusher.push(client, f"library/{name}", fixture.get("latest"))
        client.close()
        refs = {name: f"{registry.host}/library/{name}:latest" for name in IMAGES}
        print(
            f"registry {registry.url}; compressed sizes: "
            + ", ".join(f"{n} {s / 1e6:.1f} MB" for n, s in sizes.items())
            + f"; {_load()}"
        )
        tools = _tools(not args.no_docker)
        results: Dict[str, Dict[str, List[float]]] = {image: {tool.name: [] for tool in tools} for image in IMAGES}
        warm: List[float] = []
        try:
            for round_number in range(args.runs):
                order = tools[round_number % len(tools) :] + tools[: round_number % len(tools)]
                for image in IMAGES:
                    for tool in order:
                        tool.reset(refs[image])
                        results[image][tool.name].append(_timed(lambda t=tool, i=image: t.pull(refs[i])))
                print(f"round {round_number + 1}/{args.runs} done", flush=True)
            berth = tools[0]
            berth.pull(refs["nginx"])
            warm = [_timed(lambda: berth.pull(refs["nginx"])) for _run in range(args.warm_runs)]
        finally:
            for tool in tools:
                tool.close()
    _table(results, tools)
    print(f"at the end: {_load()}")
    warm_median = statistics.median(warm)
    print(f"\nberth warm re-pull of nginx (present): median {warm_median * 1000:.0f} ms, min {min(warm) * 1000:.0f} ms")
    verdicts = [f"warm {'meets' if warm_median < TARGET_WARM_SECONDS else 'MISSES'} the < 150 ms target"]
    if "docker" in results["nginx"]:
        ratio = statistics.median(results["nginx"]["berth"]) / statistics.median(results["nginx"]["docker"])
        verdicts.insert(0, f"cold nginx {ratio:.2f} x docker: {'meets' if ratio <= TARGET_COLD_RATIO else 'MISSES'}"
                        " the <= 0.8 target")  # fmt: skip
    print("; ".join(verdicts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
