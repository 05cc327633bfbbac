"""IPAM: address allocation, host-port reservations, the locked lease file."""

import ipaddress
import json
import multiprocessing
import os

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import ipam
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import NetworkError

SMALL = ipaddress.IPv4Interface("10.231.7.1/29")  # hosts .1-.6, .1 is the gateway


def lease(container_id: str, ip: str, **details: object) -> ipam.Lease:
    return ipam.new_lease(container_id, ip, f"vb{container_id[:13]}", f"/run/x/{container_id}", **details)


def test_addresses_skip_gateway_network_and_broadcast_until_exhausted() -> None:
    table = ipam.LeaseTable(SMALL)
    given = []
    for number in range(5):
        address = table.allocate_address()
        given.append(address)
        table.add(lease(f"c{number}", address))
    assert given == ["10.231.7.2", "10.231.7.3", "10.231.7.4", "10.231.7.5", "10.231.7.6"]
    with pytest.raises(NetworkError, match=r"no free address left in 10\.231\.7\.0/29 \(5 containers"):
        table.allocate_address()


def test_allocation_is_round_robin_after_a_release() -> None:
    table = ipam.LeaseTable(SMALL)
    for number in range(3):
        table.add(lease(f"c{number}", table.allocate_address()))
    table.remove("c0")
    table.add(lease("c3", table.allocate_address()))
    table.add(lease("c4", table.allocate_address()))
    assert (table.leases["c3"].ip, table.leases["c4"].ip) == ("10.231.7.5", "10.231.7.6")
    assert table.allocate_address() == "10.231.7.2"  # wraps around to the released one


def test_preferred_address_is_used_when_free_and_valid() -> None:
    table = ipam.LeaseTable(SMALL)
    table.add(lease("a", "10.231.7.4"))
    assert table.allocate_address(prefer="10.231.7.6") == "10.231.7.6"
    assert table.allocate_address(prefer="10.231.7.4") != "10.231.7.4"
    assert table.allocate_address(prefer="10.231.7.1") != "10.231.7.1"
    assert table.allocate_address(prefer="10.9.9.9") != "10.9.9.9"


def test_port_owner_finds_conflicts_across_addresses() -> None:
    table = ipam.LeaseTable(SMALL)
    ports = [{"host_ip": "127.0.0.1", "host_port": 8080, "container_port": 80, "protocol": "tcp"}]
    table.add(lease("web", "10.231.7.2", ports=ports, name="web"))
    assert table.port_owner("", 8080, "tcp").container_id == "web"
    assert table.port_owner("127.0.0.1", 8080, "tcp").name == "web"
    assert table.port_owner("127.0.0.2", 8080, "tcp") is None
    assert table.port_owner("", 8080, "udp") is None
    assert table.port_owner("", 8080, "tcp", exclude="web") is None


def test_find_by_id_prefix_name_and_alias() -> None:
    table = ipam.LeaseTable(SMALL)
    table.add(lease("0123456789abcdef", "10.231.7.2", name="db", aliases=["database"]))
    assert table.find("db").ip == "10.231.7.2"
    assert table.find("database").ip == "10.231.7.2"
    assert table.find("0123456789ab").name == "db"
    assert table.find("0123") is None
    assert table.find("nope") is None


def test_lease_file_round_trip_and_no_write_on_error(tmp_path) -> None:
    root = str(tmp_path)
    with ipam.open_leases(root, "bt0", SMALL) as table:
        table.add(lease("a", table.allocate_address(), name="alpha"))
        table.join("b", "a")
    path = ipam.lease_paths(root, "bt0")["file"]
    with open(path) as handle:
        data = json.load(handle)
    assert data["leases"]["a"]["ip"] == "10.231.7.2"
    assert data["leases"]["a"]["state"] == ipam.STATE_CONNECTING
    assert data["joins"] == {"b": "a"}
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"

    def fail_half_way() -> None:
        with ipam.open_leases(root, "bt0", SMALL) as table:
            table.remove("a")
            raise RuntimeError("half-way")

    with pytest.raises(RuntimeError):
        fail_half_way()
    with ipam.open_leases(root, "bt0", SMALL) as table:
        assert set(table.leases) == {"a"}
        table.mark_connected("a")
        table.leave("b")
    reread = ipam.read_table(path, SMALL)
    assert reread.leases["a"].state == ipam.STATE_CONNECTED
    assert reread.joins == {}
    assert reread.last_ip == "10.231.7.2"


def test_corrupt_lease_file_is_a_clear_error(tmp_path) -> None:
    paths = ipam.lease_paths(str(tmp_path), "bt0")
    os.makedirs(paths["dir"])
    with open(paths["file"], "w") as handle:
        handle.write("{not json")
    with pytest.raises(NetworkError, match=r"not valid JSON.*remove it"), ipam.open_leases(str(tmp_path), "bt0", SMALL):
        pass


def test_connecting_elsewhere_only_while_that_process_lives() -> None:
    mine = lease("a", "10.231.7.2")
    assert not mine.connecting_elsewhere()  # this process: not "elsewhere"
    other = ipam.Lease("b", "10.231.7.3", "vbb", "/x", pid=1)
    assert other.connecting_elsewhere()
    other.state = ipam.STATE_CONNECTED
    assert not other.connecting_elsewhere()
    gone = ipam.Lease("c", "10.231.7.4", "vbc", "/x", pid=2**22 + 1)
    assert not gone.connecting_elsewhere()


def _allocate_in_child(root: str, number: int, queue: "multiprocessing.Queue[str]") -> None:
    network = ipaddress.IPv4Interface("10.231.8.1/24")
    with ipam.open_leases(root, "bt0", network) as table:
        address = table.allocate_address()
        table.add(lease(f"c{number}", address))
    queue.put(address)


def test_parallel_processes_never_share_an_address(tmp_path) -> None:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_allocate_in_child, args=(str(tmp_path), n, queue)) for n in range(10)]
    for child in children:
        child.start()
    for child in children:
        child.join(30)
        assert child.exitcode == 0
    addresses = [queue.get(timeout=5) for _child in children]
    assert len(set(addresses)) == 10
    table = ipam.read_table(ipam.lease_paths(str(tmp_path), "bt0")["file"], ipaddress.IPv4Interface("10.231.8.1/24"))
    assert sorted(lease.ip for lease in table.leases.values()) == sorted(addresses)
