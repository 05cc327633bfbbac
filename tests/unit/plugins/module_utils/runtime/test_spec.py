"""Container specs: one canonical form, Docker's merge rules, clear errors."""

import pytest

from ansible_collections.berth.containers.plugins.module_utils.runtime import spec
from ansible_collections.berth.containers.plugins.module_utils.runtime.errors import InvalidArgument

NGINX_CONFIG = {
    "config": {
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Env": ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=1.22"],
        "ExposedPorts": {"80/tcp": {}},
        "StopSignal": "SIGQUIT",
        "Labels": {"maintainer": "x"},
    }
}


def test_defaults_are_explicit() -> None:
    result = spec.normalize({"image": "nginx"})
    assert set(result) == set(spec.DEFAULTS)
    assert result["image"] == "docker.io/library/nginx:latest"
    assert result["network_mode"] == "bridge"
    assert result["restart_policy"] == "no"
    assert result["env"] == {}


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"memory": "64m"}, {"memory": 64 * 1024 * 1024}),
        ({"memory": "1g"}, {"memory": "1024m"}),
        ({"cap_add": ["net_admin", "SYS_TIME"]}, {"cap_add": ["CAP_SYS_TIME", "CAP_NET_ADMIN"]}),
        (
            {"published_ports": ["88:80", "127.0.0.1:53:53/udp"]},
            {"published_ports": ["127.0.0.1:53:53/udp", "88:80/tcp"]},
        ),
        ({"command": "nginx -g 'daemon off;'"}, {"command": ["nginx", "-g", "daemon off;"]}),
        ({"env": {"A": 1}}, {"env": ["A=1"]}),
        ({"stop_signal": "quit"}, {"stop_signal": "SIGQUIT"}),
        ({"stop_signal": "3"}, {"stop_signal": "SIGQUIT"}),
        ({"restart_policy": "On-Failure:3"}, {"restart_policy": "on-failure:3"}),
        ({"volumes": ["/srv:/data:ro", "cache:/cache"]}, {"volumes": ["cache:/cache:rw", "/srv/:/data/:ro"]}),
        ({"tmpfs": ["/run:size=64m"]}, {"tmpfs": {"/run": "size=64m"}}),
        ({"network_aliases": ["b", "a", "b"]}, {"network_aliases": ["a", "b"]}),
    ],
)
def test_equal_requests_normalise_equal(first: dict, second: dict) -> None:
    assert spec.normalize({"image": "nginx", **first}) == spec.normalize({"image": "docker.io/library/nginx", **second})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"memory": "lots"}, "memory: 'lots' is not a size"),
        ({"memory": "1m"}, "below the minimum of 6m"),
        ({"cpus": "0"}, None),
        ({"cpus": -1}, "must be more than 0"),
        ({"cpus": 1000}, "at most the"),
        ({"pids_limit": "x"}, "pids_limit: 'x' is not an integer"),
        ({"restart_policy": "sometimes"}, "must be no, always, unless-stopped or on-failure"),
        ({"restart_policy": "always:3"}, "takes a retry count only as on-failure:N"),
        ({"network_mode": "overlay"}, "must be bridge, host, none or container:NAME"),
        ({"volumes": ["relative:dir"]}, "needs an absolute path inside the container"),
        ({"volumes": ["/a:/b:rx"]}, "unknown mode"),
        ({"volumes": ["/a:/"]}, "cannot mount over the container's root"),
        ({"volumes": ["/a:/x", "/b:/x"]}, "mounted more than once"),
        ({"env": {"A": True}}, "must have a string value"),
        ({"stop_signal": "SIGNOPE"}, "is not a signal name"),
        ({"working_dir": "rel"}, "must be an absolute path"),
        ({"cap_add": ["net admin"]}, "is not a capability name"),
        ({"network_mode": "host", "published_ports": ["80"]}, "need network_mode bridge"),
        ({"image": "UPPER/case"}, None),
        ({"colour": "blue"}, "unknown container option"),
        ({"tmpfs": {"/run": "size=1m,bogus"}}, "unknown option 'bogus'"),
    ],
)
def test_invalid_options_name_the_problem(options: dict, message) -> None:
    if message is None:
        spec.normalize({"image": "nginx", **options})
        return
    with pytest.raises(InvalidArgument, match=message):
        spec.normalize({"image": "nginx", **options})


def test_effective_uses_image_defaults() -> None:
    result = spec.effective(spec.normalize({"image": "nginx"}), NGINX_CONFIG)
    assert result["args"] == ["nginx", "-g", "daemon off;"]
    assert result["env"] == ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=1.22"]
    assert result["stop_signal"] == "SIGQUIT"
    assert result["working_dir"] == "/"
    assert result["exposed_ports"] == ["80/tcp"]


def test_user_env_overrides_image_env_and_default_path_is_added() -> None:
    requested = spec.normalize({"image": "nginx", "env": {"NGINX_VERSION": "2", "MODE": "x"}})
    result = spec.effective(requested, NGINX_CONFIG)
    assert result["env"] == ["PATH=/usr/local/sbin:/usr/bin", "NGINX_VERSION=2", "MODE=x"]
    bare = spec.effective(spec.normalize({"image": "busybox", "command": ["true"]}), {})
    assert bare["env"] == ["PATH=" + spec.DEFAULT_PATH]


def test_entrypoint_drops_image_cmd_but_command_keeps_entrypoint() -> None:
    config = {"config": {"Entrypoint": ["/docker-entrypoint.sh"], "Cmd": ["nginx"]}}
    only_entrypoint = spec.effective(spec.normalize({"image": "x", "entrypoint": ["sh"]}), config)
    assert only_entrypoint["args"] == ["sh"]
    only_command = spec.effective(spec.normalize({"image": "x", "command": ["bash"]}), config)
    assert only_command["args"] == ["/docker-entrypoint.sh", "bash"]


def test_command_equal_to_image_default_gives_equal_effective_config() -> None:
    explicit = spec.normalize({"image": "nginx", "command": ["nginx", "-g", "daemon off;"]})
    implicit = spec.normalize({"image": "nginx"})
    assert spec.effective(explicit, NGINX_CONFIG) == spec.effective(implicit, NGINX_CONFIG)


def test_systemd_detected_from_command_and_stops_with_rtmin3() -> None:
    result = spec.effective(spec.normalize({"image": "debian", "command": ["/sbin/init"]}), {})
    assert result["systemd"] is True
    assert result["stop_signal"] == "SIGRTMIN+3"
    assert spec.signal_number("SIGRTMIN+3") == 37


def test_no_command_at_all_is_an_error() -> None:
    with pytest.raises(InvalidArgument, match="neither Entrypoint nor Cmd"):
        spec.effective(spec.normalize({"image": "scratch-thing"}), {"config": {}})


def test_env_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "env"
    path.write_text("# comment\nA=1\n\nB=two words\nFROM_CALLER\n")
    monkeypatch.setenv("FROM_CALLER", "yes")
    result = spec.normalize({"image": "nginx", "env_file": str(path), "env": {"A": "override"}})
    assert result["env"] == {"A": "override", "B": "two words", "FROM_CALLER": "yes"}
    with pytest.raises(InvalidArgument, match="cannot be read"):
        spec.normalize({"image": "nginx", "env_file": str(tmp_path / "missing")})


@pytest.mark.parametrize(("given", "expected"), [(None, None), (True, True), ("false", False), ("yes", True)])
def test_no_new_privileges_is_optional(given, expected) -> None:
    assert spec.normalize({"image": "busybox", "no_new_privileges": given})["no_new_privileges"] is expected


def test_no_new_privileges_rejects_other_words() -> None:
    with pytest.raises(InvalidArgument, match="no_new_privileges: 'maybe' must be true or false"):
        spec.normalize({"image": "busybox", "no_new_privileges": "maybe"})
