"""Published ports without netfilter (the userland proxy) and port reservations under NAT."""

import socket
from typing import Iterator

import pytest
from support.netlab import EMPTY, Lab, host_address, tcp_request, udp_request

from ansible_collections.berth.containers.plugins.module_utils.runtime import portproxy
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import Conflict


@pytest.fixture
def proxy_lab() -> Iterator[Lab]:
    with Lab(backend="none") as made:
        yield made


def test_firewall_none_publishes_through_the_proxy(proxy_lab: Lab) -> None:
    web = proxy_lab.start(ports=["8080", "53/udp"], name="web", udp=(53,), echo=True)
    assert (web.attachment.firewall, web.attachment.forwarding) == ("none", "proxy")
    assert proxy_lab.net.info()["port_forwarding"] == "proxy"
    tcp, udp = web.host_port(8080), web.host_port(53, "udp")
    with pytest.raises(ConnectionRefusedError):
        tcp_request("127.0.0.1", tcp, b"x")  # nothing forwards until the supervisor holds the ports
    with portproxy.hold_published_ports(web.attachment.to_dict()) as proxy:
        assert isinstance(proxy, portproxy.PortProxy)
        payload = b"through the proxy " * 5000
        assert tcp_request("127.0.0.1", tcp, payload) == payload
        assert tcp_request(host_address(), tcp, b"hi") == b"hi"
        assert udp_request("127.0.0.1", udp, b"ping") == b"web:ping"
        assert udp_request("127.0.0.1", udp, b"again") == b"web:again"
        with pytest.raises(Conflict, match=f"0.0.0.0:{tcp}/tcp is already in use"):
            portproxy.hold_published_ports(web.attachment.to_dict())
    with pytest.raises(ConnectionRefusedError):
        tcp_request("127.0.0.1", tcp, b"x")
    snapshot = proxy_lab.snapshot()
    assert snapshot["nft"] == []
    assert snapshot["iptables"] == []


def test_userland_proxy_setting_keeps_masquerade_but_no_dnat() -> None:
    with Lab(backend="nftables", userland_proxy=True) as lab:
        web = lab.start(ports=["8080"], name="web")
        assert (web.attachment.firewall, web.attachment.forwarding) == ("nftables", "proxy")
        rules = " ".join(lab.snapshot()["nft"])
        assert "masquerade" in rules
        assert "dnat to" not in rules
        with portproxy.hold_published_ports(web.attachment.to_dict()):
            assert (
                tcp_request("127.0.0.1", web.host_port(8080))
                == b"hello web from " + web.attachment.gateway.encode() + b"\n"
            )
        lab.remove(web)
        assert lab.snapshot() == EMPTY


def test_nat_reservation_holds_the_port_while_traffic_flows() -> None:
    with Lab(backend="nftables") as lab:
        web = lab.start(ports=["8080", "53/udp"], name="web", udp=(53,))
        tcp = web.host_port(8080)
        with portproxy.hold_published_ports(web.attachment.to_dict()) as held:
            assert isinstance(held, portproxy.PortReservation)
            with socket.socket() as intruder, pytest.raises(OSError, match="Address already in use"):
                intruder.bind(("127.0.0.1", tcp))
            assert tcp_request("127.0.0.1", tcp).startswith(b"hello web")
            assert udp_request("127.0.0.1", web.host_port(53, "udp")) == b"web:ping"
        with socket.socket() as after:
            after.bind(("127.0.0.1", tcp))
