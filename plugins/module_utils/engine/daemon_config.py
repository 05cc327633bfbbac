"""daemon.json: merge requested keys into a file, validate them like dockerd.

dockerd reads ``/etc/docker/daemon.json`` once at start (and some keys on
SIGHUP).  It refuses to start on a type error ("json: cannot unmarshal
number into Go struct field ... of type string"), on a key it does not know,
and on a key that is also given as a command-line flag -- and the systemd
units of both docker-ce and Debian's docker.io pass ``-H fd://``, so a
``hosts`` key there stops the daemon from starting.  Catching these before
the file is written is what keeps a configuration change from becoming an
outage; the checks below follow dockerd's own (``daemon/config``,
``registry/config.go``).
"""

import ipaddress
import json
import os
import re
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from ..runtime.errors import ConfigError

DEFAULT_PATH = "/etc/docker/daemon.json"
# Keys that the stock docker.service units also pass as flags.
UNIT_FLAG_KEYS = {
    "hosts": "-H fd:// (docker-ce and Debian's docker.io)",
    "containerd": "--containerd=/run/containerd/containerd.sock (docker-ce)",
}
# dockerd matches daemon.json keys against its flag names to find unknown keys,
# so the singular flag name passes that check -- and is then silently ignored,
# because the configuration field is named with the plural.
FLAG_NAMES_OF_KEYS = {
    "add-runtime": "runtimes",
    "authorization-plugin": "authorization-plugins",
    "default-address-pool": "default-address-pools",
    "default-ulimit": "default-ulimits",
    "dns-opt": "dns-opts",
    "exec-opt": "exec-opts",
    "graph": "data-root",
    "host": "hosts",
    "insecure-registry": "insecure-registries",
    "label": "labels",
    "log-opt": "log-opts",
    "registry-mirror": "registry-mirrors",
    "storage-opt": "storage-opts",
}
LOG_LEVELS = ("debug", "info", "warn", "error", "fatal")
CGROUP_DRIVERS = ("cgroupfs", "systemd")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
# distribution/reference's DomainRegexp: dotted components or a bracketed IPv6, optional port.
_DOMAIN = re.compile(rf"^(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$")


class Plan(NamedTuple):
    """What a daemon_json run would do."""

    result: Dict[str, Any]
    changed_keys: Tuple[str, ...]
    removed_keys: Tuple[str, ...]
    managed_keys: Tuple[str, ...]

    @property
    def changed(self) -> bool:
        return bool(self.changed_keys or self.removed_keys)


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return f"the string {value!r}"
    if value is None:
        return "null"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return repr(value)


def _string(key: str, value: Any) -> None:
    if not isinstance(value, str):
        raise ConfigError(f"daemon.json key {key!r} must be a string, not {_describe(value)}")


def _non_empty_string(key: str, value: Any) -> None:
    _string(key, value)
    if not value.strip():
        raise ConfigError(f"daemon.json key {key!r} must not be empty")


def _boolean(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"daemon.json key {key!r} must be true or false, not {_describe(value)}")


def _integer(minimum: Optional[int] = None) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"daemon.json key {key!r} must be an integer, not {_describe(value)}")
        if minimum is not None and value < minimum:
            raise ConfigError(f"daemon.json key {key!r} must be at least {minimum}, not {value}")

    return check


def _choice(choices: Sequence[str]) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        if value not in choices:
            raise ConfigError(f"daemon.json key {key!r} must be one of {', '.join(choices)}, not {_describe(value)}")

    return check


def _absolute_path(key: str, value: Any) -> None:
    _string(key, value)
    if not os.path.isabs(value):
        raise ConfigError(f"daemon.json key {key!r} must be an absolute path, not {value!r}")


def _string_list(key: str, value: Any) -> List[str]:
    if not isinstance(value, list):
        raise ConfigError(f"daemon.json key {key!r} must be a list of strings, not {_describe(value)}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(f"daemon.json key {key!r} must be a list of strings; it holds {_describe(item)}")
    return value


def _strings(key: str, value: Any) -> None:
    _string_list(key, value)


def _string_map(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"daemon.json key {key!r} must be an object of strings, not {_describe(value)}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(
                f"daemon.json key {key!r}: {name!r} must be a string (write {json.dumps(str(item))}), "
                f"not {_describe(item)}; dockerd refuses anything else"
            )


def _bool_map(key: str, value: Any) -> None:
    if not isinstance(value, dict) or not all(isinstance(item, bool) for item in value.values()):
        raise ConfigError(f"daemon.json key {key!r} must be an object of true/false values")


def _object(key: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ConfigError(f"daemon.json key {key!r} must be an object, not {_describe(value)}")


def validate_mirror(url: Any, key: str = "registry-mirrors") -> str:
    """Docker's ValidateMirror: http(s), no query/fragment/credentials; returns it with one trailing '/'."""
    if not isinstance(url, str):
        raise ConfigError(f"daemon.json key {key!r}: {_describe(url)} is not a URL")
    scheme, sep, _rest = url.partition("://")
    if not sep or not scheme:
        raise ConfigError(
            f"daemon.json key {key!r}: {url!r} has no scheme: "
            f"write it as https://{url} (or http:// for a plain-HTTP mirror)"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise ConfigError(f"daemon.json key {key!r}: {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ConfigError(f"daemon.json key {key!r}: {url!r} must use https:// or http://, not {parts.scheme}://")
    if not parts.hostname:
        raise ConfigError(f"daemon.json key {key!r}: {url!r} has no host name")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ConfigError(f"daemon.json key {key!r}: {url!r} must not end with a query or fragment")
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            f"daemon.json key {key!r}: {parts.hostname!r} mirror URL must not contain a user name or password; "
            "put credentials in the Docker client's config.json"
        )
    return url.rstrip("/") + "/"


def mirror_has_path(url: str) -> bool:
    """Docker 20.10 and older refuse mirror URLs with a path; later releases accept them."""
    return urlsplit(url).path not in ("", "/")


def validate_insecure_registry(entry: Any, key: str = "insecure-registries") -> str:
    """Docker's loadInsecureRegistries: a CIDR or host[:port]; http(s):// is stripped with a warning."""
    if not isinstance(entry, str):
        raise ConfigError(f"daemon.json key {key!r}: {_describe(entry)} is not a registry host or CIDR")
    value = entry
    if value.startswith("-") or value.endswith("-"):
        raise ConfigError(f"daemon.json key {key!r}: {entry!r} must not begin or end with a hyphen")
    scheme, sep, rest = value.partition("://")
    if sep:
        if scheme.lower() not in ("http", "https"):
            raise ConfigError(f"daemon.json key {key!r}: {entry!r} must not contain '://'")
        value = rest
    if "/" in value:
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ConfigError(
                f"daemon.json key {key!r}: {entry!r} is neither host[:port] nor a CIDR such as 10.0.0.0/8"
            ) from None
        return value
    host, port = value, ""
    if value.startswith("["):
        host, _bracket, port = value[1:].partition("]")
        port = port[1:] if port.startswith(":") else port
    elif value.count(":") == 1:
        host, _colon, port = value.partition(":")
    if not _DOMAIN.match(value):
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ConfigError(
                f"daemon.json key {key!r}: {entry!r} is not a valid host[:port] (like registry.local:5000) "
                "or CIDR (like 10.0.0.0/8)"
            ) from None
    if port and (not port.isdigit() or int(port) > 65535):
        raise ConfigError(f"daemon.json key {key!r}: {entry!r} has an invalid port {port!r}")
    return value


def _mirrors(key: str, value: Any) -> None:
    for url in _string_list(key, value):
        validate_mirror(url, key)


def _insecure(key: str, value: Any) -> None:
    for entry in _string_list(key, value):
        validate_insecure_registry(entry, key)


def _ip_addresses(key: str, value: Any) -> None:
    for item in _string_list(key, value):
        try:
            ipaddress.ip_address(item)
        except ValueError:
            raise ConfigError(f"daemon.json key {key!r}: {item!r} is not an IP address") from None


def _ip_address(key: str, value: Any) -> None:
    _string(key, value)
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"daemon.json key {key!r}: {value!r} is not an IP address") from None


def _cidr(key: str, value: Any) -> None:
    _string(key, value)
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ConfigError(f"daemon.json key {key!r}: {value!r} is not a CIDR such as 172.30.0.0/16") from None


def _bip(key: str, value: Any) -> None:
    _string(key, value)
    try:
        interface = ipaddress.ip_interface(value)
    except ValueError:
        interface = None
    if interface is None or "/" not in value:
        raise ConfigError(
            f"daemon.json key {key!r}: {value!r} must be the bridge's address with a prefix, like 172.26.0.1/16"
        )


def _address_pools(key: str, value: Any) -> None:
    if not isinstance(value, list):
        raise ConfigError(f'daemon.json key {key!r} must be a list of {{"base": CIDR, "size": prefix}} objects')
    for pool in value:
        if not isinstance(pool, dict) or set(pool) != {"base", "size"}:
            raise ConfigError(
                f"daemon.json key {key!r}: each pool must be an object with exactly 'base' and 'size', "
                f'like {{"base": "172.80.0.0/16", "size": 24}}, not {json.dumps(pool)}'
            )
        _cidr(f"{key}.base", pool["base"])
        network = ipaddress.ip_network(pool["base"], strict=False)
        size = pool["size"]
        if isinstance(size, bool) or not isinstance(size, int):
            raise ConfigError(f"daemon.json key {key!r}: 'size' must be an integer prefix length, not {size!r}")
        if not network.prefixlen <= size <= network.max_prefixlen:
            raise ConfigError(
                f"daemon.json key {key!r}: size {size} must lie between the base's prefix length "
                f"{network.prefixlen} and {network.max_prefixlen}"
            )


def _key_value_list(key: str, value: Any) -> None:
    for item in _string_list(key, value):
        name, sep, _value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"daemon.json key {key!r}: {item!r} must have the form name=value")


def _exec_opts(key: str, value: Any) -> None:
    _key_value_list(key, value)
    for item in value:
        name, _equals, setting = item.partition("=")
        if name.strip() == "native.cgroupdriver" and setting.strip() not in CGROUP_DRIVERS:
            raise ConfigError(
                f"daemon.json key {key!r}: native.cgroupdriver must be {' or '.join(CGROUP_DRIVERS)}, not {setting!r}"
            )


def _hosts(key: str, value: Any) -> None:
    for item in _string_list(key, value):
        scheme, sep, _rest = item.partition("://")
        if not sep or scheme not in ("unix", "tcp", "fd", "ssh", "npipe"):
            raise ConfigError(f"daemon.json key {key!r}: {item!r} must be unix://PATH, tcp://HOST:PORT or fd://")


def _ulimits(key: str, value: Any) -> None:
    _object(key, value)
    for name, limit in value.items():
        if not isinstance(limit, dict) or not {"Hard", "Soft"} <= set(limit):
            raise ConfigError(
                f"daemon.json key {key!r}: {name!r} must be an object like "
                f'{{"Name": "{name}", "Hard": 65536, "Soft": 65536}}'
            )
        for bound in ("Hard", "Soft"):
            _integer()(f"{key}.{name}.{bound}", limit[bound])


def _runtimes(key: str, value: Any) -> None:
    _object(key, value)
    for name, runtime in value.items():
        if not isinstance(runtime, dict) or not ("path" in runtime or "runtimeType" in runtime):
            raise ConfigError(f"daemon.json key {key!r}: runtime {name!r} needs at least a 'path'")


def _proxies(key: str, value: Any) -> None:
    _string_map(key, value)
    unknown = set(value) - {"http-proxy", "https-proxy", "no-proxy"}
    if unknown:
        raise ConfigError(f"daemon.json key {key!r} takes http-proxy, https-proxy and no-proxy, not {sorted(unknown)}")


VALIDATORS: Dict[str, Callable[[str, Any], None]] = {
    "allow-nondistributable-artifacts": _strings,
    "authorization-plugins": _strings,
    "bip": _bip,
    "bip6": _bip,
    "bridge": _non_empty_string,
    "builder": _object,
    "cgroup-parent": _string,
    "containerd": _absolute_path,
    "containerd-namespace": _non_empty_string,
    "containerd-plugin-namespace": _non_empty_string,
    "cpu-rt-period": _integer(0),
    "cpu-rt-runtime": _integer(0),
    "cri-containerd": _boolean,
    "data-root": _absolute_path,
    "debug": _boolean,
    "default-address-pools": _address_pools,
    "default-cgroupns-mode": _choice(("host", "private")),
    "default-gateway": _ip_address,
    "default-gateway-v6": _ip_address,
    "default-ipc-mode": _choice(("shareable", "private")),
    "default-network-opts": _object,
    "default-runtime": _non_empty_string,
    "default-shm-size": _non_empty_string,
    "default-ulimits": _ulimits,
    "dns": _ip_addresses,
    "dns-opts": _strings,
    "dns-search": _strings,
    "exec-opts": _exec_opts,
    "exec-root": _absolute_path,
    "experimental": _boolean,
    "features": _bool_map,
    "firewall-backend": _choice(("iptables", "nftables", "auto", "none")),
    "fixed-cidr": _cidr,
    "fixed-cidr-v6": _cidr,
    "group": _non_empty_string,
    "host-gateway-ip": _ip_address,
    "hosts": _hosts,
    "icc": _boolean,
    "init": _boolean,
    "init-path": _absolute_path,
    "insecure-registries": _insecure,
    "ip": _ip_address,
    "ip-forward": _boolean,
    "ip-forward-no-drop": _boolean,
    "ip-masq": _boolean,
    "ip6tables": _boolean,
    "iptables": _boolean,
    "ipv6": _boolean,
    "labels": _key_value_list,
    "live-restore": _boolean,
    "log-driver": _non_empty_string,
    "log-format": _choice(("text", "json")),
    "log-level": _choice(LOG_LEVELS),
    "log-opts": _string_map,
    "max-concurrent-downloads": _integer(1),
    "max-concurrent-uploads": _integer(1),
    "max-download-attempts": _integer(1),
    "metrics-addr": _string,
    "mtu": _integer(0),
    "network-control-plane-mtu": _integer(0),
    "no-new-privileges": _boolean,
    "node-generic-resources": _strings,
    "oom-score-adjust": _integer(),
    "pidfile": _absolute_path,
    "proxies": _proxies,
    "raw-logs": _boolean,
    "registry-mirrors": _mirrors,
    "runtimes": _runtimes,
    "seccomp-profile": _non_empty_string,
    "selinux-enabled": _boolean,
    "shutdown-timeout": _integer(0),
    "storage-driver": _non_empty_string,
    "storage-opts": _strings,
    "swarm-default-advertise-addr": _string,
    "tls": _boolean,
    "tlscacert": _absolute_path,
    "tlscert": _absolute_path,
    "tlskey": _absolute_path,
    "tlsverify": _boolean,
    "userland-proxy": _boolean,
    "userland-proxy-path": _absolute_path,
    "userns-remap": _non_empty_string,
}


def validate_key(key: str, value: Any) -> List[str]:
    """Check one key; return warnings (unknown keys), raise ConfigError on a bad value."""
    if key in FLAG_NAMES_OF_KEYS:
        raise ConfigError(
            f"daemon.json key {key!r} is the name of dockerd's command-line flag: dockerd accepts it in "
            f"daemon.json but ignores its value. Write {FLAG_NAMES_OF_KEYS[key]!r}"
        )
    check = VALIDATORS.get(key)
    if check is None:
        return [
            f"daemon.json key {key!r} is not an option this module knows: dockerd refuses to start on keys "
            "it does not know, so check the spelling against your Docker version's documentation"
        ]
    check(key, value)
    warnings = []
    if key == "registry-mirrors":
        warnings.extend(
            f"registry mirror {url!r} has a path: dockerd 20.10 and older refuse that (newer releases accept it)"
            for url in value
            if mirror_has_path(url)
        )
    if key == "insecure-registries":
        warnings.extend(
            f"insecure registry {entry!r}: dockerd drops the scheme and warns; write {entry.partition('://')[2]!r}"
            for entry in value
            if "://" in entry
        )
    return warnings


def validate(config: Dict[str, Any]) -> List[str]:
    """Check every key of a requested configuration; return the warnings."""
    warnings: List[str] = []
    for key, value in config.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"daemon.json keys must be non-empty strings, not {key!r}")
        warnings.extend(validate_key(key, value))
    return warnings


def check_unit_flag_keys(config: Dict[str, Any], allowed: bool) -> None:
    """Refuse keys that the vendor systemd unit also passes as flags, unless its ExecStart is overridden."""
    if allowed:
        return
    for key, flag in UNIT_FLAG_KEYS.items():
        if key in config:
            raise ConfigError(
                f"daemon.json key {key!r} conflicts with the {flag} flag in the docker.service unit: dockerd "
                "refuses to start when an option is both a flag and a daemon.json key. Override ExecStart in a "
                "systemd drop-in without that flag (the docker_engine role does this when "
                f"docker_engine_daemon_options has {key!r}) and set allow_hosts_with_unit_override=true"
            )


def parse_existing(raw: bytes, path: str) -> Dict[str, Any]:
    """Decode an existing daemon.json; an empty file is an empty object."""
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text: fix or remove it (it was left untouched)") from None
    except ValueError as exc:
        raise ConfigError(f"{path} is not valid JSON ({exc}): fix or remove it (it was left untouched)") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object at the top level, not {_describe(data)} (left untouched)")
    return data


def canonical(value: Any) -> str:
    """One text per JSON value, so that key order and formatting are not changes.

    ``json.dumps`` also keeps ``true``/``1``/``1.0`` apart, which Python's
    ``==`` (where ``True == 1 == 1.0``) would not.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def render(config: Dict[str, Any]) -> str:
    """The file content written for a configuration (sorted keys, 2-space indent)."""
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def plan(
    current: Dict[str, Any],
    config: Dict[str, Any],
    absent: Iterable[str] = (),
    purge: bool = False,
    previously_managed: Iterable[str] = (),
) -> Plan:
    """Merge *config* into *current*.

    Keys in *config* replace whole values (an object such as ``log-opts`` is
    not merged key by key: the value given is the value written).  Keys that
    an earlier run managed (*previously_managed*) and that are no longer in
    *config* are removed, as are the *absent* keys; with *purge* every key
    not in *config* goes.
    """
    absent = list(absent)
    both = sorted(set(absent) & set(config))
    if both:
        raise ConfigError(f"daemon.json keys {both} are both in config and in absent: choose one")
    if purge:
        result: Dict[str, Any] = {}
    else:
        dropped = set(previously_managed) - set(config)
        result = {key: value for key, value in current.items() if key not in dropped and key not in absent}
    result.update(config)
    changed = tuple(
        sorted(key for key in result if key not in current or canonical(current[key]) != canonical(result[key]))
    )
    removed = tuple(sorted(key for key in current if key not in result))
    return Plan(result=result, changed_keys=changed, removed_keys=removed, managed_keys=tuple(sorted(config)))


def normalized_mirrors(mirrors: Iterable[str]) -> List[str]:
    """Mirrors as ``docker info`` reports them (one trailing slash), duplicates dropped."""
    seen: List[str] = []
    for url in mirrors:
        normalized = url.rstrip("/") + "/"
        if normalized not in seen:
            seen.append(normalized)
    return seen
