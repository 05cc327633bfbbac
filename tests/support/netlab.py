"""A private network lab for tests and benchmarks of the network stage.

:class:`Lab` gives each test its own bridge (``bt<random>``), subnet
(``10.231.<random>.0/24``) and ``exec_root`` (under /run), so tests never
touch the demo's ``berth0`` or another engineer's lab.  Stand-in containers
are network namespaces created by the runtime, with ``standin_server.py``
running inside them (started through ``nsenter``, stopped by pid).
:meth:`Lab.snapshot` lists everything berth made for *this* lab -- veths,
bridge ports, nft/iptables rules, leases, namespace handles -- so a test can
assert that nothing is left.  Traffic only goes to 127.0.0.1, the host's own
addresses and the lab's namespaces.
"""

import contextlib
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence

from ansible_collections.berth.containers.plugins.module_utils.runtime import config as berth_config
from ansible_collections.berth.containers.plugins.module_utils.runtime import ipam, netns, network

_COUNTER = re.compile(r"counter packets \d+ bytes \d+")
SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "standin_server.py")


def tcp_request(host: str, port: int, payload: bytes = b"", timeout: float = 5.0) -> bytes:
    """Connect, send *payload* (if any), read until the peer closes."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        if payload:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def udp_request(host: str, port: int, payload: bytes = b"ping", timeout: float = 3.0) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(payload, (host, port))
        return sock.recvfrom(65536)[0]


def tcp_request_from(netns_path: str, host: str, port: int, timeout: float = 5.0) -> bytes:
    """A TCP request from inside a namespace: a socket belongs to the namespace it was created in."""
    with netns.entered(netns_path):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with sock:
        sock.settimeout(timeout)
        sock.connect((host, port))
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks)
            chunks.append(data)


def host_address() -> str:
    """A non-loopback IPv4 address of this host (traffic to it stays on the host)."""
    out = subprocess.run(["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True).stdout
    for link in json.loads(out):
        if link["ifname"] == "lo" or link["ifname"].startswith(("bt", "vb", "berth")):
            continue
        for info in link.get("addr_info", []):
            if info.get("scope") == "global":
                return str(info["local"])
    raise AssertionError("this host has no global IPv4 address to test with")


@dataclass
class StandIn:
    """A stand-in container: its id, namespace handle, attachment and server process."""

    container_id: str
    netns: str
    attachment: network.Attachment
    server: Optional[subprocess.Popen] = None
    servers: List[subprocess.Popen] = field(default_factory=list)

    @property
    def ip(self) -> str:
        return self.attachment.ip

    def host_port(self, container_port: int, protocol: str = "tcp") -> int:
        for port in self.attachment.ports:
            if port.container_port == container_port and port.protocol == protocol:
                return port.host_port
        raise AssertionError(f"{container_port}/{protocol} is not published: {self.attachment.ports}")


def _free_subnet() -> ipaddress.IPv4Interface:
    routes = subprocess.run(["ip", "-j", "-4", "route"], capture_output=True, text=True, check=True).stdout
    used = set()
    for route in json.loads(routes):
        dst = route.get("dst", "")
        if dst and dst != "default":
            used.add(ipaddress.IPv4Network(dst if "/" in dst else f"{dst}/32", strict=False))
    for _attempt in range(100):
        candidate = ipaddress.IPv4Interface(f"10.231.{random.randint(0, 255)}.1/24")
        if not any(candidate.network.overlaps(network_) for network_ in used):
            return candidate
    raise AssertionError("no free 10.231.x.0/24 subnet for a test bridge")


class Lab:
    """One private bridge with its own exec_root; use as a context manager (cleans up on failure too)."""

    def __init__(self, backend: str = "nftables", exec_root: Optional[str] = None, **overrides: Any) -> None:
        token = secrets.token_hex(3)
        self.bridge = f"bt{token}"
        self.owns_exec_root = exec_root is None
        self.exec_root = exec_root or tempfile.mkdtemp(prefix=f"berth-net-{token}-", dir="/run")
        settings: Dict[str, Any] = {
            "exec_root": self.exec_root,
            "data_root": os.path.join(self.exec_root, "data"),
            "bridge": self.bridge,
            "bip": str(_free_subnet()),
            "ip_forward": False,
            "ip_masq": True,
            "firewall_backend": backend,
        }
        settings.update(overrides)
        self.config = berth_config.DaemonConfig(**settings)
        self.net = network.BridgeNetwork(self.config)
        self.ids: set = set()
        self.standins: List[StandIn] = []

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    @property
    def lease_file(self) -> str:
        return ipam.lease_paths(self.exec_root, self.bridge)["file"]

    def new_id(self) -> str:
        container_id = secrets.token_hex(32)
        self.ids.add(container_id)
        return container_id

    def start(
        self,
        ports: Sequence[str] = (),
        *,
        name: str = "",
        tcp: Iterable[int] = (8080,),
        udp: Iterable[int] = (),
        echo: bool = False,
        serve: bool = True,
        container_id: Optional[str] = None,
        **connect: Any,
    ) -> StandIn:
        """Create a namespace, connect it, and (with *serve*) run the stand-in server in it."""
        container_id = container_id or self.new_id()
        self.ids.add(container_id)
        path = self.net.create_netns(container_id)
        try:
            attachment = self.net.connect(container_id, path, ports=ports, name=name, **connect)
        except BaseException:
            netns.delete(path)
            raise
        standin = StandIn(container_id, path, attachment)
        self.standins.append(standin)
        if serve:
            standin.server = self.serve(path, name or container_id[:12], tcp, udp, echo)
        return standin

    def serve(
        self, path: str, name: str, tcp: Iterable[int], udp: Iterable[int], echo: bool = False
    ) -> subprocess.Popen:
        argv = ["nsenter", f"--net={path}", sys.executable, "-I", "-S", SERVER, name]
        argv += [arg for port in tcp for arg in ("--tcp", str(port))]
        argv += [arg for port in udp for arg in ("--udp", str(port))]
        argv += ["--echo"] if echo else []
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            proc.kill()
            _out, err = proc.communicate(timeout=5)
            raise AssertionError(f"stand-in server did not start: {err}")
        return proc

    def remove(self, standin: StandIn) -> None:
        """Stop the server, disconnect, delete the namespace handle (what the runtime does on rm)."""
        if standin.server is not None:
            standin.server.kill()
            standin.server.wait(5)
            standin.server = None
        self.net.disconnect(standin.container_id, standin.attachment.to_dict())
        network.delete_netns(standin.netns)
        if standin in self.standins:
            self.standins.remove(standin)

    def snapshot(self) -> Dict[str, Any]:
        """What berth made for this lab, by kind; empty lists/strings mean nothing is left."""
        links = json.loads(_run(["ip", "-j", "link"]))
        veths = {network.veth_name(container_id) for container_id in self.ids}
        plan = self.net.plan
        ruleset = _run(["nft", "list", "ruleset"])
        owners = [f"berth:{container_id}" for container_id in self.ids]
        iptables = _run(["iptables-save"]) if shutil.which("iptables-save") else ""
        netns_dir = os.path.join(self.exec_root, "netns")
        return {
            "links": sorted(
                link["ifname"] for link in links if link.get("master") == self.bridge or link["ifname"] in veths
            ),
            "nft": sorted(
                _COUNTER.sub("counter", line.strip())
                for line in ruleset.splitlines()
                if plan.nft_table in line.split() or self.bridge in line or any(owner in line for owner in owners)
            ),
            "iptables": sorted(
                line for line in iptables.splitlines() if self.bridge in line or any(owner in line for owner in owners)
            ),
            "leases": sorted(ipam.read_table(self.lease_file, self.config.bridge_network).leases),
            "joins": sorted(ipam.read_table(self.lease_file, self.config.bridge_network).joins),
            "netns": sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else [],
        }

    def close(self) -> None:
        """Remove every stand-in, prune, remove the bridge and the exec_root -- each step even if one fails."""
        for standin in list(self.standins):
            with contextlib.suppress(Exception):
                self.remove(standin)
        try:
            self.net.prune([])
            self.net.teardown()
        finally:
            netns_dir = os.path.join(self.exec_root, "netns")
            for name in os.listdir(netns_dir) if os.path.isdir(netns_dir) else []:
                netns.delete(os.path.join(netns_dir, name))
            if self.owns_exec_root:
                shutil.rmtree(self.exec_root, ignore_errors=True)


EMPTY = {"links": [], "nft": [], "iptables": [], "leases": [], "joins": [], "netns": []}


def _run(argv: List[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout
