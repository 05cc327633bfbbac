"""daemon.json parsing: Docker's keys, defaults and clear errors."""

import json

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import config
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import ConfigError


def test_missing_file_means_defaults(tmp_path) -> None:
    loaded = config.load(str(tmp_path / "absent.json"))
    assert loaded.data_root == "/var/lib/berth"
    assert loaded.registry_mirrors == ()
    assert loaded.max_concurrent_downloads == 3
    assert loaded.bip == "10.89.0.1/16"


def test_docker_keys_are_read_and_unknown_keys_kept(tmp_path) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(
        json.dumps(
            {
                "registry-mirrors": ["https://mirror.example/"],
                "insecure-registries": ["10.0.0.0/8", "reg:5000"],
                "max-concurrent-downloads": 5,
                "data-root": "/srv/berth/",
                "log-driver": "json-file",
            }
        )
    )
    loaded = config.load(str(path))
    assert loaded.registry_mirrors == ("https://mirror.example",)
    assert loaded.insecure_registries == ("10.0.0.0/8", "reg:5000")
    assert loaded.max_concurrent_downloads == 5
    assert loaded.data_root == "/srv/berth"
    assert loaded.extra == {"log-driver": "json-file"}


def test_environment_names_the_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "d.json"
    path.write_text('{"bridge": "bt0"}')
    monkeypatch.setenv("BERTH_CONFIG", str(path))
    assert config.load().bridge == "bt0"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[]", "top level must be a JSON object"),
        ('{"registry-mirrors": ["ftp://x"]}', "must be an http:// or https:// URL"),
        ('{"registry-mirrors": ["https://u:p@x"]}', "must not contain credentials"),
        ('{"registry-mirrors": "https://x"}', "'registry-mirrors' must be a list of strings"),
        ('{"max-concurrent-downloads": 0}', "'max-concurrent-downloads' must be a positive integer"),
        ('{"max-concurrent-downloads": true}', "must be a positive integer"),
        ('{"data-root": "relative/dir"}', "'data-root' must be an absolute path"),
        ('{"bip": "10.89.0.0/16"}', "must be a host address"),
        ('{"bip": "nonsense"}', "'bip' must be an IPv4 address"),
        ('{"firewall-backend": "pf"}', "'firewall-backend' must be"),
        ('{"bridge": "a-very-long-bridge-name"}', "'bridge' must be an interface name"),
        ('{"ip-masq": "yes"}', "'ip-masq' must be true or false"),
    ],
)
def test_invalid_content_is_named(tmp_path, content: str, message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        config.load(str(path))
    assert str(path) in str(info.value)


def test_overrides_win_and_are_validated() -> None:
    base = config.DaemonConfig()
    changed = base.with_overrides(registry_mirrors=["http://127.0.0.1:5000/"], data_root=None)
    assert changed.registry_mirrors == ("http://127.0.0.1:5000",)
    assert changed.data_root == base.data_root
    with pytest.raises(ConfigError):
        base.with_overrides(registry_mirrors=["127.0.0.1:5000"])


def test_default_address_pools_are_parsed_and_bip_set_by_the_file_is_marked(tmp_path) -> None:
    path = tmp_path / "daemon.json"
    pools = [{"base": "10.90.0.0/16", "size": 24}, {"base": "fd00:dead::/48", "size": 64}]
    path.write_text(json.dumps({"default-address-pools": pools}))
    loaded = config.load(str(path))
    assert loaded.default_address_pools == (("10.90.0.0/16", 24),), "IPv6 pools are Docker's; the bridge skips them"
    assert loaded.bip_explicit is False
    assert "default-address-pools" not in loaded.extra
    path.write_text(json.dumps({"bip": "10.89.0.1/16"}))
    assert config.load(str(path)).bip_explicit is True
    assert config.load(str(tmp_path / "absent.json")).bip_explicit is False


@pytest.mark.parametrize(
    ("pools", "message"),
    [
        ({"base": "10.90.0.0/16", "size": 24}, "must be a list"),
        ([{"base": "10.90.0.0/16"}], "exactly 'base' and 'size'"),
        ([{"base": "10.90.0.0/16", "size": 24, "extra": 1}], "exactly 'base' and 'size'"),
        ([{"base": "nope", "size": 24}], "is not a network"),
        ([{"base": "10.90.0.0/16", "size": 8}], "from 16 to 30"),
        ([{"base": "10.90.0.0/16", "size": "24"}], "from 16 to 30"),
        (["10.90.0.0/16"], "must be an object"),
    ],
)
def test_invalid_address_pools_are_named(tmp_path, pools: object, message: str) -> None:
    path = tmp_path / "daemon.json"
    path.write_text(json.dumps({"default-address-pools": pools}))
    with pytest.raises(ConfigError, match=message) as info:
        config.load(str(path))
    assert "default-address-pools" in str(info.value)
