"""``run -d -p 88:80 nginx`` to the first HTTP 200: berth vs docker, in the same run.

Both start the same image (Debian + nginx-light from the test fixtures), already
in their stores, and the clock runs from the start of the ``run -d`` command to
the first ``200`` answer on 127.0.0.1 of the published port.  Rounds alternate
berth and docker so the machine's noise falls on both; each figure is a median.

* berth: ``bin/berth run -d -p PORT:80 nginx`` in an isolated :class:`BerthEnv`
  (own data root, bridge and subnet), the image pulled once from a local
  registry through the mirror entry;
* docker: Debian's dockerd with its default bridge networking, iptables rules
  and docker-proxy -- started inside a **private network namespace**, so its
  docker0, its rules and the FORWARD policy it sets to DROP stay in there and go
  with it; the image comes in with ``docker load`` (the namespace cannot reach
  the host's loopback registry) and the HTTP client runs inside that namespace.
  Only the pids this benchmark started are stopped.  The host's ip_forward,
  iptables FORWARD policy and bridge netfilter sysctls are compared before and
  after, and restored should they have moved.
"""

import http.client
import os
import shutil
import socket
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Tuple

from support import images, pusher
from support.berth_env import BerthEnv
from support.procs import free_port
from support.registry import Registry

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns
from bench.peers import PrivateDockerd, docker_archive, host_network_state, private_netns, restore_host
from bench.peers import run as _run

DOCKER = "/usr/bin/docker"
TARGET_RATIO = 0.5


def _http_status(port: int, inside: Optional[str]) -> int:
    """One ``GET /`` on 127.0.0.1:port, from the namespace *inside* when given; the status code."""
    if inside:
        with netns.entered(inside):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(2)
        sock.connect(("127.0.0.1", port))
        connection = http.client.HTTPConnection("127.0.0.1", port)
        connection.sock = sock
        connection.request("GET", "/")
        return connection.getresponse().status


def time_to_first_200(start: Callable[[], None], port: int, inside: Optional[str] = None) -> Tuple[float, float]:
    """(seconds until *start* returned, seconds until the first 200), both from the start of *start*."""
    began = time.perf_counter()
    start()
    returned = time.perf_counter() - began
    deadline = began + 60
    while time.perf_counter() < deadline:
        try:
            if _http_status(port, inside) == 200:
                return returned, time.perf_counter() - began
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.005)
    raise RuntimeError(f"nothing answered 200 on port {port} within 60 s")


class DockerSide:
    """dockerd in a private namespace with the nginx image loaded."""

    def __init__(self, work: str, nginx: images.FixtureImages) -> None:
        self.netns = private_netns(os.path.join(work, "netns"))
        self.daemon = PrivateDockerd(self.netns)
        self.cli = [DOCKER, "-H", self.daemon.docker_host]
        try:
            self.daemon.start()
            archive = docker_archive(nginx.layout_path, "nginx", work)
            _run([*self.cli, "load", "-q", "-i", archive])
            os.unlink(archive)
        except BaseException:
            self.close()
            raise

    def run(self, name: str, port: int) -> None:
        _run([*self.cli, "run", "-d", "--name", name, "-p", f"{port}:80", "nginx:latest"])

    def remove(self, name: str) -> None:
        _run([*self.cli, "rm", "-f", name])

    def close(self) -> None:
        try:
            self.daemon.cleanup()  # stops our pids, unmounts and removes its directory
        finally:
            netns.delete(self.netns)


class BerthSide:
    """An isolated Berth host with the nginx image pulled from a local registry through the mirror entry."""

    def __init__(self, nginx: images.FixtureImages) -> None:
        self.registry = Registry("plain").start()
        with self.registry.client() as client:
            pusher.push(client, "library/nginx", nginx.image("latest"), "latest", "oci")
        self.env = BerthEnv(mirrors=[self.registry.url])
        self.env.berth("pull", "nginx")

    def run(self, name: str, port: int) -> None:
        self.env.berth("run", "-d", "--name", name, "-p", f"{port}:80", "nginx")

    def remove(self, name: str) -> None:
        self.env.berth("rm", "-f", name)

    def close(self) -> None:
        try:
            problems = self.env.destroy()
            if problems:
                print(f"berth clean-up problems: {problems}")
        finally:
            self.registry.close()


def measure(rounds: int, with_docker: bool) -> Dict[str, List[Tuple[float, float]]]:
    nginx = images.nginx_images()
    results: Dict[str, List[Tuple[float, float]]] = {"berth": [], "docker": []}
    work = tempfile.mkdtemp(prefix="bench-walk-", dir="/var/tmp")
    berth = BerthSide(nginx)
    docker: Optional[DockerSide] = None
    before = host_network_state()
    try:
        if with_docker:
            docker = DockerSide(work, nginx)
        for index in range(rounds):
            name = f"bench-web-{index}"
            port = free_port()
            results["berth"].append(time_to_first_200(lambda: berth.run(name, port), port))  # noqa: B023
            berth.remove(name)
            if docker is not None:
                results["docker"].append(
                    time_to_first_200(lambda: docker.run(name, 88), 88, inside=docker.netns)  # noqa: B023
                )
                docker.remove(name)
    finally:
        try:
            if docker is not None:
                docker.close()
        finally:
            berth.close()
            shutil.rmtree(work, ignore_errors=True)
            restored = restore_host(before)
            if restored:
                print(f"restored on the host: {', '.join(restored)}")
    return results


def report(results: Dict[str, List[Tuple[float, float]]]) -> int:
    print("run -d -p PORT:80 nginx, image present   command returned   first HTTP 200   (median ms)")
    medians = {}
    for tool, samples in results.items():
        if not samples:
            print(f"{tool:<42}{'not measured':>17}")
            continue
        returned = statistics.median(sample[0] for sample in samples) * 1000
        first = statistics.median(sample[1] for sample in samples) * 1000
        medians[tool] = first
        print(f"{tool:<42}{returned:>17.0f}{first:>17.0f}")
    if "docker" not in medians:
        print("berth/docker: not measured (dockerd not started)")
        return 0
    ratio = medians["berth"] / medians["docker"]
    verdict = "meets" if ratio <= TARGET_RATIO else "MISSES"
    print(f"berth/docker time to first 200 = {ratio:.2f}x ({verdict} the target of {TARGET_RATIO}x)")
    return 0


def main(rounds: int = 5, with_docker: bool = True) -> int:
    docker_ok = with_docker and os.access(DOCKER, os.X_OK) and os.access("/usr/sbin/dockerd", os.X_OK)
    if with_docker and not docker_ok:
        print("docker: not measured (docker.io is not installed)")
    return report(measure(rounds, docker_ok))
