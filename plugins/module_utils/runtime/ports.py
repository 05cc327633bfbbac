"""Published ports: Docker's ``-p`` / ``-P`` syntax, and host ports that are free.

``-p`` takes ``[IP:][HOST:]CONTAINER[/tcp|udp]`` where HOST and CONTAINER may
be ranges (``8000-8002:80-82``), HOST may be omitted or empty (an ephemeral
port, like ``docker run -p 80``), and a HOST range with a single CONTAINER
port means "any free port of that range" (``8000-8010:80``).  ``-P`` publishes
every port the image EXPOSEs to an ephemeral host port.

Parsing is pure; the second half of the module asks the kernel whether a host
port is free (by binding it) and, when it is not, who holds it.
"""

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from .errors import Conflict, InvalidArgument

PROTOCOLS = ("tcp", "udp")
ANY_ADDRESS = "0.0.0.0"  # a published port without an address means all of them


@dataclass(frozen=True)
class PortSpec:
    """One requested mapping, before the host port is chosen.

    ``host_ip`` is ``""`` for all addresses; ``host_port`` 0 means ephemeral;
    ``host_port_end`` > ``host_port`` means "the first free port of that range".
    """

    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""
    host_port: int = 0
    host_port_end: int = 0

    def candidates(self) -> List[int]:
        """The host ports this spec may use, in order of preference (empty: ephemeral)."""
        if self.host_port == 0:
            return []
        return list(range(self.host_port, max(self.host_port, self.host_port_end) + 1))

    def __str__(self) -> str:
        host = ""
        if self.host_port:
            host = str(self.host_port)
            if self.host_port_end > self.host_port:
                host += f"-{self.host_port_end}"
        prefix = f"{self.host_ip}:{host}:" if self.host_ip else (f"{host}:" if host else "")
        return f"{prefix}{self.container_port}/{self.protocol}"


@dataclass(frozen=True)
class PublishedPort:
    """A mapping with its host port resolved: what ``docker ps`` shows as ``0.0.0.0:88->80/tcp``."""

    host_ip: str
    host_port: int
    container_port: int
    protocol: str

    @property
    def bind_address(self) -> str:
        return self.host_ip or ANY_ADDRESS

    def to_dict(self) -> Dict[str, Any]:
        return {
            "host_ip": self.bind_address,
            "host_port": self.host_port,
            "container_port": self.container_port,
            "protocol": self.protocol,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PublishedPort":
        host_ip = str(data.get("host_ip") or "")
        return cls(
            host_ip="" if host_ip == ANY_ADDRESS else host_ip,
            host_port=int(data["host_port"]),
            container_port=int(data["container_port"]),
            protocol=str(data.get("protocol", "tcp")),
        )

    def overlaps(self, host_ip: str, host_port: int, protocol: str) -> bool:
        """True when this binding and (host_ip, host_port, protocol) cannot both exist."""
        if self.protocol != protocol or self.host_port != host_port:
            return False
        return not self.host_ip or not host_ip or self.host_ip == host_ip

    def __str__(self) -> str:
        return f"{self.bind_address}:{self.host_port}->{self.container_port}/{self.protocol}"


def _port_number(text: str, spec: str) -> int:
    if not text.isdigit():
        raise InvalidArgument(f"invalid port {text!r} in published port {spec!r}: ports are numbers from 1 to 65535")
    number = int(text)
    if not 1 <= number <= 65535:
        raise InvalidArgument(f"port {number} in published port {spec!r} is out of range: use 1 to 65535")
    return number


def _port_range(text: str, spec: str) -> Tuple[int, int]:
    first, dash, last = text.partition("-")
    start = _port_number(first, spec)
    end = _port_number(last, spec) if dash else start
    if end < start:
        raise InvalidArgument(f"invalid port range {text!r} in published port {spec!r}: the end is below the start")
    return start, end


def _host_address(text: str, spec: str) -> str:
    if text.startswith("["):
        raise InvalidArgument(f"published port {spec!r}: IPv6 host addresses are not supported; use an IPv4 address")
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise InvalidArgument(
            f"published port {spec!r}: {text!r} is not an IPv4 address (the form is [IP:]HOST:CONTAINER[/tcp|udp])"
        ) from None
    return "" if address.is_unspecified else str(address)


def parse_publish(spec: str) -> List[PortSpec]:
    """Parse one ``-p`` value into one spec per container port."""
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidArgument(f"published port {spec!r} is empty: the form is [IP:]HOST:CONTAINER[/tcp|udp]")
    text = spec.strip()
    protocol = "tcp"
    if "/" in text:
        text, _slash, protocol = text.rpartition("/")
        protocol = protocol.lower()
        if protocol not in PROTOCOLS:
            raise InvalidArgument(f"published port {spec!r}: protocol {protocol!r} is not supported; use tcp or udp")
    if text.startswith("["):
        _host_address(text, spec)
    parts = text.split(":")
    if len(parts) > 3:
        raise InvalidArgument(f"published port {spec!r} has too many ':' (the form is [IP:]HOST:CONTAINER[/tcp|udp])")
    host_ip = _host_address(parts[0], spec) if len(parts) == 3 else ""
    host_text = parts[-2] if len(parts) >= 2 else ""
    container_start, container_end = _port_range(parts[-1], spec)
    count = container_end - container_start + 1
    if not host_text:
        return [PortSpec(port, protocol, host_ip) for port in range(container_start, container_end + 1)]
    host_start, host_end = _port_range(host_text, spec)
    if count == 1:
        return [PortSpec(container_start, protocol, host_ip, host_start, host_end if host_end > host_start else 0)]
    if host_end - host_start + 1 != count:
        raise InvalidArgument(
            f"published port {spec!r}: the host range {host_text} and the container range {parts[-1]} "
            "must have the same length"
        )
    return [PortSpec(container_start + offset, protocol, host_ip, host_start + offset) for offset in range(count)]


def parse_exposed(exposed: Union[Mapping[str, Any], Iterable[str]]) -> List[PortSpec]:
    """``-P``: every port of an image's ``ExposedPorts`` (``{"80/tcp": {}}``) to an ephemeral host port."""
    specs: List[PortSpec] = []
    for key in sorted(exposed):
        port_text, _slash, protocol = str(key).partition("/")
        protocol = (protocol or "tcp").lower()
        if protocol not in PROTOCOLS:
            continue
        start, end = _port_range(port_text, str(key))
        specs.extend(PortSpec(port, protocol) for port in range(start, end + 1))
    return specs


def parse_all(
    published: Iterable[Union[str, PortSpec]] = (),
    exposed: Optional[Union[Mapping[str, Any], Iterable[str]]] = None,
) -> List[PortSpec]:
    """The ``-p`` values (strings or specs) plus, with ``exposed``, ``-P`` for ports not already published."""
    specs: List[PortSpec] = []
    for item in published:
        specs.extend([item] if isinstance(item, PortSpec) else parse_publish(item))
    if exposed:
        taken = {(spec.container_port, spec.protocol) for spec in specs}
        specs.extend(spec for spec in parse_exposed(exposed) if (spec.container_port, spec.protocol) not in taken)
    return specs


_BIND_ERRORS = {errno.EADDRINUSE, errno.EACCES}


def _socket_type(protocol: str) -> int:
    return socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM


def try_bind(host_ip: str, port: int, protocol: str) -> Optional[int]:
    """Bind (host_ip, port) once to see if it is free; return the port bound (0 asks the kernel) or None.

    TCP binds with SO_REUSEADDR so connections in TIME_WAIT do not count, while
    a listening socket still does (Linux refuses a second bind to a listened port).
    """
    with socket.socket(socket.AF_INET, _socket_type(protocol)) as probe:
        if protocol == "tcp":
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host_ip or ANY_ADDRESS, port))
        except OSError as exc:
            if exc.errno == errno.EADDRNOTAVAIL:
                raise InvalidArgument(
                    f"host address {host_ip} is not an address of this host; publish on one of its addresses"
                ) from None
            if exc.errno in _BIND_ERRORS:
                return None
            raise
        return int(probe.getsockname()[1])


def _socket_inodes(port: int, protocol: str) -> List[str]:
    """Inodes of host sockets bound to *port* (listening ones for TCP) from /proc/net."""
    inodes: List[str] = []
    for table in (f"/proc/net/{protocol}", f"/proc/net/{protocol}6"):
        try:
            with open(table, encoding="ascii") as handle:
                lines = handle.readlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local_port = int(fields[1].rpartition(":")[2], 16)
            listening = protocol == "udp" or fields[3] == "0A"
            if local_port == port and listening:
                inodes.append(fields[9])
    return inodes


def port_holder(port: int, protocol: str) -> Optional[str]:
    """``"nginx (pid 123)"`` for the process holding a host port, when /proc tells."""
    targets = {f"socket:[{inode}]" for inode in _socket_inodes(port, protocol)}
    if not targets:
        return None
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fd_dir = f"/proc/{pid}/fd"
        try:
            names = os.listdir(fd_dir)
        except OSError:
            continue
        for name in names:
            try:
                if os.readlink(f"{fd_dir}/{name}") in targets:
                    with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as handle:
                        return f"{handle.read().strip()} (pid {pid})"
            except OSError:
                continue
    return None


def port_taken_error(host_ip: str, port: int, protocol: str, owner: Optional[str] = None) -> Conflict:
    """The error users see for a host port in use, naming what holds it when that is known."""
    where = f"{host_ip or ANY_ADDRESS}:{port}/{protocol}"
    holder = owner or port_holder(port, protocol)
    held = f" (held by {holder})" if holder else ""
    return Conflict(
        f"host port {where} is already in use{held}; choose another host port, "
        f"or leave the host port out to get a free one"
    )
