"""The rtnetlink client against the kernel, in a private network namespace, checked with ``ip -j`` (iproute2).

Every operation the bridge network uses: a bridge, a veth whose peer is born
in a second namespace with a given MAC, enslaving and bringing up, hairpin
mode, addresses, the default route, route and link listings, deletion, and the
errors the kernel gives for what is not there.
"""

import ipaddress
import json
import os
import socket
import subprocess
import tempfile
from typing import Any, Iterator, List, Tuple

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import netns
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import NetworkError
from ansible_collections.berth.containers.plugins.module_utils.runtime.netlink import Netlink


@pytest.fixture
def spaces() -> Iterator[Tuple[str, str]]:
    """Two fresh namespaces: a stand-in host and a stand-in container."""
    work = tempfile.mkdtemp(prefix="berth-netlink-", dir="/run")
    made: List[str] = []
    try:
        for name in ("host", "container"):
            made.append(netns.create(os.path.join(work, name)))
        yield made[0], made[1]
    finally:
        for path in made:
            netns.delete(path)
        os.rmdir(work)


def ip_json(space: str, *args: str) -> Any:
    out = subprocess.run(["nsenter", f"--net={space}", "ip", "-j", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout or "[]")


def test_bridge_veth_addresses_and_routes(spaces: Tuple[str, str]) -> None:
    host, container = spaces
    with netns.entered(host), Netlink() as api:
        bridge = api.create_bridge("br-test")
        assert api.create_bridge("br-test") == bridge, "a concurrent creator is tolerated"
        assert bridge.kind == "bridge"
        api.add_address(bridge.index, ipaddress.IPv4Interface("10.77.0.1/24"))
        api.add_address(bridge.index, ipaddress.IPv4Interface("10.77.0.1/24"))  # EEXIST is fine
        api.set_up(bridge.index)
        veth = api.create_veth("vbtest", "eth0", container, "02:42:0a:4d:00:02")
        api.set_up(veth.index, master=bridge.index)
        api.set_hairpin(veth.index)
        assert api.addresses(bridge.index) == [ipaddress.IPv4Interface("10.77.0.1/24")]
        assert (ipaddress.IPv4Network("10.77.0.0/24"), bridge.index) in api.ipv4_routes()
        listed = {link.name: link for link in api.links()}
        assert listed["vbtest"].master == bridge.index
        assert listed["vbtest"].kind == "veth"
        assert listed["vbtest"].up
    with netns.entered(container), Netlink() as inside:
        eth = inside.link("eth0")
        assert eth is not None
        assert eth.mac == "02:42:0a:4d:00:02"
        inside.set_up(inside.link("lo").index)
        inside.add_address(eth.index, ipaddress.IPv4Interface("10.77.0.2/24"))
        inside.set_up(eth.index)
        inside.add_default_route("10.77.0.1")
    port = next(link for link in ip_json(host, "-d", "link", "show", "vbtest"))
    assert port["master"] == "br-test"
    assert port["linkinfo"]["info_slave_data"]["hairpin"] is True
    routes = ip_json(container, "route")
    assert {"dst": "default", "gateway": "10.77.0.1", "dev": "eth0"}.items() <= routes[0].items()
    addresses = ip_json(container, "-4", "addr", "show", "eth0")[0]["addr_info"]
    assert [(item["local"], item["prefixlen"]) for item in addresses] == [("10.77.0.2", 24)]
    with netns.entered(host):
        listener = socket.create_server(("10.77.0.1", 0))
    with netns.entered(container):
        client = socket.socket()
    with listener, client:
        client.settimeout(5)
        client.connect(listener.getsockname())
        accepted, peer = listener.accept()
        accepted.close()
    assert peer[0] == "10.77.0.2", "the container reaches the bridge over the veth"
    with netns.entered(host), Netlink() as api:
        assert api.delete_link("vbtest") is True
        assert api.delete_link("vbtest") is False
        assert api.link("vbtest") is None
    assert ip_json(container, "link", "show") == [
        link for link in ip_json(container, "link", "show") if link["ifname"] == "lo"
    ]


def test_kernel_errors_are_network_errors_naming_the_step(spaces: Tuple[str, str]) -> None:
    host, container = spaces
    with netns.entered(host), Netlink() as api:
        with pytest.raises(NetworkError, match=r"adding the default route via 10\.99\.0\.1 failed: ENETUNREACH"):
            api.add_default_route("10.99.0.1")
        with pytest.raises(NetworkError, match=r"bringing interface 999999 up failed: ENODEV"):
            api.set_up(999999)
        api.create_veth("vbone", "eth0", container, "02:42:00:00:00:01")
        with pytest.raises(NetworkError, match=r"creating veth vbtwo .* failed: EEXIST"):
            api.create_veth("vbtwo", "eth0", container, "02:42:00:00:00:02")  # the peer name is taken in there
        assert api.link("vbtwo") is None
