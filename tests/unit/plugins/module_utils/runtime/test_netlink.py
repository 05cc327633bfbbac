"""rtnetlink messages as bytes: attributes, their padding and nesting, link messages, kernel errors."""

import errno
import socket
import struct

from ansible_collections.berth.containers.plugins.module_utils.runtime import netlink


def test_attributes_are_padded_to_four_bytes_and_parse_back() -> None:
    packed = netlink.attr(netlink.IFLA_IFNAME, b"eth0\0") + netlink.attr(netlink.IFLA_MASTER, struct.pack("=I", 7))
    assert len(packed) == 12 + 8
    assert packed[:4] == struct.pack("=HH", 9, netlink.IFLA_IFNAME)
    assert packed[9:12] == b"\0\0\0"
    assert netlink.parse_attrs(packed) == {netlink.IFLA_IFNAME: b"eth0\0", netlink.IFLA_MASTER: struct.pack("=I", 7)}


def test_nested_flag_is_ignored_and_a_truncated_tail_stops_parsing() -> None:
    inner = netlink.attr(netlink.IFLA_INFO_KIND, b"veth\0")
    packed = netlink.attr(netlink.IFLA_LINKINFO | netlink.NLA_F_NESTED, inner) + b"\x01\x00"
    parsed = netlink.parse_attrs(packed)
    assert netlink.parse_attrs(parsed[netlink.IFLA_LINKINFO]) == {netlink.IFLA_INFO_KIND: b"veth\0"}
    assert netlink.parse_attrs(struct.pack("=HH", 2, 1)) == {}, "a length below the header ends the list"


def test_a_link_message_becomes_a_link() -> None:
    body = (
        struct.pack("=BxHiII", socket.AF_UNSPEC, 1, 42, netlink.IFF_UP | 0x1000, 0)
        + netlink.attr(netlink.IFLA_IFNAME, b"vb3f2a000000000\0")
        + netlink.attr(netlink.IFLA_MASTER, struct.pack("=I", 5))
        + netlink.attr(netlink.IFLA_ADDRESS, bytes([2, 0x42, 10, 89, 0, 2]))
        + netlink.attr(netlink.IFLA_LINKINFO, netlink.attr(netlink.IFLA_INFO_KIND, b"veth\0"))
    )
    assert netlink.parse_link(body) == netlink.Link(
        index=42, name="vb3f2a000000000", kind="veth", master=5, up=True, mac="02:42:0a:59:00:02"
    )
    plain = struct.pack("=BxHiII", socket.AF_UNSPEC, 772, 1, 0, 0) + netlink.attr(netlink.IFLA_IFNAME, b"lo\0")
    assert netlink.parse_link(plain) == netlink.Link(index=1, name="lo", kind="", master=0, up=False, mac="")


def test_kernel_refusals_name_the_errno() -> None:
    refused = netlink.NetlinkRefused(errno.EEXIST)
    assert refused.code == errno.EEXIST
    assert str(refused) == "EEXIST (File exists)"
