"""The network stage's pure parts: names, modes, attachments, address pools, resolv.conf and hosts."""

import ipaddress
import re

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import ipam, network
from ansible_collections.berth.containers.plugins.module_utils.runtime.config import DaemonConfig
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import (
    InvalidArgument,
    NetworkError,
)
from ansible_collections.berth.containers.plugins.module_utils.runtime.ports import PublishedPort

HEX_ID = "3f2a" + "0" * 60


def test_veth_names_fit_ifnamsiz_and_follow_the_id() -> None:
    assert network.veth_name(HEX_ID) == "vb3f2a000000000"
    hashed = network.veth_name("my-container")
    assert len(hashed) == 15
    assert hashed.startswith("vb")
    assert hashed == network.veth_name("my-container")
    assert hashed != network.veth_name("my-container2")


def test_mac_follows_the_address() -> None:
    assert network.mac_for("10.89.0.2") == "02:42:0a:59:00:02"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("", ("bridge", "")),
        ("bridge", ("bridge", "")),
        ("default", ("bridge", "")),
        ("host", ("host", "")),
        ("none", ("none", "")),
        ("container:web", ("container", "web")),
    ],
)
def test_modes(mode: str, expected: tuple) -> None:
    assert network.parse_mode(mode) == expected


@pytest.mark.parametrize("mode", ["container:", "macvlan", "bridge:x"])
def test_bad_modes(mode: str) -> None:
    with pytest.raises(InvalidArgument, match="network mode"):
        network.parse_mode(mode)


@pytest.mark.parametrize("bad", ["", "../etc", "a/b", "-x", "x" * 129, "a b"])
def test_container_ids_are_safe_as_paths_and_comments(bad: str) -> None:
    with pytest.raises(InvalidArgument):
        network.validate_container_id(bad)


def test_attachment_round_trip_and_docker_columns() -> None:
    attachment = network.Attachment(
        HEX_ID,
        netns="/run/berth/netns/x",
        bridge="berth0",
        ip="10.89.0.2",
        prefixlen=16,
        gateway="10.89.0.1",
        mac="02:42:0a:59:00:02",
        host_veth="vb3f2a000000000",
        ports=[PublishedPort("", 88, 80, "tcp"), PublishedPort("127.0.0.1", 5353, 53, "udp")],
        firewall="nftables",
        forwarding="nat",
        name="web",
        aliases=["www", "web"],
    )
    data = attachment.to_dict()
    assert data["ports"][0] == {"host_ip": "0.0.0.0", "host_port": 88, "container_port": 80, "protocol": "tcp"}
    assert network.Attachment.from_dict(data) == attachment
    assert network.Attachment.from_dict({**data, "future_key": 1}) == attachment
    assert attachment.ports_summary() == "0.0.0.0:88->80/tcp, 127.0.0.1:5353->53/udp"
    assert attachment.hosts_names() == ["web", "www"]


def test_address_pools_come_from_the_configuration() -> None:
    config = DaemonConfig(default_address_pools=(("10.90.0.0/16", 24),))
    assert network.address_pools(config) == [(ipaddress.IPv4Network("10.90.0.0/16"), 24)]
    assert network.address_pools(DaemonConfig()) == []


def test_an_explicit_bip_wins_over_the_pools_even_when_it_is_the_default() -> None:
    pools = (("10.90.0.0/16", 24),)
    explicit = DaemonConfig(bip="10.89.0.1/16", bip_explicit=True, default_address_pools=pools)
    assert network.BridgeNetwork(explicit).interface == ipaddress.IPv4Interface("10.89.0.1/16")
    other = DaemonConfig(bip="10.77.0.1/24", default_address_pools=pools)
    assert network.BridgeNetwork(other).interface == ipaddress.IPv4Interface("10.77.0.1/24")


def test_pool_subnet_skips_host_routes() -> None:
    pools = [(ipaddress.IPv4Network("10.90.0.0/23"), 24), (ipaddress.IPv4Network("10.91.0.0/16"), 26)]
    taken = [ipaddress.IPv4Network("0.0.0.0/0"), ipaddress.IPv4Network("10.90.0.128/25")]
    assert network.pick_pool_subnet(pools, taken) == ipaddress.IPv4Interface("10.90.1.1/24")
    taken.append(ipaddress.IPv4Network("10.90.1.0/24"))
    assert network.pick_pool_subnet(pools, taken) == ipaddress.IPv4Interface("10.91.0.1/26")
    with pytest.raises(NetworkError, match="every subnet of default-address-pools overlaps"):
        network.pick_pool_subnet(pools[:1], taken)


def test_resolv_conf_drops_loopback_servers_and_keeps_the_rest(tmp_path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("# managed\nsearch example.com\nnameserver 127.0.0.1\nnameserver 10.0.0.53\noptions ndots:2\n")
    text = network.resolv_conf_for_container(str(host), str(tmp_path / "absent"))
    assert text == "# managed\nsearch example.com\nnameserver 10.0.0.53\noptions ndots:2\n"


def test_resolv_conf_follows_systemd_resolved_upstreams(tmp_path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n")
    upstream = tmp_path / "upstream.conf"
    upstream.write_text("nameserver 192.0.2.53\nnameserver ::1\nsearch lan\n")
    assert network.resolv_conf_for_container(str(host), str(upstream)) == "nameserver 192.0.2.53\nsearch lan\n"


def test_resolv_conf_falls_back_to_dockers_public_servers(tmp_path) -> None:
    host = tmp_path / "resolv.conf"
    host.write_text("nameserver 127.0.0.1\nsearch lan\n")
    text = network.resolv_conf_for_container(str(host), str(tmp_path / "absent"))
    assert text == "search lan\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"
    assert network.resolv_conf_for_container(str(tmp_path / "none")) == "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"


def _lease(ip: str, name: str, *aliases: str) -> ipam.Lease:
    return ipam.Lease(container_id=name or ip, ip=ip, veth="vbx", netns="/run/x", name=name, aliases=list(aliases))


def test_hosts_block_lists_own_names_then_the_others() -> None:
    own = _lease("10.89.0.2", "web", "www", "web")
    block = network.hosts_block("berth0", own, [_lease("10.89.0.3", "db", "database"), _lease("10.89.0.4", "")])
    assert block.splitlines() == [
        f"{network.HOSTS_MARKER} berth0",
        "10.89.0.2\tweb www",
        "10.89.0.3\tdb database",
    ]


def test_the_block_replaces_only_what_follows_the_marker() -> None:
    head = "127.0.0.1\tlocalhost\n10.89.0.2\t3f2a00000000\n"
    first = network.with_hosts_block(head, f"{network.HOSTS_MARKER} b\n10.89.0.3\tdb\n")
    assert first == head + f"{network.HOSTS_MARKER} b\n10.89.0.3\tdb\n"
    second = network.with_hosts_block(first, f"{network.HOSTS_MARKER} b\n")
    assert second == head + f"{network.HOSTS_MARKER} b\n"
    assert network.with_hosts_block("", "B\n") == "B\n"


def test_hosts_file_is_rewritten_in_place(tmp_path) -> None:
    path = tmp_path / "hosts"
    path.write_text("127.0.0.1\tlocalhost\n" + "#" * 500 + "\n")
    inode = path.stat().st_ino
    assert network.replace_hosts_block(str(path), f"{network.HOSTS_MARKER} b\n10.0.0.3\tdb\n") is True
    assert path.stat().st_ino == inode, "a bind mount of the file must see the change"
    assert path.read_text().endswith(f"{network.HOSTS_MARKER} b\n10.0.0.3\tdb\n")
    assert network.replace_hosts_block(str(path), f"{network.HOSTS_MARKER} b\n10.0.0.3\tdb\n") is False
    network.replace_hosts_block(str(path), f"{network.HOSTS_MARKER} b\n")
    assert path.read_text() == "127.0.0.1\tlocalhost\n" + "#" * 500 + f"\n{network.HOSTS_MARKER} b\n"


def test_hosts_file_refuses_symlinks_and_non_files(tmp_path) -> None:
    target = tmp_path / "target"
    target.write_text("keep\n")
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        network.replace_hosts_block(str(tmp_path / "link"), "B\n")
    assert target.read_text() == "keep\n"
    with pytest.raises(IsADirectoryError):
        network.replace_hosts_block(str(tmp_path), "B\n")


class _RoutesOnly:
    """The two questions _check_overlap asks of netlink, answered from a table."""

    def __init__(self, routes, bridge_index=None) -> None:
        self.routes = [(ipaddress.IPv4Network(network), oif) for network, oif in routes]
        self.bridge_index = bridge_index

    def ipv4_routes(self):
        return self.routes

    def link(self, name: str):
        if self.bridge_index is None:
            return None
        return network.Link(self.bridge_index, name, "bridge", 0, True, "02:00:00:00:00:01")


def test_overlap_ignores_the_route_a_concurrent_creator_put_on_the_same_bridge() -> None:
    """Ten parallel first runs: the loser of the bridge creation sees the winner's route on that very bridge."""
    net = network.BridgeNetwork(DaemonConfig(bip="10.77.0.1/24", bridge="bt-overlap"))
    net._check_overlap(_RoutesOnly([("10.77.0.0/24", 7)], bridge_index=7))
    with pytest.raises(NetworkError, match=re.escape("overlaps the host route 10.77.0.0/24")):
        net._check_overlap(_RoutesOnly([("10.77.0.0/24", 3)], bridge_index=7))
    with pytest.raises(NetworkError, match=re.escape("overlaps the host route 10.77.0.0/16")):
        net._check_overlap(_RoutesOnly([("10.77.0.0/16", 3)]))
