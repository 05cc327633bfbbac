"""Published-port syntax (-p / -P) and host-port availability checks."""

import socket

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import ports
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import Conflict, InvalidArgument
from ansible_collections.berth.containers.plugins.module_utils.runtime.ports import PortSpec, PublishedPort


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("88:80", [PortSpec(80, "tcp", "", 88)]),
        ("80", [PortSpec(80, "tcp", "", 0)]),
        ("53/udp", [PortSpec(53, "udp", "", 0)]),
        ("5353:53/UDP", [PortSpec(53, "udp", "", 5353)]),
        ("127.0.0.1:88:80", [PortSpec(80, "tcp", "127.0.0.1", 88)]),
        ("127.0.0.1::80", [PortSpec(80, "tcp", "127.0.0.1", 0)]),
        ("0.0.0.0:88:80/tcp", [PortSpec(80, "tcp", "", 88)]),
        (
            "8000-8002:80-82",
            [PortSpec(80, "tcp", "", 8000), PortSpec(81, "tcp", "", 8001), PortSpec(82, "tcp", "", 8002)],
        ),
        ("80-81/udp", [PortSpec(80, "udp", "", 0), PortSpec(81, "udp", "", 0)]),
        ("8000-8010:80", [PortSpec(80, "tcp", "", 8000, 8010)]),
        (" 9000:90 ", [PortSpec(90, "tcp", "", 9000)]),
    ],
)
def test_publish_syntax(text: str, expected: list) -> None:
    assert ports.parse_publish(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("88:80/sctp", "protocol 'sctp' is not supported"),
        ("88:0", "out of range"),
        ("70000:80", "out of range"),
        ("ab:80", "invalid port 'ab'"),
        ("8000-7990:80", "end is below the start"),
        ("8000-8001:80-82", "must have the same length"),
        ("1.2.3:88:80", "is not an IPv4 address"),
        ("[::1]:88:80", "IPv6 host addresses are not supported"),
        ("1.2.3.4:88:80:90", "too many ':'"),
    ],
)
def test_publish_errors_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ports.parse_publish(text)


def test_candidates_of_a_spec() -> None:
    assert PortSpec(80).candidates() == []
    assert PortSpec(80, host_port=88).candidates() == [88]
    assert PortSpec(80, host_port=8000, host_port_end=8002).candidates() == [8000, 8001, 8002]
    assert str(PortSpec(80, "udp", "127.0.0.1", 8000, 8002)) == "127.0.0.1:8000-8002:80/udp"
    assert str(PortSpec(80)) == "80/tcp"


def test_publish_all_takes_exposed_ports_sorted_and_skips_unknown_protocols() -> None:
    exposed = {"80/tcp": {}, "53/udp": {}, "9000": {}, "132/sctp": {}}
    assert ports.parse_exposed(exposed) == [PortSpec(53, "udp"), PortSpec(80, "tcp"), PortSpec(9000, "tcp")]


def test_parse_all_does_not_publish_an_explicit_port_twice() -> None:
    specs = ports.parse_all(["8080:80", PortSpec(443, host_port=8443)], exposed=["80/tcp", "22/tcp"])
    assert specs == [PortSpec(80, host_port=8080), PortSpec(443, host_port=8443), PortSpec(22)]


def test_published_port_round_trip_and_docker_format() -> None:
    port = PublishedPort("", 88, 80, "tcp")
    assert str(port) == "0.0.0.0:88->80/tcp"
    assert port.to_dict() == {"host_ip": "0.0.0.0", "host_port": 88, "container_port": 80, "protocol": "tcp"}
    assert PublishedPort.from_dict(port.to_dict()) == port
    local = PublishedPort("127.0.0.1", 5353, 53, "udp")
    assert PublishedPort.from_dict(local.to_dict()) == local


@pytest.mark.parametrize(
    ("other", "conflict"),
    [
        (("", 88, "tcp"), True),
        (("127.0.0.1", 88, "tcp"), True),
        (("127.0.0.2", 88, "tcp"), False),
        (("127.0.0.1", 88, "udp"), False),
        (("127.0.0.1", 89, "tcp"), False),
    ],
)
def test_overlap_rules(other: tuple, conflict: bool) -> None:
    assert PublishedPort("127.0.0.1", 88, 80, "tcp").overlaps(*other) is conflict
    assert PublishedPort("", 88, 80, "tcp").overlaps(*other) is (other[1:] == (88, "tcp"))


def test_try_bind_sees_a_listening_port_and_names_its_holder() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert ports.try_bind("127.0.0.1", port, "tcp") is None
        assert ports.try_bind("", port, "tcp") is None
        holder = ports.port_holder(port, "tcp")
        assert holder is not None
        assert "pid" in holder
        error = ports.port_taken_error("127.0.0.1", port, "tcp")
        assert isinstance(error, Conflict)
        assert f"127.0.0.1:{port}/tcp is already in use" in str(error)
        assert holder in str(error)
    assert ports.try_bind("127.0.0.1", port, "tcp") == port


def test_try_bind_udp_and_ephemeral() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        assert ports.try_bind("127.0.0.1", port, "udp") is None
    picked = ports.try_bind("127.0.0.1", 0, "udp")
    assert picked is not None
    assert picked > 0


def test_try_bind_rejects_an_address_that_is_not_local() -> None:
    with pytest.raises(InvalidArgument, match="not an address of this host"):
        ports.try_bind("192.0.2.123", 0, "tcp")
