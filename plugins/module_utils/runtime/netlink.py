"""A thin layer over pyroute2's ``IPRoute`` that behaves the same on 0.7.x and 0.9.x.

Debian 12 and EL9 package pyroute2 0.7 (threaded, synchronous), PyPI has 0.9
(rewritten on asyncio, with a synchronous ``IPRoute`` wrapper).  Only calls
verified on 0.7.2, 0.7.12 and 0.9.7 are used: ``link``/``addr``/``route``/
``brport`` requests with results wrapped in ``tuple()`` (0.7 returns tuples,
0.9 lists or generators), and attributes read with ``get_attr("IFLA_...")``
(0.7.2 has no short-name ``msg.get("ifname")``).  ``NetNS`` is never used:
the container side is configured by opening an ``IPRoute`` while the thread
is inside the namespace (see ``netns.entered``), which needs no helper
process on any version.  pyroute2 is imported when a :class:`Netlink` is
opened, never at module import.
"""

import errno
import ipaddress
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .errors import NetworkError


@dataclass(frozen=True)
class Link:
    index: int
    name: str
    kind: str
    master: int
    up: bool
    mac: str


def _link(msg: Any) -> Link:
    # NLAs by their full names through get_attr(): 0.7.2 (Debian 12) has no short-name msg.get("ifname").
    info = msg.get_attr("IFLA_LINKINFO")
    kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
    return Link(
        index=int(msg.get("index")),
        name=str(msg.get_attr("IFLA_IFNAME")),
        kind=str(kind or ""),
        master=int(msg.get_attr("IFLA_MASTER") or 0),
        up=bool(int(msg.get("flags") or 0) & 1),
        mac=str(msg.get_attr("IFLA_ADDRESS") or ""),
    )


def netlink_error_code(exc: BaseException) -> Optional[int]:
    """The errno of a pyroute2 ``NetlinkError`` (or of an ``OSError``)."""
    code = getattr(exc, "code", None)
    if code is None and isinstance(exc, OSError):
        code = exc.errno
    return int(code) if code is not None else None


def pyroute2_version() -> str:
    try:
        import pyroute2
    except ImportError:
        return ""
    return str(getattr(pyroute2, "__version__", "unknown"))


class Netlink:
    """One rtnetlink socket in the namespace of the calling thread (use as a context manager)."""

    def __init__(self) -> None:
        try:
            from pyroute2 import IPRoute
            from pyroute2.netlink.exceptions import NetlinkError
        except ImportError:
            raise NetworkError(
                "bridge networking needs the Python library pyroute2; install python3-pyroute2 "
                "(or 'pip install pyroute2'), or run containers with network mode 'host' or 'none'"
            ) from None
        self.NetlinkError = NetlinkError
        try:
            # No multicast subscriptions: 0.9 subscribes by default and queues every event.
            self._ipr = IPRoute(groups=0)
        except TypeError:  # pyroute2 0.7.2 (Debian 12) has no such argument and never subscribes
            self._ipr = IPRoute()

    def __enter__(self) -> "Netlink":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def _call(self, what: str, method: str, *args: Any, ignore: Tuple[int, ...] = (), **kwargs: Any) -> Tuple[Any, ...]:
        try:
            result = getattr(self._ipr, method)(*args, **kwargs)
            return tuple(result) if result is not None else ()
        except self.NetlinkError as exc:
            code = netlink_error_code(exc)
            if code in ignore:
                return ()
            raise NetworkError(f"{what} failed: {errno.errorcode.get(code or 0, code)} ({exc})") from None

    def link(self, name: str) -> Optional[Link]:
        """The link called *name*, or None."""
        found = self._call(f"looking up interface {name}", "link", "get", ifname=name, ignore=(errno.ENODEV,))
        return _link(found[0]) if found else None

    def links(self) -> List[Link]:
        return [_link(msg) for msg in self._call("listing interfaces", "link", "dump")]

    def create_bridge(self, name: str) -> Link:
        """Create a bridge, tolerating a concurrent creator; the link either way."""
        self._call(f"creating bridge {name}", "link", "add", ifname=name, kind="bridge", ignore=(errno.EEXIST,))
        link = self.link(name)
        if link is None:
            raise NetworkError(f"bridge {name} vanished right after it was created")
        return link

    def create_veth(self, name: str, peer: str, peer_netns: str, peer_mac: str) -> Link:
        """A veth pair whose peer is born inside the namespace at *peer_netns* (no move, no rename)."""
        self._call(
            f"creating veth {name} (peer {peer} in {peer_netns})",
            "link",
            "add",
            ifname=name,
            kind="veth",
            peer={"ifname": peer, "net_ns_fd": peer_netns, "address": peer_mac},
        )
        link = self.link(name)
        if link is None:
            raise NetworkError(f"veth {name} vanished right after it was created")
        return link

    def delete_link(self, name: str) -> bool:
        """Delete a link by name; False when it did not exist."""
        link = self.link(name)
        if link is None:
            return False
        self._call(f"deleting interface {name}", "link", "del", index=link.index, ignore=(errno.ENODEV,))
        return True

    def set_up(self, index: int, master: Optional[int] = None) -> None:
        extra = {"master": master} if master else {}
        self._call(f"bringing interface {index} up", "link", "set", index=index, state="up", **extra)

    def set_hairpin(self, index: int) -> None:
        """Hairpin mode on a bridge port (IFLA_BRPORT_MODE), so a container reaches itself through NAT."""
        self._call(f"setting hairpin mode on interface {index}", "brport", "set", index=index, mode=1)

    def addresses(self, index: int) -> List[ipaddress.IPv4Interface]:
        found = self._call("listing addresses", "get_addr", index=index, family=2)
        return [ipaddress.IPv4Interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg.get('prefixlen')}") for msg in found]

    def add_address(self, index: int, interface: ipaddress.IPv4Interface) -> None:
        self._call(
            f"adding address {interface} to interface {index}",
            "addr",
            "add",
            index=index,
            address=str(interface.ip),
            prefixlen=interface.network.prefixlen,
            ignore=(errno.EEXIST,),
        )

    def add_default_route(self, gateway: str) -> None:
        self._call(f"adding the default route via {gateway}", "route", "add", dst="default", gateway=gateway)

    def ipv4_routes(self) -> List[Tuple[ipaddress.IPv4Network, int]]:
        """(destination, output interface index) of the main table's IPv4 routes."""
        routes = []
        for msg in self._call("listing routes", "route", "dump", family=2):
            table = msg.get_attr("RTA_TABLE") or msg.get("table")
            destination = msg.get_attr("RTA_DST")
            if table != 254 or destination is None:
                continue
            network = ipaddress.IPv4Network(f"{destination}/{msg.get('dst_len')}", strict=False)
            routes.append((network, int(msg.get_attr("RTA_OIF") or 0)))
        return routes
