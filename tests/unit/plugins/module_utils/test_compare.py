"""Equal and different container specs, as the container module compares them."""

import pytest

from ansible_collections.berth.containers.plugins.module_utils import compare
from ansible_collections.berth.containers.plugins.module_utils.runtime import spec

IMAGE = {
    "config": {
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": ["PATH=/usr/bin:/bin", "NGINX_VERSION=1.22"],
        "StopSignal": "SIGQUIT",
        "Labels": {"maintainer": "nginx"},
        "ExposedPorts": {"80/tcp": {}},
    }
}


def view_of(options: dict, image_id: str = "sha256:" + "a" * 64) -> dict:
    normalized = spec.normalize({"image": "nginx", **options})
    return compare.view(normalized, spec.effective(normalized, IMAGE), image_id)


EQUAL = [
    ({}, {"command": ["nginx", "-g", "daemon off;"]}),
    ({}, {"env": {"NGINX_VERSION": "1.22"}}),
    ({}, {"stop_signal": "QUIT"}),
    ({}, {"labels": {"maintainer": "nginx"}}),
    ({"env": {"A": "1", "B": "2"}}, {"env": {"B": "2", "A": "1"}}),
    ({"published_ports": ["88:80", "53:53/udp"]}, {"published_ports": ["53:53/udp", "88:80/tcp"]}),
    ({"memory": "64m"}, {"memory": 67108864}),
    ({"cap_add": ["NET_ADMIN", "sys_time"]}, {"cap_add": ["SYS_TIME", "CAP_NET_ADMIN"]}),
    ({"volumes": ["/a:/x", "/b:/y:ro"]}, {"volumes": ["/b/:/y:ro", "/a:/x:rw"]}),
    ({"restart_policy": "no"}, {}),
    ({"network_mode": "bridge"}, {}),
    ({"working_dir": "/"}, {}),
    ({"user": ""}, {}),
    ({"stop_timeout": 10}, {}),
]


@pytest.mark.parametrize(("first", "second"), EQUAL)
def test_equal_requests_have_no_differences(first: dict, second: dict) -> None:
    modes = compare.comparison_modes(None)
    assert compare.differences(view_of(first), view_of(second), modes) == []


DIFFERENT = [
    ({}, {"command": ["nginx"]}, "command"),
    ({}, {"entrypoint": ["sh"]}, "command"),
    ({}, {"env": {"NGINX_VERSION": "1.23"}}, "env"),
    ({"env": {"A": "1"}}, {}, "env"),
    ({}, {"labels": {"x": "y"}}, "labels"),
    ({}, {"memory": "128m"}, "memory"),
    ({}, {"cpus": 1}, "cpus"),
    ({}, {"published_ports": ["88:80"]}, "published_ports"),
    ({"published_ports": ["88:80"]}, {"published_ports": ["89:80"]}, "published_ports"),
    ({}, {"volumes": ["/a:/x"]}, "volumes"),
    ({"volumes": ["/a:/x"]}, {"volumes": ["/a:/x:ro"]}, "volumes"),
    ({}, {"restart_policy": "always"}, "restart_policy"),
    ({}, {"privileged": True}, "privileged"),
    ({}, {"cap_drop": ["ALL"]}, "cap_drop"),
    ({}, {"hostname": "web"}, "hostname"),
    ({}, {"network_mode": "host"}, "network_mode"),
    ({}, {"read_only": True}, "read_only"),
    ({}, {"stop_signal": "TERM"}, "stop_signal"),
    ({}, {"tmpfs": {"/run": ""}}, "tmpfs"),
]


@pytest.mark.parametrize(("first", "second", "option"), DIFFERENT)
def test_different_requests_name_the_option(first: dict, second: dict, option: str) -> None:
    found = compare.differences(view_of(first), view_of(second), compare.comparison_modes(None))
    assert [key for key, _before, _after in found] == [option]


def test_newer_image_behind_the_same_tag_differs() -> None:
    found = compare.differences(view_of({}), view_of({}, image_id="sha256:" + "b" * 64), compare.comparison_modes(None))
    assert [found_key for found_key, *_rest in found] == ["image"]


def test_image_name_differs_even_with_the_same_id() -> None:
    other = spec.normalize({"image": "registry.example/nginx"})
    requested = compare.view(other, spec.effective(other, IMAGE), "sha256:" + "a" * 64)
    found = compare.differences(view_of({}), requested, compare.comparison_modes(None))
    assert [found_key for found_key, *_rest in found] == ["image_name"]
    assert compare.differences(view_of({}), requested, compare.comparison_modes({"image_name": "ignore"})) == []


def test_allow_more_present_accepts_extra_entries_only() -> None:
    existing = view_of({"env": {"A": "1", "EXTRA": "x"}, "published_ports": ["88:80", "99:90"]})
    requested = view_of({"env": {"A": "1"}, "published_ports": ["88:80"]})
    modes = compare.comparison_modes({"env": "allow_more_present", "published_ports": "allow_more_present"})
    assert compare.differences(existing, requested, modes) == []
    changed = view_of({"env": {"A": "2"}})
    assert [found_key for found_key, *_rest in compare.differences(existing, changed, modes)] == ["env"]


def test_star_ignores_everything_but_what_is_named() -> None:
    modes = compare.comparison_modes({"*": "ignore", "image": "strict"})
    assert compare.differences(view_of({}), view_of({"memory": "1g"}), modes) == []
    newer = view_of({}, image_id="sha256:" + "c" * 64)
    assert [found_key for found_key, *_rest in compare.differences(view_of({}), newer, modes)] == ["image"]


@pytest.mark.parametrize(
    ("comparisons", "message"),
    [
        ({"colour": "strict"}, "unknown option 'colour'"),
        ({"env": "loose"}, "must be one of strict, ignore, allow_more_present"),
        ({"*": "allow_more_present"}, "'\\*' must be strict or ignore"),
    ],
)
def test_bad_comparisons_are_named(comparisons: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        compare.comparison_modes(comparisons)
