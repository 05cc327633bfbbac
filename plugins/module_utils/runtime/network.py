"""The network stage of a container: bridge, veth, address, published ports.

Flow (the caller owns the namespace handle and the container's state)::

    netns_path = create_netns(container_id)
    attachment = connect(container_id, netns_path, ports=["88:80"], name="web")
    ...                                   # store attachment.to_dict() with the container
    disconnect(container_id, attachment)  # veth (host side first), rules, lease
    delete_netns(netns_path)
    prune(live_container_ids)             # leftovers of crashed containers

Bridge mode puts the container on ``berth0`` (``bridge`` in daemon.json) with
an address from ``bip``'s subnet (:mod:`ipam`), a veth whose container end is
created directly inside the namespace as ``eth0`` and configured from inside
it (:mod:`netns`, :mod:`netlink`), and published ports through kernel NAT
(:mod:`netfilter`) or, without netfilter, the userland proxy the supervisor
runs (:mod:`portproxy`).  Every call is idempotent: a retry after a crash
first removes what the crashed attempt left, and a failure half-way rolls
back what the attempt made.  The lease file is the record of what exists;
rules and veths are found from it (and by their names/comments in ``prune``).
"""

import contextlib
import hashlib
import ipaddress
import os
import re
import stat
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from . import config as berth_config
from . import ipam, netfilter, netns
from .errors import Conflict, InvalidArgument, NetworkError
from .netlink import Link, Netlink
from .ports import PortSpec, PublishedPort, parse_all, port_taken_error, try_bind

VETH_PREFIX = "vb"
CONTAINER_IFNAME = "eth0"

MODE_BRIDGE = "bridge"
MODE_HOST = "host"
MODE_NONE = "none"
MODE_CONTAINER = "container"

FORWARD_NAT = "nat"
FORWARD_PROXY = "proxy"
FORWARD_NONE = "none"

_CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_HEX_ID = re.compile(r"^[0-9a-f]{13,}$")
_EPHEMERAL_ATTEMPTS = 32

LivenessCheck = Callable[[str], bool]


@dataclass
class Attachment:
    """What ``connect`` made, JSON-serialisable so ``disconnect`` works from another process."""

    container_id: str
    mode: str = MODE_BRIDGE
    netns: str = ""
    bridge: str = ""
    ip: str = ""
    prefixlen: int = 0
    gateway: str = ""
    mac: str = ""
    host_veth: str = ""
    ports: List[PublishedPort] = field(default_factory=list)
    firewall: str = netfilter.NONE
    forwarding: str = FORWARD_NONE
    name: str = ""
    aliases: List[str] = field(default_factory=list)
    joined: str = ""

    def to_dict(self) -> Dict[str, Any]:
        return {
            "container_id": self.container_id,
            "mode": self.mode,
            "netns": self.netns,
            "bridge": self.bridge,
            "ip": self.ip,
            "prefixlen": self.prefixlen,
            "gateway": self.gateway,
            "mac": self.mac,
            "host_veth": self.host_veth,
            "ports": [port.to_dict() for port in self.ports],
            "firewall": self.firewall,
            "forwarding": self.forwarding,
            "name": self.name,
            "aliases": list(self.aliases),
            "joined": self.joined,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Attachment":
        values = dict(data)
        values["ports"] = [PublishedPort.from_dict(item) for item in values.get("ports", [])]
        values["aliases"] = list(values.get("aliases", []))
        known = set(cls.__dataclass_fields__)
        return cls(**{key: value for key, value in values.items() if key in known})

    def ports_summary(self) -> str:
        """Docker's PORTS column: ``0.0.0.0:88->80/tcp, 0.0.0.0:5353->53/udp``."""
        return ", ".join(str(port) for port in self.ports)

    def hosts_names(self) -> List[str]:
        """The names this container answers to on the bridge (its name, then its aliases)."""
        names = [self.name] if self.name else []
        return names + [alias for alias in self.aliases if alias and alias not in names]


def _as_attachment(value: Union[Attachment, Mapping[str, Any], None]) -> Optional[Attachment]:
    if value is None or isinstance(value, Attachment):
        return value
    return Attachment.from_dict(value)


def validate_container_id(container_id: str) -> str:
    if not isinstance(container_id, str) or not _CONTAINER_ID.match(container_id):
        raise InvalidArgument(
            f"invalid container id {container_id!r}: use letters, digits, '_', '.' and '-' (at most 128)"
        )
    return container_id


def veth_name(container_id: str) -> str:
    """The host end's name: ``vb`` + 13 characters of the id (hashed when the id is not hex), 15 in all."""
    key = container_id if _HEX_ID.match(container_id) else hashlib.sha256(container_id.encode()).hexdigest()
    return f"{VETH_PREFIX}{key[:13]}"


def mac_for(ip: str) -> str:
    """A locally administered MAC derived from the address (Docker's 02:42 scheme): a reused address keeps its MAC."""
    return "02:42:" + ":".join(f"{byte:02x}" for byte in ipaddress.IPv4Address(ip).packed)


def parse_mode(mode: str) -> Tuple[str, str]:
    """``bridge``/``host``/``none``/``container:NAME`` -> (mode, NAME)."""
    mode = (mode or MODE_BRIDGE).strip()
    if mode in ("default", MODE_BRIDGE, berth_config.DEFAULT_BRIDGE):
        return MODE_BRIDGE, ""
    if mode in (MODE_HOST, MODE_NONE):
        return mode, ""
    if mode.startswith(f"{MODE_CONTAINER}:") and mode[len(MODE_CONTAINER) + 1 :]:
        return MODE_CONTAINER, mode[len(MODE_CONTAINER) + 1 :]
    raise InvalidArgument(f"invalid network mode {mode!r}: use bridge, host, none or container:NAME")


def _write_sysctl(path: str, value: str) -> None:
    """Write a sysctl only when it differs (reads are cheap, writes may have side effects)."""
    try:
        with open(path, encoding="ascii") as handle:
            if handle.read().strip() == value:
                return
        with open(path, "w", encoding="ascii") as handle:
            handle.write(value)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise NetworkError(f"cannot set {path} to {value}: {exc.strerror}") from None


def _read_sysctl(path: str) -> str:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


IP_FORWARD = "/proc/sys/net/ipv4/ip_forward"
ADDRESS_POOLS_KEY = "default-address-pools"

AddressPool = Tuple[ipaddress.IPv4Network, int]


def address_pools(config: berth_config.DaemonConfig) -> List[AddressPool]:
    """The IPv4 ``default-address-pools`` of the configuration, as networks."""
    return [(ipaddress.IPv4Network(base), size) for base, size in config.default_address_pools]


def pick_pool_subnet(pools: Sequence[AddressPool], taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Interface:
    """The first subnet of the pools that overlaps no host route; the bridge takes its first address."""
    busy = [network for network in taken if network.prefixlen]
    for base, size in pools:
        for subnet in base.subnets(new_prefix=size):
            if not any(subnet.overlaps(network) for network in busy):
                return ipaddress.IPv4Interface(f"{subnet.network_address + 1}/{size}")
    raise NetworkError(
        f"every subnet of {ADDRESS_POOLS_KEY} overlaps a host route; add a pool or set 'bip' in daemon.json"
    )


class BridgeNetwork:
    """The network stage for one host configuration (one bridge, one lease file)."""

    def __init__(
        self,
        config: Optional[berth_config.DaemonConfig] = None,
        is_alive: Optional[LivenessCheck] = None,
        runner: netfilter.Runner = netfilter.run_command,
    ) -> None:
        self.config = config or berth_config.load()
        self.is_alive = is_alive
        self.runner = runner
        self.bridge = self.config.bridge
        self.interface = self._bridge_interface()
        self.plan = netfilter.FirewallPlan(
            self.bridge, str(self.interface.network), self.config.ip_masq, gateway=str(self.interface.ip)
        )
        self.lease_file = ipam.lease_paths(self.config.exec_root, self.bridge)["file"]

    def _bridge_interface(self) -> ipaddress.IPv4Interface:
        """``bip``; or, with ``default-address-pools`` and no ``bip``, the bridge's pool subnet (Docker's rule).

        Once the bridge exists its address is kept, so every process agrees on
        the subnet even though the bridge's own route now covers it.
        """
        pools = address_pools(self.config)
        if not pools or self.config.bip_explicit or self.config.bip != berth_config.DEFAULT_BIP:
            return self.config.bridge_network
        with Netlink() as link_api:
            bridge = link_api.link(self.bridge)
            if bridge is not None:
                for address in link_api.addresses(bridge.index):
                    if any(address.network.subnet_of(base) for base, _size in pools):
                        return address
            routes = [network for network, _oif in link_api.ipv4_routes()]
        return pick_pool_subnet(pools, routes)

    # ------------------------------------------------------------------ namespaces

    @property
    def netns_dir(self) -> str:
        return os.path.join(self.config.exec_root, "netns")

    def netns_path(self, container_id: str) -> str:
        return os.path.join(self.netns_dir, validate_container_id(container_id))

    def create_netns(self, container_id: str) -> str:
        return netns.create(self.netns_path(container_id))

    # ------------------------------------------------------------------ choices

    def backend(self) -> str:
        return netfilter.select_backend(self.config.firewall_backend)

    def forwarding(self, backend: str) -> str:
        return FORWARD_PROXY if backend == netfilter.NONE or self.config.userland_proxy else FORWARD_NAT

    def firewall(self, backend: str) -> netfilter.Firewall:
        return netfilter.firewall_for(backend, self.plan, self.runner)

    def _leases(self) -> Any:
        return ipam.open_leases(self.config.exec_root, self.bridge, self.interface)

    # ------------------------------------------------------------------ connect

    def connect(
        self,
        container_id: str,
        netns_path: str,
        *,
        ports: Iterable[Union[str, PortSpec]] = (),
        name: str = "",
        aliases: Sequence[str] = (),
        mode: str = MODE_BRIDGE,
        exposed_ports: Optional[Union[Mapping[str, Any], Iterable[str]]] = None,
    ) -> Attachment:
        """Attach the container whose namespace is at *netns_path*; see the module doc for the flow."""
        validate_container_id(container_id)
        kind, joined = parse_mode(mode)
        base = Attachment(container_id, mode=kind, netns=netns_path, name=name or "", aliases=list(aliases))
        if kind == MODE_HOST:
            return base
        if kind == MODE_CONTAINER:
            base.joined = joined
            with self._leases() as table:
                table.join(container_id, joined)
            return base
        if not netns.is_netns(netns_path):
            raise NetworkError(f"{netns_path} is not a network namespace; create it with create_netns() first")
        if kind == MODE_NONE:
            self._configure_inside(netns_path, None)
            return base
        specs = parse_all(ports, exposed_ports)
        return self._connect_bridge(base, specs)

    def _connect_bridge(self, attachment: Attachment, specs: List[PortSpec]) -> Attachment:
        container_id = attachment.container_id
        backend = self.backend()
        forwarding = self.forwarding(backend)
        veth = veth_name(container_id)
        with Netlink() as link_api:
            bridge = self._ensure_bridge(link_api)
            with self._leases() as table:
                stale = table.remove(container_id)
                reclaimed = self._reclaim_dead(table, container_id)
                published = self._resolve_ports(table, specs, container_id)
                ip = table.allocate_address(prefer=stale.ip if stale else None)
                lease = ipam.new_lease(
                    container_id,
                    ip,
                    veth,
                    attachment.netns,
                    ports=[port.to_dict() for port in published],
                    firewall=backend,
                    forwarding=forwarding,
                    name=attachment.name,
                    aliases=list(attachment.aliases),
                )
                self._release_rules([lease for lease in (stale, *reclaimed) if lease is not None], table)
                table.add(lease)
                firewall = self.firewall(backend)
                rebuilt = firewall.ensure(self._wanted_dnats(table, backend))
                if forwarding == FORWARD_NAT and published and not rebuilt:
                    firewall.add(container_id, self._dnats(ip, published))
            for old in reclaimed:
                link_api.delete_link(old.veth)
            try:
                self._plug(link_api, bridge, veth, attachment.netns, ip)
                with self._leases() as table:
                    table.mark_connected(container_id)
            except BaseException:
                # Roll back; should that fail too, the lease left behind lets prune finish the job.
                with contextlib.suppress(Exception):
                    link_api.delete_link(veth)
                with contextlib.suppress(Exception):
                    self._forget(container_id, {backend})
                raise
        attachment.bridge = self.bridge
        attachment.ip = ip
        attachment.prefixlen = self.interface.network.prefixlen
        attachment.gateway = str(self.interface.ip)
        attachment.mac = mac_for(ip)
        attachment.host_veth = veth
        attachment.ports = published
        attachment.firewall = backend
        attachment.forwarding = forwarding
        return attachment

    def _plug(self, link_api: Netlink, bridge: Link, veth: str, netns_path: str, ip: str) -> None:
        """The veth pair (container end born in the namespace as eth0) and the container-side set-up."""
        link_api.delete_link(veth)
        host_end = link_api.create_veth(veth, CONTAINER_IFNAME, netns_path, mac_for(ip))
        link_api.set_up(host_end.index, master=bridge.index)
        link_api.set_hairpin(host_end.index)
        self._configure_inside(netns_path, ipaddress.IPv4Interface(f"{ip}/{self.interface.network.prefixlen}"))

    def _configure_inside(self, netns_path: str, address: Optional[ipaddress.IPv4Interface]) -> None:
        """lo up; with an address: eth0 addressed, up, default route via the bridge."""
        with netns.entered(netns_path), Netlink() as inner:
            loopback = inner.link("lo")
            if loopback is not None:
                inner.set_up(loopback.index)
            if address is None:
                return
            eth = inner.link(CONTAINER_IFNAME)
            if eth is None:
                raise NetworkError(f"{CONTAINER_IFNAME} did not appear in {netns_path}")
            inner.add_address(eth.index, address)
            inner.set_up(eth.index)
            inner.add_default_route(str(self.interface.ip))

    def _ensure_bridge(self, link_api: Netlink) -> Link:
        bridge = link_api.link(self.bridge)
        if bridge is None:
            self._check_overlap(link_api)
            bridge = link_api.create_bridge(self.bridge)
        elif bridge.kind != "bridge":
            raise NetworkError(
                f"interface {self.bridge} exists but is a {bridge.kind or 'non-bridge'} interface; "
                "set 'bridge' in daemon.json to another name"
            )
        conf = f"/proc/sys/net/ipv4/conf/{self.bridge}"
        _write_sysctl(f"/proc/sys/net/ipv6/conf/{self.bridge}/accept_ra", "0")
        _write_sysctl(f"{conf}/route_localnet", "1")
        _write_sysctl(f"{conf}/rp_filter", "2")
        if self.interface not in link_api.addresses(bridge.index):
            link_api.add_address(bridge.index, self.interface)
        if not bridge.up:
            link_api.set_up(bridge.index)
        if self.config.ip_forward:
            _write_sysctl(IP_FORWARD, "1")
        return bridge

    def _check_overlap(self, link_api: Netlink) -> None:
        """Refuse a subnet the host already routes elsewhere (a concurrent creator's own bridge route is fine)."""
        subnet = self.interface.network
        routes = link_api.ipv4_routes()
        ours = link_api.link(self.bridge)  # looked up after the routes: a route on it means it exists by now
        for network, oif in routes:
            if ours is not None and oif == ours.index:
                continue
            if network.prefixlen and network.overlaps(subnet):
                raise NetworkError(
                    f"the bridge subnet {subnet} (of {self.bridge}) overlaps the host route {network}; "
                    "set 'bip' in daemon.json to an unused private range"
                )

    def _reclaim_dead(self, table: ipam.LeaseTable, connecting_id: str) -> List[ipam.Lease]:
        """Leases whose container is gone (by the liveness callable, else by its namespace handle)."""
        dead = []
        for lease in list(table.leases.values()):
            if lease.container_id == connecting_id or lease.connecting_elsewhere():
                continue
            alive = self.is_alive(lease.container_id) if self.is_alive else netns.is_netns(lease.netns)
            if not alive:
                table.remove(lease.container_id)
                dead.append(lease)
        return dead

    def _resolve_ports(self, table: ipam.LeaseTable, specs: List[PortSpec], container_id: str) -> List[PublishedPort]:
        chosen: List[PublishedPort] = []
        for spec in specs:
            port = self._pick_host_port(table, spec, chosen, container_id)
            chosen.append(PublishedPort(spec.host_ip, port, spec.container_port, spec.protocol))
        return chosen

    def _pick_host_port(
        self, table: ipam.LeaseTable, spec: PortSpec, chosen: List[PublishedPort], container_id: str
    ) -> int:
        def berth_owner(port: int) -> Optional[str]:
            if any(item.overlaps(spec.host_ip, port, spec.protocol) for item in chosen):
                return "this container (published twice)"
            lease = table.port_owner(spec.host_ip, port, spec.protocol, exclude=container_id)
            return f"berth container {lease.name or lease.container_id[:12]}" if lease else None

        candidates = spec.candidates()
        if not candidates:
            for _attempt in range(_EPHEMERAL_ATTEMPTS):
                port = try_bind(spec.host_ip, 0, spec.protocol)
                if port and not berth_owner(port):
                    return port
            raise NetworkError(f"no free ephemeral host port found for {spec}")
        for port in candidates:
            owner = berth_owner(port)
            if owner is None and try_bind(spec.host_ip, port, spec.protocol):
                return port
            if len(candidates) == 1:
                raise port_taken_error(spec.host_ip, port, spec.protocol, owner)
        raise Conflict(
            f"no free host port in {candidates[0]}-{candidates[-1]}/{spec.protocol} for {spec}; "
            "choose another range or leave the host port out"
        )

    @staticmethod
    def _dnats(ip: str, published: Iterable[PublishedPort]) -> List[netfilter.Dnat]:
        return [
            netfilter.Dnat(port.protocol, port.host_ip, port.host_port, ip, port.container_port) for port in published
        ]

    def _wanted_dnats(self, table: ipam.LeaseTable, backend: str) -> Dict[str, List[netfilter.Dnat]]:
        return {
            lease.container_id: self._dnats(lease.ip, lease.published())
            for lease in table.leases.values()
            if lease.firewall == backend and lease.forwarding == FORWARD_NAT
        }

    def _release_rules(self, leases: Sequence[ipam.Lease], table: ipam.LeaseTable) -> None:
        """Remove the DNAT rules of *leases* (already out of *table*), per the backend each used."""
        by_backend: Dict[str, List[str]] = {}
        for lease in leases:
            if lease.forwarding == FORWARD_NAT and lease.ports:
                by_backend.setdefault(lease.firewall, []).append(lease.container_id)
        for backend, owners in by_backend.items():
            self.firewall(backend).remove(owners)

    def _forget(self, container_id: str, backends: Iterable[str]) -> None:
        """Drop a lease and its rules; when no lease is left, drop berth's firewall objects too."""
        with self._leases() as table:
            lease = table.remove(container_id)
            used = set(backends) | ({lease.firewall} if lease else set())
            had_rules = lease is None or (lease.forwarding == FORWARD_NAT and bool(lease.ports))
            for backend in sorted(used - {netfilter.NONE}):
                firewall = self.firewall(backend)
                if not table.leases:
                    firewall.remove_all()
                elif had_rules:
                    firewall.remove([container_id])
            if lease is not None:
                self._rewrite_hosts(table)

    # ------------------------------------------------------------------ names

    def sync_hosts(self, container_id: str, hosts_path: str) -> None:
        """Record the host path of a connected container's /etc/hosts and bring every such file up to date.

        Each container on the bridge then finds every other one by name and
        network alias, and the files follow as containers come and go (what
        Docker's embedded DNS gives on user-defined networks, done with
        /etc/hosts).  Only the block after :data:`HOSTS_MARKER` is berth's; the
        lines above it (localhost, the container's host name) are kept.
        Call it after writing the container's /etc/hosts.
        """
        if not os.path.isabs(hosts_path):
            raise InvalidArgument(f"the hosts file path {hosts_path!r} must be absolute")
        with self._leases() as table:
            lease = table.leases.get(container_id)
            if lease is None:
                raise NetworkError(f"container {container_id[:12]} is not connected to {self.bridge}; connect it first")
            if lease.hosts_path != hosts_path:
                lease.hosts_path = hosts_path
                table.dirty = True
            problems = self._rewrite_hosts(table)
        if container_id in problems:
            raise NetworkError(f"cannot write the container's hosts file {hosts_path}: {problems[container_id]}")

    def _rewrite_hosts(self, table: ipam.LeaseTable) -> Dict[str, str]:
        """Rewrite the bridge block of every recorded hosts file (under the lease lock); return failures by id.

        A failure for one container never stops the others: their files are
        refreshed again by the next change on the bridge.
        """
        named = sorted((lease for lease in table.leases.values() if lease.hosts_names()), key=_ip_order)
        problems: Dict[str, str] = {}
        for lease in table.leases.values():
            if not lease.hosts_path:
                continue
            block = hosts_block(self.bridge, lease, [other for other in named if other is not lease])
            try:
                replace_hosts_block(lease.hosts_path, block)
            except FileNotFoundError:
                continue  # the container's directory is gone; prune drops the lease
            except (OSError, ValueError) as exc:
                problems[lease.container_id] = getattr(exc, "strerror", None) or str(exc)
        return problems

    # ------------------------------------------------------------------ disconnect

    def disconnect(self, container_id: str, attachment: Union[Attachment, Mapping[str, Any], None] = None) -> None:
        """Undo ``connect``: host veth first, then the lease and its rules.  Safe to call twice.

        A container that joined another's namespace (``container:NAME``) only
        drops its join record: the namespace and its veth belong to the owner.
        """
        validate_container_id(container_id)
        known = _as_attachment(attachment)
        mode = known.mode if known else MODE_BRIDGE
        if mode == MODE_CONTAINER:
            with self._leases() as table:
                table.leave(container_id)
            return
        if mode in (MODE_HOST, MODE_NONE):
            return
        lease = ipam.read_table(self.lease_file, self.interface).leases.get(container_id)
        veth = (lease.veth if lease else "") or (known.host_veth if known else "") or veth_name(container_id)
        with Netlink() as link_api:
            link_api.delete_link(veth)
        backends = {known.firewall} if known else set()
        self._forget(container_id, backends)

    # ------------------------------------------------------------------ prune

    def prune(self, live_container_ids: Iterable[str]) -> Dict[str, List[str]]:
        """Remove leases, rules, veths and namespace handles of containers not in *live_container_ids*.

        *live_container_ids* must hold every container that may own network
        resources (created, starting or running).  A dead container whose
        namespace a live ``container:`` joiner still uses is kept.
        """
        live = set(live_container_ids)
        report: Dict[str, List[str]] = {"leases": [], "veths": [], "netns": [], "rules": []}
        with Netlink() as link_api, self._leases() as table:
            protected = {owner for joiner, owner in table.joins.items() if joiner in live}
            for joiner in [joiner for joiner in table.joins if joiner not in live]:
                table.leave(joiner)
            doomed = [
                lease
                for lease in list(table.leases.values())
                if lease.container_id not in live
                and lease.container_id not in protected
                and not lease.connecting_elsewhere()
            ]
            for lease in doomed:
                table.remove(lease.container_id)
                report["leases"].append(lease.container_id)
            if doomed:
                self._rewrite_hosts(table)
            report["rules"] = self._prune_rules(table)
            report["veths"] = self._prune_veths(link_api, table, doomed)
        report["netns"] = self._prune_netns(live | protected)
        return report

    def _available_backends(self) -> List[str]:
        found = []
        for backend in (netfilter.NFTABLES, netfilter.IPTABLES):
            try:
                found.append(netfilter.select_backend(backend))
            except NetworkError:
                continue
        return found

    def _prune_rules(self, table: ipam.LeaseTable) -> List[str]:
        removed: List[str] = []
        for backend in self._available_backends():
            firewall = self.firewall(backend)
            if not table.leases:
                if firewall.present():
                    firewall.remove_all()
                    removed.append(f"{backend}: all")
                continue
            stale = firewall.owners() - set(table.leases)
            if stale:
                firewall.remove(stale)
                removed += [f"{backend}: {owner}" for owner in sorted(stale)]
            if any(lease.firewall == backend for lease in table.leases.values()):
                firewall.ensure(self._wanted_dnats(table, backend), reconcile=True)
        return removed

    def _prune_veths(self, link_api: Netlink, table: ipam.LeaseTable, doomed: List[ipam.Lease]) -> List[str]:
        keep = {lease.veth for lease in table.leases.values()}
        names = {lease.veth for lease in doomed}
        bridge = link_api.link(self.bridge)
        if bridge is not None:
            names |= {
                link.name
                for link in link_api.links()
                if link.master == bridge.index and link.name.startswith(VETH_PREFIX) and link.kind == "veth"
            }
        return sorted(name for name in names - keep if link_api.delete_link(name))

    def _prune_netns(self, keep: Iterable[str]) -> List[str]:
        keep = set(keep)
        try:
            names = os.listdir(self.netns_dir)
        except FileNotFoundError:
            return []
        removed = []
        for name in sorted(names):
            if name not in keep and _CONTAINER_ID.match(name):
                netns.delete(os.path.join(self.netns_dir, name))
                removed.append(name)
        return removed

    # ------------------------------------------------------------------ reports

    def lookup(self, name_or_id: str) -> Optional[Dict[str, Any]]:
        """Another container's address on this bridge (for links and /etc/hosts), by id, name or alias."""
        lease = ipam.read_table(self.lease_file, self.interface).find(name_or_id)
        if lease is None:
            return None
        return {"container_id": lease.container_id, "ip": lease.ip, "name": lease.name, "aliases": lease.aliases}

    def info(self) -> Dict[str, Any]:
        """What ``berth info`` shows: ``backend`` is how published ports work (nftables, iptables or proxy)."""
        try:
            backend = self.backend()
            problem = ""
        except NetworkError as exc:
            backend, problem = netfilter.NONE, str(exc)
        table = ipam.read_table(self.lease_file, self.interface)
        conf = f"/proc/sys/net/ipv4/conf/{self.bridge}"
        bridge_present = os.path.exists(conf)
        forwarding = self.forwarding(backend)
        return {
            "backend": "proxy" if forwarding == FORWARD_PROXY else backend,
            "bridge": self.bridge,
            "bridge_present": bridge_present,
            "subnet": str(self.interface.network),
            "gateway": str(self.interface.ip),
            "firewall_backend": backend,
            "firewall_problem": problem,
            "port_forwarding": forwarding,
            "userland_proxy": self.config.userland_proxy,
            "ip_forward": {"configured": self.config.ip_forward, "enabled": _read_sysctl(IP_FORWARD) == "1"},
            "masquerade": {
                "configured": self.config.ip_masq,
                "active": self.config.ip_masq and backend != netfilter.NONE,
            },
            "route_localnet": _read_sysctl(f"{conf}/route_localnet") == "1" if bridge_present else False,
            "containers": len(table.leases),
            "lease_file": self.lease_file,
            "netlink": "rtnetlink socket (Python standard library)",
        }

    def inspect(self) -> Dict[str, Any]:
        """``berth network inspect``: Docker's shape (Name, Driver, IPAM, Containers) plus ``Berth`` (:meth:`info`)."""
        table = ipam.read_table(self.lease_file, self.interface)
        prefix = self.interface.network.prefixlen
        containers = {
            lease.container_id: {
                "Name": lease.name,
                "IPv4Address": f"{lease.ip}/{prefix}",
                "MacAddress": mac_for(lease.ip),
                "Aliases": list(lease.aliases),
                "Ports": [str(port) for port in lease.published()],
                "Interface": lease.veth,
                "State": lease.state,
            }
            for lease in sorted(table.leases.values(), key=_ip_order)
        }
        return {
            "Name": self.bridge,
            "Driver": "bridge",
            "Scope": "local",
            "IPAM": {
                "Driver": "default",
                "Config": [{"Subnet": str(self.interface.network), "Gateway": str(self.interface.ip)}],
            },
            "Containers": containers,
            "Sharing": dict(sorted(table.joins.items())),
            "Berth": self.info(),
        }

    def teardown(self) -> None:
        """Remove the bridge, berth's firewall objects and the lease file (no containers may be left)."""
        table = ipam.read_table(self.lease_file, self.interface)
        if table.leases:
            raise Conflict(
                f"{len(table.leases)} containers are still attached to {self.bridge}; remove them or prune first"
            )
        for backend in self._available_backends():
            self.firewall(backend).remove_all()
        with Netlink() as link_api:
            link_api.delete_link(self.bridge)
        for path in (self.lease_file, ipam.lease_paths(self.config.exec_root, self.bridge)["lock"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(os.path.dirname(self.lease_file))


# ---------------------------------------------------------------------- files for the container


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", maxsplit=1)[0]).is_loopback
    except ValueError:
        return False


def _nameservers(text: str) -> List[str]:
    return [
        parts[1]
        for parts in (line.split() for line in text.splitlines())
        if len(parts) > 1 and parts[0] == "nameserver"
    ]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError:
        return ""


def resolv_conf_for_container(
    host_path: str = "/etc/resolv.conf", resolved_path: str = "/run/systemd/resolve/resolv.conf"
) -> str:
    """The container's /etc/resolv.conf: the host's without loopback nameservers (Docker's rules).

    When the host only lists loopback resolvers (systemd-resolved's 127.0.0.53)
    the upstream list systemd-resolved keeps is used; when nothing is left,
    Docker's fallback 8.8.8.8 and 8.8.4.4.
    """
    text = _read_text(host_path)
    servers = _nameservers(text)
    if servers and all(_is_loopback(server) for server in servers) and os.path.exists(resolved_path):
        text = _read_text(resolved_path)
    lines = []
    kept = 0
    for line in text.splitlines():
        parts = line.split()
        if parts[:1] == ["nameserver"]:
            if len(parts) < 2 or _is_loopback(parts[1]):
                continue
            kept += 1
        lines.append(line.rstrip())
    if not kept:
        lines += ["nameserver 8.8.8.8", "nameserver 8.8.4.4"]
    return "\n".join(lines).strip("\n") + "\n"


HOSTS_MARKER = "# berth: containers on this bridge, by name and alias (berth rewrites the lines below)"


def _ip_order(lease: ipam.Lease) -> Tuple[int, str]:
    return int(ipaddress.IPv4Address(lease.ip)), lease.container_id


def hosts_block(bridge: str, own: ipam.Lease, peers: Iterable[ipam.Lease]) -> str:
    """The bridge block of a container's /etc/hosts: its own names, then one line per other named container."""
    lines = [f"{HOSTS_MARKER} {bridge}"]
    for lease in (own, *peers):
        names = lease.hosts_names()
        if lease.ip and names:
            lines.append(f"{lease.ip}\t{' '.join(names)}")
    return "\n".join(lines) + "\n"


def with_hosts_block(text: str, block: str) -> str:
    """*text* with everything from the marker line on replaced by *block* (appended when there is none)."""
    kept = []
    for line in text.splitlines():
        if line.startswith(HOSTS_MARKER):
            break
        kept.append(line)
    head = "\n".join(kept).rstrip("\n")
    return (head + "\n" if head else "") + block


_HOSTS_FILE_LIMIT = 1 << 20


def replace_hosts_block(path: str, block: str) -> bool:
    """Put *block* into the hosts file at *path*, in place; True when the file changed.

    In place (same inode), because the file is bind-mounted into a running
    container: a rename would leave the container looking at the old file.
    The last path component is never followed if it is a symlink, and only a
    regular file is written.
    """
    fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ValueError(f"{path} is not a regular file")
        current = os.pread(fd, _HOSTS_FILE_LIMIT, 0).decode("utf-8", errors="replace")
        wanted = with_hosts_block(current, block).encode()
        if wanted == current.encode():
            return False
        os.pwrite(fd, wanted, 0)
        os.ftruncate(fd, len(wanted))
        return True
    finally:
        os.close(fd)


# ---------------------------------------------------------------------- module-level API


def _stage(config: Optional[berth_config.DaemonConfig], is_alive: Optional[LivenessCheck] = None) -> BridgeNetwork:
    return BridgeNetwork(config, is_alive=is_alive)


def create_netns(container_id: str, config: Optional[berth_config.DaemonConfig] = None) -> str:
    """A network namespace handle at ``<exec_root>/netns/<id>`` (kept if it exists)."""
    return _stage(config).create_netns(container_id)


def delete_netns(path: str) -> None:
    """Unmount and remove a namespace handle (after ``disconnect``)."""
    netns.delete(path)


def connect(
    container_id: str,
    netns_path: str,
    *,
    ports: Iterable[Union[str, PortSpec]] = (),
    name: str = "",
    aliases: Sequence[str] = (),
    mode: str = MODE_BRIDGE,
    exposed_ports: Optional[Union[Mapping[str, Any], Iterable[str]]] = None,
    config: Optional[berth_config.DaemonConfig] = None,
    is_alive: Optional[LivenessCheck] = None,
) -> Attachment:
    """Attach a container; ``exposed_ports`` (the image's ExposedPorts) means ``-P``."""
    return _stage(config, is_alive).connect(
        container_id, netns_path, ports=ports, name=name, aliases=aliases, mode=mode, exposed_ports=exposed_ports
    )


def disconnect(
    container_id: str,
    attachment: Union[Attachment, Mapping[str, Any], None] = None,
    config: Optional[berth_config.DaemonConfig] = None,
) -> None:
    _stage(config).disconnect(container_id, attachment)


def prune(
    live_container_ids: Iterable[str], config: Optional[berth_config.DaemonConfig] = None
) -> Dict[str, List[str]]:
    return _stage(config).prune(live_container_ids)


def sync_hosts(container_id: str, hosts_path: str, config: Optional[berth_config.DaemonConfig] = None) -> None:
    """After writing a bridge container's /etc/hosts: add the names of the others, and its names to theirs."""
    _stage(config).sync_hosts(container_id, hosts_path)


def info(config: Optional[berth_config.DaemonConfig] = None) -> Dict[str, Any]:
    return _stage(config).info()


def inspect(config: Optional[berth_config.DaemonConfig] = None) -> Dict[str, Any]:
    return _stage(config).inspect()


def _on_off(value: bool) -> str:
    return "on" if value else "off"


def info_lines(info: Mapping[str, Any]) -> List[str]:
    """The network lines of ``berth info``, from :meth:`BridgeNetwork.info`."""
    how = {"nftables": "kernel NAT", "iptables": "kernel NAT", "proxy": "userland proxy"}
    published = f"{info['backend']} ({how.get(info['backend'], 'not available')})"
    if info.get("firewall_problem"):
        published += f"; {info['firewall_problem']}"
    state = "up" if info["bridge_present"] else "created with the first container"
    forward, masquerade = info["ip_forward"], info["masquerade"]
    return [
        f"Network Bridge: {info['bridge']} {info['subnet']} (gateway {info['gateway']}, {state})",
        f"Published Ports: {published}",
        f"IP Forwarding: {_on_off(forward['enabled'])} (ip-forward: {str(forward['configured']).lower()})",
        f"Outbound Masquerade: {_on_off(masquerade['active'])} (ip-masq: {str(masquerade['configured']).lower()})",
        f"Bridge Containers: {info['containers']}",
    ]


def lookup(name_or_id: str, config: Optional[berth_config.DaemonConfig] = None) -> Optional[Dict[str, Any]]:
    return _stage(config).lookup(name_or_id)
