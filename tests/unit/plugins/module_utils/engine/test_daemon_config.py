"""daemon.json validation (dockerd's rules) and merging."""

import pytest

from ansible_collections.berth.containers.plugins.module_utils.engine import daemon_config
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ConfigError

GOOD = [
    ("registry-mirrors", ["https://mirror.example.com", "http://10.0.0.1:5000/"]),
    ("registry-mirrors", []),
    ("registry-mirrors", ["https://mirror.example.com/some/path"]),
    ("insecure-registries", ["registry.local:5000", "10.0.0.0/8", "192.168.1.10", "[::1]:5000", "fd00::/8"]),
    ("insecure-registries", ["http://registry.local:5000"]),
    ("log-driver", "json-file"),
    ("log-opts", {"max-size": "10m", "max-file": "3"}),
    ("log-level", "warn"),
    ("exec-opts", ["native.cgroupdriver=systemd"]),
    ("data-root", "/srv/docker"),
    ("exec-root", "/run/docker-alt"),
    ("storage-driver", "overlay2"),
    ("storage-opts", ["overlay2.size=10G"]),
    ("dns", ["1.1.1.1", "2606:4700:4700::1111"]),
    ("dns-search", ["example.com"]),
    ("bip", "172.26.0.1/16"),
    ("fixed-cidr", "172.26.5.0/24"),
    ("default-address-pools", [{"base": "172.80.0.0/16", "size": 24}, {"base": "fd00::/48", "size": 64}]),
    ("live-restore", True),
    ("debug", False),
    ("ipv6", True),
    ("max-concurrent-downloads", 6),
    ("max-concurrent-uploads", 1),
    ("max-download-attempts", 5),
    ("mtu", 1450),
    ("shutdown-timeout", 0),
    ("labels", ["zone=eu", "role=build"]),
    ("default-ulimits", {"nofile": {"Name": "nofile", "Hard": 65536, "Soft": 65536}}),
    ("runtimes", {"crun": {"path": "/usr/bin/crun"}}),
    ("features", {"buildkit": True}),
    ("proxies", {"http-proxy": "http://proxy:3128", "no-proxy": "localhost"}),
    ("hosts", ["fd://", "unix:///var/run/docker.sock", "tcp://127.0.0.1:2376"]),
    ("default-cgroupns-mode", "private"),
    ("log-format", "json"),
    ("ip", "127.0.0.1"),
    ("containerd", "/run/containerd/containerd.sock"),
]

BAD = [
    ("registry-mirrors", "https://mirror.example.com", "must be a list of strings, not the string"),
    ("registry-mirrors", ["mirror.example.com"], "has no scheme: write it as https://mirror.example.com"),
    ("registry-mirrors", ["ftp://mirror.example.com"], "must use https:// or http://, not ftp://"),
    ("registry-mirrors", ["https://mirror.example.com/?x=1"], "must not end with a query or fragment"),
    ("registry-mirrors", ["https://mirror.example.com#top"], "must not end with a query or fragment"),
    ("registry-mirrors", ["https://user:pw@mirror.example.com"], "must not contain a user name or password"),
    ("registry-mirrors", [42], "must be a list of strings; it holds the number 42"),
    ("insecure-registries", ["ftp://registry:5000"], "must not contain '://'"),
    ("insecure-registries", ["-registry:5000"], "must not begin or end with a hyphen"),
    ("insecure-registries", ["reg istry:5000"], "not a valid host\\[:port\\]"),
    ("insecure-registries", ["10.0.0.0/33"], "neither host\\[:port\\] nor a CIDR"),
    ("insecure-registries", ["registry:99999"], "invalid port"),
    ("insecure-registries", "registry:5000", "must be a list of strings"),
    ("log-driver", 1, "must be a string, not the number 1"),
    ("log-driver", "", "must not be empty"),
    ("log-opts", {"max-file": 3}, "'max-file' must be a string \\(write \"3\"\\)"),
    ("log-opts", ["max-size=10m"], "must be an object of strings"),
    ("log-level", "verbose", "must be one of debug, info, warn, error, fatal"),
    ("exec-opts", "native.cgroupdriver=systemd", "must be a list of strings"),
    ("exec-opts", ["native.cgroupdriver"], "must have the form name=value"),
    ("exec-opts", ["native.cgroupdriver=upstart"], "native.cgroupdriver must be cgroupfs or systemd"),
    ("data-root", "var/lib/docker", "must be an absolute path"),
    ("data-root", 5, "must be a string"),
    ("storage-driver", ["overlay2"], "must be a string, not a list"),
    ("dns", ["dns.google"], "'dns.google' is not an IP address"),
    ("dns", "8.8.8.8", "must be a list of strings"),
    ("bip", "172.26.0.1", "with a prefix"),
    ("bip", "not-an-ip/16", "with a prefix"),
    ("fixed-cidr", "172.26.5.0/40", "is not a CIDR"),
    ("default-address-pools", {"base": "172.80.0.0/16", "size": 24}, "must be a list"),
    ("default-address-pools", [{"base": "172.80.0.0/16"}], "exactly 'base' and 'size'"),
    ("default-address-pools", [{"base": "172.80.0.0/16", "size": 8}], "between the base's prefix length 16 and 32"),
    ("default-address-pools", [{"base": "172.80.0.0/16", "size": "24"}], "integer prefix length"),
    ("default-address-pools", [{"base": "nope", "size": 24}], "is not a CIDR"),
    ("live-restore", "true", "must be true or false, not the string 'true'"),
    ("live-restore", 1, "must be true or false, not the number 1"),
    ("max-concurrent-downloads", "3", "must be an integer, not the string '3'"),
    ("max-concurrent-downloads", True, "must be an integer, not the boolean true"),
    ("max-concurrent-downloads", 0, "must be at least 1"),
    ("mtu", 1500.5, "must be an integer"),
    ("labels", ["zone"], "must have the form name=value"),
    ("default-ulimits", {"nofile": 1024}, "must be an object like"),
    ("runtimes", {"crun": {}}, "needs at least a 'path'"),
    ("features", {"buildkit": "yes"}, "object of true/false values"),
    ("proxies", {"ftp-proxy": "x"}, "takes http-proxy, https-proxy and no-proxy"),
    ("hosts", ["/var/run/docker.sock"], "must be unix://PATH, tcp://HOST:PORT or fd://"),
    ("default-cgroupns-mode", "shared", "must be one of host, private"),
    ("ip", "localhost", "is not an IP address"),
]


@pytest.mark.parametrize(("key", "value"), GOOD)
def test_valid_values_pass(key: str, value: object) -> None:
    daemon_config.validate_key(key, value)


@pytest.mark.parametrize(("key", "value", "message"), BAD)
def test_invalid_values_are_refused_with_a_message_naming_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        daemon_config.validate({key: value})
    assert repr(key) in str(caught.value) or key in str(caught.value)


def test_every_known_key_has_a_good_or_bad_case() -> None:
    covered = {case[0] for case in GOOD} | {case[0] for case in BAD}
    important = {
        "registry-mirrors",
        "insecure-registries",
        "log-driver",
        "log-opts",
        "exec-opts",
        "data-root",
        "storage-driver",
        "dns",
        "bip",
        "default-address-pools",
        "live-restore",
        "max-concurrent-downloads",
    }
    assert important <= covered
    assert covered <= set(daemon_config.VALIDATORS)


def test_unknown_keys_warn_and_mirror_paths_warn() -> None:
    warnings = daemon_config.validate(
        {"registry-mirrorz": ["https://x"], "registry-mirrors": ["https://mirror.example.com/docker-hub"]}
    )
    assert any("'registry-mirrorz' is not an option this module knows" in warning for warning in warnings)
    assert any("has a path: dockerd 20.10 and older refuse that" in warning for warning in warnings)


@pytest.mark.parametrize(
    ("flag", "key"),
    [
        ("registry-mirror", "registry-mirrors"),
        ("insecure-registry", "insecure-registries"),
        ("log-opt", "log-opts"),
        ("graph", "data-root"),
    ],
)
def test_flag_names_are_refused_because_dockerd_ignores_them(flag: str, key: str) -> None:
    with pytest.raises(ConfigError, match=f"'{flag}' is the name of dockerd's command-line flag.*Write '{key}'"):
        daemon_config.validate({flag: ["x"]})


def test_insecure_registry_with_scheme_warns() -> None:
    warnings = daemon_config.validate({"insecure-registries": ["http://registry.local:5000"]})
    assert warnings == [
        "insecure registry 'http://registry.local:5000': dockerd drops the scheme and warns; "
        "write 'registry.local:5000'"
    ]


def test_mirror_normalization_matches_docker() -> None:
    assert daemon_config.validate_mirror("https://mirror.example.com") == "https://mirror.example.com/"
    assert daemon_config.validate_mirror("https://mirror.example.com///") == "https://mirror.example.com/"
    assert daemon_config.normalized_mirrors(["https://a", "https://a/", "http://b/"]) == ["https://a/", "http://b/"]


@pytest.mark.parametrize("key", ["hosts", "containerd"])
def test_unit_flag_keys_are_refused_unless_the_unit_is_overridden(key: str) -> None:
    config = {key: ["fd://"] if key == "hosts" else "/run/containerd/containerd.sock"}
    with pytest.raises(ConfigError, match=f"'{key}' conflicts with the .* flag in the docker.service unit"):
        daemon_config.check_unit_flag_keys(config, allowed=False)
    daemon_config.check_unit_flag_keys(config, allowed=True)


def test_merge_keeps_unmanaged_keys_and_sets_given_ones() -> None:
    current = {"debug": True, "registry-mirrors": ["https://old.example.com"]}
    plan = daemon_config.plan(current, {"registry-mirrors": ["https://new.example.com"], "live-restore": True})
    assert plan.result == {"debug": True, "registry-mirrors": ["https://new.example.com"], "live-restore": True}
    assert plan.changed_keys == ("live-restore", "registry-mirrors")
    assert plan.removed_keys == ()
    assert plan.managed_keys == ("live-restore", "registry-mirrors")
    assert plan.changed


def test_merge_removes_keys_managed_before_and_dropped_now() -> None:
    current = {"debug": True, "live-restore": True, "registry-mirrors": ["https://m"]}
    plan = daemon_config.plan(
        current, {"registry-mirrors": ["https://m"]}, previously_managed=["live-restore", "registry-mirrors"]
    )
    assert plan.result == {"debug": True, "registry-mirrors": ["https://m"]}
    assert plan.removed_keys == ("live-restore",)
    assert plan.changed_keys == ()


def test_absent_and_purge() -> None:
    current = {"debug": True, "live-restore": True, "log-driver": "journald"}
    absent = daemon_config.plan(current, {}, absent=["debug", "not-there"])
    assert absent.result == {"live-restore": True, "log-driver": "journald"}
    assert absent.removed_keys == ("debug",)
    purge = daemon_config.plan(current, {"log-driver": "journald"}, purge=True)
    assert purge.result == {"log-driver": "journald"}
    assert purge.removed_keys == ("debug", "live-restore")
    assert purge.changed_keys == ()


def test_key_in_config_and_absent_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"\['debug'\] are both in config and in absent"):
        daemon_config.plan({}, {"debug": True}, absent=["debug"])


@pytest.mark.parametrize(
    ("current", "wanted", "changed"),
    [
        ({"a": [1, 2], "b": {"x": "1", "y": "2"}}, {"b": {"y": "2", "x": "1"}, "a": [1, 2]}, False),
        ({"debug": True}, {"debug": 1}, True),
        ({"mtu": 1}, {"mtu": 1.0}, True),
        ({"dns": ["1.1.1.1", "8.8.8.8"]}, {"dns": ["8.8.8.8", "1.1.1.1"]}, True),
    ],
)
def test_only_real_changes_count(current: dict, wanted: dict, changed: bool) -> None:
    assert daemon_config.plan(current, wanted).changed is changed


def test_existing_file_parsing() -> None:
    assert daemon_config.parse_existing(b"  \n", "/etc/docker/daemon.json") == {}
    assert daemon_config.parse_existing(b'{"debug": true}', "/etc/docker/daemon.json") == {"debug": True}
    with pytest.raises(
        ConfigError, match=r"/etc/docker/daemon.json is not valid JSON \(.*line 1.*\): fix or remove it"
    ):
        daemon_config.parse_existing(b'{"debug": true,}', "/etc/docker/daemon.json")
    with pytest.raises(ConfigError, match="must hold a JSON object at the top level, not a list"):
        daemon_config.parse_existing(b"[]", "/etc/docker/daemon.json")
    with pytest.raises(ConfigError, match="not UTF-8"):
        daemon_config.parse_existing(b'{"a": "\xff"}', "/etc/docker/daemon.json")


def test_render_is_sorted_and_stable() -> None:
    assert (
        daemon_config.render({"b": 1, "a": {"d": 2, "c": 1}})
        == '{\n  "a": {\n    "c": 1,\n    "d": 2\n  },\n  "b": 1\n}\n'
    )
