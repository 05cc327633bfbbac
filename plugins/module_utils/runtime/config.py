"""Host configuration: ``/etc/berth/daemon.json``, with Docker's keys.

Operators already know Docker's ``daemon.json``; Berth reads the keys that
mean something to a daemonless runtime, with Docker's names and defaults, and
ignores the rest (so the same file content can be shared).  ``BERTH_CONFIG``
in the environment points at another file (tests, demos); a missing file means
all defaults.
"""

import ipaddress
import json
import os
from typing import Any, Dict, List, NamedTuple, Optional, Tuple
from urllib.parse import urlsplit

from .errors import ConfigError

DEFAULT_CONFIG_PATH = "/etc/berth/daemon.json"
DEFAULT_DATA_ROOT = "/var/lib/berth"
DEFAULT_EXEC_ROOT = "/run/berth"
DEFAULT_BRIDGE = "berth0"
# docker uses 172.17.0.0/16 and podman 10.88.0.0/16: stay clear of both.
DEFAULT_BIP = "10.89.0.1/16"
# Docker's `default-address-pools` entries: (base network, prefix length of each subnet).
AddressPool = Tuple[str, int]


class DaemonConfig(NamedTuple):
    """The settings of one host, already validated (immutable: :meth:`with_overrides` makes copies)."""

    path: Optional[str] = None
    data_root: str = DEFAULT_DATA_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    registry_mirrors: Tuple[str, ...] = ()
    insecure_registries: Tuple[str, ...] = ()
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    bridge: str = DEFAULT_BRIDGE
    bip: str = DEFAULT_BIP
    # True when daemon.json sets `bip`: then it wins over default_address_pools (Docker's rule).
    bip_explicit: bool = False
    default_address_pools: Tuple[AddressPool, ...] = ()
    ip_forward: bool = True
    ip_masq: bool = True
    firewall_backend: str = "auto"
    userland_proxy: bool = False
    log_opts: Dict[str, str] = {}  # one shared empty dict: configs are never changed in place
    extra: Dict[str, Any] = {}

    def with_overrides(self, **changes: Any) -> "DaemonConfig":
        """A copy with some settings replaced (module or CLI options win over the file)."""
        changes = {key: value for key, value in changes.items() if value is not None}
        if "registry_mirrors" in changes:
            mirrors = changes["registry_mirrors"]
            changes["registry_mirrors"] = tuple(validate_mirror(url, "registry_mirrors") for url in mirrors)
        if "insecure_registries" in changes:
            changes["insecure_registries"] = tuple(changes["insecure_registries"])
        return self._replace(**changes)

    @property
    def bridge_network(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.bip)


def validate_mirror(url: str, key: str = "registry-mirrors") -> str:
    """Check a mirror URL the way Docker does; return it without a trailing slash."""
    if not isinstance(url, str):
        raise ConfigError(f"{key}: {url!r} is not a string")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{key}: {url!r} must be an http:// or https:// URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(f"{key}: {url!r} must not contain credentials, a query or a fragment")
    return url.rstrip("/")


def _string_list(data: Dict[str, Any], key: str, where: str) -> List[str]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{where}: {key!r} must be a list of strings")
    return value


def _integer(data: Dict[str, Any], key: str, default: int, where: str) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where}: {key!r} must be a positive integer, not {value!r}")
    return value


def _boolean(data: Dict[str, Any], key: str, default: bool, where: str) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}: {key!r} must be true or false, not {value!r}")
    return value


def _absolute_path(data: Dict[str, Any], key: str, default: str, where: str) -> str:
    value = data.get(key, default)
    if not isinstance(value, str) or not os.path.isabs(value) or ":" in value or "," in value:
        raise ConfigError(f"{where}: {key!r} must be an absolute path without ':' or ',', not {value!r}")
    return os.path.normpath(value)


KNOWN_KEYS = {
    "data-root",
    "exec-root",
    "registry-mirrors",
    "insecure-registries",
    "max-concurrent-downloads",
    "max-concurrent-uploads",
    "bridge",
    "bip",
    "default-address-pools",
    "ip-forward",
    "ip-masq",
    "firewall-backend",
    "userland-proxy",
    "log-opts",
}


def parse_address_pools(value: Any, where: str = "daemon.json") -> Tuple[AddressPool, ...]:
    """Docker's ``default-address-pools`` (``[{"base": "10.90.0.0/16", "size": 24}]``), IPv4 entries only.

    IPv6 pools are valid for Docker and skipped here (the bridge is IPv4-only),
    so one daemon.json can serve both.
    """
    key = f"{where}: 'default-address-pools'"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(f'{key} must be a list of objects like {{"base": "10.90.0.0/16", "size": 24}}')
    pools = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"base", "size"}:
            raise ConfigError(f"{key}: {entry!r} must be an object with exactly 'base' and 'size'")
        try:
            base = ipaddress.ip_network(str(entry["base"]))
        except ValueError as exc:
            raise ConfigError(f"{key}: base {entry['base']!r} is not a network like 10.90.0.0/16: {exc}") from None
        size = entry["size"]
        limit = 30 if base.version == 4 else 126
        if isinstance(size, bool) or not isinstance(size, int) or not base.prefixlen <= size <= limit:
            raise ConfigError(f"{key}: size {size!r} must be a prefix length from {base.prefixlen} to {limit}")
        if base.version == 4:
            pools.append((str(base), size))
    return tuple(pools)


def parse(data: Any, where: str = "daemon.json") -> DaemonConfig:
    """Validate the decoded JSON of a daemon.json file."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the top level must be a JSON object")
    bip = data.get("bip", DEFAULT_BIP)
    try:
        interface = ipaddress.IPv4Interface(bip)
    except ValueError as exc:
        raise ConfigError(f"{where}: 'bip' must be an IPv4 address with a prefix like 10.89.0.1/16: {exc}") from None
    if interface.ip == interface.network.network_address or interface.network.prefixlen > 30:
        raise ConfigError(f"{where}: 'bip' {bip!r} must be a host address in a network of at least 4 addresses")
    backend = data.get("firewall-backend", "auto")
    if backend not in ("auto", "nftables", "iptables", "none"):
        raise ConfigError(f"{where}: 'firewall-backend' must be auto, nftables, iptables or none, not {backend!r}")
    bridge = data.get("bridge", DEFAULT_BRIDGE)
    if not isinstance(bridge, str) or not 0 < len(bridge) < 16 or "/" in bridge or " " in bridge:
        raise ConfigError(f"{where}: 'bridge' must be an interface name of 1 to 15 characters, not {bridge!r}")
    log_opts = data.get("log-opts", {})
    if not isinstance(log_opts, dict) or not all(isinstance(v, str) for v in log_opts.values()):
        raise ConfigError(f"{where}: 'log-opts' must be an object of strings")
    return DaemonConfig(
        path=where,
        data_root=_absolute_path(data, "data-root", DEFAULT_DATA_ROOT, where),
        exec_root=_absolute_path(data, "exec-root", DEFAULT_EXEC_ROOT, where),
        registry_mirrors=tuple(
            validate_mirror(url, f"{where}: 'registry-mirrors'")
            for url in _string_list(data, "registry-mirrors", where)
        ),
        insecure_registries=tuple(_string_list(data, "insecure-registries", where)),
        max_concurrent_downloads=_integer(data, "max-concurrent-downloads", 3, where),
        max_concurrent_uploads=_integer(data, "max-concurrent-uploads", 5, where),
        bridge=bridge,
        bip=str(interface),
        bip_explicit="bip" in data,
        default_address_pools=parse_address_pools(data.get("default-address-pools"), where),
        ip_forward=_boolean(data, "ip-forward", True, where),
        ip_masq=_boolean(data, "ip-masq", True, where),
        firewall_backend=backend,
        userland_proxy=_boolean(data, "userland-proxy", False, where),
        log_opts=dict(log_opts),
        extra={key: value for key, value in data.items() if key not in KNOWN_KEYS},
    )


def load(path: Optional[str] = None) -> DaemonConfig:
    """Read the host's configuration (``BERTH_CONFIG`` or /etc/berth/daemon.json)."""
    path = path or os.environ.get("BERTH_CONFIG") or DEFAULT_CONFIG_PATH
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        return DaemonConfig(path=path)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    if not raw.strip():
        return DaemonConfig(path=path)
    try:
        data = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON: {exc}") from None
    return parse(data, path)
