"""The network stage for real: bridge, veths, NAT rules, leases, on this host, as root.

Each test builds its own bridge and subnet (``support.netlab.Lab``); stand-in
containers are namespaces with a tiny TCP/UDP server.  Traffic only goes to
127.0.0.1, the host's own address and the lab's namespaces.
"""

import ipaddress
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
from typing import Iterator

import pytest
from support.netlab import EMPTY, Lab, host_address, tcp_request, tcp_request_from, udp_request

from ansible_collections.berth.containers.plugins.module_utils.runtime import ipam, netns, network
from ansible_collections.berth.containers.plugins.module_utils.runtime.config import DEFAULT_BIP
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import Conflict, NetworkError
from ansible_collections.berth.containers.plugins.module_utils.runtime.netlink import Netlink

BACKENDS = ["nftables", "iptables"]


@pytest.fixture(params=BACKENDS)
def lab(request: pytest.FixtureRequest) -> Iterator[Lab]:
    with Lab(backend=request.param) as made:
        yield made


@pytest.fixture
def nft_lab() -> Iterator[Lab]:
    with Lab(backend="nftables") as made:
        yield made


def _sysctl(path: str) -> str:
    with open(path) as handle:
        return handle.read().strip()


def test_published_ports_answer_on_loopback_gateway_and_host_address(lab: Lab) -> None:
    web = lab.start(ports=["8080", "53/udp", "127.0.0.1::9090"], name="web", tcp=(8080, 9090), udp=(53,))
    assert web.attachment.firewall == lab.config.firewall_backend
    assert web.attachment.forwarding == "nat"
    tcp = web.host_port(8080)
    assert tcp_request("127.0.0.1", tcp) == f"hello web from {web.attachment.gateway}\n".encode()
    assert tcp_request(web.attachment.gateway, tcp).startswith(b"hello web")
    assert tcp_request(host_address(), tcp).startswith(b"hello web")
    assert tcp_request(web.ip, 8080).startswith(b"hello web")
    assert udp_request("127.0.0.1", web.host_port(53, "udp"), b"ping") == b"web:ping"
    local_only = web.host_port(9090)
    assert tcp_request("127.0.0.1", local_only).startswith(b"hello web")
    with pytest.raises(ConnectionRefusedError):
        tcp_request(host_address(), local_only, timeout=1)
    assert web.attachment.ports_summary().startswith(f"0.0.0.0:{tcp}->8080/tcp")


def test_containers_reach_each_other_by_address(lab: Lab) -> None:
    """Bridge traffic needs no ip_forward (hairpin through a published port does: test_network_forwarding)."""
    one = lab.start(ports=["8080"], name="one")
    two = lab.start(name="two")
    assert one.ip != two.ip
    assert tcp_request_from(two.netns, one.ip, 8080) == f"hello one from {two.ip}\n".encode()
    assert tcp_request_from(one.netns, two.ip, 8080) == f"hello two from {one.ip}\n".encode()
    with socket.socket() as host_service:
        host_service.bind((one.attachment.gateway, 0))
        host_service.listen()
        with netns.entered(two.netns):
            client = socket.create_connection(host_service.getsockname(), timeout=5)
        with client:
            accepted, peer = host_service.accept()
            accepted.close()
        assert peer[0] == two.ip


def test_bridge_settings_touch_only_the_bridge(nft_lab: Lab) -> None:
    forward_before = _sysctl("/proc/sys/net/ipv4/ip_forward")
    all_localnet = _sysctl("/proc/sys/net/ipv4/conf/all/route_localnet")
    standin = nft_lab.start(serve=False)
    bridge = nft_lab.bridge
    assert _sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/route_localnet") == "1"
    assert _sysctl(f"/proc/sys/net/ipv4/conf/{bridge}/rp_filter") == "2"
    assert _sysctl(f"/proc/sys/net/ipv6/conf/{bridge}/accept_ra") == "0"
    assert _sysctl(f"/sys/class/net/{standin.attachment.host_veth}/brport/hairpin_mode") == "1"
    assert _sysctl("/proc/sys/net/ipv4/ip_forward") == forward_before
    assert _sysctl("/proc/sys/net/ipv4/conf/all/route_localnet") == all_localnet
    inside = subprocess.run(
        ["nsenter", f"--net={standin.netns}", "ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True
    ).stdout
    assert f"eth0    inet {standin.ip}/24" in inside
    assert "lo    inet 127.0.0.1/8" in inside
    route = subprocess.run(
        ["nsenter", f"--net={standin.netns}", "ip", "route", "show", "default"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"default via {standin.attachment.gateway} dev eth0" in route
    link = subprocess.run(
        ["nsenter", f"--net={standin.netns}", "ip", "-o", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"link/ether {network.mac_for(standin.ip)} " in link
    assert standin.attachment.mac == network.mac_for(standin.ip)
    info = nft_lab.net.info()
    assert info["firewall_backend"] == "nftables"
    assert info["ip_forward"]["configured"] is False
    assert info["route_localnet"] is True
    assert info["containers"] == 1


def test_a_taken_host_port_is_a_clear_error_and_leaves_nothing(lab: Lab) -> None:
    before = lab.snapshot()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("0.0.0.0", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(Conflict) as caught:
            lab.start(ports=["8081", f"{port}:80"], serve=False)
        message = str(caught.value)
        assert f"host port 0.0.0.0:{port}/tcp is already in use" in message
        assert f"pid {os.getpid()}" in message
    after = lab.snapshot()
    assert after == before
    assert not lab.standins


def test_two_containers_cannot_publish_the_same_host_port(lab: Lab) -> None:
    first = lab.start(ports=["8080"], name="first", serve=False)
    port = first.host_port(8080)
    before = lab.snapshot()
    with pytest.raises(Conflict, match=f"{port}/tcp is already in use \\(held by berth container first\\)"):
        lab.start(ports=[f"127.0.0.1:{port}:80"], serve=False)
    assert lab.snapshot() == before
    other_protocol = lab.start(ports=[f"{port}:53/udp"], serve=False)
    assert other_protocol.host_port(53, "udp") == port


def _squat_before_a_free_port() -> socket.socket:
    """A listening socket on port P where P+1 is free right now."""
    for _attempt in range(50):
        squatter = socket.socket()
        squatter.bind(("0.0.0.0", 0))
        port = squatter.getsockname()[1]
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", port + 1))
            except OSError:
                squatter.close()
                continue
        squatter.listen()
        return squatter
    raise AssertionError("no port P with P+1 free")


def test_host_port_range_picks_a_free_port(nft_lab: Lab) -> None:
    with _squat_before_a_free_port() as squatter:
        taken = squatter.getsockname()[1]
        standin = nft_lab.start(ports=[f"{taken}-{taken + 1}:8080"])
        assert standin.host_port(8080) == taken + 1
        assert tcp_request("127.0.0.1", taken + 1).startswith(b"hello")


def test_connect_again_after_a_crashed_attempt_reuses_and_does_not_duplicate(nft_lab: Lab) -> None:
    container_id = nft_lab.new_id()
    path = nft_lab.net.create_netns(container_id)
    first = nft_lab.net.connect(container_id, path, ports=["8080"])
    second = nft_lab.net.connect(container_id, path, ports=["8080"])
    assert second.ip == first.ip
    snapshot = nft_lab.snapshot()
    assert snapshot["links"] == [second.host_veth]
    assert len([line for line in snapshot["nft"] if "dnat to" in line]) == 1
    assert f"dport {second.ports[0].host_port} dnat to {second.ip}:8080" in " ".join(snapshot["nft"])
    assert snapshot["leases"] == [container_id]
    nft_lab.net.disconnect(container_id, second)
    nft_lab.net.disconnect(container_id, second)
    network.delete_netns(path)
    network.delete_netns(path)
    assert nft_lab.snapshot() == EMPTY


def test_disconnect_without_the_attachment_uses_the_lease(nft_lab: Lab) -> None:
    standin = nft_lab.start(ports=["8080"], serve=False)
    nft_lab.net.disconnect(standin.container_id)
    network.delete_netns(standin.netns)
    nft_lab.standins.remove(standin)
    assert nft_lab.snapshot() == EMPTY


def test_removal_keeps_the_other_containers_rules(lab: Lab) -> None:
    keep = lab.start(ports=["8080"], name="keep")
    gone = lab.start(ports=["8080"], name="gone", serve=False)
    lab.remove(gone)
    assert tcp_request("127.0.0.1", keep.host_port(8080)).startswith(b"hello keep")
    snapshot = lab.snapshot()
    assert snapshot["leases"] == [keep.container_id]
    assert not any(gone.container_id in line for line in snapshot["nft"] + snapshot["iptables"])


CRASHING_CONNECT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path[:] = {path!r}
    from ansible_collections.berth.containers.plugins.module_utils.runtime import config, network
    net = network.BridgeNetwork(config.DaemonConfig(**{settings!r}))
    path = net.create_netns({container_id!r})
    net.connect({container_id!r}, path, ports=["8080", "53/udp"])
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def test_a_killed_owner_is_cleaned_by_prune(lab: Lab) -> None:
    survivor = lab.start(ports=["8080"], name="survivor")
    container_id = lab.new_id()
    settings = {
        "exec_root": lab.exec_root,
        "bridge": lab.bridge,
        "bip": lab.config.bip,
        "ip_forward": False,
        "firewall_backend": lab.config.firewall_backend,
    }
    script = CRASHING_CONNECT.format(path=sys.path, settings=settings, container_id=container_id)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftovers = lab.snapshot()
    assert container_id in leftovers["leases"]
    assert network.veth_name(container_id) in leftovers["links"]
    assert container_id in leftovers["netns"]
    report = lab.net.prune([survivor.container_id])
    assert report["leases"] == [container_id]
    assert report["veths"] == [network.veth_name(container_id)]
    assert report["netns"] == [container_id]
    after = lab.snapshot()
    assert after["leases"] == [survivor.container_id]
    assert after["netns"] == [survivor.container_id]
    assert after["links"] == [survivor.attachment.host_veth]
    assert not any(container_id in line for line in after["nft"] + after["iptables"])
    assert tcp_request("127.0.0.1", survivor.host_port(8080)).startswith(b"hello survivor")


def test_prune_removes_orphan_rules_and_bridge_ports(nft_lab: Lab) -> None:
    standin = nft_lab.start(ports=["8080"], serve=False)
    with ipam.open_leases(nft_lab.exec_root, nft_lab.bridge, nft_lab.config.bridge_network) as table:
        table.remove(standin.container_id)  # the lease is lost, the rule and veth are not
    report = nft_lab.net.prune([standin.container_id])
    assert report["veths"] == [standin.attachment.host_veth]
    assert report["rules"] == ["nftables: all"]
    assert report["netns"] == []
    network.delete_netns(standin.netns)
    nft_lab.standins.remove(standin)
    assert nft_lab.snapshot() == EMPTY


def test_a_dead_container_is_reclaimed_when_another_connects(nft_lab: Lab) -> None:
    dead = nft_lab.start(ports=["8080"], serve=False)
    netns.delete(dead.netns)  # its namespace is gone, its lease is not
    nft_lab.standins.remove(dead)
    fresh = nft_lab.start(ports=[f"{dead.host_port(8080)}:8080"], serve=False)
    assert fresh.host_port(8080) == dead.host_port(8080)
    snapshot = nft_lab.snapshot()
    assert snapshot["leases"] == [fresh.container_id]
    assert snapshot["links"] == [fresh.attachment.host_veth]


def test_modes_host_none_and_shared_namespace(nft_lab: Lab) -> None:
    host = nft_lab.net.connect(nft_lab.new_id(), "", mode="host", ports=["80"])
    assert (host.mode, host.ip, host.ports) == ("host", "", [])
    none_id = nft_lab.new_id()
    none_path = nft_lab.net.create_netns(none_id)
    none = nft_lab.net.connect(none_id, none_path, mode="none")
    links = subprocess.run(
        ["nsenter", f"--net={none_path}", "ip", "-o", "link"], capture_output=True, text=True, check=True
    ).stdout
    assert "lo:" in links
    assert "UP" in links.split("lo:")[1].split("\n")[0]
    assert "eth0" not in links
    nft_lab.net.disconnect(none_id, none)
    network.delete_netns(none_path)

    owner = nft_lab.start(ports=["8080"], name="owner")
    joiner_id = nft_lab.new_id()
    joined = nft_lab.net.connect(joiner_id, owner.netns, mode=f"container:{owner.container_id}")
    assert (joined.mode, joined.joined) == ("container", owner.container_id)
    report = nft_lab.net.prune([joiner_id])  # the owner is "dead" but its namespace is in use
    assert report == {"leases": [], "veths": [], "netns": [], "rules": []}
    assert tcp_request("127.0.0.1", owner.host_port(8080)).startswith(b"hello owner")
    nft_lab.net.disconnect(joiner_id, joined.to_dict())
    assert tcp_request("127.0.0.1", owner.host_port(8080)).startswith(b"hello owner")
    assert nft_lab.snapshot()["joins"] == []


def test_lookup_by_name_and_alias(nft_lab: Lab) -> None:
    db = nft_lab.start(name="db", aliases=["database"], serve=False)
    assert network.lookup("database", nft_lab.config)["ip"] == db.ip
    assert nft_lab.net.lookup("db")["container_id"] == db.container_id
    assert nft_lab.net.lookup("web") is None


def test_info_and_teardown_refuses_while_containers_remain(nft_lab: Lab) -> None:
    nft_lab.start(serve=False)
    with pytest.raises(Conflict, match="still attached"):
        nft_lab.net.teardown()


def test_prune_reapplies_rules_someone_else_flushed(lab: Lab) -> None:
    """A firewall reload (firewalld, iptables-restore) may drop berth's rules: reconcile restores them."""
    web = lab.start(ports=["8080"], name="web")
    port = web.host_port(8080)
    lab.net.firewall(lab.config.firewall_backend).remove_all()
    with pytest.raises(ConnectionRefusedError):
        tcp_request("127.0.0.1", port, timeout=2)
    report = lab.net.prune([web.container_id])
    assert report["leases"] == []
    assert tcp_request("127.0.0.1", port).startswith(b"hello web")


def test_default_address_pools_pick_the_bridge_subnet() -> None:
    base = ipaddress.IPv4Network(f"10.233.{random.randint(0, 255)}.0/24")
    with Lab(backend="nftables", bip=DEFAULT_BIP, default_address_pools=((str(base), 26),)) as lab:
        standin = lab.start(serve=False)
        assert ipaddress.IPv4Address(standin.ip) in base
        assert standin.attachment.prefixlen == 26
        assert network.BridgeNetwork(lab.config).interface == lab.net.interface  # the bridge's own route is no obstacle


def test_publish_all_exposed_ports_to_ephemeral_host_ports(nft_lab: Lab) -> None:
    standin = nft_lab.start(ports=["127.0.0.1::8080"], exposed_ports={"8080/tcp": {}, "53/udp": {}}, udp=(53,))
    assert [(port.host_ip, port.container_port, port.protocol) for port in standin.attachment.ports] == [
        ("127.0.0.1", 8080, "tcp"),
        ("", 53, "udp"),
    ]
    assert tcp_request("127.0.0.1", standin.host_port(8080)).startswith(b"hello")
    assert udp_request("127.0.0.1", standin.host_port(53, "udp"), b"x").endswith(b":x")


@pytest.mark.parametrize("neighbour", [False, True], ids=["first-container", "beside-another"])
def test_a_failure_half_way_rolls_everything_back(lab: Lab, neighbour: bool) -> None:
    if neighbour:
        lab.start(ports=["8080"], serve=False)  # its rules and lease must survive the rollback
    before = lab.snapshot()
    container_id = lab.new_id()
    path = lab.net.create_netns(container_id)
    with netns.entered(path), Netlink() as inside:
        inside.create_bridge("eth0")  # the name the veth's container end needs is taken
    with pytest.raises(NetworkError, match="creating veth"):
        lab.net.connect(container_id, path, ports=["8080", "53/udp"])
    network.delete_netns(path)
    assert lab.snapshot() == before
    assert neighbour or before == EMPTY
