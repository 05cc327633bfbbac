"""Forwarding scenarios run inside a private "host" network namespace.

Hairpin NAT (a container reaching a published port of the bridge), traffic
from another machine and outbound masquerading all need ``ip_forward=1``,
which is a per-namespace switch: the test runs this script through
``nsenter --net=<sandbox>`` so it can turn forwarding on without touching the
real host.  The "other machine" is a second namespace wired to the sandbox by
a veth pair (10.232.0.0/24).  Prints one JSON object of observations.

With ``--docker`` the sandbox first gets what dockerd does to iptables
(FORWARD policy DROP, a DOCKER-USER chain), to show berth coexists with it.

Usage: ``python net_sandbox.py nftables|iptables [--docker]`` with the
test's sys.path in PYTHONPATH.
"""

import ipaddress
import json
import os
import socket
import subprocess
import sys
from typing import Any, Callable, Dict, List

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns
from ansible_collections.berth.containers.plugins.module_utils.runtime.netlink import Netlink
from support.netlab import Lab, tcp_request_from

SANDBOX_ADDRESS = ipaddress.IPv4Interface("10.232.0.1/24")
OUTSIDE_ADDRESS = ipaddress.IPv4Interface("10.232.0.2/24")


def _attempt(call: Callable[[], bytes]) -> str:
    try:
        return call().decode()
    except OSError as exc:
        return f"error: {type(exc).__name__}"


def _wire_outside(lab: Lab) -> str:
    """A namespace standing for another machine, on a veth link to the sandbox."""
    path = os.path.join(lab.exec_root, "outside")
    netns.create(path)
    with Netlink() as host:
        uplink = host.create_veth("uplink", "eth0", path, "02:00:00:00:00:02")
        host.add_address(uplink.index, SANDBOX_ADDRESS)
        host.set_up(uplink.index)
    with netns.entered(path), Netlink() as inside:
        for name, address in (("lo", None), ("eth0", OUTSIDE_ADDRESS)):
            link = inside.link(name)
            assert link is not None
            if address is not None:
                inside.add_address(link.index, address)
            inside.set_up(link.index)
    return path


def _imitate_dockerd() -> None:
    """What dockerd does to iptables' filter table: FORWARD policy DROP, a DOCKER-USER chain first."""
    rules = [":FORWARD DROP [0:0]", ":DOCKER-USER - [0:0]", "-A FORWARD -j DOCKER-USER", "-A DOCKER-USER -j RETURN"]
    script = "\n".join(["*filter", *rules, "COMMIT"]) + "\n"
    subprocess.run(["iptables-restore", "--noflush"], input=script, text=True, check=True)


def _route_to_lab(outside: str, lab: Lab) -> None:
    """The neighbour routes the lab's subnet via the sandbox, as a LAN peer could."""
    subprocess.run(
        [
            "nsenter",
            f"--net={outside}",
            "ip",
            "route",
            "add",
            str(lab.net.interface.network),
            "via",
            str(SANDBOX_ADDRESS.ip),
        ],
        check=True,
    )


def main(backend: str, docker: bool) -> Dict[str, Any]:
    with Netlink() as host:
        loopback = host.link("lo")
        assert loopback is not None
        host.set_up(loopback.index)
    if docker:
        _imitate_dockerd()
    seen: Dict[str, Any] = {}
    with Lab(backend=backend, ip_forward=True) as lab:
        outside = _wire_outside(lab)
        try:
            one = lab.start(ports=["8080", "127.0.0.1::9090"], name="one", tcp=(8080, 9090))
            two = lab.start(name="two")
            gateway = one.attachment.gateway
            port = one.host_port(8080)
            seen["info"] = lab.net.info()
            seen["hairpin_self"] = _attempt(lambda: tcp_request_from(one.netns, gateway, port))
            seen["hairpin_other"] = _attempt(lambda: tcp_request_from(two.netns, gateway, port))
            seen["from_outside"] = _attempt(lambda: tcp_request_from(outside, str(SANDBOX_ADDRESS.ip), port))
            _route_to_lab(outside, lab)
            seen["direct_from_outside"] = _attempt(lambda: tcp_request_from(outside, one.ip, 8080, timeout=1.0))
            local_only = one.host_port(9090)
            seen["local_only_from_outside"] = _attempt(
                lambda: tcp_request_from(outside, str(SANDBOX_ADDRESS.ip), local_only, timeout=1.0)
            )
            seen["local_only_from_host"] = _attempt(
                lambda: tcp_request_from("/proc/self/ns/net", "127.0.0.1", local_only)
            )
            server = lab.serve(outside, "outside", tcp=(7000,), udp=())
            try:
                seen["outbound"] = _attempt(lambda: tcp_request_from(one.netns, str(OUTSIDE_ADDRESS.ip), 7000))
            finally:
                server.kill()
                server.wait(5)
            seen["addresses"] = {"one": one.ip, "two": two.ip, "gateway": gateway, "sandbox": str(SANDBOX_ADDRESS.ip)}
            seen["docker_user"] = _docker_user_rules()
        finally:
            with Netlink() as host:
                host.delete_link("uplink")
            netns.delete(outside)
    seen["links_after"] = sorted(name for _index, name in socket.if_nameindex())
    seen["docker_user_after"] = _docker_user_rules()
    return seen


def _docker_user_rules() -> List[str]:
    saved = subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, check=True).stdout
    return [line for line in saved.splitlines() if line.startswith("-A DOCKER-USER") and "ACCEPT" in line]


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], docker="--docker" in sys.argv[2:])))
