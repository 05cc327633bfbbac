"""Network helpers for tests and benchmarks of containers run with ``bin/berth``.

:func:`network_state` lists what berth made for one :class:`BerthEnv`'s bridge
-- bridge ports and veths, nft and iptables rules, leases, namespace handles
-- so a test can assert that a run/rm cycle or a crash left nothing behind.
:func:`wait_http` polls a published port until it answers (a container's
server needs a moment after ``run -d`` returns).  Traffic only goes to
127.0.0.1 and the containers' own addresses.
"""

import http.client
import json
import os
import shutil
import socket
import subprocess
import time
from typing import Any, Dict, Iterable, List, Tuple

from ansible_collections.berth.containers.plugins.module_utils.runtime import ipam, network

from .berth_env import BerthEnv


def _run(argv: List[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=False).stdout


def network_state(env: BerthEnv, container_ids: Iterable[str] = ()) -> Dict[str, List[str]]:
    """What berth made for *env*'s bridge, by kind (rule counters stripped, so equal states compare equal).

    *container_ids* adds the veth names of those containers wherever they
    are (a veth that left the bridge still counts).
    """
    net = network.BridgeNetwork(env.config())
    bridge = net.bridge
    veths = {network.veth_name(container_id) for container_id in container_ids}
    links = json.loads(_run(["ip", "-j", "link"]) or "[]")
    table = ipam.read_table(net.lease_file, net.interface)
    nft_lines = _run(["nft", "list", "table", "ip", net.plan.nft_table]).splitlines()
    iptables = _run(["iptables-save"]) if shutil.which("iptables-save") else ""
    netns_dir = net.netns_dir
    return {
        "links": sorted(link["ifname"] for link in links if link.get("master") == bridge or link["ifname"] in veths),
        "dnat_rules": sorted(line.strip().split(" counter")[0] for line in nft_lines if '"berth:' in line),
        "iptables": sorted(line for line in iptables.splitlines() if bridge in line or "berth:" in line),
        "leases": sorted(table.leases),
        "joins": sorted(table.joins),
        "netns": sorted(os.listdir(netns_dir)) if os.path.isdir(netns_dir) else [],
    }


def http_get(host: str, port: int, path: str = "/", timeout: float = 3.0) -> Tuple[int, str]:
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path, headers={"User-Agent": "berth-test"})
        response = connection.getresponse()
        return response.status, response.read().decode("utf-8", errors="replace")
    finally:
        connection.close()


def wait_http(port: int, host: str = "127.0.0.1", path: str = "/", timeout: float = 15.0) -> Tuple[int, str]:
    """The first answer of ``GET path`` on host:port, retried until *timeout*; the last error if none came."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return http_get(host, port, path)
        except (OSError, http.client.HTTPException) as exc:
            if time.monotonic() >= deadline:
                raise AssertionError(f"nothing answered HTTP on {host}:{port} within {timeout}s: {exc!r}") from None
            time.sleep(0.05)


def udp_exchange(port: int, payload: bytes, host: str = "127.0.0.1", timeout: float = 10.0) -> bytes:
    """Send *payload* until a datagram comes back (the server may still be starting); its content."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.3)
        while True:
            sock.sendto(payload, (host, port))
            try:
                return sock.recvfrom(65536)[0]
            except (socket.timeout, ConnectionRefusedError):
                if time.monotonic() >= deadline:
                    raise AssertionError(f"no UDP answer from {host}:{port} within {timeout}s") from None


def inspect(env: BerthEnv, name: str) -> Dict[str, Any]:
    return json.loads(env.berth("inspect", name).stdout)[0]
