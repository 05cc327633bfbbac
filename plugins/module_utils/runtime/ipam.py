"""Address and host-port leases of one bridge, in a JSON file under an flock.

The file lives under ``exec_root`` (``/run/berth/network/<bridge>/leases.json``,
a tmpfs): a lease describes a veth, a network namespace and firewall rules,
all of which a reboot destroys, so the leases must not outlive them.  After a
reboot containers get new addresses when they start again, as with Docker.

Every change happens inside :func:`open_leases`, which holds an exclusive
``flock`` on ``leases.lock`` for the whole read-modify-write, so concurrent
``connect`` calls in different processes never hand out the same address or
host port.  Addresses are handed out round-robin after the last one given
(like CNI's host-local), so a freed address is not reused at once while
neighbours may still cache its MAC.
"""

import contextlib
import ipaddress
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional

from . import fsutil
from .errors import NetworkError
from .ports import PublishedPort

LEASE_FILE_VERSION = 1

STATE_CONNECTING = "connecting"
STATE_CONNECTED = "connected"


@dataclass
class Lease:
    """Everything needed to tear a container's bridge attachment down from another process."""

    container_id: str
    ip: str
    veth: str
    netns: str
    ports: List[Dict[str, Any]] = field(default_factory=list)
    firewall: str = "none"
    forwarding: str = "none"
    name: str = ""
    aliases: List[str] = field(default_factory=list)
    state: str = STATE_CONNECTING
    pid: int = 0
    created: float = 0.0
    hosts_path: str = ""

    def published(self) -> List[PublishedPort]:
        return [PublishedPort.from_dict(item) for item in self.ports]

    def hosts_names(self) -> List[str]:
        """The names others find this container by in /etc/hosts: its name, then its aliases."""
        return list(dict.fromkeys(name for name in (self.name, *self.aliases) if name))

    def connecting_elsewhere(self) -> bool:
        """True while another live process is still in the middle of connecting this lease."""
        return self.state == STATE_CONNECTING and self.pid != os.getpid() and pid_alive(self.pid)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Lease":
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in data.items() if key in known})


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseTable:
    """The decoded lease file: leases by container id, container-mode joins, the last address handed out."""

    def __init__(self, network: ipaddress.IPv4Interface, data: Optional[Mapping[str, Any]] = None) -> None:
        self.interface = network
        data = data or {}
        self.leases: Dict[str, Lease] = {
            key: Lease.from_dict(value) for key, value in dict(data.get("leases", {})).items()
        }
        self.joins: Dict[str, str] = dict(data.get("joins", {}))
        self.last_ip: str = str(data.get("last_ip", ""))
        self.dirty = False

    @property
    def network(self) -> ipaddress.IPv4Network:
        return self.interface.network

    @property
    def gateway(self) -> ipaddress.IPv4Address:
        return self.interface.ip

    def to_dict(self) -> Dict[str, Any]:
        return {
            "version": LEASE_FILE_VERSION,
            "subnet": str(self.network),
            "last_ip": self.last_ip,
            "leases": {key: asdict(value) for key, value in sorted(self.leases.items())},
            "joins": dict(sorted(self.joins.items())),
        }

    def allocate_address(self, prefer: Optional[str] = None) -> str:
        """A free host address of the subnet: *prefer* when free, else round-robin after the last one."""
        used = {lease.ip for lease in self.leases.values()}
        network = self.network
        first = int(network.network_address) + 1
        last = int(network.broadcast_address) - 1
        excluded = {int(self.gateway)}
        if prefer and prefer not in used:
            candidate = ipaddress.IPv4Address(prefer)
            if candidate in network and first <= int(candidate) <= last and int(candidate) not in excluded:
                self.last_ip = str(candidate)
                return str(candidate)
        start = int(ipaddress.IPv4Address(self.last_ip)) + 1 if self.last_ip else first
        if not first <= start <= last:
            start = first
        size = last - first + 1
        for step in range(size):
            number = first + (start - first + step) % size
            if number in excluded:
                continue
            address = str(ipaddress.IPv4Address(number))
            if address not in used:
                self.last_ip = address
                return address
        raise NetworkError(
            f"no free address left in {network} ({len(self.leases)} containers hold one); "
            "remove containers, run 'berth network prune', or configure a larger 'bip' in daemon.json"
        )

    def port_owner(self, host_ip: str, host_port: int, protocol: str, exclude: str = "") -> Optional[Lease]:
        """The lease that already publishes a conflicting host port, if any."""
        for lease in self.leases.values():
            if lease.container_id == exclude:
                continue
            if any(port.overlaps(host_ip, host_port, protocol) for port in lease.published()):
                return lease
        return None

    def add(self, lease: Lease) -> None:
        self.leases[lease.container_id] = lease
        self.dirty = True

    def remove(self, container_id: str) -> Optional[Lease]:
        lease = self.leases.pop(container_id, None)
        if lease is not None:
            self.dirty = True
        return lease

    def mark_connected(self, container_id: str) -> None:
        lease = self.leases.get(container_id)
        if lease is not None and lease.state != STATE_CONNECTED:
            lease.state = STATE_CONNECTED
            self.dirty = True

    def join(self, container_id: str, owner_id: str) -> None:
        if self.joins.get(container_id) != owner_id:
            self.joins[container_id] = owner_id
            self.dirty = True

    def leave(self, container_id: str) -> None:
        if self.joins.pop(container_id, None) is not None:
            self.dirty = True

    def find(self, name_or_id: str) -> Optional[Lease]:
        """A lease by container id, id prefix (12+ characters), name or network alias."""
        if name_or_id in self.leases:
            return self.leases[name_or_id]
        for lease in self.leases.values():
            if name_or_id in (lease.name, *lease.aliases):
                return lease
        if len(name_or_id) >= 12:
            matches = [lease for key, lease in self.leases.items() if key.startswith(name_or_id)]
            if len(matches) == 1:
                return matches[0]
        return None


def lease_paths(exec_root: str, bridge: str) -> Dict[str, str]:
    directory = os.path.join(exec_root, "network", bridge)
    return {
        "dir": directory,
        "file": os.path.join(directory, "leases.json"),
        "lock": os.path.join(directory, "leases.lock"),
    }


def read_table(path: str, network: ipaddress.IPv4Interface) -> LeaseTable:
    """The lease file as it is now (no lock: for reports only)."""
    try:
        data = fsutil.read_json(path, default=None)
    except ValueError as exc:
        raise NetworkError(
            f"the lease file {path} is not valid JSON ({exc}); stop berth's containers and remove it"
        ) from None
    if data is not None and not isinstance(data, dict):
        raise NetworkError(f"the lease file {path} is not a JSON object; stop berth's containers and remove it")
    return LeaseTable(network, data)


@contextlib.contextmanager
def open_leases(exec_root: str, bridge: str, network: ipaddress.IPv4Interface) -> Iterator[LeaseTable]:
    """Hold the bridge's lease lock; yield the table; write it back if it changed and no error escaped."""
    paths = lease_paths(exec_root, bridge)
    fsutil.makedirs(paths["dir"])
    with fsutil.locked(paths["lock"]):
        table = read_table(paths["file"], network)
        yield table
        if table.dirty:
            # No fsync: a machine crash also destroys the namespaces, veths and rules the
            # leases describe (and exec_root is a tmpfs on real hosts), while an fsync costs
            # ~5 ms per write on a disk-backed /run -- and connect writes the file twice.
            fsutil.write_json_atomic(paths["file"], table.to_dict(), 0o600, durable=False)


def new_lease(container_id: str, ip: str, veth: str, netns: str, **details: Any) -> Lease:
    return Lease(
        container_id=container_id, ip=ip, veth=veth, netns=netns, pid=os.getpid(), created=time.time(), **details
    )
